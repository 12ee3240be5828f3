"""Mode coverage of a Gaussian mixture: the toy mode-collapse benchmark.

Protocol of the unrolled-GAN, VEEGAN and PacGAN papers (Metz et al., 2016,
https://arxiv.org/abs/1611.02163; Srivastava et al., 2017,
https://arxiv.org/abs/1705.07761; Lin et al., 2018,
https://arxiv.org/abs/1712.04086): draw 2,500 samples; a sample is *high
quality* when it lies within 3 standard deviations of its nearest mode centre;
a mode is *captured* when at least 20 high-quality samples fall on it.
"""

import chex
import jax.numpy as jnp


def mode_coverage(samples: chex.Array, centers: chex.Array, std: float,
                  num_std: float = 3.0, min_count: int = 20) -> dict:
  """Counts captured modes and the fraction of high-quality samples.

  Args:
    samples: ``[N, d]`` generated points (2,500 in the protocol).
    centers: ``[M, d]`` mode centres (``ganjax.data.toy.ring_centers()``...).
    std: standard deviation of each mixture component.
    num_std: radius of a mode, in standard deviations.
    min_count: high-quality samples a mode needs to count as captured.

  Returns:
    a dict with ``modes_captured`` (int), ``num_modes`` (int),
    ``high_quality_fraction`` (float) and ``counts`` (``[M]`` high-quality
    samples per mode).
  """
  chex.assert_rank([samples, centers], 2)
  chex.assert_equal_shape_suffix([samples, centers], 1)
  distances = jnp.linalg.norm(samples[:, None, :] - centers[None, :, :], axis=-1)
  nearest = jnp.argmin(distances, axis=1)
  high_quality = jnp.min(distances, axis=1) <= num_std * std
  counts = jnp.zeros(centers.shape[0], jnp.int32).at[nearest].add(
      high_quality.astype(jnp.int32))
  return {
      "modes_captured": int(jnp.sum(counts >= min_count)),
      "num_modes": int(centers.shape[0]),
      "high_quality_fraction": float(jnp.mean(high_quality)),
      "counts": counts,
  }
