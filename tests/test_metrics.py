"""Frechet distance, KID, Inception-Score-style score, precision/recall, class coverage.

References are float64 numpy / scipy computations (scipy only here, never at
run time).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ganjax import metrics


def _random_spd(rng, d, decay=0.7):
  """A covariance with a decaying spectrum, like real features'."""
  a = rng.normal(size=(d, d)) * np.arange(1, d + 1) ** -decay
  x = rng.normal(size=(4 * d, d)) @ a.T
  return np.cov(x, rowvar=False)


def _scipy_fid(mu1, s1, mu2, s2):
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  covmean = np.real(covmean)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
               - 2 * np.trace(covmean))


# ------------------------------------------------------------------ Frechet

@pytest.mark.parametrize("d", [8, 64, 256])
def test_frechet_matches_scipy_float32(d):
  rng = np.random.default_rng(d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d) * 0.1
  s1, s2 = _random_spd(rng, d), _random_spd(rng, d) * 1.3
  want = _scipy_fid(mu1, s1, mu2, s2)
  got = float(metrics.frechet_distance(*(np.float32(a) for a in (mu1, s1, mu2, s2))))
  assert got == pytest.approx(want, rel=2e-4)


def test_frechet_float64_when_x64_enabled():
  rng = np.random.default_rng(1)
  d = 32
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
  want = _scipy_fid(mu1, s1, mu2, s2)
  with jax.enable_x64(True):
    out = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert out.dtype == jnp.float64
    assert float(out) == pytest.approx(want, rel=1e-9)


def test_trace_sqrt_product_of_identical_covariances_is_their_trace():
  # The hard case for float32 (eigenvalues near 0 of S^1/2 S S^1/2): a
  # rank-deficient covariance, fewer samples than dimensions.
  rng = np.random.default_rng(2)
  x = np.maximum(rng.normal(size=(100, 256)) + 0.3, 0).astype(np.float32)
  mu, sigma = metrics.gaussian_statistics(x)
  assert float(metrics.trace_sqrt_product(sigma, sigma)) == pytest.approx(
      float(jnp.trace(sigma)), rel=1e-5)
  assert abs(float(metrics.frechet_distance(mu, sigma, mu, sigma))) < 1e-4 * float(
      jnp.trace(sigma))


def test_gaussian_statistics_match_numpy():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(500, 16)) * 10 + 100  # large mean: cancellation test
  mu, sigma = metrics.gaussian_statistics(x.astype(np.float32))
  np.testing.assert_allclose(mu, x.mean(0), rtol=1e-5)
  np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-3,
                             atol=1e-3 * 100)


def test_fid_of_a_set_with_itself_is_zero():
  rng = np.random.default_rng(4)
  feats = np.maximum(rng.normal(size=(2000, 64)), 0).astype(np.float32)
  assert abs(float(metrics.frechet_distance_from_features(feats, feats))) < 1e-3


def test_fid_of_two_gaussians_matches_the_closed_form():
  # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute:
  # FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
  rng = np.random.default_rng(5)
  d = 6
  q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  a, b = rng.uniform(0.5, 2.0, d), rng.uniform(0.5, 2.0, d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
  closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  exact = float(metrics.frechet_distance(*(np.float32(v) for v in (mu1, s1, mu2, s2))))
  assert exact == pytest.approx(closed, rel=1e-5)
  # From samples: the estimate converges to the closed form.
  n = 100_000
  x = mu1 + (rng.normal(size=(n, d)) * np.sqrt(a)) @ q.T
  y = mu2 + (rng.normal(size=(n, d)) * np.sqrt(b)) @ q.T
  sampled = float(metrics.frechet_distance_from_features(
      x.astype(np.float32), y.astype(np.float32)))
  assert sampled == pytest.approx(closed, rel=0.02)


def test_frechet_refuses_mismatched_shapes():
  with pytest.raises(AssertionError):
    metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --------------------------------------------------------------------- KID

def _np_mmd2_unbiased(x, y):
  d = x.shape[1]
  k = lambda a, b: (a @ b.T / d + 1) ** 3
  m = len(x)
  kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
  return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
          + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def test_mmd2_matches_numpy():
  rng = np.random.default_rng(6)
  x, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) + 0.3
  got = float(metrics.mmd2_unbiased(jnp.float32(x), jnp.float32(y)))
  assert got == pytest.approx(_np_mmd2_unbiased(x, y), rel=1e-4)


