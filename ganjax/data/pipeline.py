"""Input pipelines: real minibatches shaped for the GAN step, from any source kind.

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
``load_split`` gives a whole split as uint8 arrays instead (for data on the
device, ``ganjax.data.on_device``).

Sources, each read by one kind (``source_kind`` is the one place a kind is
added):

* a TFDS image data set by name (``"mnist"``, ``"fashion_mnist"``,
  ``"cifar10"``, ``"celeb_a"``, ...): ``tfds_source.TfdsSource``, read through
  tf.data (labels: its ``"label"`` ClassLabel feature, or else its only
  ClassLabel feature);
* ``"digits"``: sklearn's real 8x8 digits, labels 0..9
  (``arrays.DigitsSource``);
* ``"stacked_digits"`` / ``"stacked_mnist"``: three digits in the three
  channels, labels the 1,000 modes (``stacked.StackedSource``; MNIST from
  TFDS's default data dir);
* an in-memory numpy array ``[N, H, W, C]``, or a pair ``(images, labels int
  [N])`` (``arrays.NumpySource``);
* a folder of images or a StyleGAN dataset zip: ``"folder:PATH"``,
  ``"zip:PATH"``, a path (see ``ganjax.data.folder``), or an
  ``ImageFolder``; decoded once into a cache;
* the toy distributions ``"toy_ring8"``, ``"toy_grid25"``,
  ``"toy_gaussian1d"`` (``toy.ToySource``; labels of the mixtures: the index
  of the mode a point was drawn from, 0..7 on the ring, 0..24 on the grid, in
  the order of ``toy.ring_centers`` / ``toy.grid_centers``; the 1-D Gaussian
  has none).

``num_classes(source)`` says how many classes a source has and
``class_names(source)`` what they are called, without loading it.

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

Only the TFDS kind imports TensorFlow, inside its functions; the other kinds
need none.
"""

import collections
import functools
import itertools
from typing import (Any, Iterable, Iterator, Optional, Protocol, Sequence,
                    Tuple, Union, runtime_checkable)

import jax
import numpy as np

from ganjax import parallel
from ganjax.contract import IMAGE, LABEL
from ganjax.data import arrays
from ganjax.data import folder
from ganjax.data import stacked
from ganjax.data import tfds_source
from ganjax.data import toy
from ganjax.data.errors import (DataError, DatasetNotFoundError,
                                UnknownDatasetError)

__all__ = ["batches", "load_split", "data_shape", "num_classes",
           "class_names", "prefetch_to_device", "source_kind", "Source",
           "DataError", "DatasetNotFoundError", "UnknownDatasetError",
           "BUILTIN_SOURCES", "NAMED_SOURCES", "TOY_SOURCES",
           "TOY_NUM_CLASSES"]


# --------------------------------------------------------- source kinds ---

@runtime_checkable
class Source(Protocol):
  """What a source kind provides (``arrays.NumpySource`` is the smallest).

  ``data_shape(image_size)``, ``num_classes()`` and ``class_names()`` read
  no data; ``load(split, labels, image_size, center_crop)`` returns a whole
  split ``(images [N, H, W, C], labels int32 [N] or None, maxval)``, images
  with values in ``[0, maxval]``. Kinds that are not held in memory (TFDS,
  toys) also have ``stream(**options)``, the endless ``(images [k, local,
  ...], labels [k, local] or None)`` that ``batches`` lays out.
  """

  def data_shape(self, image_size=None) -> tuple: ...

  def num_classes(self) -> Optional[int]: ...

  def class_names(self) -> Optional[list]: ...

  def load(self, split: str, labels: bool, image_size=None,
           center_crop=False) -> tuple: ...


# Named sources held in memory: name -> a function returning the kind. A new
# named data set is one entry here (and its kind, e.g. in arrays.py).
NAMED_SOURCES = {"digits": arrays.DigitsSource,
                 **{name: functools.partial(stacked.StackedSource, name)
                    for name in stacked.BASES}}
# Toy distributions: name -> (sampler name in ganjax.data.toy, dimension).
TOY_SOURCES = {
    "toy_ring8": ("ring", 2),
    "toy_grid25": ("grid", 2),
    "toy_gaussian1d": ("gaussian_1d", 1),
}
# Toy sources with labels (the mode index): name -> number of modes.
TOY_NUM_CLASSES = {"toy_ring8": 8, "toy_grid25": 25}
BUILTIN_SOURCES = tuple(NAMED_SOURCES) + tuple(TOY_SOURCES)

SourceLike = Union[str, np.ndarray, Tuple[np.ndarray, np.ndarray], Source]


def source_kind(source: SourceLike, data_dir: Optional[str] = None,
                download: bool = False) -> Source:
  """The kind that reads ``source``: the one place a source kind is added.

  Args:
    source: a kind object (returned as it is), a numpy array or pair, a
      name of ``NAMED_SOURCES`` or ``TOY_SOURCES``, an image folder or zip
      (``folder.is_path``), else a TFDS name.
    data_dir, download: for TFDS sources, as in ``batches``.

  Returns:
    an object with the methods of ``Source``.
  """
  if isinstance(source, (np.ndarray, tuple)):
    return arrays.NumpySource(source)
  if isinstance(source, Source):
    return source
  if not isinstance(source, str):
    raise TypeError(f"source must be a dataset name, a path, a numpy array or "
                    f"a pair (images, labels), got {type(source).__name__}.")
  if source in NAMED_SOURCES:
    return NAMED_SOURCES[source]()
  if source in TOY_SOURCES:
    return toy.ToySource(source, *TOY_SOURCES[source],
                         num_classes=TOY_NUM_CLASSES.get(source))
  if folder.is_path(source):
    return folder.ImageFolder(source)
  return tfds_source.TfdsSource(source, data_dir, download, BUILTIN_SOURCES)


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


