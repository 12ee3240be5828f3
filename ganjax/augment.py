"""Differentiable augmentation of every input of the discriminator.

``DiffAugment`` transforms real and generated images alike, with transforms
that gradients flow through, so that the generator learns the clean
distribution while the discriminator never sees the same real image twice:
what lets a GAN train on a few thousand images. ``ADA`` makes the probability
of each transform adaptive, from how confidently D labels real data.

``ganjax.GAN(augment=DiffAugment(...), ada=ADA(...))`` applies them inside the
step, to real and fake inputs of D in its updates and in G's update, before
any penalty, with one key per example (``[B]``), so that the transforms do not
depend on how a batch is split across devices.

Images are ``[B, H, W, C]`` in the generator's range; the colour transforms
assume ``[-1, 1]`` (DCGAN's tanh), as DiffAugment's reference code does.
"""

import dataclasses
from typing import Sequence

import chex
import jax
import jax.numpy as jnp

POLICIES = ("color", "translation", "cutout")


def _uniform(key, shape=(), low=0.0, high=1.0):
  return jax.random.uniform(key, shape, jnp.float32, low, high)


def color(x: chex.Array, key: chex.PRNGKey) -> chex.Array:
  """Random brightness, saturation and contrast of one image ``[H, W, C]``.

  References:
    Zhao et al., 2020, Differentiable Augmentation for Data-Efficient GAN
    Training (https://arxiv.org/abs/2006.10738), ``rand_brightness``,
    ``rand_saturation``, ``rand_contrast``.

  Args:
    x: one image ``[H, W, C]``.
    key: its key.

  Returns:
    ``[H, W, C]``: ``x + U(-1/2, 1/2)``; the channels' spread around their mean
    scaled by ``U(0, 2)`` (a no-op on grey images); the spread around the image
    mean scaled by ``U(1/2, 3/2)``.
  """
  chex.assert_rank(x, 3)
  b, s, c = jax.random.split(key, 3)
  x = x + _uniform(b, (), -0.5, 0.5).astype(x.dtype)
  mean = jnp.mean(x, axis=-1, keepdims=True)
  x = (x - mean) * _uniform(s, (), 0.0, 2.0).astype(x.dtype) + mean
  mean = jnp.mean(x)
  return (x - mean) * _uniform(c, (), 0.5, 1.5).astype(x.dtype) + mean


def translation(x: chex.Array, key: chex.PRNGKey,
                ratio: float = 0.125) -> chex.Array:
  """Shifts one image ``[H, W, C]`` by up to ``ratio`` of its size, zero-filled.

  References:
    Zhao et al., 2020 (https://arxiv.org/abs/2006.10738), ``rand_translation``.

  Args:
    x: one image ``[H, W, C]``.
    key: its key.
    ratio: largest shift as a fraction of the height and the width.

  Returns:
    ``[H, W, C]``: ``out[i, j] = x[i - dy, j - dx]`` where that lies inside the
    image, 0 elsewhere, with integer ``dy, dx`` uniform in ``[-r, r]``
    (``r = int(size * ratio + 0.5)``).
  """
  chex.assert_rank(x, 3)
  h, w, _ = x.shape
  ky, kx = jax.random.split(key)
  ry, rx = int(h * ratio + 0.5), int(w * ratio + 0.5)
  dy = jax.random.randint(ky, (), -ry, ry + 1)
  dx = jax.random.randint(kx, (), -rx, rx + 1)
  rows, cols = jnp.arange(h) - dy, jnp.arange(w) - dx
  inside = (((rows >= 0) & (rows < h))[:, None]
            & ((cols >= 0) & (cols < w))[None, :])
  shifted = x[jnp.clip(rows, 0, h - 1)][:, jnp.clip(cols, 0, w - 1)]
  return jnp.where(inside[..., None], shifted, jnp.zeros_like(x))


