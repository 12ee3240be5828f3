"""Data held in host memory as arrays: numpy sources, the digits, and what every stored kind shares.

* ``NumpySource``: a user's array ``[N, H, W, C]`` (uint8 0..255 or float in
  [0, 1]), or a pair ``(images, labels int [N])``.
* ``DigitsSource``: sklearn's real 8x8 digits (``sources.load_digits``,
  values 0..16, labels 0..9).
* ``to_size`` / ``resample``: the centre crop and resize every stored source
  applies (``ganjax.images.resize``: bilinear, antialiased), requantised to
  uint8.
* ``stream``: the endless shuffled batches of a split held in memory, each
  epoch a numpy permutation seeded by ``(seed, epoch)``.

Nothing here imports TensorFlow.
"""

import itertools
from typing import Iterator, Optional, Tuple

import numpy as np

from ganjax import images as images_lib
from ganjax.data import sources

DIGITS_NUM_CLASSES = 10
DIGITS_MAXVAL = 16.0  # sklearn digits: pixel values 0..16


def no_labels_error(source_name: str) -> ValueError:
  return ValueError(
      f"{source_name} has no class labels, so labels=True (a conditional "
      "GAN) cannot be fed from it. Use a labelled source (digits, mnist, "
      "fashion_mnist, cifar10, toy_ring8, toy_grid25, an image folder with "
      "label sub-folders, or a numpy pair (images, labels)), or train "
      "unconditionally (num_classes=0).")


def check_labels(labels, num_images: int) -> np.ndarray:
  """Validates the labels of an in-memory source; returns int32 ``[N]``."""
  labels = np.asarray(labels)
  if labels.shape != (num_images,):
    raise ValueError(f"labels must be one class index per image, shape "
                     f"({num_images},), got shape {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integer class indices 0..C-1, got "
                     f"dtype {labels.dtype}.")
  if labels.size and labels.min() < 0:
    raise ValueError(f"labels must be class indices 0..C-1, found "
                     f"{labels.min()}.")
  return labels.astype(np.int32)


def crop_size(center_crop, height, width) -> Optional[int]:
  """The side of the central square ``center_crop`` asks for, or None."""
  if center_crop is False or center_crop is None:
    return None
  if center_crop is True:
    return min(height, width)
  size = int(center_crop)
  if not 0 < size <= min(height, width):
    raise ValueError(f"center_crop={center_crop} does not fit images of "
                     f"{height}x{width}.")
  return size


def resized_shape(shape, image_size, what: str) -> tuple:
  """The example shape ``shape`` becomes at ``image_size`` (if any)."""
  if image_size is not None:
    shape = (int(image_size[0]), int(image_size[1])) + tuple(shape[2:])
  if any(d is None for d in shape):
    raise ValueError(f"{what} has images of varying size {tuple(shape)}; "
                     "pass image_size=(height, width).")
  return tuple(int(d) for d in shape)


