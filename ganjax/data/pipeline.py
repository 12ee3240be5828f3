"""Input pipelines: real minibatches shaped for the GAN step.

One entry point, ``batches``, turns a data source into an infinite iterator of
numpy float32 arrays:

* ``[k, B, *data_shape]`` for ``gan.step`` (k real minibatches, one per
  discriminator update of Algorithm 1, each a fresh draw), or
* ``[devices, k, B / devices, *data_shape]`` with ``num_devices=`` for the
  data-parallel step; device ``d`` gets examples ``d*B/devices ..
  (d+1)*B/devices - 1`` of each minibatch, the layout of
  ``gj.parallel.shard`` on ``[k, B, ...]``.

With ``labels=True`` (class-conditional GANs) each yield is instead a dict
``{"image": float32 [k, B, *data_shape], "label": int32 [k, B]}`` (the same
device layout on both), the batch format of ``gan.step`` for labelled data;
``label[i, j]`` is the class of ``image[i, j]``. Without it the output is the
plain array above, the same values whether the source has labels or not.

Sources: any TFDS image data set by name (``"mnist"``, ``"fashion_mnist"``,
``"cifar10"``, ``"celeb_a"``, ...), read through tf.data (labels: its
``"label"`` ClassLabel feature, or else its only ClassLabel feature);
``"digits"`` (sklearn's real 8x8 digits, labels 0..9); an in-memory numpy
array ``[N, H, W, C]``, or a tuple ``(images [N, H, W, C], labels int [N])``;
the toy distributions ``"toy_ring8"``, ``"toy_grid25"``, ``"toy_gaussian1d"``
(labels of the mixtures: the index of the mode a point was drawn from, 0..7
on the ring, 0..24 on the grid, in the order of ``toy.ring_centers`` /
``toy.grid_centers``; the 1-D Gaussian has none). ``num_classes(source)``
says how many classes a source has, without loading it.

Pixels are scaled to ``value_range``, the range of the generator's output:
``(-1, 1)`` for tanh, ``(0, 1)`` for sigmoid. Toy samples are coordinates and
are never rescaled.

Multi-process convention: ``batch_size`` is the GLOBAL batch. Process ``p`` of
``P`` reads a disjoint ``1/P`` of the split (``tfds.even_splits`` for TFDS,
contiguous blocks of the example indices for in-memory data; independent
random streams for toys) and yields ``batch_size // P`` examples per minibatch;
``batch_size`` must be divisible by ``P``, and ``batch_size // P`` by
``num_devices`` (the process's local devices).

Determinism: the same arguments give the same batches. TFDS: seeded file and
example shuffles, ``tf.data.Options().deterministic = True``; in-memory: a
numpy permutation seeded by ``(seed, epoch)``; toys: ``fold_in`` of the seed.
Every epoch is reshuffled.

TensorFlow is imported only inside the TFDS functions (``import_tf``), never
at module import, and it is told to see no GPU before it runs any op, so it
never takes accelerator memory. The digits, numpy and toy paths need no
TensorFlow at all. Nothing downloads unless ``download=True``: data that is
not on the machine fails at once with ``DatasetNotFoundError`` saying how to
get it.
"""

import collections
import difflib
import functools
import itertools
from typing import Any, Iterable, Iterator, Optional, Sequence, Tuple, Union

import jax
import numpy as np

from ganjax import parallel
from ganjax.data import sources
from ganjax.data.sources import DatasetNotFoundError

__all__ = ["batches", "data_shape", "num_classes", "prefetch_to_device",
           "import_tf", "DatasetNotFoundError", "UnknownDatasetError",
           "BUILTIN_SOURCES", "TOY_SOURCES", "TOY_NUM_CLASSES", "IMAGE",
           "LABEL"]

Source = Union[str, np.ndarray, Tuple[np.ndarray, np.ndarray]]

# Keys of a labelled batch (the GAN's batch format).
IMAGE, LABEL = "image", "label"

