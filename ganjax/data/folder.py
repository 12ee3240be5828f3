"""A user's own images as a data source: a folder of image files, or a StyleGAN dataset zip.

Give it as ``"folder:PATH"`` or ``"zip:PATH"``, or as a bare path: a value
is a path when it starts with ``/``, ``./``, ``../`` or ``~``, ends with
``.zip``, or names an existing directory (TFDS names such as
``celeb_a_hq/128`` are never taken for paths otherwise; ``folder:`` forces
it). Layouts of a directory:

* ``PATH/split/label/*.png`` (and ``.jpg``, ``.jpeg``, ``.webp``, ``.bmp``):
  a ``train`` sub-folder makes every sub-folder a split; ``train`` is the
  one training reads, ``test`` (optional) the held-out one;
* ``PATH/label/*``: one split, ``train``;
* ``PATH/*``: one split of unlabelled images (also ``PATH/split/*``);
* ``PATH/dataset.json`` beside images at any depth: a StyleGAN dataset folder
  (as ``dataset_tool.py --dest=DIR`` writes), read like its zip.

Labels: the label folders' names in sorted order are classes 0, 1, ...
(the union over the splits; ``class_names`` gives the mapping). A folder
nested deeper than ``label/`` is an error that names it. Names starting with
``.`` are ignored; other files that are not images are skipped and counted.

A StyleGAN2-ADA / StyleGAN3 / EDM2 zip (``dataset_tool.py --dest=x.zip``):
images at any path in the archive, in sorted order, labels from its
``dataset.json`` (``{"labels": [[path, class], ...]}``, or ``null``:
unlabelled); a zip without ``dataset.json`` is read as unlabelled, as
StyleGAN reads it, and says so. One split, ``train``.

``ImageFolder`` decodes a split once into the cache
(``ganjax.data.image_cache``: uint8 at the training resolution) and reads it
from there afterwards.
"""

import contextlib
import dataclasses
import io
import json
import os
import re
import zipfile
from typing import Optional, Tuple

import numpy as np

from ganjax.data import decode
from ganjax.data import image_cache
from ganjax.data.errors import DataError, DatasetNotFoundError

PREFIXES = ("folder:", "zip:")
CHANNELS = (0, 1, 3)
STYLEGAN_JSON = "dataset.json"


def is_path(spec: str) -> bool:
  """Whether a ``dataset`` string names an image folder or zip (see above)."""
  return (spec.startswith(PREFIXES + ("/", "./", "../", "~"))
          or spec.lower().endswith(".zip") or os.path.isdir(spec))


def _is_image(name: str) -> bool:
  return name.lower().endswith(decode.IMAGE_EXTENSIONS)


def _visible(name: str) -> bool:
  return not os.path.basename(name.rstrip("/")).startswith(".")


@dataclasses.dataclass(frozen=True)
class Listing:
  """What a folder or zip holds, before anything is decoded.

  Attributes:
    splits: split name -> ``((member, label), ...)``: members are paths
      relative to the folder (``/``-separated) or names in the zip, sorted;
      labels class indices, or -1 when unlabelled.
    classes: the class names (class ``c`` is ``classes[c]``), or None.
    stamp: ``((member, size, mtime_ns or CRC), ...)`` of every image file:
      what the cache key hashes.
    ignored: the files skipped for not being images.
    notes: facts to tell the user (a zip without ``dataset.json``, ...).
  """
  splits: dict
  classes: Optional[tuple]
  stamp: tuple
  ignored: tuple = ()
  notes: tuple = ()


