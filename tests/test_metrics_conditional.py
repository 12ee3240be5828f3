"""Metrics of class-conditional samples (ganjax.metrics.conditional, Evaluator(labels=)).

References are computed directly: per-class accuracies by counting, the
Frechet distance of each class in float64 with numpy (eigenvalues of
S1 S2), and the Evaluator runs on sklearn's real 8x8 digits with a
nearest-centroid classifier standing in for the project CNN (fitted in
milliseconds, so the test trains nothing).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax import metrics
from ganjax.metrics import conditional, diversity, features, lpips, real_data


def test_class_accuracy_counts_per_class_then_averages():
  probs = np.eye(3)[[0, 0, 1, 2, 2, 2, 1, 0]]  # predicted classes
  labels = np.array([0, 0, 0, 2, 2, 2, 1, 1])
  out = metrics.class_accuracy(probs, labels)
  # class 0: 2/3, class 1: 1/2 (predicted 1 and 0), class 2: 3/3
  assert out["per_class"] == pytest.approx({0: 2 / 3, 1: 0.5, 2: 1.0})
  assert out["mean"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)  # not 6/8
  assert out["min"] == pytest.approx(0.5)


def _frechet64(x, y):
  mu1, mu2 = x.mean(0), y.mean(0)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)))
  return np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt


def test_intra_fid_is_the_mean_of_per_class_frechet_distances():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(90, 4))
  real_labels = np.repeat(np.arange(3), 30)
  fake = rng.normal(size=(60, 4)) * 1.5 + 0.3
  fake_labels = np.tile(np.arange(3), 20)
  out = metrics.intra_fid(metrics.class_gaussians(real, real_labels), fake,
                          fake_labels)
  want = {c: _frechet64(real[real_labels == c], fake[fake_labels == c])
          for c in range(3)}
  assert out["per_class"] == pytest.approx(want, rel=1e-3)
  assert out["mean"] == pytest.approx(np.mean(list(want.values())), rel=1e-3)
  with pytest.raises(ValueError, match="at least 2 per class"):
    metrics.intra_fid(metrics.class_gaussians(real, real_labels), fake[:4],
                      np.array([0, 0, 1, 2]))
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    conditional.check_labels(np.array([0, 3]), 2, 3)
  with pytest.raises(ValueError, match=r"shape \[3\]"):
    conditional.check_labels(np.array([0, 1]), 3, 3)


@pytest.fixture(scope="module")
def centroid_network():
  """Nearest class mean of the digits' train split: features = squared
  distances to the 10 means, probabilities = their softmax."""
  train, labels = real_data.load_split("digits", "train")
  means = np.stack([train[labels == c].reshape(-1, 64).mean(0)
                    for c in range(10)])

  @jax.jit
  def apply(variables, images):
    x = images.reshape(images.shape[0], -1)
    d2 = jnp.sum((x[:, None] - variables[None]) ** 2, -1)
    return d2, jax.nn.softmax(-d2, -1)

  return features.FeatureNetwork("cnn", apply, jnp.asarray(means),
                                 "nearest-centroid-test", {}, batch_size=128)


@pytest.fixture(scope="module")
def evaluator(centroid_network, tmp_path_factory):
  folder = tmp_path_factory.mktemp("conditional")
  weights = str(folder / "lpips_random.npz")
  np.savez(weights, net=np.asarray("alex"), **lpips.random_state("alex"))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(features, "cnn_network",
                  lambda *a, **k: centroid_network)
    ev = metrics.Evaluator("digits", num=297, cache_dir=str(folder),
                           parzen=False, kid_subsets=5, kid_subset_size=100,
                           lpips_weights=weights, verbose=False).prepare()
  return ev


def test_evaluator_on_real_digits_with_true_and_shuffled_labels(
    evaluator, centroid_network):
  images, labels = real_data.load_split("digits", "train[:290]")
  test_images, test_labels = real_data.load_split("digits", "test")
  true = evaluator(images, labels=labels)
  tag = "290_digits_cnn"
  # accuracy: counted directly with the same classifier
  predicted = np.argmax(centroid_network(images)[1], -1)
  want = np.mean([np.mean(predicted[labels == c] == c) for c in range(10)])
  assert true[f"class_accuracy{tag}"] == pytest.approx(want)
  assert true[f"class_accuracy{tag}"] > 0.85
  assert true[f"min_class_accuracy{tag}"] <= true[f"class_accuracy{tag}"]
  shuffled = evaluator(images, labels=np.random.default_rng(0).permutation(
      labels))
  assert shuffled[f"class_accuracy{tag}"] < 0.3
  # intra-FID: per class against the real test images of that class
  feats = centroid_network(images)[0].astype(np.float64)
  ref = centroid_network(test_images)[0].astype(np.float64)
  want = np.mean([_frechet64(ref[test_labels == c], feats[labels == c])
                  for c in range(10)])
  assert true[f"intra_fid{tag}"] == pytest.approx(want, rel=2e-3)
  assert shuffled[f"intra_fid{tag}"] > 3 * true[f"intra_fid{tag}"]
  # the unconditional metrics do not depend on the labels
  assert shuffled[f"fid{tag}"] == true[f"fid{tag}"]
  # LPIPS diversity: all pairs, and within the requested classes
  div = diversity.mean_pairwise_lpips(evaluator._lpips[1], images, labels)  # pylint: disable=protected-access
  assert true["lpips_diversity290_digits_alex64"] == pytest.approx(div["all"])
  per_class = true["lpips_diversity_per_class290_digits_alex64"]
  assert per_class == pytest.approx(div["mean_per_class"])
  assert per_class < true["lpips_diversity290_digits_alex64"]
  assert shuffled["lpips_diversity_per_class290_digits_alex64"] > per_class
  # every reported metric has its protocol
  protocol = evaluator.protocol(290, labelled=True)
  assert not [k for k in true if k not in protocol
              and not k.endswith(("_std", "_stderr"))]
  # unlabelled: no conditional metrics in the protocol
  assert not [k for k in evaluator.protocol(290) if "class_acc" in k
              or "intra" in k or "per_class" in k]


def test_evaluator_refuses_bad_labels(evaluator):
  images, labels = real_data.load_split("digits", "train[:40]")
  with pytest.raises(metrics.InvalidSamplesError, match=r"shape \[40\]"):
    evaluator(images, labels=labels[:39])
  with pytest.raises(metrics.InvalidSamplesError, match=r"\[0, 10\)"):
    evaluator(images, labels=labels + 1)
  with pytest.raises(metrics.InvalidSamplesError, match="at least 2"):
    evaluator(images, labels=np.where(np.arange(40) == 0, 9, 0))


def test_periodic_evaluation_draws_every_class_equally():
  from experiments import sample  # pylint: disable=g-import-not-at-top

  class _Gan:  # the sampling contract: gan.sample(state, key, num, labels=)
    num_classes = 3

    def sample(self, state, key, num, labels=None, use_ema=True):
      del key, use_ema
      assert labels is not None and labels.shape == (num,)
      return jnp.broadcast_to(state + labels[:, None, None, None] / 4.0,
                              (num, 2, 2, 1))

  class _Experiment:
    gan, value_range, num_classes, is_toy = _Gan(), (0.0, 1.0), 3, False

  assert sample.num_classes(_Experiment()) == 3
  labels = sample.balanced_labels(10, 3)
  np.testing.assert_array_equal(labels, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
  samples = sample.draw(_Experiment(), jnp.float32(0.0), 10,
                            batch_size=4, labels=labels)
  np.testing.assert_allclose(samples[:, 0, 0, 0], labels / 4.0)
  with pytest.raises(ValueError, match=r"labels of shape \[10\]"):
    sample.draw(_Experiment(), jnp.float32(0.0), 10, labels=labels[:9])
