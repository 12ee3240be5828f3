"""The Parzen-window log-likelihood against a brute-force float64 computation, and its sigma selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from ganjax import metrics


def _brute_force(x, centers, sigma):
  """float64, the formula of the GAN paper's parzen_ll.py, no blocks."""
  x = x.reshape(len(x), -1).astype(np.float64)
  c = centers.reshape(len(centers), -1).astype(np.float64)
  a = (x[:, None, :] - c[None, :, :]) / sigma
  e = -0.5 * (a ** 2).sum(2)
  d = x.shape[1]
  return (logsumexp(e, axis=1) - np.log(len(c))
          - d * np.log(sigma * np.sqrt(2 * np.pi)))


@pytest.mark.parametrize("block_x,block_c", [(7, 5), (1000, 1000)])
def test_matches_brute_force(block_x, block_c):
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(37, 4, 5)).astype(np.float32)     # flattened inside
  centers = rng.uniform(size=(53, 4, 5)).astype(np.float32)
  for sigma in (0.03, 0.2, 1.0):
    got = np.asarray(metrics.parzen_log_likelihood(x, centers, sigma,
                                                   block_x, block_c))
    want = _brute_force(x, centers, sigma)
    assert got.shape == (37,)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-3)
  # several sigmas in one pass: [S, N]
  sigmas = np.array([0.05, 0.1, 0.5])
  got = np.asarray(metrics.parzen_log_likelihood(x, centers, sigmas,
                                                 block_x, block_c))
  want = np.stack([_brute_force(x, centers, s) for s in sigmas])
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-3)


def test_stable_for_tiny_sigma_and_far_points():
  # exp(-d^2 / 2 sigma^2) underflows for every centre: a naive sum gives
  # log(0) = -inf; the running log-sum-exp stays exact.
  rng = np.random.default_rng(1)
  x = rng.uniform(size=(10, 30)).astype(np.float32)
  centers = rng.uniform(size=(20, 30)).astype(np.float32)
  got = np.asarray(metrics.parzen_log_likelihood(x, centers, 0.01,
                                                 block_x=3, block_c=6))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, _brute_force(x, centers, 0.01), rtol=1e-5)


def test_float64_when_x64_enabled():
  rng = np.random.default_rng(2)
  x, centers = rng.uniform(size=(9, 12)), rng.uniform(size=(15, 12))
  with jax.enable_x64(True):
    got = metrics.parzen_log_likelihood(x, centers, 0.07, block_x=4, block_c=4)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), _brute_force(x, centers, 0.07),
                               rtol=1e-12)


def test_sigma_selection_recovers_the_true_bandwidth():
  # Validation data drawn from a Gaussian KDE with known sigma around the
  # very centres the window is fit on: the likelihood peaks at that sigma.
  rng = np.random.default_rng(3)
  true_sigma, d = 0.15, 8
  centers = rng.uniform(size=(300, d)).astype(np.float32)
  pick = rng.integers(0, len(centers), 5000)
  validation = (centers[pick] + true_sigma * rng.normal(size=(5000, d))
                ).astype(np.float32)
  selection = metrics.select_sigma(centers, validation)
  assert selection["sigma"] == pytest.approx(true_sigma, rel=0.05)
  # the paper's grid comes first, then the refinements
  np.testing.assert_allclose(selection["sigmas"][:10], np.logspace(-1, 0, 10))
  assert len(selection["sigmas"]) == 10 + 2 * 9
  assert selection["validation_ll"] == pytest.approx(
      max(selection["validation_lls"]))


def test_parzen_window_evaluation_reports_mean_and_stderr():
  rng = np.random.default_rng(4)
  samples = rng.uniform(size=(200, 16)).astype(np.float32)
  validation = rng.uniform(size=(100, 16)).astype(np.float32)
  test = rng.uniform(size=(150, 16)).astype(np.float32)
  out = metrics.parzen_window_evaluation(samples, validation, test)
  ll = _brute_force(test, samples, out["sigma"])
  assert out["mean"] == pytest.approx(ll.mean(), rel=1e-5)
  assert out["stderr"] == pytest.approx(ll.std() / np.sqrt(len(ll)), rel=1e-3)
  assert 0.1 / 2 < out["sigma"] < 2.0
  fixed = metrics.parzen_window_evaluation(samples, None, test, sigma=0.3)
  assert fixed["sigma"] == 0.3 and fixed["validation_ll"] is None
  assert fixed["mean"] == pytest.approx(_brute_force(test, samples, 0.3).mean(),
                                        rel=1e-5)