def _stylegan_labels(text: bytes, where: str, members: list) -> tuple:
  """``(labels per member, classes)`` from a ``dataset.json``."""
  try:
    labels = json.loads(text)["labels"]
  except (ValueError, KeyError, TypeError) as e:
    raise DataError(f"{where} is not a StyleGAN dataset.json "
                    f'({{"labels": [[path, class], ...]}} or {{"labels": '
                    f"null}}): {e}. Fix or remove it.") from None
  if labels is None:
    return [-1] * len(members), None
  try:
    table = {str(path): label for path, label in labels}
  except (TypeError, ValueError):
    raise DataError(f"{where}: 'labels' must be a list of [path, class] "
                    "pairs.") from None
  missing = [m for m in members if m not in table]
  if missing:
    raise DataError(f"{where} has no label for {len(missing)} of the "
                    f"{len(members)} images (e.g. {missing[0]!r}). List every "
                    'image, or write {"labels": null} to train unlabelled.')
  values = [table[m] for m in members]
  if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
             for v in values):
    bad = next(v for v in values if not (isinstance(v, int) and v >= 0))
    raise DataError(f"{where}: labels must be class indices 0, 1, ...; found "
                    f"{bad!r} (vector labels are not read). Write integer "
                    'classes, or {"labels": null} to train unlabelled.')
  classes = tuple(str(c) for c in range(max(values) + 1)) if values else None
  return values, classes


def _list_zip(path: str) -> Listing:
  try:
    with zipfile.ZipFile(path) as archive:
      infos = [i for i in archive.infolist()
               if not i.is_dir() and _visible(i.filename)]
      members = sorted(i.filename for i in infos if _is_image(i.filename))
      names = {i.filename for i in infos}
      text = (archive.read(STYLEGAN_JSON) if STYLEGAN_JSON in names
              else None)
  except (zipfile.BadZipFile, OSError) as e:
    raise DataError(f"{path} is not a readable zip file ({e}).") from None
  notes = ()
  if text is None:
    labels, classes = [-1] * len(members), None
    notes = (f"{os.path.basename(path)} has no {STYLEGAN_JSON}: its images "
             "are read unlabelled, as StyleGAN reads such a zip.",)
  else:
    labels, classes = _stylegan_labels(text, f"{path}:{STYLEGAN_JSON}",
                                       members)
  stamp = tuple(sorted((i.filename, i.file_size, i.CRC) for i in infos
                       if _is_image(i.filename)))
  ignored = tuple(sorted(n for n in names
                         if not _is_image(n) and n != STYLEGAN_JSON))
  return Listing({"train": tuple(zip(members, labels))}, classes, stamp,
                 ignored, notes)


def _scan(root: str, exclude: str):
  """``(image files, other files, sub-folders)`` directly in ``root``."""
  images, others, folders = [], [], []
  with os.scandir(root) as entries:
    for entry in entries:
      if not _visible(entry.name) or os.path.abspath(entry.path) == exclude:
        continue
      if entry.is_dir():
        folders.append(entry.name)
      elif _is_image(entry.name):
        images.append(entry.name)
      else:
        others.append(entry.name)
  return sorted(images), sorted(others), sorted(folders)


def _list_split(root: str, prefix: str, exclude: str):
  """One split: ``({label name or None: [member, ...]}, ignored files)``."""
  images, others, folders = _scan(root, exclude)
  ignored = [prefix + name for name in others]
  if not folders:
    return {None: [prefix + name for name in images]}, ignored
  if images:
    raise DataError(
        f"{root} holds both images ({images[0]}, ...) and sub-folders "
        f"({folders[0]}/, ...): put every image in a label folder, or every "
        "image directly in the folder (unlabelled).")
  labelled = {}
  for label in folders:
    files, other_files, deeper = _scan(os.path.join(root, label), exclude)
    if deeper:
      raise DataError(
          f"{os.path.join(root, label, deeper[0])}/ is nested deeper than a "
          "label folder. Layouts read: PATH/label/IMAGE, PATH/split/label/"
          "IMAGE or PATH/IMAGE (labels are the folders right above the "
          "images); move its images up, or give the folder that holds the "
          "label folders.")
    ignored += [f"{prefix}{label}/{name}" for name in other_files]
    if files:
      labelled[label] = [f"{prefix}{label}/{name}" for name in files]
  return labelled, ignored


def _stat_stamp(root: str, members) -> tuple:
  stamp = []
  for member in members:
    info = os.stat(os.path.join(root, member))
    stamp.append((member, info.st_size, info.st_mtime_ns))
  return tuple(sorted(stamp))


