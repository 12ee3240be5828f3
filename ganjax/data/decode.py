"""Image files to uint8 arrays at the training resolution (Pillow; no TensorFlow).

``read`` decodes one file as the training data need it:

* rotated as its EXIF orientation says (phone photos);
* 16-bit images (grayscale or RGB PNGs) reduced to 8 bits by their high byte,
  as Pillow itself reads 16-bit RGB;
* grayscale files (modes ``1``, ``L``, ``LA``, 16-bit) as one channel, every
  other mode (RGB, RGBA, palette, CMYK, ...) as RGB, an alpha channel
  dropped;
* an unreadable or truncated file raises ``UnreadableImage`` (the caller
  skips it and counts it).

``fit`` brings an image to ``(height, width)``: ``center_crop`` takes the
largest central box of the target's aspect ratio, ``pad`` the smallest box
of that ratio around the image (black borders, centred); the box is then
resized bilinearly with antialiasing (``ganjax.images.resize``, through
``arrays.resample``, the function every stored source uses).
"""

import dataclasses
from typing import Tuple

import numpy as np
import PIL.Image
import PIL.ImageOps

from ganjax.data import arrays

# The file types read (by extension, lower case); other files are skipped.
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
FITS = ("center_crop", "pad")
_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N")


class UnreadableImage(Exception):
  """A file that does not decode as an image; the message says why."""


@dataclasses.dataclass(frozen=True)
class Decoded:
  """One decoded file.

  Attributes:
    pixels: uint8 ``[H, W, 1]`` (grayscale) or ``[H, W, 3]``.
    sixteen_bit: the file held 16 bits per channel.
    rotated: its EXIF orientation rotated or flipped it.
  """
  pixels: np.ndarray
  sixteen_bit: bool
  rotated: bool


def read(fileobj, gray: bool = None) -> Decoded:
  """Decodes an image file (a path or a binary file object).

  Args:
    fileobj: the file.
    gray: True: convert to one channel (ITU-R 601-2 luma, Pillow's ``L``);
      False: to RGB (grayscale repeated); None: keep the file's kind.

  Raises:
    UnreadableImage: not an image, truncated, or in no mode read here.
  """
  try:
    with PIL.Image.open(fileobj) as image:
      sixteen = image.mode.startswith("I") or any(
          ";16" in str(tile.args) for tile in image.tile)
      image.load()
      orientation = image.getexif().get(0x0112, 1)
      if orientation not in (None, 1):
        image = PIL.ImageOps.exif_transpose(image)
      if image.mode.startswith("I"):  # 16 bits (Pillow's I / I;16*)
        values = np.asarray(image).astype(np.int64)
        image = PIL.Image.fromarray(
            (np.clip(values, 0, 65535) >> 8).astype(np.uint8))
      elif image.mode == "F":
        raise UnreadableImage("floating-point images are not read")
      kind = "L" if image.mode in _GRAY_MODES else "RGB"
      if image.mode != kind:
        image = image.convert(kind)
      if gray is not None and gray != (image.mode == "L"):
        image = image.convert("L" if gray else "RGB")
      pixels = np.asarray(image, np.uint8)
  except UnreadableImage:
    raise
  except Exception as e:  # pylint: disable=broad-except  (Pillow raises many kinds)
    raise UnreadableImage(f"{type(e).__name__}: {e}") from None
  if pixels.ndim == 2:
    pixels = pixels[..., None]
  return Decoded(pixels, sixteen, orientation not in (None, 1))


def box(height: int, width: int, size: Tuple[int, int], fit: str
        ) -> Tuple[int, int]:
  """``(box_height, box_width)``: the crop (``center_crop``) or canvas
  (``pad``) of ``size``'s aspect ratio for an image of ``height x width``."""
  target_h, target_w = size
  wider = width * target_h > height * target_w  # wider than the target
  if fit == "center_crop":
    return ((height, max(1, round(height * target_w / target_h))) if wider
            else (max(1, round(width * target_h / target_w)), width))
  if fit == "pad":
    return ((round(width * target_h / target_w), width) if wider
            else (height, round(height * target_w / target_h)))
  raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}.")


def is_upscaled(height: int, width: int, size: Tuple[int, int], fit: str
                ) -> bool:
  """Whether fitting an image of ``height x width`` to ``size`` enlarges it."""
  box_h, box_w = box(height, width, size, fit)
  return box_h < size[0] or box_w < size[1]


def fit(pixels: np.ndarray, size: Tuple[int, int], fit_mode: str
        ) -> np.ndarray:
  """``pixels [H, W, C]`` uint8, cropped or padded to ``size``'s aspect
  ratio and resized to ``size``: uint8 ``[height, width, C]``."""
  height, width = pixels.shape[:2]
  box_h, box_w = box(height, width, size, fit_mode)
  if fit_mode == "center_crop":
    top, left = (height - box_h) // 2, (width - box_w) // 2
    pixels = pixels[top:top + box_h, left:left + box_w]
  else:
    top, left = (box_h - height) // 2, (box_w - width) // 2
    pixels = np.pad(pixels, ((top, box_h - height - top),
                             (left, box_w - width - left), (0, 0)))
  if pixels.shape[:2] == tuple(size):
    return np.ascontiguousarray(pixels)
  return arrays.resample(pixels[None], 255.0, size)[0]
