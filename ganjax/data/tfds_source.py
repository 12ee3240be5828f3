"""TFDS image data sets as a source kind: whole splits as arrays, or a tf.data stream.

``TfdsSource(name)`` reads a prepared TFDS data set (``mnist``,
``fashion_mnist``, ``cifar10``, ``celeb_a``, ...): its image feature, and its
labels (the ``"label"`` ClassLabel feature, or else its only ClassLabel
feature). Nothing downloads unless ``download=True``: data that is not on the
machine fails at once with ``DatasetNotFoundError`` saying how to get it.
``prepare_fashion_mnist`` builds TFDS's ``fashion_mnist`` offline from the
Debian package's files.

TensorFlow is imported only inside these functions (``import_tf``), never at
module import, and it is told to see no GPU before it runs any op, so it never
takes accelerator memory.
"""

import difflib
import functools
import json
import os
import shutil
from typing import Iterator, Optional, Sequence

import numpy as np

from ganjax.data import arrays
from ganjax.data import sources
from ganjax.data.errors import DatasetNotFoundError, UnknownDatasetError

COMMON_NAMES = ("mnist", "fashion_mnist", "cifar10", "celeb_a", "svhn_cropped",
                "emnist", "kmnist")

# Decoded splits up to this size (uint8 bytes) are cached in memory and
# shuffled in full; bigger ones are shuffled as encoded bytes in a buffer.
_CACHE_LIMIT_BYTES = 1 << 30
_LARGE_SHUFFLE_BUFFER = 10_000


