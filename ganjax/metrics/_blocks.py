"""Shared helpers of the metrics: dtypes, padding to blocks, squared distances.

Every pairwise computation in ``ganjax.metrics`` walks fixed-size blocks of
rows and columns, so memory stays bounded whatever the number of points, and a
jitted function compiles once per block size, not once per data size.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST


def compute_dtype(*arrays) -> jnp.dtype:
  """float64 when x64 is enabled and an input is float64, else float32."""
  if jax.config.jax_enable_x64 and any(
      np.dtype(getattr(a, "dtype", np.float32)) == np.float64 for a in arrays):
    return jnp.float64
  return jnp.float32


def pad_rows(x: jax.Array, block: int) -> tuple[jax.Array, int]:
  """Pads ``x [N, ...]`` with zero rows to a multiple of ``block``.

  Returns:
    ``(x_padded [ceil(N / block) * block, ...], N)``.
  """
  n = x.shape[0]
  total = max(1, math.ceil(n / block)) * block
  if total == n:
    return x, n
  pad = [(0, total - n)] + [(0, 0)] * (x.ndim - 1)
  return jnp.pad(x, pad), n


def block_size(n: int, block: int) -> int:
  """The block size actually used for ``n`` rows: ``block``, or less for small n."""
  return max(1, min(block, n))


def squared_distances(x: jax.Array, x_sq: jax.Array, y: jax.Array,
                      y_sq: jax.Array) -> jax.Array:
  """``[n, m]`` squared Euclidean distances from row norms and one matmul.

  ``|x - y|^2 = |x|^2 + |y|^2 - 2 x.y``: one GEMM instead of an ``[n, m, d]``
  tensor. The matmul runs at full float32 precision (TPUs would otherwise use
  bfloat16 passes), and the result is clipped at 0 against rounding. Callers
  centre the data first, which keeps the cancellation small.
  """
  cross = jnp.matmul(x, y.T, precision=HIGHEST)
  return jnp.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * cross, 0.0)
