r"""Draws samples from a training run's latest checkpoint.

    python -m experiments.sample --workdir=/tmp/digits --num=10000 --out=samples.npy

A population's workdir (``config.population``): ``--member=i`` picks the
member (default: the best one, as ``best.json`` names it).

Writes ``--out`` (``.npy``, float32) and a PNG grid of the first samples next
to it (``samples.png``; ``--grid=0``: none). Images are ``[N, H, W, C]`` in
[0, 1], whatever the generator's own range; toy data are points ``[N, d]`` in
data units, and the PNG is a scatter plot (histogram for 1-D) over real
data. The generator's EMA weights are used when the run kept them
(``--noema`` for the raw weights); batch norm uses its running averages.
The same ``--seed`` gives the same samples, whatever ``--batch_size``.
Conditional runs: the samples' classes are drawn uniformly, and the PNG
shows one row per class (``--grid // num_classes`` samples each, the same
noise down each column). Samples go to the file ``--batch_size`` at a time,
so ``--num`` is bounded by the disk, not the memory.

``draw`` / ``draw_chunks`` are the one way the runner draws many samples of
a run (also for ``experiments.evaluate`` and the periodic evaluation).
"""

import contextlib
import functools
import os
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from ganjax import images as images_lib  # noqa: E402
from experiments import builders  # noqa: E402
from experiments import cli  # noqa: E402
from experiments import grids  # noqa: E402
from experiments import resume  # noqa: E402
from experiments import workdir as workdir_lib  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string("workdir", None, "Workdir of a training run.")
  flags.DEFINE_integer("num", 10_000, "Number of samples.")
  flags.DEFINE_string("out", "samples.npy", "Output .npy file; the PNG grid "
                      "goes next to it.")
  flags.DEFINE_integer("batch_size", 1000, "Samples per generator call.")
  flags.DEFINE_integer("seed", 0, "Seed of the latent noise.")
  flags.DEFINE_integer("step", -1, "Checkpoint step; -1 for the latest.")
  flags.DEFINE_bool("ema", True, "Use the EMA weights when the run has them.")
  flags.DEFINE_integer("grid", 100, "Samples shown in the PNG grid.")
  flags.DEFINE_integer("member", None, "A population's member to draw from "
                       "(default: the best, as best.json names it).")
  flags.mark_flags_as_required(["workdir"])


def num_classes(experiment: builders.Experiment) -> Optional[int]:
  """The classes of a conditional run, None for an unconditional one."""
  classes = getattr(experiment, "num_classes", None) or getattr(
      experiment.gan, "num_classes", None)
  return int(classes) if classes else None


def balanced_labels(num: int, classes: int) -> np.ndarray:
  """``arange(num) % classes`` as int32: every class equally often (+-1)."""
  return (np.arange(num) % classes).astype(np.int32)


@functools.lru_cache(maxsize=8)
def _samplers(gan, use_ema: bool):
  """``gan``'s jitted ``sample`` without and with labels, compiled once per
  GAN (a run's periodic evaluation draws many times)."""
  sample = jax.jit(lambda state, key, n: gan.sample(state, key, n,
                                                    use_ema=use_ema),
                   static_argnums=2)
  sample_labelled = jax.jit(lambda state, key, y: gan.sample(
      state, key, y.shape[0], labels=y, use_ema=use_ema))
  return sample, sample_labelled


def draw_chunks(experiment: builders.Experiment, state, num: int,
                seed: int = 0, batch_size: int = 1000, use_ema: bool = True,
                key: Optional[jax.Array] = None,
                labels: Optional[np.ndarray] = None):
  """Yields ``num`` samples, ``batch_size`` at a time: images float32
  ``[n, H, W, C]`` in [0, 1], or points ``[n, d]``.

  Chunk ``i`` is drawn from ``fold_in(key, i * batch_size)`` (default key
  ``jax.random.key(seed)``); the same key and batch size give the same
  samples. ``labels`` (int ``[num]``, conditional runs): the class of each
  sample; without them a conditional GAN draws classes uniformly.
  """
  gan = experiment.gan
  if labels is not None:
    labels = np.asarray(labels, np.int32)
    if labels.shape != (num,):
      raise ValueError(f"draw() needs labels of shape [{num}], got "
                       f"{labels.shape}.")
  sample, sample_labelled = _samplers(gan, use_ema)
  key = jax.random.key(seed) if key is None else key
  for done in range(0, num, batch_size):
    n = min(batch_size, num - done)
    chunk_key = jax.random.fold_in(key, done)
    if labels is None:
      chunk = sample(state, chunk_key, n)
    else:
      chunk = sample_labelled(state, chunk_key,
                              jax.numpy.asarray(labels[done:done + n]))
    chunk = np.asarray(chunk, np.float32)
    if experiment.value_range is not None:
      chunk = images_lib.to_unit_range(chunk, experiment.value_range)
    yield chunk


