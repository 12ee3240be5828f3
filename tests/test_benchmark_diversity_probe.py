"""``benchmarks/diversity_probe.py``: which of its numbers see through
outlying samples (synthetic features; no network, no data set)."""

import numpy as np

from benchmarks import diversity_probe


def test_outliers_inflate_recall_but_not_its_robust_readings():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(600, 2)).astype(np.float32)
  real_class = (real[:, 0] > 0).astype(int)
  # Collapsed on one real point, plus a few samples off the data's support.
  angles = rng.uniform(0, 2 * np.pi, size=10)
  outliers = 6.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  fake = np.concatenate([real[:1] + 0.01 * rng.normal(size=(150, 2)),
                         outliers]).astype(np.float32)
  got = diversity_probe.probe(real, real_class, fake,
                              (fake[:, 0] > 0).astype(int))
  assert got["recall"] > 0.9                      # the outliers' huge balls
  assert got["recall_on_manifold"] < 0.05         # without them: collapsed
  assert got["coverage"] < 0.05
  assert got["on_manifold_fraction"] < 1.0
  assert got["median_radius_ratio"] < 0.1         # crowded together
  # The same distribution again: every reading near its ideal.
  fresh = rng.normal(size=(600, 2)).astype(np.float32)
  got = diversity_probe.probe(real, real_class, fresh,
                              (fresh[:, 0] > 0).astype(int))
  assert got["recall"] > 0.8 and got["coverage"] > 0.8
  assert got["recall_on_manifold"] > 0.8 and got["class_coverage"] > 0.8
  assert 0.7 < got["median_radius_ratio"] < 1.3