# name -> (sampler name in ganjax.data.toy, dimension)
TOY_SOURCES = {
    "toy_ring8": ("ring", 2),
    "toy_grid25": ("grid", 2),
    "toy_gaussian1d": ("gaussian_1d", 1),
}
BUILTIN_SOURCES = ("digits",) + tuple(TOY_SOURCES)
# Toy sources with labels (the mode index): name -> number of modes.
TOY_NUM_CLASSES = {"toy_ring8": 8, "toy_grid25": 25}
DIGITS_NUM_CLASSES = 10
DIGITS_MAXVAL = 16.0  # sklearn digits: pixel values 0..16
_COMMON_TFDS = ("mnist", "fashion_mnist", "cifar10", "celeb_a", "svhn_cropped",
                "emnist", "kmnist")

# Decoded TFDS splits up to this size (uint8 bytes) are cached in memory and
# shuffled in full; bigger ones are shuffled as encoded bytes in a buffer.
_CACHE_LIMIT_BYTES = 1 << 30
_LARGE_SHUFFLE_BUFFER = 10_000


class UnknownDatasetError(ValueError):
  """The name is neither a built-in source nor a TFDS data set."""


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


# ------------------------------------------------------------- helpers ---

def _process_layout(batch_size, num_devices, process_index, process_count):
  """Checks the batch arithmetic; returns (local_batch, index, count)."""
  if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
  if process_count is None:
    process_count = jax.process_count()
  if process_index is None:
    process_index = jax.process_index()
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in "
                     f"[0, process_count={process_count}).")
  if batch_size % process_count:
    raise ValueError(
        f"batch_size={batch_size} is the global batch and must be divisible "
        f"by process_count={process_count} (each process yields "
        "batch_size // process_count examples per minibatch).")
  local = batch_size // process_count
  if num_devices is not None:
    if not isinstance(num_devices, (int, np.integer)) or num_devices <= 0:
      raise ValueError(f"num_devices must be a positive int, got {num_devices!r}.")
    parallel.check_divisible(batch_size, num_devices * process_count)
  return local, int(process_index), int(process_count)


def _check_value_range(value_range):
  lo, hi = (float(v) for v in value_range)
  if not lo < hi:
    raise ValueError(f"value_range must be (low, high) with low < high, "
                     f"got {value_range!r}.")
  return lo, hi


def _batch(images: np.ndarray, labels: Optional[np.ndarray],
           num_devices: Optional[int]):
  """The yielded batch: the image array, or ``{"image", "label"}`` with labels."""
  if labels is None:
    return parallel.device_layout(images, num_devices)
  return parallel.device_layout(
      {IMAGE: images, LABEL: labels.astype(np.int32)}, num_devices)


def _check_labels(labels, num_images: int) -> np.ndarray:
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


def _split_source(source):
  """``(images, labels or None)`` of an in-memory source (array or tuple)."""
  if isinstance(source, tuple):
    if len(source) != 2:
      raise ValueError("An in-memory source with labels is a pair "
                       f"(images [N, H, W, C], labels [N]); got a tuple of "
                       f"{len(source)}.")
    return np.asarray(source[0]), source[1]
  return source, None


def _no_labels_error(source_name: str) -> ValueError:
  return ValueError(
      f"{source_name} has no class labels, so labels=True (a conditional "
      "GAN) cannot be fed from it. Use a labelled source (digits, mnist, "
      "fashion_mnist, cifar10, toy_ring8, toy_grid25, or a numpy pair "
      "(images, labels)), or train unconditionally (num_classes=0).")


def _crop_size(center_crop, height, width) -> Optional[int]:
  if center_crop is False or center_crop is None:
    return None
  if center_crop is True:
    return min(height, width)
  size = int(center_crop)
  if not 0 < size <= min(height, width):
    raise ValueError(f"center_crop={center_crop} does not fit images of "
                     f"{height}x{width}.")
  return size


def _unknown_name_error(name: str, tfds_names: Sequence[str]) -> UnknownDatasetError:
  close = difflib.get_close_matches(name, list(tfds_names) + list(BUILTIN_SOURCES),
                                    n=3, cutoff=0.6)
  hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
  return UnknownDatasetError(
      f"Unknown dataset {name!r}.{hint} Known sources: built-in "
      f"{', '.join(BUILTIN_SOURCES)}; a numpy array [N, H, W, C]; or any TFDS "
      f"image dataset by name, e.g. {', '.join(_COMMON_TFDS)} "
      "(`tfds.list_builders()` lists all).")