def test_kid_is_unbiased_on_equal_distributions():
  # 400 independent estimates on pairs of sets drawn from one distribution:
  # their mean is 0 within its standard error; the biased (V-statistic)
  # estimate, which keeps the diagonal, is clearly positive on the same data.
  m, d, repeats = 30, 4, 400
  keys = jax.random.split(jax.random.key(0), repeats)
  draw = lambda k: jax.random.normal(k, (2, m, d)) * 1.5 + 0.5
  xy = jax.vmap(draw)(keys)
  unbiased = np.asarray(jax.vmap(lambda s: metrics.mmd2_unbiased(s[0], s[1]))(xy))
  mean, se = unbiased.mean(), unbiased.std() / np.sqrt(repeats)
  assert abs(mean) < 3 * se

  def biased(s):
    k = metrics.kid.polynomial_kernel
    return k(s[0], s[0]).mean() + k(s[1], s[1]).mean() - 2 * k(s[0], s[1]).mean()

  assert np.asarray(jax.vmap(biased)(xy)).mean() > 10 * se


def test_kid_subsets_and_shift():
  rng = np.random.default_rng(7)
  real = rng.normal(size=(600, 8)).astype(np.float32)
  same = rng.normal(size=(500, 8)).astype(np.float32)
  shifted = same + 1.0
  k_same = metrics.kernel_inception_distance(real, same, num_subsets=20,
                                             subset_size=200)
  k_shift = metrics.kernel_inception_distance(real, shifted, num_subsets=20,
                                              subset_size=200)
  assert k_same["subset_size"] == 200
  assert abs(float(k_same["mean"])) < 3 * float(k_same["std"]) + 1e-3
  assert float(k_shift["mean"]) > 10 * float(k_shift["std"])
  # subset size is capped by the smaller set
  assert metrics.kernel_inception_distance(real, same[:50])["subset_size"] == 50


# ------------------------------------------------------- Inception Score

def _np_inception_score(p, splits):
  n = len(p)
  scores = []
  for i in range(splits):
    part = p[i * n // splits:(i + 1) * n // splits]
    py = part.mean(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
      kl = np.where(part > 0, part * (np.log(part) - np.log(py)), 0).sum(1)
    scores.append(np.exp(kl.mean()))
  return np.mean(scores), np.std(scores)


def test_inception_score_matches_numpy_and_extremes():
  rng = np.random.default_rng(8)
  logits = rng.normal(size=(103, 7)) * 3
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  got = metrics.inception_score(p.astype(np.float32), num_splits=5)
  want = _np_inception_score(p, 5)
  assert float(got["mean"]) == pytest.approx(want[0], rel=1e-4)
  assert float(got["std"]) == pytest.approx(want[1], rel=1e-3, abs=1e-5)
  # the same prediction everywhere: 1; confident and uniform over K: K
  same = np.tile(p[:1], (100, 1))
  assert float(metrics.inception_score(same)["mean"]) == pytest.approx(1.0, abs=1e-5)
  onehot = np.eye(10)[np.arange(1000) % 10]
  assert float(metrics.inception_score(onehot)["mean"]) == pytest.approx(10.0, rel=1e-5)


def test_class_coverage():
  onehot = np.eye(10, dtype=np.float32)
  collapsed = onehot[np.zeros(1000, int)]
  cov = metrics.class_coverage(collapsed)
  assert cov["classes_covered"] == 1
  assert float(cov["kl_to_uniform"]) == pytest.approx(np.log(10), rel=1e-5)
  even = onehot[np.arange(1000) % 10]
  cov = metrics.class_coverage(even)
  assert cov["classes_covered"] == 10 and float(cov["kl_to_uniform"]) < 1e-6
  # a class with 5 of 1000 samples (0.5%) is not covered
  labels = np.concatenate([np.full(5, 3), np.arange(995) % 2])
  assert metrics.class_coverage(onehot[labels])["classes_covered"] == 2


# ---------------------------------------------- precision and recall

def _np_precision_recall(real, fake, k):
  def radii(x):
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    return np.sort(d, axis=1)[:, k]

  def inside(q, ref, r):
    d = np.sqrt(((q[:, None] - ref[None]) ** 2).sum(-1))
    return (d <= r[None]).any(1)

  return (inside(fake, real, radii(real)).mean(),
          inside(real, fake, radii(fake)).mean())


def test_precision_recall_matches_brute_force_with_blocks():
  rng = np.random.default_rng(9)
  real = rng.normal(size=(53, 6))
  fake = rng.normal(size=(41, 6)) * 1.3 + 0.4
  want = _np_precision_recall(real, fake, 3)
  for block in (7, 16, 1024):  # padded blocks must not change anything
    got = metrics.precision_recall(real.astype(np.float32),
                                   fake.astype(np.float32), k=3, block=block)
    assert float(got["precision"]) == pytest.approx(want[0])
    assert float(got["recall"]) == pytest.approx(want[1])
  radii = np.sort(np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1)), 1)[:, 3]
  np.testing.assert_allclose(metrics.knn_radii(real.astype(np.float32), 3, block=5),
                             radii, rtol=1e-4)
  # precision's per-sample indicator
  inside = (np.sqrt(((fake[:, None] - real[None]) ** 2).sum(-1))
            <= radii[None]).any(1)
  for block in (7, 1024):
    np.testing.assert_array_equal(
        metrics.in_manifold(real.astype(np.float32), fake.astype(np.float32),
                            k=3, block=block), inside)


