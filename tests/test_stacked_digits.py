"""Stacked digits: the source (three independent digits per image, 1,000
modes) and its mode-coverage metric in the evaluator."""

import numpy as np
import pytest

from ganjax.data import pipeline, sources, stacked
from ganjax.metrics import Evaluator, real_data, stacked_modes

NUM = 26_000  # the samples of the published protocol


def test_stacks_are_three_independent_digits_labelled_by_their_mode():
  images, modes, maxval = pipeline.load_split("stacked_digits", "train",
                                              labels=True)
  assert images.shape == (60_000, 8, 8, 3) and images.dtype == np.uint8
  assert maxval == 16.0 and modes.dtype == np.int32
  base, base_labels = sources.load_digits("train")
  # Every channel is a train digit whose label is that digit of the mode.
  lookup = {base[i, ..., 0].tobytes(): base_labels[i] for i in range(len(base))}
  for i in range(0, 60_000, 6_007):
    digits = [lookup[images[i, ..., c].tobytes()] for c in range(3)]
    assert stacked.mode_of(np.array(digits)) == modes[i]
  # Roughly uniform over the 1,000 modes, the channels independent.
  counts = np.bincount(modes, minlength=1000)
  assert counts.min() > 20 and counts.max() < 110
  np.testing.assert_array_equal(  # a fixed function of the split
      pipeline.load_split("stacked_digits", "train", labels=True)[1], modes)
  test_images, _, _ = pipeline.load_split("stacked_digits", "test")
  assert test_images.shape == (10_000, 8, 8, 3)
  assert pipeline.num_classes("stacked_digits") == 1000
  assert pipeline.data_shape("stacked_digits", image_size=(32, 32)) == \
      (32, 32, 3)
  batch = next(pipeline.batches("stacked_digits", batch_size=4, k=1,
                                image_size=(16, 16), labels=True))
  assert batch["image"].shape == (1, 4, 16, 16, 3)
  assert batch["label"].max() < 1000
  with pytest.raises(ValueError, match="splits"):
    pipeline.load_split("stacked_digits", "all")


def test_mode_statistics_count_exactly():
  got = stacked_modes.mode_statistics(np.array([0, 0, 7, 999]), num_modes=1000)
  assert got["modes"] == 3 and got["counts"][0] == 2 and got["counts"][999] == 1
  p = np.array([0.5, 0.25, 0.25])
  np.testing.assert_allclose(got["kl"], np.sum(p * np.log(p * 1000)))
  even = stacked_modes.mode_statistics(np.arange(2000) % 1000)
  assert even["modes"] == 1000 and abs(even["kl"]) < 1e-12
  with pytest.raises(ValueError, match=r"\[0, 1000\)"):
    stacked_modes.mode_statistics(np.array([1000]))


@pytest.fixture(scope="module")
def evaluator(cache_dir):
  return Evaluator("stacked_digits", num=NUM, cache_dir=cache_dir,
                   parzen=False, verbose=False).prepare()


def test_channels_of_hand_made_stacks_are_read_exactly(evaluator):
  digits, labels = real_data.load_split("digits", "test")
  network = evaluator._mode_network
  _, probs = network(digits)
  right = np.flatnonzero(np.argmax(probs, -1) == labels)  # 99% of them
  pick = right[[0, 1, 2, 3, 4, 5]]
  made = np.concatenate([digits[pick[:2]], digits[pick[2:4]],
                         digits[pick[4:]]], axis=-1)      # [2, 8, 8, 3]
  np.testing.assert_array_equal(
      stacked_modes.channel_digits(network, made),
      np.stack([labels[pick[:2]], labels[pick[2:4]], labels[pick[4:]]], -1))


def test_real_stacks_reach_every_mode_collapse_reaches_one(evaluator):
  real, _ = real_data.load_split("stacked_digits", "train")
  real = real[:NUM]
  got = evaluator(real)
  assert set(got) == {"modes26k_stacked_digits", "mode_kl26k_stacked_digits"}
  # 26,000 draws from 1,000 equally likely modes: every mode, KL near
  # (1000 - 1) / (2 * 26000) = 0.019 (measured 0.022).
  assert got["modes26k_stacked_digits"] == 1000
  assert got["mode_kl26k_stacked_digits"] < 0.05
  # A collapsed generator: one image repeated.
  collapsed = evaluator(np.repeat(real[:1], NUM, axis=0))
  assert collapsed["modes26k_stacked_digits"] == 1
  np.testing.assert_allclose(collapsed["mode_kl26k_stacked_digits"],
                             np.log(1000), rtol=1e-6)
  # A generator that ignores two channels (green and blue always the same
  # digit images): the 10 modes of its red channel.
  ignoring = real.copy()
  ignoring[..., 1:] = real[:1, ..., 1:]
  got = evaluator(ignoring)
  assert got["modes26k_stacked_digits"] == 10
  # Ten equally likely modes of 1,000: KL = log 100.
  np.testing.assert_allclose(got["mode_kl26k_stacked_digits"], np.log(100),
                             atol=0.02)
  protocol = evaluator.protocol()
  assert "26000 generated samples" in protocol["modes26k_stacked_digits"]
