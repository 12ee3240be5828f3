"""Toy distributions sampled in pure JAX: a 1-D Gaussian and two 2-D Gaussian mixtures.

The mixtures are the mode-collapse benchmarks of the unrolled-GAN (Metz et al.,
2016, https://arxiv.org/abs/1611.02163) and VEEGAN (Srivastava et al., 2017,
https://arxiv.org/abs/1705.07761) papers. Every sampler is jittable and returns
float32 ``[n, d]``; the mixtures, with ``return_modes=True``, also the index of
the mode each point was drawn from (int32 ``[n]``), the class label of the
conditional toy problems (mode ``c`` is class ``c``; the points are the same
as without it). ``ToySource`` serves them to ``ganjax.data.pipeline``.
"""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np

# Default parameters of the samplers (the papers' values).
GAUSSIAN_1D_MEAN, GAUSSIAN_1D_STD = 4.0, 0.5
RING_STD = 0.02
GRID_STD = 0.05


def gaussian_1d(key: chex.PRNGKey, n: int, mean: float = GAUSSIAN_1D_MEAN,
                std: float = GAUSSIAN_1D_STD) -> chex.Array:
  """``n`` samples of ``N(mean, std^2)``, shape ``[n, 1]``."""
  return mean + std * jax.random.normal(key, (n, 1), jnp.float32)


def ring_centers(num_modes: int = 8, radius: float = 2.0) -> chex.Array:
  """``[num_modes, 2]`` centres evenly spaced on a circle."""
  angles = 2.0 * jnp.pi * jnp.arange(num_modes) / num_modes
  return radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def grid_centers(size: int = 5, spacing: float = 2.0) -> chex.Array:
  """``[size**2, 2]`` centres of a square grid centred on the origin."""
  ticks = spacing * (jnp.arange(size) - (size - 1) / 2.0)
  xs, ys = jnp.meshgrid(ticks, ticks, indexing="ij")
  return jnp.stack([xs.ravel(), ys.ravel()], axis=-1)


def mixture(key: chex.PRNGKey, n: int, centers: chex.Array, std: float,
            return_modes: bool = False):
  """``n`` samples of an equal-weight isotropic Gaussian mixture, ``[n, d]``.

  With ``return_modes``: ``(points [n, d], modes int32 [n])``, ``modes[i]``
  the index in ``centers`` of the component point ``i`` was drawn from.
  """
  mode_key, noise_key = jax.random.split(key)
  modes = jax.random.randint(mode_key, (n,), 0, centers.shape[0], jnp.int32)
  noise = jax.random.normal(noise_key, (n, centers.shape[1]), jnp.float32)
  points = centers[modes] + std * noise
  return (points, modes) if return_modes else points


def ring(key: chex.PRNGKey, n: int, num_modes: int = 8, radius: float = 2.0,
         std: float = RING_STD, return_modes: bool = False):
  """The ring of 8 Gaussians (radius 2, std 0.02), ``[n, 2]`` (and modes ``[n]``).

  Mode ``c`` is centred at angle ``2 pi c / num_modes``.
  """
  return mixture(key, n, ring_centers(num_modes, radius), std, return_modes)


def grid(key: chex.PRNGKey, n: int, size: int = 5, spacing: float = 2.0,
         std: float = GRID_STD, return_modes: bool = False):
  """The 5x5 grid of 25 Gaussians (centres -4..4, std 0.05), ``[n, 2]`` (and modes ``[n]``).

  Mode ``c`` is ``grid_centers()[c]`` (row-major over x, then y).
  """
  return mixture(key, n, grid_centers(size, spacing), std, return_modes)


def modes(name: str) -> tuple[chex.Array, float]:
  """``(centers [M, d], std)`` of a sampler above with its default parameters.

  ``name``: ``"ring"``, ``"grid"`` or ``"gaussian_1d"`` (one mode); what
  ``ganjax.metrics.mode_coverage`` needs to score samples of it.
  """
  if name == "ring":
    return ring_centers(), RING_STD
  if name == "grid":
    return grid_centers(), GRID_STD
  if name == "gaussian_1d":
    return jnp.array([[GAUSSIAN_1D_MEAN]]), GAUSSIAN_1D_STD
  raise ValueError(f"Unknown toy distribution {name!r}; choose from ring, "
                   "grid, gaussian_1d.")


@functools.lru_cache(maxsize=None)
def _draw(sampler_name: str, n: int, labels: bool = False):
  """Jitted ``(key, step) -> [n, d]`` samples (and modes ``[n]`` with
  ``labels``), cached so it compiles once."""
  sampler = globals()[sampler_name]
  if labels:
    return jax.jit(lambda key, step: sampler(jax.random.fold_in(key, step), n,
                                             return_modes=True))
  return jax.jit(lambda key, step: sampler(jax.random.fold_in(key, step), n))


class ToySource:
  """A toy distribution as a data source: points drawn, never stored.

  Args:
    name: the source's name (``"toy_ring8"``).
    sampler_name: the sampler above (``"ring"``).
    dim: the dimension of a point.
    num_classes: the modes of a mixture (its class labels), or None.
  """

  def __init__(self, name: str, sampler_name: str, dim: int,
               num_classes=None):
    self.name, self.sampler_name, self.dim = name, sampler_name, dim
    self._num_classes = num_classes

  def __repr__(self):
    return self.name

  def data_shape(self, image_size=None) -> tuple:
    if image_size is not None:
      raise ValueError(f"{self.name} holds points: image_size does not apply.")
    return (self.dim,)

  def num_classes(self):
    return self._num_classes

  def class_names(self):
    return None

  def load(self, *args, **kwargs):
    raise ValueError(f"{self.name} is sampled, not stored: it has no split to "
                     "load.")

  def stream(self, *, labels: bool, local: int, k: int, seed: int,
             process_index: int, **unused):
    """Endless ``(points float32 [k, local, d], modes [k, local] or None)``
    on the host: step ``s`` draws from ``fold_in(key(seed), process)``
    folded with ``s``."""
    del unused
    draw = _draw(self.sampler_name, k * local, labels)
    cpu = jax.devices("cpu")[0]  # host-side samples, like the other sources
    with jax.default_device(cpu):
      key = jax.random.fold_in(jax.random.key(seed), process_index)

    def gen():
      for step in itertools.count():
        with jax.default_device(cpu):
          out = draw(key, step)
        x, y = out if labels else (out, None)
        x = np.asarray(x, dtype=np.float32).reshape(k, local, self.dim)
        yield x, (None if y is None else np.asarray(y).reshape(k, local))

    return gen()