# ------------------------------------------------------------- public API ---

def batches(
    source: SourceLike,
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
      ``"toy_grid25"``, ``"toy_gaussian1d"``; an image folder or StyleGAN
      zip (``"folder:PATH"``, ``"zip:PATH"``, a path, or a
      ``folder.ImageFolder``); or a numpy array ``[N, H, W, C]`` (uint8
      0..255 or float in [0, 1]; ``split`` ignored), or a pair ``(images,
      labels)`` of such an array and int class indices ``[N]``.
    batch_size: GLOBAL minibatch size B (over all processes).
    k: minibatches per yielded array (discriminator updates per step).
    split: the split (TFDS split strings: ``"train"``, ``"test[:10%]"``, ...).
    seed: seeds every shuffle (or toy sample); same seed, same batches.
    value_range: ``(low, high)`` pixels are mapped to: ``(-1, 1)`` for a tanh
      generator, ``(0, 1)`` for sigmoid. Not applied to toy sources.
    num_devices: if set, yield ``[num_devices, k, B_local/num_devices, ...]``.
    image_size: optional ``(height, width)`` to resize to (bilinear,
      antialiased), after the optional centre crop. Images held in memory are
      requantised to uint8 once resized.
    center_crop: ``True`` crops the central square (celeb_a-like data), an
      int crops a central square of that size; before resizing. (An image
      folder fits its images to ``image_size`` by its own ``fit``.)
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
      ``download`` is False, or a folder does not exist; the message says
      how to get it.
    DataError: (a ValueError) an image folder that cannot be used.
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
  kind = source_kind(source, data_dir, download)
  labels = bool(labels)
  if labels and kind.num_classes() is None:
    raise arrays.no_labels_error(repr(kind))
  layout = dict(local=local, k=k, seed=seed, value_range=value_range,
                process_index=process_index, process_count=process_count)
  if isinstance(kind, toy.ToySource):
    if image_size is not None or center_crop:
      raise ValueError(f"{kind} holds points, not images: image_size and "
                       "center_crop do not apply.")
    stream = kind.stream(labels=labels, **layout)
  elif hasattr(kind, "stream"):
    stream = kind.stream(split=split, labels=labels, image_size=image_size,
                         center_crop=center_crop,
                         shuffle_buffer=shuffle_buffer, cache=cache, **layout)
  else:
    images, targets, maxval = kind.load(split, labels, image_size, center_crop)
    stream = arrays.stream(images, maxval, targets, **layout)
  return (_batch(x, y, num_devices) for x, y in stream)


def load_split(
    source: SourceLike,
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
    source: as in ``batches``; not the toy distributions (they are sampled,
      not stored).
    split, image_size, center_crop, data_dir: as in ``batches``.
    labels: also return the class labels (an error for unlabelled data).

  Returns:
    ``(images, labels, maxval)``: images ``[N, H, W, C]`` uint8 with values
    in ``[0, maxval]`` (float32 in [0, 1], ``maxval`` 1, for float arrays);
    cropped or resized images are requantised to uint8 0..255; labels int32
    ``[N]`` or None.
  """
  kind = source_kind(source, data_dir)
  if labels and kind.num_classes() is None:
    raise arrays.no_labels_error(repr(kind))
  images, targets, maxval = kind.load(split, bool(labels), image_size,
                                      center_crop)
  if labels:
    targets = arrays.check_labels(targets, images.shape[0])
  return images, targets, float(maxval)


def data_shape(source: SourceLike,
               image_size: Optional[Tuple[int, int]] = None,
               data_dir: Optional[str] = None) -> Tuple[int, ...]:
  """The shape of one example, without loading any data.

  Use it to build models before the pipeline starts (TFDS shapes come from
  the builder's info, which needs no prepared data; an image folder's from
  its cache, built first if needed).

  Args:
    source: as in ``batches``.
    image_size: the ``(height, width)`` passed to ``batches``, if any.
    data_dir: TFDS data dir, as in ``batches``.

  Returns:
    e.g. ``(28, 28, 1)`` for fashion_mnist, ``(8, 8, 1)`` for digits,
    ``(2,)`` for toy_ring8.
  """
  return source_kind(source, data_dir).data_shape(image_size)


def num_classes(source: SourceLike, data_dir: Optional[str] = None
                ) -> Optional[int]:
  """How many classes a source's labels have; None for an unlabelled source.

  Use it to size a conditional GAN (``num_classes=``) before the pipeline
  starts; it loads no data (TFDS: the builder's info; numpy pairs: the
  largest label + 1; folders: the label sub-folders).

  Args:
    source: as in ``batches``.
    data_dir: TFDS data dir, as in ``batches``.

  Returns:
    10 for digits, mnist, fashion_mnist, cifar10; 8 for toy_ring8, 25 for
    toy_grid25; None for toy_gaussian1d, a plain numpy array, an unlabelled
    folder, or a TFDS data set without a class label (celeb_a).
  """
  return source_kind(source, data_dir).num_classes()


def class_names(source: SourceLike, data_dir: Optional[str] = None
                ) -> Optional[list]:
  """The name of each class index, ``[num_classes]`` strings, or None.

  Folders: the label sub-folders in sorted order (class ``c`` is the
  ``c``-th); TFDS: its ClassLabel names; digits: ``"0"``..``"9"``; None for
  unlabelled sources, numpy pairs and toys (their labels are indices).
  """
  return source_kind(source, data_dir).class_names()


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
