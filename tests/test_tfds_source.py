"""Tests of the TFDS source kind (mocked and real Fashion-MNIST prepared offline),
the offline files (ganjax.data.sources) and experiments.prepare_data for TFDS."""

import fcntl
import hashlib
import os
import socket
import time

import numpy as np
import pytest

from ganjax.data import pipeline
from ganjax.data import sources

HAVE_DEBIAN_FM = os.path.isdir(sources.FASHION_MNIST_DEBIAN_DIR)


def take(it, n):
  return [next(it) for _ in range(n)]


def unique_images(n=40, shape=(4, 4, 1)):
  """uint8 images whose pixels all equal the image's index."""
  return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None],
                         (n,) + shape).copy()


@pytest.fixture
def no_network(monkeypatch):
  """Fails the test if anything opens a network connection."""
  attempts = []

  def refuse(*args, **kwargs):
    attempts.append(args)
    raise OSError("network access attempted in a test")

  monkeypatch.setattr(socket, "create_connection", refuse)
  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "getaddrinfo", refuse)
  return attempts


@pytest.mark.parametrize("name,fix", [
    ("mnist", ["download=True", "tfds build mnist"]),
    ("fashion_mnist", ["apt-get install -y dataset-fashion-mnist",
                       "python -m experiments.prepare_data fashion_mnist"]),
])
def test_missing_data_fails_fast_with_the_fix(tmp_path, no_network, name, fix):
  start = time.time()
  with pytest.raises(pipeline.DatasetNotFoundError) as e:
    pipeline.batches(name, data_dir=str(tmp_path))
  assert time.time() - start < 30  # import tensorflow included; no retries
  assert not no_network
  for text in fix:
    assert text in str(e.value)
  assert isinstance(e.value, ValueError)


@pytest.fixture
def mock_tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=24):
    yield


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_tfds_mnist_shapes_and_range(mock_tfds, value_range):
  x = next(pipeline.batches("mnist", batch_size=8, k=2,
                            value_range=value_range))
  assert x.shape == (2, 8, 28, 28, 1) and x.dtype == np.float32
  lo, hi = value_range
  assert lo <= x.min() < x.max() <= hi
  # uint8 pixels map to exact multiples of 1/255.
  u = (x - lo) / (hi - lo) * 255
  np.testing.assert_allclose(u, np.round(u), atol=1e-3)


def test_tfds_cifar10_resize_and_devices(mock_tfds):
  x = next(pipeline.batches("cifar10", batch_size=8, k=3, image_size=(16, 16),
                            num_devices=4))
  assert x.shape == (4, 3, 2, 16, 16, 3) and x.dtype == np.float32
  assert -1 <= x.min() and x.max() <= 1


def test_tfds_celeb_a_center_crop(mock_tfds):
  x = next(pipeline.batches("celeb_a", batch_size=4, image_size=(32, 32),
                            center_crop=True))
  assert x.shape == (1, 4, 32, 32, 3)


