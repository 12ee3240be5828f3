"""Real data that needs no network: sklearn's 8x8 digits, Debian's Fashion-MNIST.

* ``load_digits``: the 1797 real 8x8 handwritten digits that ship inside
  scikit-learn (values 0..16), with a fixed, seeded train/test split.
* ``read_idx`` / ``load_fashion_mnist_idx``: readers for the gzip'd idx files
  of the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``).
* ``prepare_tfds_fashion_mnist``: builds TFDS's ``fashion_mnist`` from those
  files, offline, so that ``tfds.load('fashion_mnist', download=False)`` (and
  ``ganjax.data.pipeline.batches('fashion_mnist')``) works on a machine that
  reaches only the package registries.

Nothing here imports TensorFlow at module import; only
``prepare_tfds_fashion_mnist`` does, inside the function.
"""

import gzip
import json
import os
import shutil
from typing import Optional, Tuple

import numpy as np

FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_MNIST_INSTALL_HINT = (
    "Install the Debian package with the real Fashion-MNIST files: "
    "`apt-get update && apt-get install -y dataset-fashion-mnist` "
    f"(it puts them in {FASHION_MNIST_DEBIAN_DIR}), then prepare TFDS's copy "
    "with `python -m experiments.prepare_data fashion_mnist`.")

# Fixed split of sklearn's 1797 digits: a permutation by this seed, the first
# DIGITS_NUM_TRAIN indices are "train", the other 297 are "test".
DIGITS_SPLIT_SEED = 0
DIGITS_NUM_TRAIN = 1500


class DatasetNotFoundError(ValueError):
  """The data set is not on this machine; the message says how to get it."""


# ----------------------------------------------------------------- digits ---