def resample(images: np.ndarray, maxval: float, size) -> np.ndarray:
  """``images [N, H, W, C]`` with values in ``[0, maxval]`` resized to
  ``size`` (``ganjax.images.resize``) and requantised: uint8 0..255."""
  unit = images.astype(np.float32) / np.float32(maxval)
  if size is not None and tuple(size) != unit.shape[1:3]:
    unit = images_lib.resize(unit, size)
  return np.round(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_size(images: np.ndarray, maxval: float, image_size=None,
            center_crop=False) -> Tuple[np.ndarray, float]:
  """Crops and resizes a whole array of images once, on the host.

  Args:
    images: ``[N, H, W, C]``, values in ``[0, maxval]``.
    maxval: the largest pixel value.
    image_size: ``(height, width)`` to resize to, or None.
    center_crop: ``True`` crops the central square, an int a central square
      of that side; before resizing.

  Returns:
    ``(images, maxval)``: the input unchanged when there is nothing to do,
    else uint8 ``[N, height, width, C]`` in 0..255 and 255.
  """
  crop = crop_size(center_crop, images.shape[1], images.shape[2])
  if crop is None and (image_size is None
                       or tuple(image_size) == images.shape[1:3]):
    return images, maxval
  if crop is not None:
    top = (images.shape[1] - crop) // 2
    left = (images.shape[2] - crop) // 2
    images = images[:, top:top + crop, left:left + crop]
  return resample(images, maxval, image_size), 255.0


def as_image_array(array) -> Tuple[np.ndarray, float]:
  """Validates a user array; returns ``(images [N, H, W, C], max pixel value)``."""
  array = np.asarray(array)
  if array.ndim == 3:
    array = array[..., None]
  if array.ndim != 4:
    raise ValueError(f"An in-memory source must be [N, H, W, C] (or [N, H, W]), "
                     f"got shape {array.shape}.")
  if array.shape[0] == 0:
    raise ValueError("An in-memory source must hold at least one image.")
  if array.dtype == np.uint8:
    return array, 255.0
  if np.issubdtype(array.dtype, np.floating):
    lo, hi = float(array.min()), float(array.max())
    if lo < 0.0 or hi > 1.0:
      raise ValueError(f"A float image array must hold values in [0, 1], found "
                       f"[{lo}, {hi}]. Pass uint8 0..255 or rescale it.")
    return array.astype(np.float32), 1.0
  raise ValueError(f"An in-memory source must be uint8 (0..255) or float in "
                   f"[0, 1], got dtype {array.dtype}.")


class NumpySource:
  """A numpy array ``[N, H, W, C]``, or a pair ``(images, labels [N])``."""

  def __init__(self, source):
    labels = None
    if isinstance(source, tuple):
      if len(source) != 2:
        raise ValueError("An in-memory source with labels is a pair "
                         f"(images [N, H, W, C], labels [N]); got a tuple of "
                         f"{len(source)}.")
      source, labels = source
    self.images = np.asarray(source)
    self.labels = labels

  def __repr__(self):
    return ("a numpy array without labels" if self.labels is None
            else "a numpy pair (images, labels)")

  def _labels(self) -> Optional[np.ndarray]:
    if self.labels is None:
      return None
    return check_labels(self.labels, self.images.shape[0])

  def data_shape(self, image_size=None) -> tuple:
    shape = as_image_array(self.images[:1])[0].shape[1:]
    return resized_shape(shape, image_size, repr(self))

  def num_classes(self) -> Optional[int]:
    labels = self._labels()
    return int(labels.max()) + 1 if labels is not None and labels.size else None

  def class_names(self) -> Optional[list]:
    return None  # the class indices are the user's own

  def load(self, split: str, labels: bool, image_size=None, center_crop=False):
    """``(images, labels or None, maxval)``; ``split`` is ignored."""
    del split
    images, maxval = as_image_array(self.images)
    targets = self._labels()
    if labels and targets is None:
      raise no_labels_error(repr(self))
    images, maxval = to_size(images, maxval, image_size, center_crop)
    return images, (targets if labels else None), maxval


class DigitsSource:
  """sklearn's real 8x8 digits: splits ``train`` (1500), ``test`` (297), ``all``."""

  def __repr__(self):
    return "digits"

  def data_shape(self, image_size=None) -> tuple:
    return resized_shape((8, 8, 1), image_size, "digits")

  def num_classes(self) -> int:
    return DIGITS_NUM_CLASSES

  def class_names(self) -> list:
    return [str(c) for c in range(DIGITS_NUM_CLASSES)]

  def load(self, split: str, labels: bool, image_size=None, center_crop=False):
    images, targets = sources.load_digits(split)
    images, maxval = to_size(images, DIGITS_MAXVAL, image_size, center_crop)
    return images, (check_labels(targets, len(images)) if labels else None), maxval


def stream(images: np.ndarray, maxval: float, labels: Optional[np.ndarray], *,
           local: int, k: int, seed: int, value_range, process_index: int,
           process_count: int) -> Iterator:
  """Endless ``(images float32 [k, local, ...], labels [k, local] or None)``
  from this process's contiguous block of the examples, each epoch of the
  block shuffled by ``np.random.default_rng([seed, epoch])``."""
  shard = np.array_split(np.arange(images.shape[0]), process_count)[process_index]
  if shard.size == 0:
    raise ValueError(f"{images.shape[0]} examples cannot be split over "
                     f"{process_count} processes.")
  lo, hi = value_range
  scale = np.float32((hi - lo) / maxval)
  offset = np.float32(lo)

  def index_stream():
    for epoch in itertools.count():
      perm = np.random.default_rng([seed, epoch]).permutation(shard.size)
      yield from shard[perm]

  def gen():
    indices = index_stream()
    n = k * local
    while True:
      idx = np.fromiter(itertools.islice(indices, n), dtype=np.int64, count=n)
      x = images[idx].astype(np.float32) * scale + offset
      x = x.reshape((k, local) + images.shape[1:])
      yield x, (None if labels is None else labels[idx].reshape((k, local)))

  return gen()
