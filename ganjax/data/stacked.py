"""Stacked digits: three digits in the three channels of one image, 1,000 modes.

The Stacked-MNIST mode-collapse benchmark (Metz et al., 2017; Srivastava et
al., 2017; Lin et al., 2018; the R3GAN paper's Table 3): each example stacks
three digits drawn independently and uniformly from a digit data set into
the red, green and blue channels, so the data have 10^3 = 1,000 modes, equally
likely; a generator's samples are sorted into modes by classifying each
channel (``ganjax.metrics.stacked_modes``).

* ``stacked_digits``: from sklearn's real 8x8 digits, which ship offline
  (``train``: 60,000 stacks of the 1,500 train digits; ``test``: 10,000
  stacks of the 297 test digits), ``[8, 8, 3]``, values 0..16; resize to
  16x16 or 32x32 with the pipelines' ``image_size``.
* ``stacked_mnist``: from MNIST as TFDS prepares it (60,000 / 10,000 stacks
  of its train / test split), ``[28, 28, 3]``, values 0..255.

The label of a stack is its mode, ``100 * red + 10 * green + blue`` (0..999).
The stacks of a split are a fixed function of the split (seeded), the same on
every machine.

References:
  Metz et al., 2017, Unrolled Generative Adversarial Networks,
  https://arxiv.org/abs/1611.02163 (Section 3.3.1); Srivastava et al., 2017,
  VEEGAN, https://arxiv.org/abs/1705.07761; Lin et al., 2018, PacGAN,
  https://arxiv.org/abs/1712.04086.
"""

from typing import Optional, Tuple

import numpy as np

from ganjax.data import arrays
from ganjax.data import sources

NUM_CHANNELS = 3
NUM_MODES = 10 ** NUM_CHANNELS
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
SEED = 0
# name -> (base data set, its image side, its largest pixel value)
BASES = {"stacked_digits": ("digits", 8, arrays.DIGITS_MAXVAL),
         "stacked_mnist": ("mnist", 28, 255.0)}


def mode_of(digits: np.ndarray) -> np.ndarray:
  """``[N, 3]`` channel digits -> ``[N]`` modes ``100 * d0 + 10 * d1 + d2``."""
  digits = np.asarray(digits)
  return (digits * 10 ** np.arange(NUM_CHANNELS - 1, -1, -1)).sum(-1)


def stack(images: np.ndarray, labels: np.ndarray, num: int,
          rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
  """``num`` stacks of three images drawn independently and uniformly.

  Args:
    images: ``[M, H, W, 1]`` single-channel digits.
    labels: ``[M]`` their classes 0..9.
    num: stacks to make.
    rng: the generator that draws the indices.

  Returns:
    ``(stacked [num, H, W, 3], modes int32 [num])``, channel ``c`` of stack
    ``i`` the image of the c-th drawn index.
  """
  index = rng.integers(0, len(images), size=(num, NUM_CHANNELS))
  stacked = np.concatenate([images[index[:, c]] for c in range(NUM_CHANNELS)],
                           axis=-1)
  return stacked, mode_of(labels[index]).astype(np.int32)


class StackedSource:
  """A stacked data set as a source kind (``ganjax.data.pipeline``): ``stacked_digits`` or ``stacked_mnist``."""

  def __init__(self, name: str, data_dir: Optional[str] = None):
    if name not in BASES:
      raise ValueError(f"Unknown stacked data set {name!r}; choose one of "
                       f"{sorted(BASES)}.")
    self.name = name
    self.base, self.side, self.maxval = BASES[name]
    self.data_dir = data_dir

  def __repr__(self):
    return self.name

  def data_shape(self, image_size=None) -> tuple:
    return arrays.resized_shape((self.side, self.side, NUM_CHANNELS),
                                image_size, self.name)

  def num_classes(self) -> int:
    return NUM_MODES

  def class_names(self) -> list:
    return [f"{m:03d}" for m in range(NUM_MODES)]

  def _base_split(self, split: str) -> Tuple[np.ndarray, np.ndarray]:
    if self.base == "digits":
      return sources.load_digits(split)
    from ganjax.data import tfds_source  # pylint: disable=g-import-not-at-top
    images, labels, _ = tfds_source.TfdsSource(
        self.base, self.data_dir).load(split, labels=True)
    return images, labels

  def load(self, split: str, labels: bool, image_size=None,
           center_crop=False):
    """``(images uint8 [N, H, W, 3], modes int32 [N] or None, maxval)``."""
    if split not in SPLIT_SIZES:
      raise ValueError(f"{self.name} has splits {sorted(SPLIT_SIZES)}; got "
                       f"{split!r}.")
    base_images, base_labels = self._base_split(split)
    rng = np.random.default_rng([SEED, list(SPLIT_SIZES).index(split)])
    images, modes = stack(base_images, np.asarray(base_labels),
                          SPLIT_SIZES[split], rng)
    images, maxval = arrays.to_size(images, self.maxval, image_size,
                                    center_crop)
    return images, (modes if labels else None), maxval
