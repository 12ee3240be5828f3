"""Tests of ganjax.data.pipeline: batches of the in-memory kinds (digits, numpy) and
toys, their labels and device layout, prefetching; no TensorFlow on these paths."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from ganjax.data import pipeline
from ganjax.data import sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def take(it, n):
  return [next(it) for _ in range(n)]


def unique_images(n=40, shape=(4, 4, 1)):
  """uint8 images whose pixels all equal the image's index."""
  return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None],
                         (n,) + shape).copy()


def test_import_and_numpy_paths_do_not_import_tensorflow():
  code = textwrap.dedent("""
      import sys
      import ganjax
      import ganjax.data.pipeline as p, ganjax.data.sources
      assert 'tensorflow' not in sys.modules, 'import'
      next(p.batches('digits', batch_size=4))
      next(p.batches('toy_ring8', batch_size=4))
      p.data_shape('digits')
      assert 'tensorflow' not in sys.modules, 'numpy paths'
      print('ok')
  """)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "ok" in out.stdout


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
@pytest.mark.parametrize("k", [1, 3])
def test_digits_shapes_dtype_range(k, value_range):
  x = next(pipeline.batches("digits", batch_size=16, k=k,
                            value_range=value_range))
  assert x.shape == (k, 16, 8, 8, 1)
  assert x.dtype == np.float32
  lo, hi = value_range
  assert x.min() == pytest.approx(lo) and x.max() == pytest.approx(hi)


def test_digits_splits_are_fixed_and_disjoint():
  train, _ = sources.load_digits("train")
  test, _ = sources.load_digits("test")
  everything, _ = sources.load_digits("all")
  assert train.shape == (1500, 8, 8, 1) and test.shape == (297, 8, 8, 1)
  assert everything.shape == (1797, 8, 8, 1) and everything.max() == 16
  np.testing.assert_array_equal(train, sources.load_digits("train")[0])
  with pytest.raises(ValueError, match="splits"):
    sources.load_digits("validation")


def test_device_layout_matches_shard_convention():
  x = next(pipeline.batches("digits", batch_size=16, k=2, seed=3))
  xd = next(pipeline.batches("digits", batch_size=16, k=2, seed=3,
                             num_devices=8))
  assert xd.shape == (8, 2, 2, 8, 8, 1) and xd.dtype == np.float32
  for d in range(8):
    np.testing.assert_array_equal(xd[d], x[:, 2 * d:2 * d + 2])


def test_determinism_and_epoch_reshuffle_in_memory():
  images = unique_images(40)
  a = take(pipeline.batches(images, batch_size=10, k=2, seed=1), 4)
  b = take(pipeline.batches(images, batch_size=10, k=2, seed=1), 4)
  c = take(pipeline.batches(images, batch_size=10, k=2, seed=2), 4)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y) for x, y in zip(a, c))
  # Each epoch (2 yields of 20) is a permutation of all 40; epochs differ.
  ids = np.concatenate([np.round((x[..., 0, 0, 0].ravel() + 1) / 2 * 255)
                        for x in a]).astype(int)
  epoch1, epoch2 = ids[:40], ids[40:]
  assert sorted(epoch1) == list(range(40)) == sorted(epoch2)
  assert not np.array_equal(epoch1, epoch2)


def test_numpy_float_and_resize():
  images = np.random.default_rng(0).uniform(size=(10, 6, 6, 3)).astype(np.float32)
  x = next(pipeline.batches(images, batch_size=5, value_range=(0, 1)))
  assert x.shape == (1, 5, 6, 6, 3)
  assert set(map(bytes, x[0])) <= set(map(bytes, images))
  y = next(pipeline.batches(images, batch_size=5, image_size=(12, 8)))
  assert y.shape == (1, 5, 12, 8, 3) and -1 <= y.min() and y.max() <= 1
  assert pipeline.data_shape(images, image_size=(12, 8)) == (12, 8, 3)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    pipeline.batches(images * 2, batch_size=5)


