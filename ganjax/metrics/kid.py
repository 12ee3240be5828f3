"""Kernel Inception Distance: an unbiased MMD^2 between feature sets, averaged over subsets."""

import functools

import chex
import jax
import jax.numpy as jnp

from ganjax.metrics._blocks import HIGHEST, compute_dtype


def polynomial_kernel(x: jax.Array, y: jax.Array) -> jax.Array:
  """The cubic kernel of KID: ``k(x, y) = (x.y / d + 1)^3``, ``[n, d], [m, d] -> [n, m]``."""
  d = x.shape[-1]
  return (jnp.matmul(x, y.T, precision=HIGHEST) / d + 1.0) ** 3


def mmd2_unbiased(x: jax.Array, y: jax.Array) -> jax.Array:
  """Unbiased estimate of MMD^2 with the cubic kernel, ``[m, d], [m, d] -> scalar``.

  ``sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) /
  (m (m - 1)) - 2 sum_{i, j} k(x_i, y_j) / m^2``: diagonal terms left out, so
  the expectation is exactly 0 when x and y come from one distribution (it
  can be negative).
  """
  m = x.shape[0]
  k_xx = polynomial_kernel(x, x)
  k_yy = polynomial_kernel(y, y)
  k_xy = polynomial_kernel(x, y)
  off_diag = lambda k: (jnp.sum(k) - jnp.trace(k)) / (m * (m - 1))
  return off_diag(k_xx) + off_diag(k_yy) - 2.0 * jnp.mean(k_xy)


def kernel_inception_distance(real_features: chex.Array,
                              fake_features: chex.Array,
                              key: jax.Array | None = None,
                              num_subsets: int = 100,
                              subset_size: int = 1000) -> dict:
  """KID: unbiased MMD^2 (cubic polynomial kernel), mean and std over random subsets.

  Use next to FID when few samples are available: unlike FID, its estimate is
  unbiased, so values from different sample sizes compare.

  References: Binkowski et al., 2018, "Demystifying MMD GANs",
  https://arxiv.org/abs/1801.01401 (the subset protocol of its code: 100
  subsets of 1000, drawn without replacement within a subset).

  Args:
    real_features: ``[N, d]``.
    fake_features: ``[M, d]``.
    key: PRNG key for the subsets (default ``jax.random.key(0)``).
    num_subsets: number of subsets.
    subset_size: points per subset from each set; reduced to ``min(N, M)``
      when larger.

  Returns:
    ``{"mean": scalar, "std": scalar, "subset_size": int}`` (std over
    subsets, ``ddof=0``, as in the reference code).
  """
  chex.assert_rank([real_features, fake_features], 2)
  chex.assert_equal_shape_suffix([real_features, fake_features], 1)
  n, m = real_features.shape[0], fake_features.shape[0]
  size = min(subset_size, n, m)
  if size < 2:
    raise ValueError(f"KID needs at least 2 points in each set, got {n} and {m}.")
  if key is None:
    key = jax.random.key(0)
  dtype = compute_dtype(real_features, fake_features)
  mean, std = _kid_subsets(jnp.asarray(real_features, dtype),
                            jnp.asarray(fake_features, dtype), key,
                            num_subsets, size)
  return {"mean": mean, "std": std, "subset_size": size}


@functools.partial(jax.jit, static_argnums=(3, 4))
def _kid_subsets(x, y, key, num_subsets, size):
  def one(k):
    kx, ky = jax.random.split(k)
    sx = x[jax.random.choice(kx, x.shape[0], (size,), replace=False)]
    sy = y[jax.random.choice(ky, y.shape[0], (size,), replace=False)]
    return mmd2_unbiased(sx, sy)

  # lax.map, not vmap: one subset's kernel matrices in memory at a time.
  values = jax.lax.map(one, jax.random.split(key, num_subsets))
  return jnp.mean(values), jnp.std(values)