def _list_stylegan_folder(root: str, exclude: str) -> Listing:
  members, ignored = [], []
  for folder, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if _visible(d)
                     and os.path.abspath(os.path.join(folder, d)) != exclude)
    rel = os.path.relpath(folder, root).replace(os.sep, "/")
    for name in files:
      member = name if rel == "." else f"{rel}/{name}"
      if not _visible(name) or member == STYLEGAN_JSON:
        continue
      (members if _is_image(name) else ignored).append(member)
  members.sort()
  with open(os.path.join(root, STYLEGAN_JSON), "rb") as f:
    labels, classes = _stylegan_labels(
        f.read(), os.path.join(root, STYLEGAN_JSON), members)
  return Listing({"train": tuple(zip(members, labels))}, classes,
                 _stat_stamp(root, members), tuple(sorted(ignored)))


def _list_folder(root: str, exclude: str) -> Listing:
  if os.path.isfile(os.path.join(root, STYLEGAN_JSON)):
    return _list_stylegan_folder(root, exclude)
  images, others, folders = _scan(root, exclude)
  if "train" in folders:  # PATH/split/...
    if images:
      raise DataError(
          f"{root} holds split folders ({', '.join(folders)}) and images "
          f"({images[0]}, ...) beside them: move the images into a split.")
    parts = {split: _list_split(os.path.join(root, split), split + "/",
                                exclude) for split in folders}
    ignored = list(others)
  else:
    parts = {"train": _list_split(root, "", exclude)}
    ignored = []
  for _, skipped in parts.values():
    ignored += skipped
  kinds = {None in groups for groups, _ in parts.values()
           if any(groups.values())}
  if len(kinds) > 1:
    raise DataError(
        f"{root}: some splits hold label folders and others images directly; "
        "give every split the same layout.")
  labelled = kinds == {False}
  classes = (tuple(sorted({label for groups, _ in parts.values()
                           for label in groups})) if labelled else None)
  splits = {}
  for split, (groups, _) in parts.items():
    members = [(m, classes.index(label) if labelled else -1)
               for label, files in groups.items() for m in files]
    splits[split] = tuple(sorted(members))
  every = [m for members in splits.values() for m, _ in members]
  return Listing(splits, classes, _stat_stamp(root, every),
                 tuple(sorted(ignored)))


