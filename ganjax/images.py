"""Image grids and point clouds as PNG files (pillow; no TensorFlow, no matplotlib).

* ``to_unit_range`` maps generator outputs from their value range to [0, 1].
* ``resize``: bilinear, antialiased resizing, the one used for real images
  (training data at another ``image_size``, image folders) and for samples
  scored at the data's size.
* ``make_grid`` tiles ``[N, H, W, C]`` images into one uint8 picture;
  ``make_class_grid`` with one row per class (conditional GANs).
* ``scatter`` draws 2-D samples (toy mixtures) over the real data, and
  ``histogram`` 1-D samples against the real density, as uint8 pictures.
* ``save_png`` writes any of them.
"""

import math
import os
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw


def to_unit_range(x, value_range: Tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
  """Maps ``x`` from ``value_range`` to [0, 1] (clipped), float32 numpy."""
  lo, hi = (float(v) for v in value_range)
  x = (np.asarray(x, np.float32) - lo) / (hi - lo)
  return np.clip(x, 0.0, 1.0)


def _resize_weights(in_size: int, out_size: int) -> np.ndarray:
  """``[in_size, out_size]`` weights of the triangle kernel, widened by the
  downscaling factor (antialiasing), each column normalised to sum 1."""
  inv_scale = in_size / out_size
  kernel_scale = max(inv_scale, 1.0)
  centers = (np.arange(out_size) + 0.5) * inv_scale - 0.5
  distance = np.abs(centers[None, :] - np.arange(in_size)[:, None])
  weights = np.maximum(0.0, 1.0 - distance / kernel_scale)
  return weights / weights.sum(axis=0, keepdims=True)


def resize(images, size: Tuple[int, int]) -> np.ndarray:
  """Resizes images bilinearly, antialiased when shrinking.

  The same function as ``jax.image.resize(images, shape, "bilinear",
  antialias=True)`` (tested against it), in numpy: no compilation for each
  new input size, so a folder of photos of many sizes resizes at numpy speed.

  References: Wolberg, 1990, "Digital Image Warping" (separable resampling
  with a triangle filter scaled by the minification factor).

  Args:
    images: ``[N, H, W, C]`` or ``[H, W, C]``, any real dtype.
    size: ``(height, width)`` of the result.

  Returns:
    float32 ``[N, height, width, C]`` (or ``[height, width, C]``); the values
    are convex combinations of the input's (no clipping needed).
  """
  x = np.asarray(images, np.float32)
  height, width = (int(s) for s in size)
  for axis, out in ((-3, height), (-2, width)):
    if x.shape[axis] != out:
      w = _resize_weights(x.shape[axis], out).astype(np.float32)
      x = np.moveaxis(np.tensordot(x, w, axes=([axis], [0])), -1, axis)
  return np.ascontiguousarray(x, np.float32)


def make_grid(images, ncols: Optional[int] = None, padding: int = 1,
              pad_value: float = 1.0, scale: int = 1) -> np.ndarray:
  """Tiles images into one picture.

  Args:
    images: ``[N, H, W, C]`` (C = 1 or 3) or ``[N, H, W]``, values in [0, 1].
    ncols: images per row (default: a square-ish grid, ``ceil(sqrt(N))``).
    padding: pixels between and around images.
    pad_value: colour of the padding, in [0, 1].
    scale: integer upscaling of every pixel (nearest), for small images.

  Returns:
    uint8 ``[rows * (H + p) + p, ncols * (W + p) + p, C]``.
  """
  images = np.asarray(images, np.float32)
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
    raise ValueError(f"make_grid expects images [N, H, W, C] with C in "
                     f"(1, 3, 4), got shape {images.shape}.")
  n, h, w, c = images.shape
  if scale > 1:
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
  ncols = int(ncols or math.ceil(math.sqrt(n)))
  nrows = int(math.ceil(n / ncols))
  grid = np.full((nrows * (h + padding) + padding,
                  ncols * (w + padding) + padding, c), pad_value, np.float32)
  for i in range(n):
    r, col = divmod(i, ncols)
    top, left = padding + r * (h + padding), padding + col * (w + padding)
    grid[top:top + h, left:left + w] = images[i]
  return np.round(np.clip(grid, 0.0, 1.0) * 255.0).astype(np.uint8)


def make_class_grid(images, num_classes: int, **grid_kwargs) -> np.ndarray:
  """Tiles samples of a conditional GAN with one row per class.

  Use it for the samples of every class side by side: row ``c`` holds class
  ``c``; with the same latent down each column (as ``experiments.train``
  draws them), a column shows one z rendered in every class.

  Args:
    images: ``[num_classes * n, H, W, C]`` in [0, 1], class-major: images
      ``c * n .. c * n + n - 1`` are of class ``c``.
    num_classes: the number of rows.
    **grid_kwargs: ``padding``, ``pad_value``, ``scale`` of ``make_grid``.

  Returns:
    uint8 ``[num_classes * (H + p) + p, n * (W + p) + p, C]``.
  """
  n = int(np.shape(images)[0])
  if num_classes < 1 or n % num_classes:
    raise ValueError(f"make_class_grid needs num_classes * n images, class-"
                     f"major; got {n} images for num_classes={num_classes}.")
  return make_grid(images, ncols=n // num_classes, **grid_kwargs)


def _canvas_transform(points: Sequence[np.ndarray], size: int, margin: int):
  allpts = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2)
                           for p in points if len(p)])
  finite = allpts[np.all(np.isfinite(allpts), axis=1)]
  if len(finite) == 0:
    finite = np.zeros((1, 2))
  lo, hi = finite.min(0), finite.max(0)
  center, half = (lo + hi) / 2.0, max(float((hi - lo).max()) / 2.0, 1e-6)

  def to_pixels(p):
    p = (np.asarray(p, np.float64) - center) / half  # [-1, 1]
    px = margin + (p[:, 0] + 1.0) / 2.0 * (size - 2 * margin)
    py = size - margin - (p[:, 1] + 1.0) / 2.0 * (size - 2 * margin)
    return np.stack([px, py], axis=-1)

  return to_pixels


