"""Toy distributions sampled in pure JAX: a 1-D Gaussian and two 2-D Gaussian mixtures.

The mixtures are the mode-collapse benchmarks of the unrolled-GAN (Metz et al.,
2016, https://arxiv.org/abs/1611.02163) and VEEGAN (Srivastava et al., 2017,
https://arxiv.org/abs/1705.07761) papers. Every sampler is jittable and returns
float32 ``[n, d]``; the mixtures, with ``return_modes=True``, also the index of
the mode each point was drawn from (int32 ``[n]``), the class label of the
conditional toy problems (mode ``c`` is class ``c``; the points are the same
as without it).
"""

import chex
import jax
import jax.numpy as jnp

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