def draw(experiment: builders.Experiment, state, num: int, seed: int = 0,
         batch_size: int = 1000, use_ema: bool = True,
         key: Optional[jax.Array] = None,
         labels: Optional[np.ndarray] = None) -> np.ndarray:
  """``draw_chunks`` as one array ``[num, ...]``."""
  return np.concatenate(list(draw_chunks(experiment, state, num, seed,
                                         batch_size, use_ema, key, labels)))


def write_samples(path: str, chunks, num: int) -> np.ndarray:
  """Streams ``chunks`` (``num`` samples in all) into the ``.npy`` file
  ``path``, whole or not at all; returns the first chunk.

  Raises:
    OSError: the write failed (``filename``: the file); nothing is left.
  """
  tmp = f"{path}.tmp.{os.getpid()}"
  first = None
  try:
    out = None
    done = 0
    for chunk in chunks:
      if out is None:
        first = chunk
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                        shape=(num,) + chunk.shape[1:])
      out[done:done + len(chunk)] = chunk
      done += len(chunk)
    out.flush()
    del out
    os.replace(tmp, path)
  except OSError as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise OSError(e.errno, e.strerror, path) from None
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  return first


def main(argv):
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}.")
  if FLAGS.num < 1 or FLAGS.batch_size < 1:
    cli.fail("--num and --batch_size must be positive.")
  if FLAGS.grid < 0:
    cli.fail("--grid must be >= 0 (0: no PNG grid).")
  out = FLAGS.out if FLAGS.out.endswith(".npy") else FLAGS.out + ".npy"
  try:  # before the (slower) sampling
    if os.path.dirname(out):
      os.makedirs(os.path.dirname(out), exist_ok=True)
  except OSError as e:
    cli.fail(f"cannot write --out={FLAGS.out}: cannot create the folder "
               f"{os.path.dirname(out)} ({e.strerror or e}; is a part of the "
               "path a file?).")
  try:
    run = resume.load(FLAGS.workdir, FLAGS.step, FLAGS.member)
  except (builders.ConfigError, workdir_lib.WorkdirError) as e:
    cli.fail(str(e))
  experiment, state, config = run.experiment, run.state, run.config
  chunks = draw_chunks(experiment, state, FLAGS.num, FLAGS.seed,
                       FLAGS.batch_size, FLAGS.ema)
  try:
    first = write_samples(out, chunks, FLAGS.num)
  except OSError as e:
    cli.fail(workdir_lib.write_error(e, then="run it again"))
  wrote = f"Wrote {FLAGS.num} samples {first.shape[1:]} (float32, step {run.step}" + (
      f", member {run.member}" if run.member is not None else "") + (
      ", EMA weights" if FLAGS.ema and state.ema_g_params is not None else ""
  ) + f") to {out}"
  if FLAGS.grid == 0:
    print(wrote + ".")
    return
  png = out[:-len(".npy")] + ".png"
  if experiment.num_classes is not None and not experiment.is_toy:
    picture = grids.class_picture(experiment, state, FLAGS.grid,
                                  jax.random.key(FLAGS.seed), FLAGS.ema)
  else:
    shown = np.load(out, mmap_mode="r")[:max(FLAGS.grid, 2000)]
    picture = grids.picture(experiment, config, np.asarray(shown), FLAGS.grid)
  try:
    workdir_lib.write_bytes(png, grids.png_bytes(picture))
  except OSError as e:
    cli.fail(workdir_lib.write_error(e, then="run it again"))
  print(f"{wrote} and a grid to {png}.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