def test_two_processes_read_disjoint_shards():
  images = unique_images(40)
  seen = []
  for p in range(2):
    # global batch 8 -> 4 per process; k=5 -> one yield is a whole shard.
    x = next(pipeline.batches(images, batch_size=8, k=5, value_range=(0, 1),
                              process_index=p, process_count=2))
    assert x.shape == (5, 4, 4, 4, 1)
    ids = np.round(x[..., 0, 0, 0] * 255).astype(int).ravel()
    assert len(set(ids)) == 20
    seen.append(set(ids))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(40))
  with pytest.raises(ValueError, match="process_count=2"):
    pipeline.batches(images, batch_size=7, process_index=0, process_count=2)
  with pytest.raises(ValueError, match="batch_size=8 is not divisible by the 16 devices"):
    pipeline.batches(images, batch_size=8, num_devices=8, process_index=0,
                     process_count=2)


@pytest.mark.parametrize("name,dim", [("toy_ring8", 2), ("toy_grid25", 2),
                                      ("toy_gaussian1d", 1)])
def test_toy_shapes_and_determinism(name, dim):
  a = take(pipeline.batches(name, batch_size=32, k=2, seed=0), 2)
  b = take(pipeline.batches(name, batch_size=32, k=2, seed=0), 2)
  c = next(pipeline.batches(name, batch_size=32, k=2, seed=1))
  assert a[0].shape == (2, 32, dim) and a[0].dtype == np.float32
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[0], c)
  assert pipeline.data_shape(name) == (dim,)
  xd = next(pipeline.batches(name, batch_size=32, k=2, num_devices=4))
  assert xd.shape == (4, 2, 8, dim)


def test_toy_ring_is_not_rescaled():
  x = next(pipeline.batches("toy_ring8", batch_size=256))
  np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 2.0, atol=0.2)


def test_unknown_dataset_lists_known_ones():
  with pytest.raises(pipeline.UnknownDatasetError) as e:
    pipeline.batches("fashon_mnist")
  msg = str(e.value)
  assert "fashion_mnist" in msg and "digits" in msg and "toy_ring8" in msg
  assert isinstance(e.value, ValueError)


def test_batch_not_divisible_by_devices():
  with pytest.raises(ValueError, match="batch_size=10 is not divisible by the 4 "
                     "devices"):
    pipeline.batches("digits", batch_size=10, num_devices=4)
  with pytest.raises(ValueError, match="k must be"):
    pipeline.batches("digits", k=0)


def test_prefetch_to_default_device():
  it = pipeline.batches("digits", batch_size=8, k=2)
  ref = take(pipeline.batches("digits", batch_size=8, k=2), 3)
  got = take(pipeline.prefetch_to_device(it, size=2), 3)
  for g, r in zip(got, ref):
    assert isinstance(g, jax.Array)
    np.testing.assert_array_equal(np.asarray(g), r)


def test_prefetch_sharded_over_devices():
  devices = jax.local_devices()
  n = len(devices)
  it = pipeline.batches("digits", batch_size=2 * n, k=2, num_devices=n)
  ref = next(pipeline.batches("digits", batch_size=2 * n, k=2, num_devices=n))
  x = next(pipeline.prefetch_to_device(it, devices=devices))
  assert x.shape == (n, 2, 2, 8, 8, 1)
  assert len(x.sharding.device_set) == n
  for shard in x.addressable_shards:
    np.testing.assert_array_equal(np.asarray(shard.data)[0],
                                  ref[shard.index[0].start])
  sums = jax.pmap(lambda a: a.sum())(x)
  np.testing.assert_allclose(np.asarray(sums), ref.reshape(n, -1).sum(1),
                             rtol=1e-5)
  with pytest.raises(ValueError, match="leading axis"):
    next(pipeline.prefetch_to_device(
        pipeline.batches("digits", batch_size=8), devices=devices))


def _digits_reference(seed, n, split="train"):
  """The first n examples of the in-memory stream, by hand: epoch 0's
  permutation seeded by (seed, 0), pixels 0..16 mapped to [-1, 1]."""
  images, labels = sources.load_digits(split)
  idx = np.random.default_rng([seed, 0]).permutation(len(images))[:n]
  return images[idx].astype(np.float32) / 16 * 2 - 1, labels[idx]


