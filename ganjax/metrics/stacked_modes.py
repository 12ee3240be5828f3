"""Mode coverage of stacked digits: the Stacked-MNIST protocol.

Each channel of a generated ``[H, W, 3]`` image is classified with the
project's digits classifier of the base data set (``ganjax.metrics.
classifier``: ``digits`` for ``stacked_digits``, ``mnist`` for
``stacked_mnist``); the three predicted digits give the sample's mode
(``100 * red + 10 * green + blue``, of 1,000). Reported, as Metz et al.
(2017), VEEGAN, PacGAN and the R3GAN paper report them: the number of modes
that receive at least one sample, and ``KL(p_modes || uniform)``, the KL
divergence in nats from the histogram of the samples' modes to the uniform
distribution over the 1,000 modes (0 for a perfectly even histogram,
``log 1000 = 6.91`` for a single mode). The papers use 26,000 samples.

References:
  Metz et al., 2017, https://arxiv.org/abs/1611.02163 (Section 3.3.1);
  Srivastava et al., 2017, https://arxiv.org/abs/1705.07761 (Table 2);
  Lin et al., 2018, https://arxiv.org/abs/1712.04086 (Table 2).
"""

import numpy as np

from ganjax.data import stacked
from ganjax.metrics import features as features_lib


def mode_statistics(modes, num_modes: int = stacked.NUM_MODES) -> dict:
  """Modes reached and the KL divergence of their histogram to uniform.

  Args:
    modes: int ``[N]`` mode of each sample, in ``[0, num_modes)``.
    num_modes: the number of modes of the data (1,000).

  Returns:
    ``{"modes": int (modes with >= 1 sample), "kl": float (nats),
    "counts": int [num_modes]}``.
  """
  modes = np.asarray(modes)
  if modes.ndim != 1 or modes.size == 0:
    raise ValueError(f"modes must be a non-empty [N] array, got shape "
                     f"{modes.shape}.")
  if modes.min() < 0 or modes.max() >= num_modes:
    raise ValueError(f"modes must lie in [0, {num_modes}), found "
                     f"[{modes.min()}, {modes.max()}].")
  counts = np.bincount(modes, minlength=num_modes)
  p = counts[counts > 0] / modes.size
  return {"modes": int(np.count_nonzero(counts)),
          "kl": float(np.sum(p * np.log(p * num_modes))),
          "counts": counts}


def channel_digits(network: features_lib.FeatureNetwork,
                   images: np.ndarray) -> np.ndarray:
  """The digit of each channel: ``[N, H, W, C]`` in [0, 1] -> int ``[N, C]``.

  Args:
    network: the base data set's classifier (``features.cnn_network``),
      taking single-channel ``[B, H, W, 1]`` images.
    images: ``[N, H, W, C]`` float in [0, 1].
  """
  n, h, w, c = images.shape
  channels = np.moveaxis(np.asarray(images, np.float32), -1, 1)
  _, probs = network(channels.reshape(n * c, h, w, 1))
  return np.argmax(probs, axis=-1).reshape(n, c)


def stacked_modes(network: features_lib.FeatureNetwork,
                  images: np.ndarray) -> dict:
  """``mode_statistics`` of generated stacked images ``[N, H, W, 3]`` in [0, 1]."""
  return mode_statistics(stacked.mode_of(channel_digits(network, images)))
