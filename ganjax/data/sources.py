"""Real data that needs no network: sklearn's 8x8 digits, Debian's Fashion-MNIST.

* ``load_digits``: the 1797 real 8x8 handwritten digits that ship inside
  scikit-learn (values 0..16), with a fixed, seeded train/test split.
* ``read_idx`` / ``load_fashion_mnist_idx``: readers for the gzip'd idx files
  of the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``).

``ganjax.data.tfds_source.prepare_fashion_mnist`` builds TFDS's
``fashion_mnist`` from those files. Nothing here imports TensorFlow.
"""

import gzip
import os
from typing import Tuple

import numpy as np

from ganjax.data.errors import DatasetNotFoundError

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


def check_fashion_mnist_dir(source_dir: str) -> None:
  """Raises ``DatasetNotFoundError`` (with the fix) unless the four files are there."""
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
  check_fashion_mnist_dir(source_dir)
  prefix = {"train": "train", "test": "t10k"}.get(split)
  if prefix is None:
    raise ValueError(f"Fashion-MNIST has splits 'train' and 'test'; got {split!r}.")
  images = read_idx(os.path.join(source_dir, f"{prefix}-images-idx3-ubyte.gz"))
  labels = read_idx(os.path.join(source_dir, f"{prefix}-labels-idx1-ubyte.gz"))
  return images[..., None], labels.astype(np.int64)
