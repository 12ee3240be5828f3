"""R3GAN's generator and discriminator: a modern ResNet without normalisation.

The backbone of "The GAN is dead; long live the GAN!": StyleGAN2's
simplified to a ResNet of ConvNeXt-style inverted bottlenecks. Each residual
block is ``1x1 conv (C -> E*C) -> bias + leaky ReLU -> KxK grouped conv
(cardinality groups) -> bias + leaky ReLU -> 1x1 conv (E*C -> C)``, added to
its input; no normalisation layer anywhere, no bias in any convolution (the
biases sit in the activations), fix-up style initialisation (every layer
``N(0, gain^2 / fan_in)`` with the gain of its activation scaled by
``L^(-1/4)`` for ``L`` residual blocks in the network, and the last layer of
every residual branch zero, so that each block starts as the identity).
Resolution changes by low-pass filtered resampling (the filter ``[1, 2, 1]``
convolved with a box ``[1, 1]``, i.e. ``[1, 3, 3, 1] / 8`` per axis), with a
1x1 convolution where the width changes. G starts from a learned 4x4 basis
scaled per channel by a linear map of ``z`` and ends with a 1x1 convolution
to the image (linear output, no tanh); D starts with a 1x1 convolution and
ends with a depthwise 4x4 convolution and a linear layer. The conditional
models embed the one-hot class: G concatenates the embedding to ``z``, D
projects its output onto it.

References:
  Huang, Gokaslan, Kuleshov & Tompkin, 2024, The GAN is dead; long live the
  GAN! A Modern GAN Baseline, NeurIPS, https://arxiv.org/abs/2501.05441
  (Section 3 and Figure 4; the official code ``brownvc/R3GAN``, whose
  ``train.py`` presets give ``PRESETS`` here).
  Zhang, Dauphin & Ma, 2019, Fixup Initialization,
  https://arxiv.org/abs/1901.09321 (the initialisation).
  Karras et al., 2020, Analyzing and Improving the Image Quality of StyleGAN,
  https://arxiv.org/abs/1912.04958 (the resampling filters).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype
from jax import lax

from ganjax.models import conditioning
from ganjax.models.layers import conv_general_dilated

Array = Any

LEAKY_SLOPE = 0.2
# The gain that keeps the variance of a leaky ReLU's output (He et al. 2015).
ACTIVATION_GAIN = math.sqrt(2.0 / (1.0 + LEAKY_SLOPE ** 2))
BASIS_SIZE = 4  # G's first and D's last resolution
LAYERS_PER_BLOCK = 3

# The official presets (``train.py`` of brownvc/R3GAN): G's stages from 4x4
# up, D's are the same reversed; noise dimension 64, expansion 2, 3x3 convs.
PRESETS = {
    "cifar10": dict(widths=(768,) * 4, cardinalities=(96,) * 4,
                    blocks=(2,) * 4),
    "ffhq64": dict(widths=(768,) * 4 + (384,), cardinalities=(96,) * 4 + (48,),
                   blocks=(2,) * 5),
    "ffhq256": dict(widths=(768,) * 4 + (384, 192, 96),
                    cardinalities=(96,) * 4 + (48, 24, 12), blocks=(2,) * 7),
    "imagenet32": dict(widths=(1536,) * 4, cardinalities=(96,) * 4,
                       blocks=(2,) * 4),
    "imagenet64": dict(widths=(1536,) * 5, cardinalities=(96,) * 5,
                       blocks=(2,) * 5),
}
_PRESET_FOR_SIZE = {32: "cifar10", 64: "ffhq64", 256: "ffhq256"}


def msr_init(gain: float) -> nn.initializers.Initializer:
  """``N(0, (gain / sqrt(fan_in))^2)``, ``fan_in`` = the product of all but the last axis.

  The kernels here are laid out ``[..., in, out]`` (``[K, K, in / groups,
  out]`` for convolutions, ``[in, out]`` for linear layers, ``[4, 4, C]`` for
  the depthwise basis, whose fan-in is 16), so the fan-in is what the
  official code's ``MSRInitializer`` computes. ``gain = 0`` gives zeros.
  """
  if gain == 0:
    return nn.initializers.zeros_init()

  def init(key, shape, dtype=jnp.float32):
    fan_in = math.prod(shape[:-1])
    return jax.random.normal(key, shape, dtype) * (gain / math.sqrt(fan_in))

  return init


def lowpass_filter(weights: Sequence[float] = (1, 2, 1)) -> np.ndarray:
  """The 1-D resampling filter: ``weights`` convolved with ``[1, 1]``, summing to 1.

  The 2-D filter is its outer product with itself (separable).
  """
  taps = np.convolve(np.asarray(weights, np.float64), [1.0, 1.0])
  return taps / taps.sum()


def _pad_axis(x: Array, axis: int, low: int, high: int) -> Array:
  pads = [(0, 0)] * x.ndim
  pads[axis] = (low, high)
  return jnp.pad(x, pads)


def _filter_axis(x: Array, taps: np.ndarray, axis: int, stride: int) -> Array:
  """Valid correlation of ``x`` with ``taps`` along ``axis``, then every ``stride``-th output."""
  n, m = x.shape[axis], len(taps)
  count = (n - m) // stride + 1
  return sum(float(t) * lax.slice_in_dim(x, i, i + stride * (count - 1) + 1,
                                         stride, axis)
             for i, t in enumerate(taps))


def downsample(x: Array, taps: np.ndarray) -> Array:
  """Low-pass filter and halve: ``[B, H, W, C] -> [B, H/2, W/2, C]``.

  StyleGAN2's ``downsample2d`` (upfirdn2d: pad ``((m-1)//2, (m-2)//2)``,
  filter, keep every second sample) with the separable filter ``taps``
  (length ``m``), on each spatial axis.
  """
  m = len(taps)
  for axis in (1, 2):
    x = _filter_axis(_pad_axis(x, axis, (m - 1) // 2, (m - 2) // 2),
                     taps[::-1], axis, 2)
  return x


def upsample(x: Array, taps: np.ndarray) -> Array:
  """Double and low-pass filter: ``[B, H, W, C] -> [B, 2H, 2W, C]``.

  StyleGAN2's ``upsample2d`` (upfirdn2d: a zero after each sample, pad
  ``((m+1)//2, (m-2)//2)``, filter with gain 2 per axis) with the separable
  filter ``taps`` (length ``m``), on each spatial axis.
  """
  m = len(taps)
  for axis in (1, 2):
    shape = list(x.shape)
    shape[axis] *= 2
    x = jnp.stack([x, jnp.zeros_like(x)], axis + 1).reshape(shape)
    x = _filter_axis(_pad_axis(x, axis, (m + 1) // 2, (m - 2) // 2),
                     2.0 * taps[::-1], axis, 1)
  return x


class Conv(nn.Module):
  """A bias-free ``K x K`` convolution (grouped), 'SAME' padding, MSR-initialised.

  Grouped as PyTorch's ``groups``: output channel ``g * (out / groups) + j``
  sees the input channels of group ``g`` only. The kernel is ``[K, K, in /
  groups, out]``.

  Attributes:
    features: output channels.
    kernel_size: K (odd).
    groups: cardinality.
    gain: initialisation gain (``msr_init``); 0 initialises to zero.
    dtype: computation dtype.
    fast_conv_grad: compute with
      :func:`ganjax.models.layers.conv_general_dilated` (one convolution per
      group, gradients fast on XLA:CPU, where the gradient of a
      ``feature_group_count`` convolution is two orders of magnitude slower);
      False: ``lax.conv_general_dilated`` with ``feature_group_count`` (one
      grouped convolution: for accelerators, and far quicker to compile at
      96 groups).
  """
  features: int
  kernel_size: int = 1
  groups: int = 1
  gain: float = 1.0
  dtype: Any = None
  fast_conv_grad: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``[B, H, W, in] -> [B, H, W, features]``."""
    channels = x.shape[-1]
    if channels % self.groups or self.features % self.groups:
      raise ValueError(f'Conv: {self.groups} groups do not divide {channels} '
                       f'input and {self.features} output channels.')
    kernel = self.param('kernel', msr_init(self.gain),
                        (self.kernel_size, self.kernel_size,
                         channels // self.groups, self.features))
    x, kernel = promote_dtype(x, kernel, dtype=self.dtype)
    if self.kernel_size == 1 and self.groups == 1:
      return x @ kernel[0, 0]
    conv = conv_general_dilated if self.fast_conv_grad else \
        lax.conv_general_dilated
    return conv(x, kernel, (1, 1), 'SAME',
                dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                feature_group_count=self.groups)


class BiasedActivation(nn.Module):
  """``leaky_relu(x + bias, 0.2)``, the bias zero-initialised, per channel."""
  dtype: Any = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    bias = self.param('bias', nn.initializers.zeros_init(), (x.shape[-1],))
    x, bias = promote_dtype(x, bias, dtype=self.dtype)
    return nn.leaky_relu(x + bias, LEAKY_SLOPE)


class ResidualBlock(nn.Module):
  """R3GAN's inverted-bottleneck residual block, ``x + branch(x)``.

  ``branch = project(act(grouped(act(expand(x)))))``: ``expand`` a 1x1 conv
  to ``expansion * C`` channels, ``grouped`` a ``K x K`` conv with
  ``cardinality`` groups, ``project`` a 1x1 conv back to ``C``; ``act`` is a
  per-channel bias and a leaky ReLU (0.2). ``expand`` and ``grouped`` are
  initialised with gain ``ACTIVATION_GAIN * L^(-1/4)`` (fix-up's rescaling
  for ``L`` blocks of ``m = 3`` layers: ``L^(-1/(2m - 2))``), ``project``
  with zeros.

  Attributes:
    cardinality: groups of the ``K x K`` conv.
    expansion: width factor of the bottleneck (2 in the paper).
    kernel_size: K (3 in the paper).
    num_blocks: ``L``, the residual blocks of the whole network.
    dtype: computation dtype.
    fast_conv_grad: how the grouped conv is computed (see ``Conv``).
  """
  cardinality: int
  expansion: int = 2
  kernel_size: int = 3
  num_blocks: int = 1
  dtype: Any = None
  fast_conv_grad: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``[B, H, W, C] -> [B, H, W, C]``."""
    channels = x.shape[-1]
    wide = channels * self.expansion
    gain = ACTIVATION_GAIN * self.num_blocks ** (-1.0 / (2 * LAYERS_PER_BLOCK
                                                         - 2))
    y = Conv(wide, 1, gain=gain, dtype=self.dtype, name='expand')(x)
    y = BiasedActivation(dtype=self.dtype, name='act1')(y)
    y = Conv(wide, self.kernel_size, groups=self.cardinality, gain=gain,
             dtype=self.dtype, fast_conv_grad=self.fast_conv_grad,
             name='grouped')(y)
    y = BiasedActivation(dtype=self.dtype, name='act2')(y)
    y = Conv(channels, 1, gain=0.0, dtype=self.dtype, name='project')(y)
    return x + y


def _layout(image_shape, widths, cardinalities, blocks, model: str):
  """Checks a layout; returns ``(widths, cardinalities, blocks)`` as tuples."""
  widths, cardinalities, blocks = (tuple(int(v) for v in seq) for seq in
                                   (widths, cardinalities, blocks))
  height, width, _ = (int(d) for d in image_shape)
  stages = len(widths)
  size = BASIS_SIZE * 2 ** (stages - 1)
  if not (stages == len(cardinalities) == len(blocks)) or stages < 1:
    raise ValueError(f'{model}: widths {widths}, cardinalities '
                     f'{cardinalities} and blocks {blocks} need one entry '
                     'per stage.')
  if (height, width) != (size, size):
    raise ValueError(
        f'{model}: {stages} stages make {size}x{size} images (4x4 doubled '
        f'{stages - 1} times), not {height}x{width}: give one stage per '
        'resolution from 4x4 up (e.g. 4 for 32x32, 2 for 8x8).')
  for w, c in zip(widths, cardinalities):
    if c < 1 or w % c:
      raise ValueError(f'{model}: cardinality {c} does not divide width {w}.')
  return widths, cardinalities, blocks


class R3GANGenerator(nn.Module):
  """R3GAN's generator: ``z [B, latent_dim] (, y [B]) -> [B, H, W, C]``.

  Stage 0 is the basis: a learned ``4 x 4 x widths[0]`` tensor scaled per
  channel by a bias-free linear map of ``z`` (of ``[z, embed(y)]`` when
  conditional), then ``blocks[0]`` residual blocks; stage ``i > 0``: a 1x1
  conv if the width changes, 2x upsampling, ``blocks[i]`` residual blocks;
  then a 1x1 conv to ``C`` channels. The output is linear: train on data in
  [-1, 1] (``output_range``) and clip samples to it.

  Attributes:
    image_shape: ``(H, W, C)``, ``H = W = 4 * 2^(stages - 1)``.
    latent_dim: size of ``z`` (64 in the paper).
    widths, cardinalities, blocks: per stage, from 4x4 up.
    expansion: bottleneck width factor.
    kernel_size: of the grouped convolutions.
    resampling_filter: weights convolved with ``[1, 1]`` (``lowpass_filter``).
    num_classes: None, or ``C`` (called as ``G(z, y, train=...)``).
    embedding_dim: size of the class embedding concatenated to ``z``; None:
      ``latent_dim`` (the paper's).
    dtype: computation dtype (parameters stay float32).
    fast_conv_grad: how the grouped convs are computed (see ``Conv``).
  """
  image_shape: tuple[int, int, int]
  latent_dim: int = 64
  widths: tuple[int, ...] = PRESETS['cifar10']['widths']
  cardinalities: tuple[int, ...] = PRESETS['cifar10']['cardinalities']
  blocks: tuple[int, ...] = PRESETS['cifar10']['blocks']
  expansion: int = 2
  kernel_size: int = 3
  resampling_filter: tuple[float, ...] = (1, 2, 1)
  num_classes: int | None = None
  embedding_dim: int | None = None
  dtype: Any = None
  fast_conv_grad: bool = True

  def __post_init__(self):
    _layout(self.image_shape, self.widths, self.cardinalities, self.blocks,
            type(self).__name__)
    super().__post_init__()

  @property
  def output_range(self) -> tuple[float, float]:
    """``(-1.0, 1.0)``: the data range it is trained for (the output is linear)."""
    return (-1.0, 1.0)

  @nn.compact
  def __call__(self, z: Array, y: Array | None = None, *,
               train: bool = False) -> Array:
    """Generates images ``[B, H, W, C]`` (``train`` changes nothing: no
    normalisation, no dropout)."""
    del train
    conditioning.check_labels(y, self.num_classes, z.shape[0],
                              type(self).__name__)
    widths, cardinalities, blocks = _layout(
        self.image_shape, self.widths, self.cardinalities, self.blocks,
        type(self).__name__)
    taps = lowpass_filter(self.resampling_filter)
    x = z
    if self.num_classes is not None:
      embedding = self.param('embedding', msr_init(1.0),
                             (self.num_classes,
                              self.embedding_dim or self.latent_dim))
      x = jnp.concatenate([z, embedding[y].astype(z.dtype)], axis=-1)
    basis = self.param('basis', nn.initializers.normal(1.0),
                       (BASIS_SIZE, BASIS_SIZE, widths[0]))
    scale = nn.Dense(widths[0], use_bias=False, kernel_init=msr_init(1.0),
                     dtype=self.dtype, name='basis_scale')(x)
    h = basis.astype(scale.dtype) * scale[:, None, None, :]
    for stage, (width, card, count) in enumerate(zip(widths, cardinalities,
                                                     blocks)):
      if stage:
        if h.shape[-1] != width:
          h = Conv(width, dtype=self.dtype, name=f'stage{stage}_transition')(h)
        h = upsample(h, taps)
      for i in range(count):
        h = ResidualBlock(card, self.expansion, self.kernel_size, sum(blocks),
                          dtype=self.dtype,
                          fast_conv_grad=self.fast_conv_grad,
                          name=f'stage{stage}_block{i}')(h)
    return Conv(self.image_shape[-1], dtype=self.dtype, name='to_image')(h)


class R3GANDiscriminator(nn.Module):
  """R3GAN's discriminator: ``x [B, H, W, C] (, y [B]) -> logits [B]``.

  A 1x1 conv to ``widths[0]``; stage ``i``: ``blocks[i]`` residual blocks,
  then (but the last) 2x low-pass downsampling and a 1x1 conv if the width
  changes; the last stage ends at 4x4 with a depthwise 4x4 conv (a learned
  per-channel spatial weighting) and a bias-free linear layer to 1 logit, or,
  conditional, to ``embedding_dim`` features projected onto the class
  embedding (``logit = <phi(x), embed(y)>``, the embedding initialised with
  gain ``1 / sqrt(embedding_dim)``). Examples never interact: no batch
  statistics, no minibatch layer.

  Attributes:
    image_shape: ``(H, W, C)``.
    widths, cardinalities, blocks: per stage, from the image's resolution
      down to 4x4 (G's reversed).
    expansion, kernel_size, resampling_filter: as in the generator.
    num_classes: None, or ``C`` (called as ``D(x, y, train=...)``).
    embedding_dim: size of the projection; None: ``widths[-1]`` (the paper's:
      G's first width).
    dtype: computation dtype.
    fast_conv_grad: how the grouped convs are computed (see ``Conv``).
  """
  image_shape: tuple[int, int, int]
  widths: tuple[int, ...] = PRESETS['cifar10']['widths']
  cardinalities: tuple[int, ...] = PRESETS['cifar10']['cardinalities']
  blocks: tuple[int, ...] = PRESETS['cifar10']['blocks']
  expansion: int = 2
  kernel_size: int = 3
  resampling_filter: tuple[float, ...] = (1, 2, 1)
  num_classes: int | None = None
  embedding_dim: int | None = None
  dtype: Any = None
  fast_conv_grad: bool = True

  def __post_init__(self):
    _layout(self.image_shape, self.widths[::-1], self.cardinalities[::-1],
            self.blocks[::-1], type(self).__name__)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Array, y: Array | None = None, *,
               train: bool = False) -> Array:
    """Scores images: logits ``[B]``."""
    del train
    conditioning.check_labels(y, self.num_classes, x.shape[0],
                              type(self).__name__)
    widths, cardinalities, blocks = (tuple(s)[::-1] for s in _layout(
        self.image_shape, self.widths[::-1], self.cardinalities[::-1],
        self.blocks[::-1], type(self).__name__))
    taps = lowpass_filter(self.resampling_filter)
    h = Conv(widths[0], dtype=self.dtype, name='from_image')(x)
    last = len(widths) - 1
    for stage, (width, card, count) in enumerate(zip(widths, cardinalities,
                                                     blocks)):
      for i in range(count):
        h = ResidualBlock(card, self.expansion, self.kernel_size, sum(blocks),
                          dtype=self.dtype,
                          fast_conv_grad=self.fast_conv_grad,
                          name=f'stage{stage}_block{i}')(h)
      if stage < last:
        h = downsample(h, taps)
        if width != widths[stage + 1]:
          h = Conv(widths[stage + 1], dtype=self.dtype,
                   name=f'stage{stage}_transition')(h)
    basis = self.param('basis', msr_init(1.0),
                       (BASIS_SIZE, BASIS_SIZE, widths[-1]))
    h, basis = promote_dtype(h, basis, dtype=self.dtype)
    phi = jnp.einsum('bhwc,hwc->bc', h, basis)
    if self.num_classes is None:
      return nn.Dense(1, use_bias=False, kernel_init=msr_init(1.0),
                      dtype=self.dtype, name='logit')(phi)[:, 0]
    dim = self.embedding_dim or widths[-1]
    phi = nn.Dense(dim, use_bias=False, kernel_init=msr_init(1.0),
                   dtype=self.dtype, name='logit')(phi)
    embedding = self.param('embedding', msr_init(1.0 / math.sqrt(dim)),
                           (self.num_classes, dim))
    return jnp.sum(phi * embedding[y].astype(phi.dtype), axis=-1)


def r3gan(
    image_shape: tuple[int, int, int] = (32, 32, 3),
    latent_dim: int = 64,
    preset: str | None = None,
    widths: Sequence[int] | None = None,
    cardinalities: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
    expansion: int = 2,
    kernel_size: int = 3,
    num_classes: int | None = None,
    fast_conv_grad: bool = True,
) -> tuple[R3GANGenerator, R3GANDiscriminator]:
  """Builds R3GAN's generator/discriminator pair.

  The published models are presets (``PRESETS``): ``"cifar10"`` (the default
  for 32x32: widths 768, cardinality 96, 2 blocks per stage; G 20,732,160 /
  D 20,683,776 parameters, conditional 20,781,952 / 21,280,512 with 10
  classes), ``"ffhq64"`` (the default for 64x64), ``"ffhq256"`` (for
  256x256), ``"imagenet32"`` (widths 1536, conditional) and ``"imagenet64"``.
  Any layout: ``widths``, ``cardinalities``, ``blocks`` per G stage from
  4x4 up (D uses them reversed), e.g. ``widths=(64, 64)`` for 8x8 images.

  References:
    Huang et al., 2024, https://arxiv.org/abs/2501.05441 and the official
    code ``brownvc/R3GAN`` (``train.py`` presets).

  Args:
    image_shape: ``(H, W, C)``, square, ``H = 4 * 2^(stages - 1)``.
    latent_dim: size of ``z`` (64 in every preset).
    preset: a name in ``PRESETS``; None: the preset of the image size (32:
      cifar10, 64: ffhq64, 256: ffhq256) unless ``widths`` are given.
    widths: a layout of its own instead of the preset's, one width per
      stage from 4x4 up; its cardinalities default to ``width // 8`` and
      its blocks to 2 per stage.
    cardinalities, blocks: override the preset's or those defaults.
    expansion: bottleneck width factor (2).
    kernel_size: of the grouped convolutions (3).
    num_classes: None, or ``C`` for the class-conditional pair.
    fast_conv_grad: grouped convs as one convolution per group (fast
      gradients on CPU); False: ``feature_group_count`` convolutions (for
      accelerators; see ``Conv``).

  Returns:
    ``(generator, discriminator)``.
  """
  image_shape = tuple(int(d) for d in image_shape)
  if preset is None and widths is None:
    preset = _PRESET_FOR_SIZE.get(image_shape[0])
    if preset is None:
      raise ValueError(
          f'r3gan: no published layout for {image_shape[0]}x{image_shape[1]} '
          f'images; pass widths=... (one per stage from 4x4 up), e.g. '
          f'widths=(64, 64) for 8x8, or a preset from {sorted(PRESETS)}.')
  if preset is not None and preset not in PRESETS:
    raise ValueError(f'r3gan: unknown preset {preset!r}; choose one of '
                     f'{sorted(PRESETS)}.')
  if widths is not None:  # a layout of its own, not the preset's
    widths = tuple(int(w) for w in widths)
    layout = dict(widths=widths, cardinalities=tuple(max(1, w // 8)
                                                     for w in widths),
                  blocks=(2,) * len(widths))
  else:
    layout = dict(PRESETS[preset])
  if cardinalities is not None:
    layout['cardinalities'] = tuple(int(c) for c in cardinalities)
  if blocks is not None:
    layout['blocks'] = tuple(int(b) for b in blocks)
  common = dict(image_shape=image_shape, expansion=int(expansion),
                kernel_size=int(kernel_size), num_classes=num_classes,
                fast_conv_grad=bool(fast_conv_grad))
  generator = R3GANGenerator(latent_dim=int(latent_dim), **layout, **common)
  reversed_layout = {k: tuple(v)[::-1] for k, v in layout.items()}
  discriminator = R3GANDiscriminator(
      embedding_dim=layout['widths'][0] if num_classes else None,
      **reversed_layout, **common)
  return generator, discriminator