def load_digits(split: str = "train") -> Tuple[np.ndarray, np.ndarray]:
  """sklearn's real 8x8 digits as uint8 images ``[N, 8, 8, 1]`` (0..16), labels ``[N]``.

  Use for fast tests and as an offline default data set.

  References: Alpaydin & Kaynak, 1998, "Optical Recognition of Handwritten
  Digits", UCI ML repository, https://doi.org/10.24432/C50P49.

  Args:
    split: ``"train"`` (1500 images), ``"test"`` (297) or ``"all"`` (1797).
      The split is a fixed permutation by ``DIGITS_SPLIT_SEED``, the same on
      every machine.

  Returns:
    ``(images, labels)``: uint8 ``[N, 8, 8, 1]`` with values 0..16 (not
    0..255), int64 ``[N]``.
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = digits.images.astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int64)
  if split == "all":
    return images, labels
  perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
  if split == "train":
    idx = perm[:DIGITS_NUM_TRAIN]
  elif split == "test":
    idx = perm[DIGITS_NUM_TRAIN:]
  else:
    raise ValueError(
        f"digits has splits 'train' ({DIGITS_NUM_TRAIN}), 'test' "
        f"({len(images) - DIGITS_NUM_TRAIN}) and 'all'; got {split!r}.")
  return images[idx], labels[idx]


# ------------------------------------------------------------ idx readers ---

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
  """Reads one idx file (LeCun's MNIST format), gzip'd or not, into an array.

  Args:
    path: an ``*-idx?-ubyte[.gz]`` file.

  Returns:
    the array with the shape and dtype the header declares (uint8 for
    images ``[N, 28, 28]`` and labels ``[N]``).
  """
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError(f"{path} is not an idx file (bad magic number).")
  dtype, ndim = data[2], data[3]
  if dtype not in _IDX_DTYPES:
    raise ValueError(f"{path}: unknown idx element type 0x{dtype:02x}.")
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
  arr = np.frombuffer(data, _IDX_DTYPES[dtype], offset=4 + 4 * ndim)
  if arr.size != int(np.prod(shape)):
    raise ValueError(f"{path}: header says {shape}, found {arr.size} values.")
  return arr.reshape(shape).astype(np.dtype(_IDX_DTYPES[dtype]).newbyteorder("="))


def _check_debian_dir(source_dir: str) -> None:
  missing = [f for f in FASHION_MNIST_FILES
             if not os.path.isfile(os.path.join(source_dir, f))]
  if missing:
    raise DatasetNotFoundError(
        f"Fashion-MNIST files {missing} not found in {source_dir}. "
        + FASHION_MNIST_INSTALL_HINT)


def load_fashion_mnist_idx(
    split: str = "train",
    source_dir: str = FASHION_MNIST_DEBIAN_DIR,
) -> Tuple[np.ndarray, np.ndarray]:
  """Real Fashion-MNIST straight from the Debian idx.gz files, no TFDS.

  References: Xiao, Rasul & Vollgraf, 2017, "Fashion-MNIST",
  https://arxiv.org/abs/1708.07747.

  Args:
    split: ``"train"`` (60000) or ``"test"`` (10000).
    source_dir: folder with the four ``*-ubyte.gz`` files.

  Returns:
    ``(images, labels)``: uint8 ``[N, 28, 28, 1]`` (0..255), int64 ``[N]``.
  """
  _check_debian_dir(source_dir)
  prefix = {"train": "train", "test": "t10k"}.get(split)
  if prefix is None:
    raise ValueError(f"Fashion-MNIST has splits 'train' and 'test'; got {split!r}.")
  images = read_idx(os.path.join(source_dir, f"{prefix}-images-idx3-ubyte.gz"))
  labels = read_idx(os.path.join(source_dir, f"{prefix}-labels-idx1-ubyte.gz"))
  return images[..., None], labels.astype(np.int64)


# ------------------------------------------- TFDS fashion_mnist, offline ---

def default_tfds_data_dir() -> str:
  """TFDS's default data dir: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
  return os.path.expanduser(
      os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def prepare_tfds_fashion_mnist(
    data_dir: Optional[str] = None,
    source_dir: str = FASHION_MNIST_DEBIAN_DIR,
    progress_bar: bool = True,
) -> str:
  """Prepares TFDS's ``fashion_mnist`` from the Debian files, without a network.

  Debian rewrote the gzip headers (the compressed data is unchanged), so the
  files fail TFDS's checksum check as a ``manual_dir``. Instead this seeds
  TFDS's download cache (``DATA_DIR/downloads/fashion_mnist/``) with the local
  files under the names TFDS expects, each with its ``.INFO`` file, and runs
  ``download_and_prepare`` with ``try_download_gcs=False``: TFDS finds every
  file cached and never opens a connection. Leans on TFDS's internal
  ``tensorflow_datasets.core.download.resource`` for the cache file names.
  Does nothing if the data dir already holds a prepared copy. Before
  seeding, each Debian file is read and its shape checked.

  Args:
    data_dir: TFDS data dir; default ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``.
    source_dir: folder with the Debian ``*-ubyte.gz`` files.
    progress_bar: show TFDS's progress bars (a global TFDS setting).

  Returns:
    the data dir it prepared into.
  """
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  pipeline.import_tf()  # hides GPUs from TF before TFDS runs any op
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.download import resource  # pylint: disable=g-import-not-at-top

  tfds.display_progress_bar(progress_bar)
  data_dir = data_dir or default_tfds_data_dir()
  builder = tfds.builder("fashion_mnist", data_dir=data_dir)
  if builder.is_prepared():
    return data_dir

  _check_debian_dir(source_dir)
  expected = {"train-images": (60000, 28, 28), "train-labels": (60000,),
              "t10k-images": (10000, 28, 28), "t10k-labels": (10000,)}
  for fname in FASHION_MNIST_FILES:
    want = expected[fname.rsplit("-", 2)[0]]
    got = read_idx(os.path.join(source_dir, fname)).shape
    if got != want:
      raise ValueError(f"{source_dir}/{fname} has shape {got}, expected {want}.")
  dl_dir = os.path.join(data_dir, "downloads", "fashion_mnist")
  os.makedirs(dl_dir, exist_ok=True)
  for url, info in builder.url_infos.items():
    src = os.path.join(source_dir, info.filename)
    if not os.path.isfile(src):
      raise DatasetNotFoundError(
          f"TFDS wants {info.filename}, not found in {source_dir}. "
          + FASHION_MNIST_INSTALL_HINT)
    dst = os.path.join(dl_dir, resource.get_dl_fname(url, info.checksum))
    shutil.copyfile(src, dst)
    with open(dst + ".INFO", "w") as f:
      json.dump({"urls": [url], "dataset_names": ["fashion_mnist"],
                 "original_fname": info.filename,
                 "url_info": info.asdict()}, f, sort_keys=True)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return data_dir