def test_digits_labels_stay_with_their_images():
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  plain = next(pipeline.batches("digits", batch_size=16, k=3, seed=5))
  batch = next(pipeline.batches("digits", batch_size=16, k=3, seed=5,
                                labels=True))
  assert set(batch) == {"image", "label"}
  x, y = batch["image"], batch["label"]
  assert x.shape == (3, 16, 8, 8, 1) and x.dtype == np.float32
  assert y.shape == (3, 16) and y.dtype == np.int32
  # Unconditional output unchanged: the same values as before labels existed.
  ref_x, ref_y = _digits_reference(5, 48)
  np.testing.assert_array_equal(plain, ref_x.reshape(plain.shape))
  np.testing.assert_array_equal(x, plain)
  np.testing.assert_array_equal(y.ravel(), ref_y)
  # Each label is sklearn's target of that very image.
  digits = datasets.load_digits()
  table = {im.astype(np.uint8).tobytes(): t
           for im, t in zip(digits.images, digits.target)}
  pixels = np.round((x + 1) / 2 * 16).astype(np.uint8).reshape(-1, 8, 8)
  assert [table[p.tobytes()] for p in pixels] == list(y.ravel())


def test_labelled_device_layout_and_numpy_pairs():
  images = unique_images(40)
  labels = np.arange(40) % 7
  b = next(pipeline.batches((images, labels), batch_size=8, k=2, seed=1,
                            value_range=(0, 1), labels=True))
  ids = np.round(b["image"][..., 0, 0, 0] * 255).astype(int)
  np.testing.assert_array_equal(b["label"], ids % 7)
  # The pair without labels=True yields the plain array of the images alone.
  np.testing.assert_array_equal(
      next(pipeline.batches((images, labels), batch_size=8, k=2, seed=1)),
      next(pipeline.batches(images, batch_size=8, k=2, seed=1)))
  bd = next(pipeline.batches((images, labels), batch_size=8, k=2, seed=1,
                             value_range=(0, 1), labels=True, num_devices=4))
  assert bd["image"].shape == (4, 2, 2, 4, 4, 1) and bd["label"].shape == (4, 2, 2)
  for d in range(4):
    np.testing.assert_array_equal(bd["label"][d], b["label"][:, 2 * d:2 * d + 2])
    np.testing.assert_array_equal(bd["image"][d], b["image"][:, 2 * d:2 * d + 2])
  assert pipeline.num_classes((images, labels)) == 7
  assert pipeline.num_classes(images) is None
  assert pipeline.data_shape((images, labels)) == (4, 4, 1)
  with pytest.raises(ValueError, match="no class labels"):
    pipeline.batches(images, batch_size=8, labels=True)
  with pytest.raises(ValueError, match=r"shape \(40,\)"):
    pipeline.batches((images, labels[:5]), batch_size=8, labels=True)
  with pytest.raises(ValueError, match="integer class indices"):
    pipeline.batches((images, labels / 7), batch_size=8, labels=True)


def test_toy_mixture_labels_are_the_modes():
  from ganjax.data import toy  # pylint: disable=g-import-not-at-top
  for name, centers in (("toy_ring8", toy.ring_centers()),
                        ("toy_grid25", toy.grid_centers())):
    plain = next(pipeline.batches(name, batch_size=64, k=2, seed=3))
    b = next(pipeline.batches(name, batch_size=64, k=2, seed=3, labels=True))
    np.testing.assert_array_equal(b["image"], plain)
    assert b["label"].shape == (2, 64) and b["label"].dtype == np.int32
    nearest = np.argmin(np.linalg.norm(
        plain[..., None, :] - np.asarray(centers), axis=-1), axis=-1)
    np.testing.assert_array_equal(b["label"], nearest)
    assert pipeline.num_classes(name) == len(centers)
  assert pipeline.num_classes("toy_gaussian1d") is None
  with pytest.raises(ValueError, match="no class labels"):
    pipeline.batches("toy_gaussian1d", labels=True)