def test_precision_recall_constructed_cases():
  rng = np.random.default_rng(10)
  real = rng.normal(size=(500, 16)).astype(np.float32)
  # one real sample repeated: on the data (precision 1), covers nothing
  # else (recall: only that sample, 1/500)
  collapsed = np.repeat(real[7:8], 200, axis=0)
  pr = metrics.precision_recall(real, collapsed)
  assert float(pr["precision"]) == 1.0
  assert float(pr["recall"]) <= 2 / 500
  # the real data against itself, and against a fresh draw: both high
  pr = metrics.precision_recall(real, real)
  assert float(pr["precision"]) == 1.0 and float(pr["recall"]) == 1.0
  fresh = rng.normal(size=(500, 16)).astype(np.float32)
  pr = metrics.precision_recall(real, fresh)
  assert float(pr["precision"]) > 0.6 and float(pr["recall"]) > 0.6
  # far away: neither
  pr = metrics.precision_recall(real, fresh + 100.0)
  assert float(pr["precision"]) == 0.0 and float(pr["recall"]) == 0.0


def test_density_coverage_matches_brute_force_with_blocks():
  rng = np.random.default_rng(11)
  real = rng.normal(size=(53, 6))
  fake = rng.normal(size=(41, 6)) * 1.3 + 0.4
  d_real = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
  radii = np.sort(d_real, axis=1)[:, 5]                          # [N]
  inside = np.sqrt(((fake[:, None] - real[None]) ** 2).sum(-1)) <= radii[None]
  want_density = inside.sum() / (5 * fake.shape[0])             # Naeem et al. 2020
  want_coverage = inside.any(axis=0).mean()
  for block in (7, 16, 1024):  # padded rows (zeros after centring) never count
    got = metrics.density_coverage(real.astype(np.float32),
                                   fake.astype(np.float32), k=5, block=block)
    assert float(got["density"]) == pytest.approx(want_density)
    assert float(got["coverage"]) == pytest.approx(want_coverage)


def test_real_radii_computed_once_give_the_same_metrics():
  # An evaluator computes the real k-NN radii once (k = 3 and 5 in one pass)
  # and passes them in; every metric must come out as if computed inside.
  rng = np.random.default_rng(13)
  real = rng.normal(size=(300, 8)).astype(np.float32)
  fake = (rng.normal(size=(200, 8)) * 1.2 + 0.3).astype(np.float32)
  both = metrics.knn_radii(real, (3, 5), block=64)
  assert both.shape == (300, 2)
  np.testing.assert_allclose(both[:, 0], metrics.knn_radii(real, 3), rtol=1e-5)
  np.testing.assert_allclose(both[:, 1], metrics.knn_radii(real, 5), rtol=1e-5)
  pr = metrics.precision_recall(real, fake, block=64, real_radii=both[:, 0])
  dc = metrics.density_coverage(real, fake, block=64, real_radii=both[:, 1])
  floats = lambda d: {key: float(v) for key, v in d.items()}
  assert floats(pr) == floats(metrics.precision_recall(real, fake, block=64))
  assert floats(dc) == floats(metrics.density_coverage(real, fake, block=64))
  with pytest.raises(ValueError, match=r"real_radii must have shape \(300,\)"):
    metrics.precision_recall(real, fake, real_radii=both)


def test_coverage_is_not_inflated_by_outliers_where_recall_is():
  rng = np.random.default_rng(12)
  real = rng.normal(size=(1000, 2)).astype(np.float32)
  # 200 samples collapsed near one real point, plus 10 scattered outliers:
  # the outliers' own k-NN balls are huge and swallow most of the real set.
  collapsed = real[:1] + 0.01 * rng.normal(size=(200, 2)).astype(np.float32)
  outliers = 3.0 * rng.normal(size=(10, 2)).astype(np.float32)
  fake = np.concatenate([collapsed, outliers])
  recall = float(metrics.precision_recall(real, fake)["recall"])
  dc = metrics.density_coverage(real, fake)
  assert recall > 0.9, recall
  # coverage: the few real balls at the collapse and those an outlier hits
  assert float(dc["coverage"]) < 0.05, dc
  # the same distribution: density about 1, coverage high
  fresh = rng.normal(size=(1000, 2)).astype(np.float32)
  dc = metrics.density_coverage(real, fresh)
  assert 0.8 < float(dc["density"]) < 1.2 and float(dc["coverage"]) > 0.9, dc