# --------------------------------------------------------- in-memory path ---

def _as_uint_images(array: np.ndarray) -> Tuple[np.ndarray, float]:
  """Validates a user array; returns (images [N, H, W, C], max pixel value)."""
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


def _resize_in_memory(images, maxval, image_size, center_crop):
  """Crops / resizes the whole array once (on the CPU); returns float [0, 1]."""
  crop = _crop_size(center_crop, images.shape[1], images.shape[2])
  if crop is None and image_size is None:
    return images, maxval
  if crop is not None:
    top = (images.shape[1] - crop) // 2
    left = (images.shape[2] - crop) // 2
    images = images[:, top:top + crop, left:left + crop]
  images = images.astype(np.float32) / maxval
  if image_size is not None:
    height, width = image_size
    with jax.default_device(jax.devices("cpu")[0]):
      images = np.asarray(jax.image.resize(
          images, (images.shape[0], height, width, images.shape[3]),
          method="bilinear", antialias=True))
    images = np.clip(images, 0.0, 1.0)
  return images.astype(np.float32), 1.0


def _in_memory_batches(images, maxval, labels, *, local, k, seed, value_range,
                       num_devices, process_index, process_count):
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
    stream = index_stream()
    n = k * local
    while True:
      idx = np.fromiter(itertools.islice(stream, n), dtype=np.int64, count=n)
      x = images[idx].astype(np.float32) * scale + offset
      x = x.reshape((k, local) + images.shape[1:])
      y = None if labels is None else labels[idx].reshape((k, local))
      yield _batch(x, y, num_devices)

  return gen()


# --------------------------------------------------------------- toy path ---

@functools.lru_cache(maxsize=None)
def _toy_draw(sampler_name: str, n: int, labels: bool = False):
  """Jitted ``(key, step) -> [n, d]`` samples (and modes ``[n]`` with
  ``labels``), cached so it compiles once."""
  from ganjax.data import toy  # pylint: disable=g-import-not-at-top
  sampler = getattr(toy, sampler_name)
  if labels:
    return jax.jit(lambda key, step: sampler(jax.random.fold_in(key, step), n,
                                             return_modes=True))
  return jax.jit(lambda key, step: sampler(jax.random.fold_in(key, step), n))


def _toy_batches(name, *, local, k, seed, num_devices, process_index,
                 labels=False):
  sampler_name, dim = TOY_SOURCES[name]
  if labels and name not in TOY_NUM_CLASSES:
    raise _no_labels_error(name)
  draw = _toy_draw(sampler_name, k * local, labels)
  cpu = jax.devices("cpu")[0]  # host-side samples, like the other sources
  with jax.default_device(cpu):
    key = jax.random.fold_in(jax.random.key(seed), process_index)

  def gen():
    for step in itertools.count():
      with jax.default_device(cpu):
        out = draw(key, step)
      x, y = out if labels else (out, None)
      x = np.asarray(x, dtype=np.float32).reshape(k, local, dim)
      y = None if y is None else np.asarray(y).reshape(k, local)
      yield _batch(x, y, num_devices)

  return gen()


# --------------------------------------------------------------- TFDS path ---

def _tfds_builder(name: str, data_dir: Optional[str]):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise _unknown_name_error(name, tfds.list_builders()) from None


