"""The digits classifier, cached reference statistics, and the sanity ordering
real data < trained generator < noise, on sklearn's real 8x8 digits."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax import metrics
from ganjax.metrics import classifier, real_data, reference_stats


@pytest.fixture(scope="module")
def evaluator(cache_dir):
  return metrics.Evaluator("digits", num=300, cache_dir=cache_dir,
                           verbose=False).prepare()


def test_classifier_is_trained_cached_and_reused(evaluator, cache_dir, monkeypatch):
  folder = classifier.classifier_dir("digits", cache_dir)
  with open(os.path.join(folder, "info.json")) as f:
    info = json.load(f)
  assert info["test_accuracy"] >= 0.95
  assert info["num_test"] == 297 and info["train_seconds"] > 0
  net = evaluator._feature_networks["cnn"]  # pylint: disable=protected-access
  assert net.fingerprint == info["weights_sha256"]
  assert net.info["test_accuracy"] == info["test_accuracy"]
  # a second load reads the cache and never trains
  monkeypatch.setattr(classifier, "train_classifier",
                      lambda *a, **k: pytest.fail("retrained"))
  _, _, again = classifier.load_or_train("digits", cache_dir, verbose=False)
  assert again["weights_sha256"] == info["weights_sha256"]


def test_reference_statistics_are_cached_by_key(evaluator, cache_dir):
  net = evaluator._feature_networks["cnn"]  # pylint: disable=protected-access
  ref = reference_stats.reference_statistics("digits", net, "test",
                                             cache_dir=cache_dir)
  assert ref["features"].shape == (297, 128) and ref["probs"].shape == (297, 10)
  np.testing.assert_allclose(ref["mu"], ref["features"].mean(0), rtol=1e-5,
                             atol=1e-5)
  assert os.path.isfile(ref["path"])
  folder = os.path.dirname(ref["path"])
  assert not [f for f in os.listdir(folder) if f.startswith(".tmp-")]
  # other weights or another split: another file
  other = metrics.FeatureNetwork("cnn", net.apply, net.variables, "0" * 64, {})
  assert reference_stats.reference_path("digits", "test", None, other,
                                        cache_dir) != ref["path"]
  assert reference_stats.reference_path("digits", "train", None, net,
                                        cache_dir) != ref["path"]


def _train_tiny_gan(steps=500):
  """The small 1-hidden-layer MLP GAN on the real digits, ``steps`` updates."""
  train, _ = real_data.load_split("digits", "train")
  data = jnp.asarray(train)
  G, D = gj.models.small_mlp(image_shape=(8, 8, 1), hidden=128)
  gan = gj.GAN(generator=G, discriminator=D, loss="non_saturating",
               g_optimizer=optax.adam(1e-3, b1=0.5),
               d_optimizer=optax.adam(1e-3, b1=0.5), k=1, latent_dim=32)
  state = gan.init(jax.random.key(0), data[:2])
  batch = lambda key: data[jax.random.randint(key, (1, 64), 0, data.shape[0])]
  state, _ = gj.loops.scan_steps(gan.step, batch, steps)(state, jax.random.key(1))
  return np.asarray(gan.sample(state, jax.random.key(2), 300))


def test_sanity_ordering_real_generator_noise(evaluator):
  real = real_data.load_split("digits", "train[:300]")[0]
  fake = _train_tiny_gan()
  noise = np.random.default_rng(0).uniform(size=(300, 8, 8, 1)).astype(np.float32)
  results = {name: evaluator(x) for name, x in
             (("real", real), ("gan", fake), ("noise", noise))}
  p = "300_digits_cnn"
  for lower_is_better in (f"fid{p}", f"kid{p}"):
    r, g, n = (results[k][lower_is_better] for k in ("real", "gan", "noise"))
    assert r < g < n, (lower_is_better, r, g, n)
  for higher_is_better in (f"is{p}", f"precision{p}", f"recall{p}",
                           "parzen_ll300_digits"):
    r, g, n = (results[k][higher_is_better] for k in ("real", "gan", "noise"))
    assert r > g > n, (higher_is_better, r, g, n)
  assert results["real"][f"classes_covered{p}"] == 10
  assert results["real"][f"class_kl{p}"] < 0.05
  # every value is a finite float, and the protocol names every metric
  protocol = evaluator.protocol(300)
  for name, value in results["gan"].items():
    assert isinstance(value, float) and np.isfinite(value), name
    if not name.endswith(("_std", "_stderr")) and "sigma" not in name:
      assert name in protocol, name


def test_evaluate_samples_uint8_and_3d_input(evaluator):
  # 400 samples, num=300: the first 300 are used (the shapes of the test
  # above, so nothing recompiles)
  real = real_data.load_split("digits", "train[300:700]")[0]
  as_float = evaluator(real[..., 0])                     # [N, H, W] float
  as_uint8 = evaluator(np.round(real * 255).astype(np.uint8))
  assert set(as_float) == set(as_uint8)
  assert "fid300_digits_cnn" in as_float
  assert as_float["fid300_digits_cnn"] == pytest.approx(
      as_uint8["fid300_digits_cnn"], rel=0.05)
  assert as_float["parzen_ll300_digits"] == pytest.approx(
      as_uint8["parzen_ll300_digits"], abs=1.0)


@pytest.mark.parametrize("bad,match", [
    (np.full((10, 8, 8), np.nan, np.float32), "NaN"),
    (np.zeros((10, 28, 28, 1), np.float32), "shape"),
    (np.full((10, 8, 8, 1), -0.5, np.float32), r"\[0, 1\]"),
    (np.full((10, 8, 8, 1), 3.0, np.float32), r"\[0, 1\]"),
    (np.zeros((10, 8, 8, 1), np.int32), "uint8"),
    (np.zeros((2, 8, 8, 1), np.float32), "at least"),
])
def test_invalid_samples_are_refused(bad, match):
  with pytest.raises(metrics.InvalidSamplesError, match=match):
    metrics.check_samples(bad, (8, 8, 1))


def test_count_tag():
  assert metrics.count_tag(10_000) == "10k"
  assert metrics.count_tag(50_000) == "50k"
  assert metrics.count_tag(1797) == "1797"
  assert metrics.count_tag(300) == "300"
