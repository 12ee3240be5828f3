"""Image folders decoded once: uint8 arrays at the training resolution, cached on disk.

``load(folder, split)`` returns the split of an ``ImageFolder`` as uint8
``[N, H, W, C]`` and its labels, decoding every file only when the cache does
not hold this version of the split:

* location: ``<cache root>/data/<name>-<split>-<hash>.npz``, the cache root
  being the folder's ``cache_dir``, else ``$GANJAX_CACHE_DIR``, else
  ``~/.cache/ganjax`` (never inside the image folder unless the cache root is
  put there; the listing then leaves it out). One file per (path, split,
  transform): the hash is of the folder's absolute path, the split and the
  transform (``image_size``, ``fit``, ``channels``, the resize function).
* key: the sha256 of the split's files (name, size, modification time in
  ns; for a zip, name, size and CRC-32), their labels, the class names and
  the transform. A file added, removed or rewritten changes it: the split
  is decoded again (saying how many files changed) and replaces the old
  cache file; an unchanged folder is read, not decoded.
* written atomically (``ganjax.cache``: a temporary file renamed into place),
  so an interrupted build leaves the previous cache or none.

What decoding does with bad data (each told once, on stderr, and never a
traceback): files that are not images are skipped and counted; unreadable or
truncated images are skipped and counted, with the first few named; images
smaller than the training resolution (they would be enlarged) are skipped and
counted; a mix of grayscale and RGB files with ``channels=0`` trains in RGB
(the grayscale ones repeated), saying how many; 16-bit images are reduced to
8 bits and EXIF orientations applied, both counted; a class with a single
image is kept, with a warning. ``DataError`` (one message; exit code 2 on the
command line) when nothing is left: no image files, every image unreadable
or too small, a class left with no image, images of several sizes with no
``image_size``.
"""

import collections
import dataclasses
import hashlib
import json
import os
import sys
import time
from typing import Optional

import numpy as np
import PIL.Image
import tqdm

from ganjax import cache as cache_lib
from ganjax.data import decode
from ganjax.data.errors import DataError

FORMAT_VERSION = 1
SUBDIR = "data"
# Names the resize function in the key: a change to it rebuilds every cache.
RESIZE = "ganjax.images.resize: bilinear, antialiased"
_SHOWN = 3  # bad files named per kind of problem


@dataclasses.dataclass(frozen=True)
class Decoded:
  """A decoded split.

  Attributes:
    images: uint8 ``[N, H, W, C]``.
    labels: int32 ``[N]``, or None for unlabelled images.
    classes: the class names, or None.
    key: the cache key (see the module docstring).
    path: the cache file.
  """
  images: np.ndarray
  labels: Optional[np.ndarray]
  classes: Optional[tuple]
  key: str
  path: str

  @property
  def shape(self) -> tuple:
    return tuple(int(d) for d in self.images.shape[1:])


def cache_root(cache_dir: Optional[str] = None) -> str:
  """``<cache root>/data``: where decoded folders are kept."""
  return os.path.join(cache_lib.cache_dir(cache_dir), SUBDIR)


def _sha256(record) -> str:
  return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _transform(folder) -> dict:
  return {"image_size": folder.image_size, "fit": folder.fit,
          "channels": folder.channels, "resize": RESIZE,
          "format": FORMAT_VERSION}


def cache_path(folder, split: str) -> str:
  """The cache file of ``folder``'s ``split`` at its transform."""
  which = _sha256({"path": folder.path, "split": split,
                   "transform": _transform(folder)})
  return os.path.join(cache_root(folder.cache_dir),
                      f"{folder.name}-{split}-{which[:16]}.npz")


def _stamp(listing, split: str) -> list:
  members = {member for member, _ in listing.splits[split]}
  return [list(entry) for entry in listing.stamp if entry[0] in members]


def _say(folder, text: str) -> None:
  if folder.verbose:
    print(f"[ganjax.data] {text}", file=sys.stderr, flush=True)


def _read(path: str):
  """``(arrays, meta)`` of a cache file, or None when it cannot be read."""
  try:
    with np.load(path, allow_pickle=False) as data:
      meta = json.loads(str(data["meta"]))
      images = data["images"]
      labels = data["labels"] if "labels" in data.files else None
    return images, labels, meta
  except (OSError, ValueError, KeyError):
    return None