def test_tfds_determinism(mock_tfds):
  a = take(pipeline.batches("mnist", batch_size=8, k=2, seed=0), 3)
  b = take(pipeline.batches("mnist", batch_size=8, k=2, seed=0), 3)
  c = take(pipeline.batches("mnist", batch_size=8, k=2, seed=1), 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_data_shape_without_loading(tmp_path):
  empty = str(tmp_path)  # nothing prepared: shapes come from builder info
  assert pipeline.data_shape("fashion_mnist", data_dir=empty) == (28, 28, 1)
  assert pipeline.data_shape("cifar10", data_dir=empty) == (32, 32, 3)
  assert pipeline.data_shape("celeb_a", image_size=(64, 64),
                             data_dir=empty) == (64, 64, 3)
  assert pipeline.data_shape("digits") == (8, 8, 1)
  assert pipeline.data_shape(unique_images(3)) == (4, 4, 1)


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory):
  """Fashion-MNIST prepared once per test run: the pytest-xdist workers share
  one directory under a lock (preparing it takes 10-20 s)."""
  if not HAVE_DEBIAN_FM:
    pytest.skip(f"{sources.FASHION_MNIST_DEBIAN_DIR} absent: install it with "
                "`apt-get install -y dataset-fashion-mnist` (CI does).")
  from experiments import prepare_data  # pylint: disable=g-import-not-at-top
  run_dir = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):  # basetemp is per worker
    run_dir = run_dir.parent
  root = run_dir / "fashion_mnist_tfds"
  root.mkdir(exist_ok=True)
  with open(root / "lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (root / "prepared").exists():
      assert prepare_data.main(["fashion_mnist", "--data_dir",
                                str(root / "data")]) == 0
      (root / "prepared").touch()
  return str(root / "data")


@pytest.fixture(scope="session")
def debian_test_hashes():
  images, _ = sources.load_fashion_mnist_idx("test")
  assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
  return {hashlib.sha1(im.tobytes()).digest() for im in images}


def _hashes(x):
  u = np.round(x.reshape((-1, 28, 28, 1)) * 255).astype(np.uint8)
  return [hashlib.sha1(im.tobytes()).digest() for im in u]


def test_real_fashion_mnist_prepared_offline(fashion_mnist_dir, no_network,
                                             debian_test_hashes):
  x = next(pipeline.batches("fashion_mnist", batch_size=64, k=2,
                            split="test[:512]", value_range=(0, 1),
                            data_dir=fashion_mnist_dir))
  assert x.shape == (2, 64, 28, 28, 1) and x.dtype == np.float32
  assert 0 <= x.min() and x.max() <= 1
  # Every image is a real Fashion-MNIST test image, bit for bit.
  assert set(_hashes(x)) <= debian_test_hashes
  assert not no_network


def test_real_fashion_mnist_two_processes_disjoint(fashion_mnist_dir):
  split = "test[:64]"
  whole = next(pipeline.batches("fashion_mnist", batch_size=64, split=split,
                                value_range=(0, 1), data_dir=fashion_mnist_dir))
  parts = [set(_hashes(next(pipeline.batches(
      "fashion_mnist", batch_size=64, split=split, value_range=(0, 1),
      data_dir=fashion_mnist_dir, process_index=p, process_count=2))))
           for p in range(2)]
  assert len(parts[0]) == len(parts[1]) == 32
  assert not parts[0] & parts[1]
  assert parts[0] | parts[1] == set(_hashes(whole))


def test_prepare_data_cli_user_errors(tmp_path, capsys):
  from experiments import prepare_data  # pylint: disable=g-import-not-at-top
  rc = prepare_data.main(["fashion_mnist", "--data_dir", str(tmp_path / "d"),
                          "--source_dir", str(tmp_path)])
  assert rc == 2
  assert "apt-get install -y dataset-fashion-mnist" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    prepare_data.main(["nope"])
  assert e.value.code == 2


def test_idx_reader_roundtrip(tmp_path):
  import gzip  # pylint: disable=g-import-not-at-top
  arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  path = tmp_path / "x-idx3-ubyte.gz"
  header = bytes([0, 0, 0x08, 3]) + np.array(arr.shape, ">u4").tobytes()
  with gzip.open(path, "wb") as f:
    f.write(header + arr.tobytes())
  np.testing.assert_array_equal(sources.read_idx(str(path)), arr)


def test_tfds_labels_stay_with_their_images(mock_tfds):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  whole = tfds.as_numpy(tfds.builder("mnist").as_dataset(split="train"))
  table = {ex["image"].tobytes(): int(ex["label"]) for ex in whole}
  plain = next(pipeline.batches("mnist", batch_size=8, k=2, seed=0,
                                value_range=(0, 1)))
  b = next(pipeline.batches("mnist", batch_size=8, k=2, seed=0,
                            value_range=(0, 1), labels=True))
  np.testing.assert_array_equal(b["image"], plain)
  assert b["label"].shape == (2, 8) and b["label"].dtype == np.int32
  pixels = np.round(b["image"] * 255).astype(np.uint8).reshape(-1, 28, 28, 1)
  assert [table[p.tobytes()] for p in pixels] == list(b["label"].ravel())
  bd = next(pipeline.batches("mnist", batch_size=8, k=2, seed=0,
                             value_range=(0, 1), labels=True, num_devices=4))
  for d in range(4):
    np.testing.assert_array_equal(bd["label"][d], b["label"][:, 2 * d:2 * d + 2])
    np.testing.assert_array_equal(bd["image"][d], b["image"][:, 2 * d:2 * d + 2])
  assert pipeline.num_classes("cifar10") == 10
  assert pipeline.num_classes("celeb_a") is None
  with pytest.raises(ValueError, match="no class labels"):
    pipeline.batches("celeb_a", image_size=(32, 32), labels=True)


def test_real_fashion_mnist_labels(fashion_mnist_dir):
  images, labels = sources.load_fashion_mnist_idx("test")
  table = {hashlib.sha1(im.tobytes()).digest(): int(t)
           for im, t in zip(images, labels)}
  b = next(pipeline.batches("fashion_mnist", batch_size=64, split="test[:512]",
                            value_range=(0, 1), data_dir=fashion_mnist_dir,
                            labels=True))
  assert [table[h] for h in _hashes(b["image"])] == list(b["label"].ravel())
  assert pipeline.num_classes("fashion_mnist", data_dir=fashion_mnist_dir) == 10