def import_tf():
  """Imports TensorFlow for the input pipeline only, hiding GPUs from it.

  Call before any TF op: TF then never allocates accelerator memory (JAX
  owns the accelerators). Safe to call many times.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF already initialised its devices; keep them.
    pass
  return tf


def default_data_dir() -> str:
  """TFDS's default data dir: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
  return os.path.expanduser(
      os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def _not_prepared_error(name: str, data_dir: str,
                        user_data_dir: Optional[str]) -> DatasetNotFoundError:
  if name == "fashion_mnist":
    flag = f" --data_dir {user_data_dir}" if user_data_dir else ""
    fix = ("To get it without a network: `apt-get update && apt-get install -y "
           "dataset-fashion-mnist`, then `python -m experiments.prepare_data "
           f"fashion_mnist{flag}`. With a network, pass download=True instead.")
  else:
    fix = (f"Pass download=True on a machine with network access, or run "
           f"`tfds build {name} --data_dir DIR` there and copy DIR here. "
           "Real data offline: 'digits' (sklearn) and 'fashion_mnist' "
           "(`apt-get install -y dataset-fashion-mnist`, then `python -m "
           "experiments.prepare_data fashion_mnist`).")
  return DatasetNotFoundError(
      f"TFDS dataset {name!r} is not prepared in {data_dir}, and nothing is "
      f"downloaded unless download=True. {fix}")


class TfdsSource:
  """A TFDS image data set by name (see the module docstring).

  Args:
    name: the TFDS name, e.g. ``"fashion_mnist"``.
    data_dir: TFDS data dir (default ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).
    download: let TFDS download and prepare the data (needs a network).
    other_sources: the names of the other sources, suggested for a name
      TFDS does not know.
  """

  def __init__(self, name: str, data_dir: Optional[str] = None,
               download: bool = False, other_sources: Sequence[str] = ()):
    self.name, self.data_dir, self.download = name, data_dir, download
    self.other_sources = tuple(other_sources)

  def __repr__(self):
    return f"TFDS dataset {self.name!r}"

  @functools.cached_property
  def builder(self):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    try:
      return tfds.builder(self.name, data_dir=self.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
      known = list(tfds.list_builders()) + list(self.other_sources)
      close = difflib.get_close_matches(self.name, known, n=3, cutoff=0.6)
      hint = (f" Did you mean {', '.join(repr(c) for c in close)}?" if close
              else "")
      raise UnknownDatasetError(
          f"Unknown dataset {self.name!r}.{hint} Known sources: built-in "
          f"{', '.join(self.other_sources)}; a numpy array [N, H, W, C]; an "
          "image folder or StyleGAN zip (folder:PATH, zip:PATH); or any TFDS "
          f"image dataset by name, e.g. {', '.join(COMMON_NAMES)} "
          "(`tfds.list_builders()` lists all).") from None

  def _image_key(self) -> str:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    features = self.builder.info.features
    if "image" in features and isinstance(features["image"],
                                          tfds.features.Image):
      return "image"
    for key, feature in features.items():
      if isinstance(feature, tfds.features.Image):
        return key
    raise ValueError(f"TFDS dataset {self.name!r} has no image feature "
                     f"(features: {list(features)}).")

  def _label_key(self) -> Optional[str]:
    """The ClassLabel feature: ``"label"`` if it is one, else the only
    ClassLabel feature; None when there is none (or several)."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    features = self.builder.info.features
    is_label = lambda f: isinstance(f, tfds.features.ClassLabel)
    if "label" in features and is_label(features["label"]):
      return "label"
    keys = [key for key, feature in features.items() if is_label(feature)]
    return keys[0] if len(keys) == 1 else None

  def _checked_label_key(self, labels: bool) -> Optional[str]:
    key = self._label_key() if labels else None
    if labels and key is None:
      raise arrays.no_labels_error(repr(self))
    return key

  def _maxval(self) -> float:
    dtype = np.dtype(self.builder.info.features[self._image_key()].np_dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0

  def data_shape(self, image_size=None) -> tuple:
    shape = tuple(self.builder.info.features[self._image_key()].shape)
    return arrays.resized_shape(shape, image_size, repr(self))

  def num_classes(self) -> Optional[int]:
    key = self._label_key()
    return (None if key is None
            else int(self.builder.info.features[key].num_classes))

  def class_names(self) -> Optional[list]:
    key = self._label_key()
    return None if key is None else list(self.builder.info.features[key].names)

  def _as_dataset(self, **kwargs):
    try:
      return self.builder.as_dataset(**kwargs)
    except AssertionError as e:
      if "could not find data" in str(e):
        raise _not_prepared_error(self.name, str(self.builder.data_dir_root),
                                  self.data_dir) from None
      raise

  def load(self, split: str, labels: bool, image_size=None,
           center_crop=False):
    """A prepared split as numpy: ``(images, labels or None, maxval)``."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    import_tf()
    key = self._image_key()
    label_key = self._checked_label_key(labels)
    data = tfds.as_numpy(self._as_dataset(split=split, batch_size=-1))
    label_array = (np.asarray(data[label_key]).astype(np.int32)
                   if label_key else None)
    images, maxval = arrays.to_size(np.asarray(data[key]), self._maxval(),
                                    image_size, center_crop)
    return images, label_array, maxval

  def stream(self, *, split: str, labels: bool, image_size, center_crop,
             local: int, k: int, seed: int, value_range, process_index: int,
             process_count: int, shuffle_buffer: Optional[int],
             cache: Optional[bool]) -> Iterator:
    """Endless ``(images [k, local, ...], labels [k, local] or None)`` of a
    tf.data pipeline: seeded shuffles, this process's ``even_splits`` shard,
    crop / resize in the graph, pixels mapped to ``value_range``."""
    tf = import_tf()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    key = self._image_key()
    label_key = self._checked_label_key(labels)
    image_feature = self.builder.info.features[key]
    shape = tuple(image_feature.shape)
    if self.download:
      self.builder.download_and_prepare()

    num_examples = None
    try:
      num_examples = int(self.builder.info.splits[split].num_examples) or None
    except (KeyError, ValueError, TypeError):
      pass
    if num_examples is not None:
      num_examples = -(-num_examples // process_count)

    if process_count > 1:
      read_split = tfds.even_splits(split, n=process_count)[process_index]
    else:
      read_split = split

    options = tf.data.Options()
    options.deterministic = True
    read_config = tfds.ReadConfig(options=options, shuffle_seed=seed,
                                  try_autocache=False)
    decoded_bytes = (num_examples or np.inf) * float(
        np.prod([d or 256 for d in shape]))
    if cache is None:
      cache = decoded_bytes <= _CACHE_LIMIT_BYTES
    decode_late = not cache  # shuffle encoded bytes, decode after the shuffle
    decoders = {key: tfds.decode.SkipDecoding()} if decode_late else None
    ds = self._as_dataset(split=read_split, shuffle_files=True,
                          read_config=read_config, decoders=decoders)

    if labels:
      ds = ds.map(lambda ex: (ex[key], tf.cast(ex[label_key], tf.int32)))
    else:
      ds = ds.map(lambda ex: ex[key])
    if cache:
      ds = ds.cache()
    if shuffle_buffer is None:
      shuffle_buffer = (num_examples if cache and num_examples
                        else _LARGE_SHUFFLE_BUFFER)
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()

    lo, hi = value_range
    maxval = self._maxval()
    height, width = shape[0], shape[1]
    if image_size is None and None in shape[:2]:
      raise ValueError(f"{self.name!r} has images of varying size {shape}; "
                       "pass image_size=(height, width).")
    crop = None
    if center_crop:
      if height is None or width is None:
        crop = center_crop  # resolved per image below
      else:
        crop = arrays.crop_size(center_crop, height, width)

    def preprocess(image):
      if decode_late:
        image = image_feature.decode_example(image)
      if crop is not None:
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        size = tf.minimum(h, w) if crop is True else crop
        image = tf.image.crop_to_bounding_box(image, (h - size) // 2,
                                              (w - size) // 2, size, size)
      image = tf.cast(image, tf.float32) / maxval
      if image_size is not None:
        image = tf.image.resize(image, image_size, method="bilinear",
                                antialias=True)
        image = tf.clip_by_value(image, 0.0, 1.0)
      return image * (hi - lo) + lo

    if labels:
      ds = ds.map(lambda image, label: (preprocess(image), label),
                  num_parallel_calls=tf.data.AUTOTUNE)
    else:
      ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(local, drop_remainder=True)
    ds = ds.batch(k, drop_remainder=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds = ds.with_options(options)
    return (x if labels else (x, None) for x in ds.as_numpy_iterator())


def prepare_fashion_mnist(
    data_dir: Optional[str] = None,
    source_dir: str = sources.FASHION_MNIST_DEBIAN_DIR,
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
  import_tf()  # hides GPUs from TF before TFDS runs any op
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.download import resource  # pylint: disable=g-import-not-at-top

  tfds.display_progress_bar(progress_bar)
  data_dir = data_dir or default_data_dir()
  builder = tfds.builder("fashion_mnist", data_dir=data_dir)
  if builder.is_prepared():
    return data_dir

  sources.check_fashion_mnist_dir(source_dir)
  expected = {"train-images": (60000, 28, 28), "train-labels": (60000,),
              "t10k-images": (10000, 28, 28), "t10k-labels": (10000,)}
  for fname in sources.FASHION_MNIST_FILES:
    want = expected[fname.rsplit("-", 2)[0]]
    got = sources.read_idx(os.path.join(source_dir, fname)).shape
    if got != want:
      raise ValueError(f"{source_dir}/{fname} has shape {got}, expected {want}.")
  dl_dir = os.path.join(data_dir, "downloads", "fashion_mnist")
  os.makedirs(dl_dir, exist_ok=True)
  for url, info in builder.url_infos.items():
    src = os.path.join(source_dir, info.filename)
    if not os.path.isfile(src):
      raise DatasetNotFoundError(
          f"TFDS wants {info.filename}, not found in {source_dir}. "
          + sources.FASHION_MNIST_INSTALL_HINT)
    dst = os.path.join(dl_dir, resource.get_dl_fname(url, info.checksum))
    shutil.copyfile(src, dst)
    with open(dst + ".INFO", "w") as f:
      json.dump({"urls": [url], "dataset_names": ["fashion_mnist"],
                 "original_fname": info.filename,
                 "url_info": info.asdict()}, f, sort_keys=True)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return data_dir