def _changes(old_stamp, new_stamp) -> str:
  old = {name: tuple(rest) for name, *rest in old_stamp}
  new = {name: tuple(rest) for name, *rest in new_stamp}
  added = len(new.keys() - old.keys())
  removed = len(old.keys() - new.keys())
  changed = sum(old[n] != new[n] for n in new.keys() & old.keys())
  parts = [f"{n} {what}" for n, what in ((added, "added"),
                                          (removed, "removed"),
                                          (changed, "rewritten")) if n]
  return ", ".join(parts) or "its labels or classes changed"


def fingerprint(folder) -> str:
  """The sha256 of all of ``folder``'s files (every split), its classes and
  its transform: what the metrics key their caches of it by."""
  listing = folder.listing()
  return _sha256({"files": [list(e) for e in listing.stamp],
                  "splits": {s: [m for m, _ in members]
                             for s, members in listing.splits.items()},
                  "classes": listing.classes, "transform": _transform(folder)})


_MEMO: dict = {}  # cache path -> Decoded: the last splits read in this process


def load(folder, split: str = "train") -> Decoded:
  """The ``split`` of ``folder`` (an ``ImageFolder``), from the cache or decoded.

  Raises:
    DataError: a split the folder does not have, or nothing usable in it
      (see the module docstring).
  """
  listing = folder.listing()
  if split not in listing.splits:
    raise DataError(f"{folder.path} has no split {split!r}; it has "
                    f"{', '.join(sorted(listing.splits))}.")
  stamp = _stamp(listing, split)
  key = _sha256({"files": stamp, "labels": [label for _, label in
                                             listing.splits[split]],
                 "classes": listing.classes, "transform": _transform(folder)})
  path = cache_path(folder, split)
  memo = _MEMO.get(path)
  if memo is not None and memo.key == key:
    return memo
  cached = _read(path) if os.path.isfile(path) else None
  if cached is not None and cached[2].get("key") == key:
    images, labels, meta = cached
    _say(folder, f"{folder.path}:{split}: {len(images)} images "
         f"{'x'.join(map(str, images.shape[1:]))} from the cache {path}")
  else:
    if cached is not None:
      _say(folder, f"{folder.path}:{split} changed since it was cached "
           f"({_changes(cached[2].get('files', []), stamp)}): decoding it "
           "again.")
    start = time.time()
    images, labels, report = _decode(folder, listing, split)
    meta = {"key": key, "files": stamp, "classes": listing.classes,
            "report": report, "path": folder.path, "split": split,
            "transform": _transform(folder)}
    arrays = {"images": images, "meta": np.array(json.dumps(meta))}
    if labels is not None:
      arrays["labels"] = labels
    cache_lib.atomic_save_npz(path, arrays)
    seconds = time.time() - start
    _say(folder, f"{folder.path}:{split}: decoded {len(images)} images "
         f"{'x'.join(map(str, images.shape[1:]))} in {seconds:.1f} s "
         f"({len(images) / max(seconds, 1e-9):.0f} images/s), cached in "
         f"{path}")
  decoded = Decoded(images, labels, listing.classes, key, path)
  _MEMO.clear()  # keep one split in memory
  _MEMO[path] = decoded
  return decoded


def _native_size(folder, members) -> tuple:
  """The one size (after EXIF rotation) of every image, read from headers."""
  sizes = collections.Counter()
  with folder.reader() as file_of:
    for member, _ in members:
      try:
        with PIL.Image.open(file_of(member)) as image:
          width, height = image.size
          # Pillow decodes a PNG to find an EXIF chunk it has not seen yet;
          # one that comes before the pixels is in the header's info.
          header_exif = image.format != "PNG" or "exif" in image.info
          if header_exif and image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            width, height = height, width
        sizes[(height, width)] += 1
      except Exception:  # pylint: disable=broad-except  (skipped when decoded)
        pass
  if len(sizes) > 1:
    common = ", ".join(f"{h}x{w} ({n} images)"
                       for (h, w), n in sizes.most_common(4))
    height, width = sizes.most_common(1)[0][0]
    raise DataError(
        f"{folder.path} holds images of {len(sizes)} sizes ({common}"
        f"{', ...' if len(sizes) > 4 else ''}) and no image_size was given: "
        f"pass one (e.g. --config.image_size={min(height, width)}); images "
        f"of another shape are then fitted by fit={folder.fit!r}.")
  return next(iter(sizes)) if sizes else None


def _count(n: int, noun: str) -> str:
  """``1 image``, ``2 images``."""
  return f"{n} {noun}{'' if n == 1 else 's'}"