def _label_key(builder) -> Optional[str]:
  """The class-label feature: ``"label"`` if it is a ClassLabel, else the
  only ClassLabel feature; None when there is none (or several)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = builder.info.features
  is_label = lambda f: isinstance(f, tfds.features.ClassLabel)
  if "label" in features and is_label(features["label"]):
    return "label"
  keys = [key for key, feature in features.items() if is_label(feature)]
  return keys[0] if len(keys) == 1 else None


def _image_key(builder) -> str:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = builder.info.features
  if "image" in features and isinstance(features["image"], tfds.features.Image):
    return "image"
  for key, feature in features.items():
    if isinstance(feature, tfds.features.Image):
      return key
  raise ValueError(f"TFDS dataset {builder.name!r} has no image feature "
                   f"(features: {list(features)}).")


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


def _tfds_batches(name, *, local, k, split, seed, value_range, num_devices,
                  image_size, center_crop, data_dir, download, process_index,
                  process_count, shuffle_buffer, cache, labels=False):
  tf = import_tf()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = _tfds_builder(name, data_dir)
  key = _image_key(builder)
  label_key = _label_key(builder) if labels else None
  if labels and label_key is None:
    raise _no_labels_error(f"TFDS dataset {name!r}")
  image_feature = builder.info.features[key]
  shape = tuple(image_feature.shape)
  if download:
    builder.download_and_prepare()

  num_examples = None
  try:
    num_examples = int(builder.info.splits[split].num_examples) or None
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
  try:
    ds = builder.as_dataset(split=read_split, shuffle_files=True,
                            read_config=read_config, decoders=decoders)
  except AssertionError as e:
    if "could not find data" in str(e):
      raise _not_prepared_error(name, str(builder.data_dir_root),
                                data_dir) from None
    raise

  if labels:
    ds = ds.map(lambda ex: (ex[key], tf.cast(ex[label_key], tf.int32)))
  else:
    ds = ds.map(lambda ex: ex[key])
  if cache:
    ds = ds.cache()
  if shuffle_buffer is None:
    shuffle_buffer = num_examples if cache and num_examples else _LARGE_SHUFFLE_BUFFER
  ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat()

  lo, hi = value_range
  np_dtype = np.dtype(image_feature.np_dtype)
  maxval = float(np.iinfo(np_dtype).max) if np_dtype.kind in "ui" else 1.0
  height, width = shape[0], shape[1]
  if image_size is None and None in shape[:2]:
    raise ValueError(f"{name!r} has images of varying size {shape}; pass "
                     "image_size=(height, width).")
  crop = None
  if center_crop:
    if height is None or width is None:
      crop = center_crop  # resolved per image below
    else:
      crop = _crop_size(center_crop, height, width)

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

  def gen():
    for x in ds.as_numpy_iterator():
      x, y = x if labels else (x, None)
      yield _batch(x, y, num_devices)

  return gen()


# ------------------------------------------------------------- public API ---

def batches(
    source: Source,
    batch_size: int = 64,
    k: int = 1,
    split: str = "train",
    seed: int = 0,
    value_range: Tuple[float, float] = (-1.0, 1.0),
    num_devices: Optional[int] = None,
    image_size: Optional[Tuple[int, int]] = None,
    center_crop: Union[bool, int] = False,
    data_dir: Optional[str] = None,
    download: bool = False,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
    shuffle_buffer: Optional[int] = None,
    cache: Optional[bool] = None,
    labels: bool = False,
) -> Iterator[Union[np.ndarray, dict]]:
  """Infinite iterator of real minibatches for the GAN step.

  Use it to feed ``gan.step`` (``[k, B, ...]``) or the data-parallel step
  (``num_devices=`` gives ``[devices, k, B/devices, ...]``). Wrap it in
  ``prefetch_to_device`` to overlap host-to-device copies with the step.

  References: Goodfellow et al., 2014, "Generative Adversarial Nets"
  (Algorithm 1: k discriminator updates, each on a fresh minibatch of m real
  examples), https://arxiv.org/abs/1406.2661.

  Args:
    source: a TFDS image data set name (``"mnist"``, ``"fashion_mnist"``,
      ``"cifar10"``, ``"celeb_a"``, ...); ``"digits"`` (sklearn's real 8x8
      digits, ``[8, 8, 1]``; splits train/test/all); ``"toy_ring8"``,
      ``"toy_grid25"``, ``"toy_gaussian1d"``; or a numpy array
      ``[N, H, W, C]`` (uint8 0..255 or float in [0, 1]; ``split`` ignored),
      or a pair ``(images, labels)`` of such an array and int class indices
      ``[N]``.
    batch_size: GLOBAL minibatch size B (over all processes).
    k: minibatches per yielded array (discriminator updates per step).
    split: TFDS split string (``"train"``, ``"test[:10%]"``, ...).
    seed: seeds every shuffle (or toy sample); same seed, same batches.
    value_range: ``(low, high)`` pixels are mapped to: ``(-1, 1)`` for a tanh
      generator, ``(0, 1)`` for sigmoid. Not applied to toy sources.
    num_devices: if set, yield ``[num_devices, k, B_local/num_devices, ...]``.
    image_size: optional ``(height, width)`` to resize to (bilinear,
      antialiased), after the optional centre crop.
    center_crop: ``True`` crops the central square (celeb_a-like data), an
      int crops a central square of that size; before resizing.
    data_dir: TFDS data dir (default ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).
    download: let TFDS download and prepare the data (needs a network).
      Default False: missing data raises ``DatasetNotFoundError`` at once.
    process_index: this process (default ``jax.process_index()``).
    process_count: processes (default ``jax.process_count()``); each reads a
      disjoint shard and yields ``batch_size // process_count`` examples per
      minibatch.
    shuffle_buffer: TFDS shuffle buffer; default the whole (per-process)
      split when it is cached, else 10000.
    cache: TFDS: cache decoded images in memory; default when the split's
      decoded size is at most 1 GiB.
    labels: yield ``{"image": ..., "label": int32 ...}`` dicts, each label
      the class of its image (for conditional GANs); the source must have
      labels (``num_classes(source)`` is not None). The images are the
      ones yielded without it.

  Returns:
    an infinite iterator of float32 numpy arrays ``[k, B_local, *shape]`` or
    ``[num_devices, k, B_local/num_devices, *shape]``, with ``B_local =
    batch_size // process_count``; with ``labels``, dicts of such an
    ``"image"`` array and an int32 ``"label"`` array ``[k, B_local]`` or
    ``[num_devices, k, B_local/num_devices]``.

  Raises:
    UnknownDatasetError: (a ValueError) for an unknown name.
    DatasetNotFoundError: (a ValueError) when TFDS data is not prepared and
      ``download`` is False; the message says how to get it.
    ValueError: for batch sizes not divisible by processes or devices, or
      ``labels=True`` for a source without labels.
  """
  if not isinstance(k, (int, np.integer)) or k <= 0:
    raise ValueError(f"k must be a positive int, got {k!r}.")
  local, process_index, process_count = _process_layout(
      batch_size, num_devices, process_index, process_count)
  value_range = _check_value_range(value_range)
  if image_size is not None:
    image_size = tuple(int(s) for s in image_size)
    if len(image_size) != 2 or min(image_size) <= 0:
      raise ValueError(f"image_size must be (height, width), got {image_size}.")
  common = dict(local=local, k=k, seed=seed, num_devices=num_devices,
                process_index=process_index)

  labels = bool(labels)
  if isinstance(source, (np.ndarray, tuple)) or (isinstance(source, str)
                                                 and source == "digits"):
    if isinstance(source, str):
      images, targets = sources.load_digits(split)
      maxval = DIGITS_MAXVAL
    else:
      images, targets = _split_source(source)
      images, maxval = _as_uint_images(images)
      if targets is not None:
        targets = _check_labels(targets, images.shape[0])
      elif labels:
        raise _no_labels_error("A numpy array without labels")
    images, maxval = _resize_in_memory(images, maxval, image_size, center_crop)
    return _in_memory_batches(images, maxval, targets if labels else None,
                              value_range=value_range,
                              process_count=process_count, **common)
  if not isinstance(source, str):
    raise TypeError(f"source must be a dataset name, a numpy array or a pair "
                    f"(images, labels), got {type(source).__name__}.")
  if source in TOY_SOURCES:
    if image_size is not None or center_crop:
      raise ValueError(f"{source} holds points, not images: image_size and "
                       "center_crop do not apply.")
    return _toy_batches(source, labels=labels, **common)
  return _tfds_batches(
      source, split=split, value_range=value_range, image_size=image_size,
      center_crop=center_crop, data_dir=data_dir, download=download,
      process_count=process_count, shuffle_buffer=shuffle_buffer, cache=cache,
      labels=labels, **common)


def load_split(
    source: Source,
    split: str = "train",
    image_size: Optional[Tuple[int, int]] = None,
    center_crop: Union[bool, int] = False,
    data_dir: Optional[str] = None,
    labels: bool = False,
) -> Tuple[np.ndarray, Optional[np.ndarray], float]:
  """A whole split in host memory, for index-based (resumable) sampling.

  Use it to put a data set on the device (``ganjax.data.on_device``) or to
  draw chunks of it on the host: every data set of the paper and the configs
  fits (MNIST-like 47 MB, CIFAR-10 150 MB as uint8).

  Args:
    source: a TFDS image data set name, ``"digits"``, or a numpy array
      ``[N, H, W, C]`` (or a pair ``(images, labels)``) as in ``batches``;
      not the toy distributions (they are sampled, not stored).
    split, image_size, center_crop, data_dir: as in ``batches``.
    labels: also return the class labels (an error for unlabelled data).

  Returns:
    ``(images, labels, maxval)``: images ``[N, H, W, C]`` uint8 with values
    in ``[0, maxval]`` (float32 in [0, 1], ``maxval`` 1, for float arrays);
    cropped or resized images are requantised to uint8 0..255; labels int32
    ``[N]`` or None.
  """
  label_array = None
  if isinstance(source, tuple):
    source, label_array = _split_source(source)
  if isinstance(source, np.ndarray):
    images, maxval = _as_uint_images(source)
    if labels and label_array is None:
      raise _no_labels_error("a plain numpy array")
  elif source == "digits":
    images, label_array = sources.load_digits(split)
    maxval = DIGITS_MAXVAL
  elif isinstance(source, str) and source in TOY_SOURCES:
    raise ValueError(f"{source} is sampled, not stored: it has no split to "
                     "load.")
  elif isinstance(source, str):
    images, label_array, maxval = _tfds_arrays(source, split, data_dir, labels)
  else:
    raise TypeError(f"source must be a dataset name or a numpy array, got "
                    f"{type(source).__name__}.")
  if labels:
    label_array = _check_labels(label_array, images.shape[0])
  resized, resized_max = _resize_in_memory(images, maxval, image_size,
                                           center_crop)
  if resized is not images:  # float [0, 1] -> uint8 again
    images = np.round(resized * 255.0).astype(np.uint8)
    maxval = 255.0
  return images, (label_array if labels else None), float(maxval)


def _tfds_arrays(name: str, split: str, data_dir: Optional[str], labels: bool):
  """A prepared TFDS split as numpy: ``(images, labels or None, maxval)``."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import_tf()
  builder = _tfds_builder(name, data_dir)
  key = _image_key(builder)
  label_key = _label_key(builder) if labels else None
  if labels and label_key is None:
    raise _no_labels_error(f"TFDS dataset {name!r}")
  try:
    ds = builder.as_dataset(split=split, batch_size=-1)
  except AssertionError as e:
    if "could not find data" in str(e):
      raise _not_prepared_error(name, str(builder.data_dir_root),
                                data_dir) from None
    raise
  arrays = tfds.as_numpy(ds)
  images = np.asarray(arrays[key])
  np_dtype = images.dtype
  maxval = float(np.iinfo(np_dtype).max) if np_dtype.kind in "ui" else 1.0
  label_array = (np.asarray(arrays[label_key]).astype(np.int32)
                 if label_key else None)
  return images, label_array, maxval