@dataclasses.dataclass(frozen=True)
class ImageFolder:
  """A folder of images or a StyleGAN zip, decoded once into the cache.

  Args:
    path: the directory or ``.zip`` (``~`` expanded; a ``folder:`` or
      ``zip:`` prefix is dropped).
    image_size: ``(height, width)`` to train at; None: the images' own size
      (then every image must have the same one).
    fit: how an image of another aspect ratio reaches ``image_size``:
      ``"center_crop"`` (the central box of the target's ratio) or ``"pad"``
      (black borders around the whole image).
    channels: 1 (grayscale), 3 (RGB) or 0: inferred, 1 when every file is
      grayscale and 3 otherwise (grayscale files are then repeated to RGB).
    cache_dir: the cache root (default ``$GANJAX_CACHE_DIR`` or
      ``~/.cache/ganjax``); the decoded splits go to ``<root>/data/``.
    verbose: say what was decoded, skipped or read from the cache (stderr).
  """
  path: str
  image_size: Optional[Tuple[int, int]] = None
  fit: str = "center_crop"
  channels: int = 0
  cache_dir: Optional[str] = None
  verbose: bool = True

  def __post_init__(self):
    path = str(self.path)
    for prefix in PREFIXES:
      if path.startswith(prefix):
        path = path[len(prefix):]
    object.__setattr__(self, "path",
                       os.path.abspath(os.path.expanduser(path)))
    if self.image_size is not None:
      size = tuple(int(s) for s in self.image_size)
      if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"image_size must be (height, width), got "
                         f"{self.image_size!r}.")
      object.__setattr__(self, "image_size", size)
    if self.fit not in decode.FITS:
      raise ValueError(f"fit must be one of {', '.join(decode.FITS)}, got "
                       f"{self.fit!r}.")
    if self.channels not in CHANNELS:
      raise ValueError(f"channels must be 1, 3 or 0 (inferred), got "
                       f"{self.channels!r}.")

  def __repr__(self):
    return f"the images in {self.path}"

  @property
  def is_zip(self) -> bool:
    return os.path.isfile(self.path) and self.path.lower().endswith(".zip")

  @property
  def name(self) -> str:
    """A short name for metric names: the folder's (or zip's) base name and
    the resolution, e.g. ``flowers64``."""
    base = os.path.basename(self.path.rstrip(os.sep))
    base = re.sub(r"\.zip$", "", base, flags=re.I)
    base = re.sub(r"[^\w-]", "_", base) or "images"
    if self.image_size is None:
      return base
    height, width = self.image_size
    return f"{base}{height}" if height == width else f"{base}{height}x{width}"

  def at_size(self, image_size) -> "ImageFolder":
    """This folder at ``image_size`` (None keeps its own)."""
    if image_size is None:
      return self
    size = tuple(int(s) for s in image_size)
    if self.image_size is not None and size != self.image_size:
      raise ValueError(f"{self} is set to image_size={self.image_size}; got "
                       f"image_size={size} as well.")
    return dataclasses.replace(self, image_size=size)

  def listing(self) -> Listing:
    """What the folder or zip holds now (names, sizes, times; no decoding)."""
    if not os.path.exists(self.path):
      raise DatasetNotFoundError(
          f"No folder or zip {self.path}. Give an existing directory of "
          "images (folder:PATH) or a StyleGAN dataset zip (zip:PATH).")
    exclude = os.path.abspath(image_cache.cache_root(self.cache_dir))
    if self.is_zip:
      listing = _list_zip(self.path)
    elif os.path.isdir(self.path):
      listing = _list_folder(self.path, exclude)
    else:
      raise DataError(f"{self.path} is a file, not a folder or a .zip.")
    if not any(listing.splits.values()):
      ignored = (f" (it holds {len(listing.ignored)} other files, e.g. "
                 f"{listing.ignored[0]})" if listing.ignored else "")
      raise DataError(
          f"{self.path} holds no image files "
          f"({', '.join(decode.IMAGE_EXTENSIONS)}){ignored}. Layouts read: "
          "PATH/IMAGE, PATH/label/IMAGE, PATH/split/label/IMAGE, or a "
          "StyleGAN dataset zip.")
    return listing

  def splits(self) -> tuple:
    return tuple(sorted(self.listing().splits))

  def num_classes(self) -> Optional[int]:
    classes = self.listing().classes
    return None if classes is None else len(classes)

  def class_names(self) -> Optional[list]:
    classes = self.listing().classes
    return None if classes is None else list(classes)

  @contextlib.contextmanager
  def reader(self):
    """Yields ``member -> file`` (a path, or the bytes of a zip member) for
    the members of ``listing``, with the zip opened once."""
    if self.is_zip:
      with zipfile.ZipFile(self.path) as archive:
        yield lambda member: io.BytesIO(archive.read(member))
    else:
      yield lambda member: os.path.join(self.path, *member.split("/"))

  def decoded(self, split: str = "train"):
    """The split as ``image_cache.Decoded`` (built once, then read)."""
    return image_cache.load(self, split)

  def data_shape(self, image_size=None) -> tuple:
    return self.at_size(image_size).decoded("train").shape

  def load(self, split: str, labels: bool, image_size=None,
           center_crop=False):
    """``(images uint8 [N, H, W, C], labels int32 [N] or None, 255.0)``."""
    if center_crop:
      raise ValueError(f"{self} fits its images by fit={self.fit!r} "
                       "(center_crop or pad); center_crop does not apply.")
    data = self.at_size(image_size).decoded(split)
    return data.images, (data.labels if labels else None), 255.0

  # ganjax.metrics reads real data through these (see real_data.load_split).

  @property
  def fingerprint(self) -> str:
    """A sha256 of every split's files, the classes and the transform."""
    return image_cache.fingerprint(self)

  def load_unit(self, split: str):
    """``(images float32 [N, H, W, C] in [0, 1], labels int [N])`` for the
    metrics, in a fixed shuffled order (``default_rng(0)``), so that a slice
    such as ``train[:1000]`` holds every class, not the first label folders;
    the labels are -1 when the folder has none."""
    data = self.decoded(split)
    order = np.random.default_rng(0).permutation(len(data.images))
    labels = (data.labels[order] if data.labels is not None
              else np.full(len(data.images), -1, np.int64))
    return data.images[order].astype(np.float32) / 255.0, labels
