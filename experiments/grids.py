"""Pictures of a run's samples: grids from fixed noise (one row per class for
conditional runs), scatter plots and histograms of toy points.

Used by the training loop (``GridWriter``: ``samples/step_XXXXXX.png`` and
TensorBoard) and by ``experiments.sample`` (``picture``, ``class_picture``).
"""

import contextlib
import io
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

import ganjax as gj
from ganjax import images as images_lib
from ganjax import summary as summary_lib
from experiments import builders
from experiments import workdir as workdir_lib


def sample_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, workdir_lib.SAMPLE_DIR, f"step_{step:06d}.png")


def toy_sampler(name: str):
  """The ``ganjax.data.toy`` sampler of a toy data set's name."""
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  sampler_name, _ = pipeline.TOY_SOURCES[name]
  return getattr(gj.data.toy, sampler_name)


def real_points(config, num: int) -> np.ndarray:
  """``num`` real toy points, drawn with a fixed key (for the scatter plots)."""
  key = gj.streams.run_key(config.seed, gj.streams.REAL_POINTS)
  return np.asarray(toy_sampler(config.dataset)(key, num))


def class_grid_samples(gan, state, key, per_class: int,
                       use_ema: bool = True) -> jax.Array:
  """Samples for a per-class grid: ``[C * per_class, ...]``, class-major.

  Row ``c`` holds ``per_class`` samples of class ``c``; column ``j`` uses
  the same latent in every row (``gan.sample`` with the same key for each
  class), so a column shows one z across the classes. Jittable.
  """
  labels = jnp.repeat(jnp.arange(gan.num_classes, dtype=jnp.int32),
                      per_class).reshape(gan.num_classes, per_class)
  rows = jax.vmap(lambda y: gan.sample(state, key, per_class, labels=y,
                                       use_ema=use_ema))(labels)
  return rows.reshape((-1,) + rows.shape[2:])


def picture(experiment: builders.Experiment, config, samples: np.ndarray,
            num: int) -> np.ndarray:
  """A PNG-ready picture of the first ``num`` samples (in [0, 1]; toy data:
  up to 2,000 points over as many real ones)."""
  if not experiment.is_toy:
    return images_lib.make_grid(samples[:num],
                                scale=max(1, 32 // samples.shape[1]))
  samples = samples[:2000]
  real = real_points(config, len(samples))
  if samples.shape[-1] == 1:
    return images_lib.histogram(samples, real)
  return images_lib.scatter(samples, real)


def class_picture(experiment: builders.Experiment, state, num: int, key,
                  use_ema: bool = True) -> np.ndarray:
  """One row per class, ``num // num_classes`` samples each (at least one),
  the same latent down each column."""
  per_class = max(1, num // experiment.num_classes)
  rows = np.asarray(jax.jit(lambda s, k: class_grid_samples(
      experiment.gan, s, k, per_class, use_ema))(state, key))
  return images_lib.make_class_grid(
      images_lib.to_unit_range(rows, experiment.value_range),
      experiment.num_classes, scale=max(1, 32 // rows.shape[1]))


class GridWriter:
  """Writes samples from fixed noise as PNGs (and to TensorBoard).

  Conditional runs: one row per class, ``num_eval_samples // num_classes``
  samples each (at least one), the same noise in every row of a column.
  Populations: one row per member, ``num_eval_samples // N`` samples each
  (classes 0, 1, ... along a conditional row), the same noise in a column;
  toy data: every member's points in one plot.
  """

  def __init__(self, config, experiment: builders.Experiment, workdir: str,
               writer: summary_lib.SummaryWriter, enabled: bool = True):
    self.enabled = enabled
    self.experiment = experiment
    self.workdir = workdir
    self.writer = writer
    self.num = int(config.num_eval_samples)
    self.key = gj.streams.run_key(config.seed, gj.streams.FIXED_NOISE)
    gan, population = experiment.gan, experiment.population
    self.per_class = None  # the columns of a grid with rows
    if population is not None:  # one row per member, the same latents
      self.per_class = max(1, self.num // population.size)
      labels = (None if experiment.num_classes is None else
                jnp.arange(self.per_class, dtype=jnp.int32)
                % experiment.num_classes)

      def rows(state, key):
        samples = population.sample(state, key, self.per_class, labels=labels)
        return samples.reshape((-1,) + samples.shape[2:])

      self._sample = jax.jit(rows)
    elif experiment.num_classes is not None:
      self.per_class = max(1, self.num // experiment.num_classes)
      self._sample = jax.jit(lambda state, key: class_grid_samples(
          gan, state, key, self.per_class))
    else:
      self._sample = jax.jit(lambda state, key: gan.sample(state, key,
                                                           self.num))
    self.real = (real_points(config, self.num) if experiment.is_toy else None)

  def picture(self, state) -> np.ndarray:
    samples = np.asarray(self._sample(state, self.key))
    if not self.experiment.is_toy:
      height = samples.shape[1]
      return images_lib.make_grid(
          images_lib.to_unit_range(samples, self.experiment.value_range),
          ncols=self.per_class, scale=max(1, 32 // height))
    if samples.shape[-1] == 1:
      return images_lib.histogram(samples, self.real)
    return images_lib.scatter(samples, self.real)

  def __call__(self, step: int, state, interruptible=contextlib.nullcontext
               ) -> str:
    """Writes the grid of ``state`` at ``step``; returns its path.

    ``interruptible()``: the context the drawing (which writes nothing)
    runs in (``guards.Signals.interruptible``).

    Raises:
      OSError: the write failed (``filename`` names the file); no partial
        PNG is left.
    """
    with interruptible():
      grid = self.picture(state)
    if not self.enabled:  # another process of a multi-process run writes
      return ""
    path = sample_path(self.workdir, step)
    workdir_lib.write_bytes(path, png_bytes(grid))
    self.writer.image(step, "samples", grid)
    return path


def png_bytes(picture: np.ndarray) -> bytes:
  """The PNG file of a uint8 ``[H, W]`` / ``[H, W, 1 or 3]`` picture."""
  picture = np.asarray(picture, np.uint8)
  if picture.ndim == 3 and picture.shape[-1] == 1:
    picture = picture[..., 0]
  buffer = io.BytesIO()
  Image.fromarray(picture).save(buffer, format="PNG")
  return buffer.getvalue()