def scatter(samples, real=None, size: int = 400, radius: int = 1,
            limits: Optional[float] = None) -> np.ndarray:
  """Draws 2-D points: real data in grey, samples in blue.

  Use it to watch a toy GAN cover (or collapse onto) the modes of a mixture.

  Args:
    samples: generated points ``[N, 2]``.
    real: optional real points ``[M, 2]`` drawn underneath.
    size: picture side in pixels.
    radius: dot radius in pixels.
    limits: show ``[-limits, limits]^2``; default fits all points.

  Returns:
    uint8 RGB ``[size, size, 3]``.
  """
  samples = np.asarray(samples, np.float64).reshape(-1, 2)
  layers = [np.asarray(real, np.float64).reshape(-1, 2)] if real is not None else []
  margin = 10
  if limits is not None:
    frame = np.array([[-limits, -limits], [limits, limits]])
    to_pixels = _canvas_transform([frame], size, margin)
  else:
    to_pixels = _canvas_transform(layers + [samples], size, margin)
  img = Image.new("RGB", (size, size), (255, 255, 255))
  draw = ImageDraw.Draw(img)
  for pts, colour in zip(layers + [samples],
                         [(180, 180, 180)] * len(layers) + [(30, 80, 220)]):
    for x, y in to_pixels(pts):
      if np.isfinite(x) and np.isfinite(y):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius],
                     fill=colour)
  return np.asarray(img)


def histogram(samples, real=None, size: Tuple[int, int] = (400, 200),
              bins: int = 60) -> np.ndarray:
  """Histograms of 1-D samples (blue) over real data (grey), as a picture.

  Args:
    samples: ``[N]`` or ``[N, 1]`` generated values.
    real: optional ``[M]`` real values.
    size: ``(width, height)`` in pixels.
    bins: number of bins over the common range.

  Returns:
    uint8 RGB ``[height, width, 3]``.
  """
  samples = np.asarray(samples, np.float64).ravel()
  series = ([np.asarray(real, np.float64).ravel()] if real is not None else [])
  series.append(samples)
  allv = np.concatenate(series)
  allv = allv[np.isfinite(allv)]
  lo, hi = (float(allv.min()), float(allv.max())) if len(allv) else (0.0, 1.0)
  if hi <= lo:
    lo, hi = lo - 0.5, hi + 0.5
  width, height = size
  img = Image.new("RGB", (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(img)
  edges = np.linspace(lo, hi, bins + 1)
  counts = [np.histogram(s[np.isfinite(s)], edges, density=True)[0]
            for s in series]
  top = max(float(c.max()) for c in counts) or 1.0
  bar = width / bins
  height_of = lambda v: height - 1 - v / top * (height - 10)
  for c in counts[:-1]:  # real data: filled grey bars
    for i, v in enumerate(c):
      if v > 0:
        draw.rectangle([i * bar, height_of(v), (i + 1) * bar, height - 1],
                       fill=(200, 200, 200))
  outline = []  # samples: a blue step line
  for i, v in enumerate(counts[-1]):
    outline += [(i * bar, height_of(v)), ((i + 1) * bar, height_of(v))]
  draw.line(outline, fill=(30, 80, 220), width=2)
  return np.asarray(img)


def save_png(path: str, picture: np.ndarray) -> str:
  """Writes a uint8 ``[H, W]`` / ``[H, W, C]`` picture (or floats in [0, 1]) as PNG."""
  picture = np.asarray(picture)
  if picture.dtype != np.uint8:
    picture = np.round(np.clip(picture, 0.0, 1.0) * 255.0).astype(np.uint8)
  if picture.ndim == 3 and picture.shape[-1] == 1:
    picture = picture[..., 0]
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  Image.fromarray(picture).save(path)
  return path


def save_grid(path: str, images, value_range: Tuple[float, float] = (0.0, 1.0),
              **grid_kwargs) -> np.ndarray:
  """``to_unit_range`` + ``make_grid`` + ``save_png``; returns the grid."""
  grid = make_grid(to_unit_range(images, value_range), **grid_kwargs)
  save_png(path, grid)
  return grid
