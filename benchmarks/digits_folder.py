"""Writes sklearn's 1,797 real 8x8 digits as PNG files in label folders.

Usage:
  python -m benchmarks.digits_folder DIR

``DIR/train/<digit>/<index>.png`` (the 1,500 images of the built-in
``digits`` "train" split) and ``DIR/test/<digit>/<index>.png`` (its 297
"test" images): the same images and split as ``--config.dataset=digits``,
for comparing a run on the folder (``--config.dataset=folder:DIR``) with one
on the built-in loading. Pixels 0..16 become 0..255 (``round(v * 255 /
16)``), 8-bit grayscale PNGs.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=wrong-import-position
import PIL.Image  # pylint: disable=wrong-import-position

from ganjax.data import sources  # pylint: disable=wrong-import-position


def write(root: str) -> int:
  count = 0
  for split in ("train", "test"):
    images, labels = sources.load_digits(split)
    for i, (image, label) in enumerate(zip(images, labels)):
      folder = os.path.join(root, split, str(label))
      os.makedirs(folder, exist_ok=True)
      pixels = np.round(image[..., 0].astype(np.float64) * 255 / 16)
      PIL.Image.fromarray(pixels.astype(np.uint8)).save(
          os.path.join(folder, f"{i:04d}.png"))
      count += 1
  return count


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  print(f"wrote {write(sys.argv[1])} PNGs under {sys.argv[1]}")