def _examples(names, reasons=None) -> str:
  shown = [f"{n} ({reasons[n]})" if reasons else n for n in names[:_SHOWN]]
  return ", ".join(shown) + (", ..." if len(names) > _SHOWN else "")


def _decode(folder, listing, split: str):
  """Decodes a split: ``(images uint8, labels int32 or None, report lines)``."""
  members = listing.splits[split]
  size = folder.image_size or _native_size(folder, members)
  gray = {0: None, 1: True, 3: False}[folder.channels]
  pixels, labels, is_gray = [], [], []
  unreadable, small = {}, []
  sixteen = rotated = 0
  bar = tqdm.tqdm(members, desc=f"decoding {folder.name}:{split}",
                  unit="image", disable=not folder.verbose, file=sys.stderr,
                  dynamic_ncols=True, mininterval=1.0)
  with folder.reader() as file_of:
    for member, label in bar:
      try:
        image = decode.read(file_of(member), gray)
      except decode.UnreadableImage as e:
        unreadable[member] = str(e)
        continue
      height, width = image.pixels.shape[:2]
      if size is None:
        size = (height, width)
      if decode.is_upscaled(height, width, size, folder.fit):
        small.append(f"{member} ({height}x{width})")
        continue
      pixels.append(decode.fit(image.pixels, size, folder.fit))
      labels.append(label)
      is_gray.append(image.pixels.shape[-1] == 1)
      sixteen += image.sixteen_bit
      rotated += image.rotated
  bar.close()

  report = []

  def tell(line):
    report.append(line)
    _say(folder, f"{folder.path}:{split}: {line}")

  for note in listing.notes:
    tell(note)
  ignored = [n for n in listing.ignored if n.startswith(
      "" if len(listing.splits) == 1 else split + "/")]
  if ignored:
    tell(f"skipped {_count(len(ignored), 'file')} that "
         f"{'is not an image' if len(ignored) == 1 else 'are not images'} "
         f"({', '.join(decode.IMAGE_EXTENSIONS)}): {_examples(ignored)}")
  if unreadable:
    tell(f"skipped {_count(len(unreadable), 'unreadable or truncated image')}: "
         f"{_examples(sorted(unreadable), unreadable)}")
  if small:
    tell(f"skipped {_count(len(small), 'image')} smaller than the training "
         "resolution "
         f"{size[0]}x{size[1]} (they would be enlarged): {_examples(small)}")
  if sixteen:
    tell(f"reduced {_count(sixteen, '16-bit image')} to 8 bits")
  if rotated:
    tell(f"rotated {_count(rotated, 'image')} as "
         f"{'its' if rotated == 1 else 'their'} EXIF orientation says")
  if not pixels:
    raise DataError(
        f"{folder.path}:{split}: none of its {len(members)} images can be "
        "used (" + "; ".join(report) + "). " + (
            "Train at a smaller --config.image_size, or " if small else "")
        + "add readable images.")
  channels = folder.channels or (1 if all(is_gray) else 3)
  if folder.channels == 0 and channels == 3 and any(is_gray):
    tell(f"{_count(sum(is_gray), 'grayscale image')} among {len(is_gray)}: "
         "trained as "
         "RGB (grayscale repeated; channels=0 infers RGB when any file is in "
         "colour, --config.channels=1 trains in grayscale)")
  images = np.empty((len(pixels),) + tuple(size) + (channels,), np.uint8)
  for i, p in enumerate(pixels):
    images[i] = p if p.shape[-1] == channels else np.repeat(p, 3, axis=-1)
  if listing.classes is None:
    return images, None, report
  labels = np.asarray(labels, np.int32)
  counts = np.bincount(labels, minlength=len(listing.classes))
  empty = [listing.classes[c] for c in np.flatnonzero(counts == 0)]
  if empty and split == "train":
    raise DataError(
        f"{folder.path}:{split}: class {empty[0]!r} has no usable image "
        f"in this split{' (and others)' if len(empty) > 1 else ''}: "
        "fix its images or remove the folder.")
  single = [listing.classes[c] for c in np.flatnonzero(counts == 1)]
  if single:
    tell(f"class{'es' if len(single) > 1 else ''} "
         f"{', '.join(map(repr, single[:_SHOWN]))}"
         f"{' ...' if len(single) > _SHOWN else ''} ha"
         f"{'ve' if len(single) > 1 else 's'} a single image: a conditional "
         "GAN sees only that one example of it")
  return images, labels, report