def cutout(x: chex.Array, key: chex.PRNGKey, ratio: float = 0.5) -> chex.Array:
  """Zeroes a square of ``ratio`` times the image size at a random place.

  References:
    DeVries & Taylor, 2017, Improved Regularization of Convolutional Neural
    Networks with Cutout (https://arxiv.org/abs/1708.04552); Zhao et al., 2020,
    ``rand_cutout``.

  Args:
    x: one image ``[H, W, C]``.
    key: its key.
    ratio: side of the square as a fraction of the height and the width.

  Returns:
    ``[H, W, C]``: ``x`` with rows ``[cy - sh/2, cy + sh/2)`` by columns
    ``[cx - sw/2, cx + sw/2)`` set to 0 (``sh = int(H * ratio + 0.5)``), the
    centre uniform over the image (the square may be clipped at the border).
  """
  chex.assert_rank(x, 3)
  h, w, _ = x.shape
  sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  cy = jax.random.randint(ky, (), 0, h + (1 - sh % 2))
  cx = jax.random.randint(kx, (), 0, w + (1 - sw % 2))
  rows = jnp.arange(h) - (cy - sh // 2)
  cols = jnp.arange(w) - (cx - sw // 2)
  hole = (((rows >= 0) & (rows < sh))[:, None]
          & ((cols >= 0) & (cols < sw))[None, :])
  return jnp.where(hole[..., None], jnp.zeros_like(x), x)


_TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


@dataclasses.dataclass(frozen=True)
class DiffAugment:
  """DiffAugment: the same random, differentiable transforms on every input of D.

  Use it to train on small data sets (a few thousand images), where D
  otherwise memorises the real images and G's samples degrade.

  References:
    Zhao et al., 2020, Differentiable Augmentation for Data-Efficient GAN
    Training (https://arxiv.org/abs/2006.10738). With ``ADA``, the probability
    of Karras et al., 2020, Training Generative Adversarial Networks with
    Limited Data (https://arxiv.org/abs/2006.06676).

  Attributes:
    policy: transforms applied in this order, from ``POLICIES``.
    probability: chance that each transform is applied to each example (1.0:
      DiffAugment, every transform always); ``GAN(ada=...)`` replaces it by
      the adaptive ``state.augment_p``.
    translation_ratio: largest shift, as a fraction of the image size.
    cutout_ratio: side of the cut-out square, as a fraction of the image size.
  """
  policy: Sequence[str] = POLICIES
  probability: float = 1.0
  translation_ratio: float = 0.125
  cutout_ratio: float = 0.5

  def __post_init__(self):
    policy = ((self.policy,) if isinstance(self.policy, str)
              else tuple(self.policy))
    policy = tuple(p for name in policy for p in name.split(",") if p)
    unknown = [p for p in policy if p not in _TRANSFORMS]
    if unknown or not policy:
      raise ValueError(f"DiffAugment policy must name transforms among "
                       f"{POLICIES}, got {self.policy!r}.")
    if not 0.0 <= self.probability <= 1.0:
      raise ValueError(f"DiffAugment probability must be in [0, 1], got "
                       f"{self.probability}.")
    object.__setattr__(self, "policy", policy)

  def __call__(self, x: chex.Array, keys: chex.PRNGKey,
               probability: chex.Numeric | None = None) -> chex.Array:
    """Augments a batch.

    Args:
      x: images ``[B, H, W, C]``.
      keys: ``[B]`` keys, one per example.
      probability: overrides ``self.probability`` (a scalar, may be traced).

    Returns:
      ``[B, H, W, C]``: each transform of the policy applied to each example
      with the given probability, drawn per example.
    """
    chex.assert_rank(x, 4)
    chex.assert_equal_shape_prefix([x, keys], 1)
    p = self.probability if probability is None else probability

    def one(xi, key):
      for name, k in zip(self.policy, jax.random.split(key, len(self.policy))):
        use, draw = jax.random.split(k)
        transform = _TRANSFORMS[name]
        if name == "translation":
          out = transform(xi, draw, self.translation_ratio)
        elif name == "cutout":
          out = transform(xi, draw, self.cutout_ratio)
        else:
          out = transform(xi, draw)
        xi = jnp.where(_uniform(use) < p, out, xi)
      return xi

    return jax.vmap(one)(x, keys)


@dataclasses.dataclass(frozen=True)
class ADA:
  """ADA's adaptive augmentation probability, kept in ``state.augment_p``.

  After each step, ``r_t = E[sign(D(x_real))]`` over that step's real logits
  (all k updates, all devices) measures how much D overfits; the probability
  moves up by ``images / speed_images`` when ``r_t > target`` and down as much
  otherwise, clipped to ``[0, 1]``, so it can cross ``[0, 1]`` in
  ``speed_images`` real images.

  References:
    Karras et al., 2020, Training Generative Adversarial Networks with Limited
    Data, Section 3 (https://arxiv.org/abs/2006.06676): target 0.6, p from 0
    to 1 in 500k images (adjusted every 4 minibatches there, every step here).

  Attributes:
    target: the value of ``r_t`` to hold.
    speed_images: real images over which p can go from 0 to 1.
    initial_probability: p at step 0.
  """
  target: float = 0.6
  speed_images: int = 500_000
  initial_probability: float = 0.0

  def __post_init__(self):
    if not 0.0 <= self.target <= 1.0:
      raise ValueError(f"ADA target must be in [0, 1], got {self.target}.")
    if self.speed_images <= 0:
      raise ValueError(f"ADA speed_images must be positive, got "
                       f"{self.speed_images}.")

  def update(self, p: chex.Array, real_sign: chex.Array,
             num_images: chex.Numeric) -> chex.Array:
    """The next probability from ``r_t = real_sign`` after ``num_images`` images."""
    step = jnp.sign(real_sign - self.target) * num_images / self.speed_images
    return jnp.clip(p + step, 0.0, 1.0).astype(jnp.float32)