def data_shape(source: Source,
               image_size: Optional[Tuple[int, int]] = None,
               data_dir: Optional[str] = None) -> Tuple[int, ...]:
  """The shape of one example, without loading any data.

  Use it to build models before the pipeline starts (TFDS shapes come from
  the builder's info, which needs no prepared data).

  Args:
    source: as in ``batches``.
    image_size: the ``(height, width)`` passed to ``batches``, if any.
    data_dir: TFDS data dir, as in ``batches``.

  Returns:
    e.g. ``(28, 28, 1)`` for fashion_mnist, ``(8, 8, 1)`` for digits,
    ``(2,)`` for toy_ring8.
  """
  if isinstance(source, tuple):
    source = _split_source(source)[0]
  if isinstance(source, np.ndarray):
    shape = tuple(_as_uint_images(source[:1])[0].shape[1:])
  elif source == "digits":
    shape = (8, 8, 1)
  elif source in TOY_SOURCES:
    if image_size is not None:
      raise ValueError(f"{source} holds points: image_size does not apply.")
    return (TOY_SOURCES[source][1],)
  elif isinstance(source, str):
    builder = _tfds_builder(source, data_dir)
    shape = tuple(builder.info.features[_image_key(builder)].shape)
  else:
    raise TypeError(f"source must be a dataset name or a numpy array, got "
                    f"{type(source).__name__}.")
  if image_size is not None:
    shape = (int(image_size[0]), int(image_size[1])) + shape[2:]
  if any(d is None for d in shape):
    raise ValueError(f"{source!r} has images of varying size {shape}; pass "
                     "image_size=(height, width).")
  return tuple(int(d) for d in shape)


