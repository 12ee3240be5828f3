"""Frechet distance between Gaussians fitted to features (FID when the features are Inception's).

``d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``. The trace of
the matrix square root is computed on the device through symmetric
eigendecompositions, with no ``scipy.linalg.sqrtm``: ``S1 S2`` is similar to
the symmetric positive semi-definite ``S1^(1/2) S2 S1^(1/2)``, so
``tr((S1 S2)^(1/2))`` is the sum of the square roots of that matrix's
eigenvalues, which are computed as the singular values of ``F2^T F1`` with
``F_i F_i^T = S_i`` from ``eigh`` (see ``trace_sqrt_product``). This runs on
CPU, GPU and TPU, in float64 when x64 is enabled
(``jax.config.update('jax_enable_x64', True)``) and float64 inputs are given,
otherwise in float32 with the covariances rescaled to unit average variance
and every matmul at full precision.
"""

import chex
import jax
import jax.numpy as jnp

from ganjax.metrics._blocks import HIGHEST, compute_dtype


def gaussian_statistics(features: chex.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and (unbiased) covariance of a feature set.

  Use to summarise real or generated features before ``frechet_distance``.
  The covariance is computed from centred features, which keeps float32
  accurate (``E[x x^T] - mu mu^T`` would cancel catastrophically).

  References: Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update
  Rule Converge to a Local Nash Equilibrium", https://arxiv.org/abs/1706.08500.

  Args:
    features: ``[N, d]``, N >= 2.

  Returns:
    ``(mu [d], sigma [d, d])``, with ``sigma`` normalised by ``N - 1`` as in
    ``numpy.cov``.
  """
  chex.assert_rank(features, 2)
  n = features.shape[0]
  if n < 2:
    raise ValueError(f"gaussian_statistics needs at least 2 feature vectors, "
                     f"got {n}.")
  return _gaussian_statistics(jnp.asarray(features, compute_dtype(features)))


@jax.jit
def _gaussian_statistics(x):
  mu = jnp.mean(x, axis=0)
  centred = x - mu
  sigma = jnp.matmul(centred.T, centred, precision=HIGHEST) / (x.shape[0] - 1)
  return mu, sigma


def _symmetric(m: jax.Array) -> jax.Array:
  return 0.5 * (m + m.T)


def _psd_factor(m: jax.Array) -> jax.Array:
  """``F = V diag(sqrt(w))`` with ``F F^T = m``, from the symmetric
  eigendecomposition ``m = V diag(w) V^T`` (rounding-error negative
  eigenvalues clipped to 0)."""
  w, v = jnp.linalg.eigh(_symmetric(m))
  return v * jnp.sqrt(jnp.maximum(w, 0.0))


def trace_sqrt_product(sigma1: chex.Array, sigma2: chex.Array) -> jax.Array:
  """``tr((S1 S2)^(1/2))`` for symmetric PSD ``S1, S2``: two eigh, one SVD.

  With ``S_i = F_i F_i^T`` (``F_i = V_i diag(sqrt(w_i))``), the eigenvalues of
  ``S1^(1/2) S2 S1^(1/2)`` (those of ``S1 S2``) are the squared singular
  values of ``F2^T F1``. Taking the singular values directly, instead of the
  square roots of the eigenvalues of the product, avoids squaring the
  condition number: in float32, eigenvalues near 0 come out with absolute
  errors ~ eps |S|^2, and their square roots add up to errors of several FID
  units at d = 2048, whereas singular values carry errors ~ eps |S|
  (``tests/test_metrics.py`` checks both against scipy in float64).

  Args:
    sigma1, sigma2: ``[d, d]`` covariance matrices.

  Returns:
    a scalar.
  """
  f1, f2 = _psd_factor(sigma1), _psd_factor(sigma2)
  product = jnp.matmul(f2.T, f1, precision=HIGHEST)
  return jnp.sum(jnp.linalg.svd(product, compute_uv=False))


@jax.jit
def _frechet(mu1, sigma1, mu2, sigma2):
  # Rescale so that the average variance is 1: the eigensolvers then work on
  # O(1) numbers whatever the feature scale; the distance scales back linearly.
  d = mu1.shape[0]
  scale = (jnp.trace(sigma1) + jnp.trace(sigma2)) / (2 * d)
  scale = jnp.where(scale > 0, scale, 1.0)
  s1, s2 = sigma1 / scale, sigma2 / scale
  diff = mu1 - mu2
  mean_term = jnp.dot(diff, diff, precision=HIGHEST)
  cov_term = jnp.trace(s1) + jnp.trace(s2) - 2.0 * trace_sqrt_product(s1, s2)
  return mean_term + scale * cov_term


def frechet_distance(mu1: chex.Array, sigma1: chex.Array, mu2: chex.Array,
                     sigma2: chex.Array) -> jax.Array:
  """Frechet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2).

  Use on ``gaussian_statistics`` of real and generated features: with
  InceptionV3 pool features it is FID; with another network's features, say
  which (``ganjax.metrics.Evaluator`` names the protocol in the metric).

  References: Dowson & Landau, 1982, "The Frechet distance between
  multivariate normal distributions",
  https://doi.org/10.1016/0047-259X(82)90077-X; Heusel et al., 2017,
  https://arxiv.org/abs/1706.08500.

  Args:
    mu1, mu2: ``[d]`` means.
    sigma1, sigma2: ``[d, d]`` covariances.

  Returns:
    a scalar (float64 if x64 is enabled and an input is float64, else
    float32). Not clipped: tiny negative values mean "equal up to rounding".
  """
  chex.assert_rank([mu1, sigma1, mu2, sigma2], [1, 2, 1, 2])
  chex.assert_equal_shape([mu1, mu2])
  chex.assert_equal_shape([sigma1, sigma2])
  if sigma1.shape != (mu1.shape[0],) * 2:
    raise ValueError(f"Covariances of shape {sigma1.shape} do not match means "
                     f"of shape {mu1.shape}.")
  dtype = compute_dtype(mu1, sigma1, mu2, sigma2)
  return _frechet(*(jnp.asarray(a, dtype) for a in (mu1, sigma1, mu2, sigma2)))


def frechet_distance_from_features(features1: chex.Array,
                                   features2: chex.Array) -> jax.Array:
  """``frechet_distance`` of the Gaussian statistics of two feature sets ``[N, d]``, ``[M, d]``."""
  return frechet_distance(*gaussian_statistics(features1),
                          *gaussian_statistics(features2))
