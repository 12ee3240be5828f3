"""Whole splits of real data for evaluation: images in [0, 1] and labels, as numpy.

``load_split("fashion_mnist", "train[50000:]")``: the data set by name and a
split with an optional numpy-style slice. Sources, first found first:

* ``digits``: sklearn's 8x8 digits (``ganjax.data.sources.load_digits``,
  splits ``train`` 1500 / ``test`` 297 / ``all``), values 0..16 scaled to [0, 1];
* ``fashion_mnist``: the Debian idx files (no TensorFlow), else TFDS's
  prepared copy;
* any other name: TFDS's prepared copy, read with ``download=False``
  (TensorFlow is imported only then);
* a data set object instead of a name: a user's images
  (``ganjax.data.folder.ImageFolder``), read from the decoded cache at its
  training resolution. Such an object has ``name`` (used in metric names),
  ``fingerprint`` (keys the classifier and the reference statistics),
  ``splits()``, ``data_shape()``, ``num_classes()`` and ``load_unit(split)``
  (images in [0, 1], labels, -1 when it has none).
"""

import difflib
import os
import re

import numpy as np

from ganjax.data import sources
from ganjax.data import stacked
from ganjax.data.errors import DatasetNotFoundError

_SPLIT = re.compile(r"^(\w+)(?:\[(-?\d*):(-?\d*)\])?$")

# Data sets with a cached CNN classifier protocol: grayscale, 10 classes.
MNIST_LIKE = ("digits", "mnist", "fashion_mnist", "kmnist")


def name(dataset) -> str:
  """The name a data set (a name or a data set object) has in metric names."""
  return dataset if isinstance(dataset, str) else dataset.name


def default_reference_split(dataset) -> str:
  """``"test"``; ``"train"`` for a data set object without a test split."""
  if isinstance(dataset, str) or "test" in dataset.splits():
    return "test"
  return "train"


def parse_split(split: str) -> tuple[str, slice]:
  """``"train[50000:]"`` -> ``("train", slice(50000, None))``."""
  match = _SPLIT.match(split.replace(" ", ""))
  if not match:
    raise ValueError(f"Bad split {split!r}; use e.g. 'train', 'test' or "
                     f"'train[50000:]'.")
  name, start, stop = match.groups()
  to_int = lambda s: int(s) if s not in (None, "") else None
  return name, slice(to_int(start), to_int(stop))


def _tfds_split(dataset: str, split: str, data_dir):
  from ganjax.data import tfds_source  # pylint: disable=g-import-not-at-top
  tfds_source.import_tf()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = data_dir or tfds_source.default_data_dir()
  try:
    builder = tfds.builder(dataset, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    close = difflib.get_close_matches(dataset, list(tfds.list_builders()), 3)
    raise DatasetNotFoundError(
        f"Unknown data set {dataset!r}: neither 'digits' nor a TFDS data set"
        + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
        + ".") from None
  if not builder.is_prepared():
    hint = (sources.FASHION_MNIST_INSTALL_HINT if dataset == "fashion_mnist"
            else f"Prepare it first, e.g. `tfds build {dataset} "
            f"--data_dir={data_dir}` on a machine with a network.")
    raise DatasetNotFoundError(
        f"TFDS data set {dataset!r} is not prepared in {data_dir}. {hint}")
  data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  image_key = "image" if "image" in data else next(
      k for k, v in data.items() if getattr(v, "ndim", 0) == 4)
  labels = data.get("label", np.zeros(len(data[image_key]), np.int64))
  return data[image_key], np.asarray(labels, np.int64)


def load_split(dataset, split: str = "test", data_dir: str | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
  """A whole split of a real data set.

  Args:
    dataset: ``"digits"``, ``"fashion_mnist"``, ``"stacked_digits"``,
      ``"stacked_mnist"`` (labels: the modes), a TFDS name, or a data set
      object (see the module docstring).
    split: ``"train"``, ``"test"`` (``"all"`` for digits), optionally with a
      slice: ``"train[50000:]"``.
    data_dir: TFDS data dir (default ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).

  Returns:
    ``(images, labels)``: float32 ``[N, H, W, C]`` in [0, 1], int64 ``[N]``.
  """
  split_name, sl = parse_split(split)
  if not isinstance(dataset, str):
    images, labels = dataset.load_unit(split_name)
  elif dataset in stacked.BASES:
    images, labels, maxval = stacked.StackedSource(dataset, data_dir).load(
        split_name, labels=True)
    images = images.astype(np.float32) / maxval
  elif dataset == "digits":
    images, labels = sources.load_digits(split_name)
    images = images.astype(np.float32) / 16.0
  else:
    if dataset == "fashion_mnist" and all(
        os.path.isfile(os.path.join(sources.FASHION_MNIST_DEBIAN_DIR, f))
        for f in sources.FASHION_MNIST_FILES):
      images, labels = sources.load_fashion_mnist_idx(split_name)
    else:
      images, labels = _tfds_split(dataset, split_name, data_dir)
    images = images.astype(np.float32) / 255.0
  return images[sl], labels[sl]


def data_shape(dataset, data_dir: str | None = None) -> tuple[int, ...]:
  """``(H, W, C)`` of one image of ``dataset``."""
  if not isinstance(dataset, str):
    return tuple(dataset.data_shape())
  known = {"digits": (8, 8, 1), "fashion_mnist": (28, 28, 1),
           "mnist": (28, 28, 1), "kmnist": (28, 28, 1), "cifar10": (32, 32, 3)}
  if dataset in known:
    return known[dataset]
  if dataset in stacked.BASES:
    return stacked.StackedSource(dataset).data_shape()
  images, _ = load_split(dataset, "test[:1]", data_dir)
  return tuple(images.shape[1:])