def num_classes(source: Source, data_dir: Optional[str] = None
                ) -> Optional[int]:
  """How many classes a source's labels have; None for an unlabelled source.

  Use it to size a conditional GAN (``num_classes=``) before the pipeline
  starts; it loads no data (TFDS: the builder's info; numpy pairs: the
  largest label + 1).

  Args:
    source: as in ``batches``.
    data_dir: TFDS data dir, as in ``batches``.

  Returns:
    10 for digits, mnist, fashion_mnist, cifar10; 8 for toy_ring8, 25 for
    toy_grid25; None for toy_gaussian1d, a plain numpy array, or a TFDS
    data set without a class label (celeb_a).
  """
  if isinstance(source, tuple):
    images, labels = _split_source(source)
    labels = _check_labels(labels, np.shape(images)[0])
    return int(labels.max()) + 1 if labels.size else None
  if isinstance(source, np.ndarray):
    return None
  if not isinstance(source, str):
    raise TypeError(f"source must be a dataset name, a numpy array or a pair "
                    f"(images, labels), got {type(source).__name__}.")
  if source == "digits":
    return DIGITS_NUM_CLASSES
  if source in TOY_SOURCES:
    return TOY_NUM_CLASSES.get(source)
  builder = _tfds_builder(source, data_dir)
  key = _label_key(builder)
  return None if key is None else int(builder.info.features[key].num_classes)


def prefetch_to_device(
    iterator: Iterable[Any],
    size: int = 2,
    devices: Union[None, Sequence[jax.Device], jax.sharding.Sharding] = None,
) -> Iterator[Any]:
  """Puts the next ``size`` batches on device ahead of time.

  Use it around ``batches`` so that host-to-device copies (asynchronous in
  JAX) overlap the running step; like ``flax.jax_utils.prefetch_to_device``.

  Args:
    iterator: yields numpy arrays (or pytrees of them).
    size: how many batches to keep in flight.
    devices: where to put them. ``None``: the default device (whole array,
      for ``gan.step``). A sequence of devices: arrays must have a leading
      axis of that length (``num_devices=`` layout); slice ``i`` goes to
      device ``i`` (a ``NamedSharding`` over axis ``"batch"``), ready for
      ``jax.pmap`` or ``shard_map``. A ``jax.sharding.Sharding``: used as
      is; if it spans other processes the arrays are this process's part
      (``jax.make_array_from_process_local_data``).

  Returns:
    an iterator over the same batches as ``jax.Array``s.
  """
  if size < 1:
    raise ValueError(f"size must be >= 1, got {size}.")
  if devices is None:
    put = jax.device_put
  elif isinstance(devices, jax.sharding.Sharding):
    sharding = devices
    if sharding.is_fully_addressable:
      put = lambda x: jax.device_put(x, sharding)
    else:
      put = lambda x: jax.make_array_from_process_local_data(sharding, x)
  else:
    devs = list(devices)
    sharding = parallel.LocalDevices(tuple(devs)).sharding

    def put(x):
      if np.shape(x)[:1] != (len(devs),):
        raise ValueError(f"prefetch_to_device over {len(devs)} devices needs a "
                         f"leading axis of {len(devs)}, got shape {np.shape(x)}"
                         "; use batches(..., num_devices=len(devices)).")
      return jax.device_put(x, sharding)

  return _prefetch(iter(iterator), size, put)


def _prefetch(iterator, size, put):
  queue = collections.deque()

  def enqueue(n):
    for data in itertools.islice(iterator, n):
      queue.append(jax.tree.map(put, data))

  enqueue(size)
  while queue:
    yield queue.popleft()
    enqueue(1)
