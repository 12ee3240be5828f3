"""ResNet generator and discriminator of SN-GAN (and cGAN-PD, WGAN-GP's ResNet).

The benchmark architectures of the GAN tables (SN-GAN, cGAN-PD, mimicry,
StudioGAN): pre-activation residual blocks, nearest-neighbour upsampling in
G, average-pool downsampling in D with an "optimised" first block, ReLU, global
sum pooling before D's linear output, spectral normalisation in D.

References:
  Miyato, Kataoka, Koyama, Yoshida 2018, Spectral Normalization for
  Generative Adversarial Networks, https://arxiv.org/abs/1802.05957
  (Appendix B.4, Tables 4 and 5; the chainer code ``pfnet-research/sngan_projection``).
  Miyato & Koyama 2018, cGANs with Projection Discriminator,
  https://arxiv.org/abs/1802.05637
  Gulrajani et al. 2017, Improved Training of Wasserstein GANs,
  https://arxiv.org/abs/1704.00028 (the same ResNet without spectral norm).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ganjax.models import conditioning
from ganjax.models.dcgan import num_upsamplings
from ganjax.models.layers import conv_general_dilated

Array = Any

# Miyato et al.'s chainer code: GlorotUniform(sqrt(2)) for the 3x3 convs of
# the residual branch, GlorotUniform(1) for shortcuts, linear layers, the
# output conv and the projection embedding; zero biases.
residual_init = nn.initializers.variance_scaling(2.0, 'fan_avg', 'uniform')
glorot_init = nn.initializers.xavier_uniform()

# Published layouts: channel multipliers of the base width per stage.
#   G: multipliers[0] at the bottom (the Dense output), one upsampling block
#      per further entry. D: one block per entry, with the downsampling flags.
_PUBLISHED = {
    # SN-GAN / cGAN-PD CIFAR-10 (Miyato et al. 2018, Table 4): G 256, D 128.
    (32, 32): dict(g_multipliers=(1, 1, 1, 1), d_multipliers=(1, 1, 1, 1),
                   d_downsample=(True, True, False, False),
                   g_channels=256, d_channels=128),
    # SN-GAN STL-10 48x48 (Table 5): G 512 -> 64 from 6x6, D 64 -> 1024.
    (48, 48): dict(g_multipliers=(8, 4, 2, 1), d_multipliers=(1, 2, 4, 8, 16),
                   d_downsample=(True, True, True, True, False),
                   g_channels=64, d_channels=64),
    # 64x64 (cGAN-PD's ImageNet layout at 64, mimicry's SNGAN 64).
    (64, 64): dict(g_multipliers=(16, 8, 4, 2, 1),
                   d_multipliers=(1, 2, 4, 8, 16),
                   d_downsample=(True, True, True, True, True), g_channels=64,
                   d_channels=64),
}


def architecture(image_shape: Sequence[int]) -> dict:
  """The layout :func:`resnet` uses for ``image_shape`` ``(H, W, C)``.

  32x32, 48x48 and 64x64 get the published layouts; any other size the
  CIFAR-10 layout with ``n = num_upsamplings(image_shape)`` upsampling blocks
  (28x28: from 7x7; 8x8: from 4x4) and a D that halves twice.

  Returns:
    dict with ``g_multipliers``, ``d_multipliers``, ``d_downsample``,
    ``g_channels``, ``d_channels``.
  """
  image_shape = tuple(int(d) for d in image_shape)
  if len(image_shape) != 3:
    raise ValueError(f'ResNet image_shape must be (height, width, channels), '
                     f'got {image_shape}.')
  if image_shape[:2] in _PUBLISHED:
    return dict(_PUBLISHED[image_shape[:2]])
  n = num_upsamplings(image_shape)
  return dict(g_multipliers=(1,) * (n + 1), d_multipliers=(1, 1, 1, 1),
              d_downsample=(True, True, False, False), g_channels=256,
              d_channels=128)


def upsample(x: Array) -> Array:
  """Nearest-neighbour 2x upsampling, ``[B, H, W, C] -> [B, 2H, 2W, C]``."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample(x: Array) -> Array:
  """2x2 average pooling, ``[B, H, W, C] -> [B, H/2, W/2, C]`` (H, W even)."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _conv(features: int, kernel: int, init, dtype, fast_conv_grad: bool,
          name: str) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), padding='SAME', kernel_init=init,
                 dtype=dtype, name=name,
                 conv_general_dilated=(conv_general_dilated if fast_conv_grad
                                       else None))


class GeneratorBlock(nn.Module):
  """Pre-activation up-block of the SN-GAN generator.

  ``out = conv2(relu(bn2(conv1(up(relu(bn1(x))))))) + shortcut(up(x))``, 3x3
  convs, nearest-neighbour ``up``; the shortcut is a 1x1 conv when the block
  changes the channel count or upsamples (learnable shortcut), else the
  identity. With ``num_classes`` both batch norms are
  :class:`~ganjax.models.conditioning.ConditionalBatchNorm`.

  References:
    Miyato et al. 2018, https://arxiv.org/abs/1802.05957, Figure 8(a); He et
    al. 2016, Identity Mappings in Deep Residual Networks,
    https://arxiv.org/abs/1603.05027

  Attributes:
    features: output channels.
    upsample: double the spatial size.
    num_classes: None, or ``C`` for conditional batch norm.
    axis_name, momentum, epsilon: batch-norm options.
    dtype: computation dtype.
    fast_conv_grad: convs with :func:`ganjax.models.layers.conv_general_dilated`.
  """

  features: int
  upsample: bool = True
  num_classes: int | None = None
  axis_name: str | None = None
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None
  fast_conv_grad: bool = True

  @nn.compact
  def __call__(self, x: Array, y: Array | None = None, *,
               train: bool) -> Array:
    """``[B, H, W, in] (, y [B]) -> [B, 2H, 2W, features]`` (``H, W`` without upsampling)."""
    def bn(name):
      kw = dict(use_running_average=not train, axis_name=self.axis_name,
                momentum=self.momentum, epsilon=self.epsilon, dtype=self.dtype,
                name=name)
      if self.num_classes is None:
        return nn.BatchNorm(**kw)
      return functools.partial(
          conditioning.ConditionalBatchNorm(self.num_classes, **kw), y=y)

    conv = functools.partial(_conv, dtype=self.dtype,
                             fast_conv_grad=self.fast_conv_grad)
    h = nn.relu(bn('bn1')(x))
    if self.upsample:
      h = upsample(h)
    h = conv(self.features, 3, residual_init, name='conv1')(h)
    h = nn.relu(bn('bn2')(h))
    h = conv(self.features, 3, residual_init, name='conv2')(h)
    shortcut = upsample(x) if self.upsample else x
    if self.upsample or x.shape[-1] != self.features:
      shortcut = conv(self.features, 1, glorot_init, name='shortcut')(shortcut)
    return h + shortcut


class DiscriminatorBlock(nn.Module):
  """Pre-activation (down-)block of the SN-GAN discriminator.

  Normal block: ``out = down(conv2(relu(conv1(relu(x))))) + down(sc(x))``,
  with ``sc`` a 1x1 conv when the block downsamples or changes the channel
  count, else the identity. The ``optimized`` first block (on the image: no
  activation before its first conv; Miyato et al. 2018, Appendix B.4):
  ``out = down(conv2(relu(conv1(x)))) + sc(down(x))``. 3x3 convs, 2x2
  average pooling ``down``; every conv spectrally normalised when
  ``spectral_norm`` (state in ``'batch_stats'``, updated in training only).

  References:
    Miyato et al. 2018, https://arxiv.org/abs/1802.05957, Figure 8(b), and
    the ``OptimizedBlock`` of their code.

  Attributes:
    features: output channels.
    downsample: halve the spatial size.
    optimized: the first block of D (always downsamples).
    spectral_norm: wrap every conv in ``nn.SpectralNorm``.
    dtype: computation dtype.
    fast_conv_grad: convs with :func:`ganjax.models.layers.conv_general_dilated`.
  """

  features: int
  downsample: bool = True
  optimized: bool = False
  spectral_norm: bool = True
  dtype: Any = None
  fast_conv_grad: bool = True

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    """``[B, H, W, in] -> [B, H/2, W/2, features]`` (``H, W`` without downsampling)."""
    def conv(features, kernel, init, name, inputs):
      module = _conv(features, kernel, init, self.dtype, self.fast_conv_grad,
                     name)
      if self.spectral_norm:
        return nn.SpectralNorm(module, name=name + '_sn')(inputs,
                                                           update_stats=train)
      return module(inputs)

    if self.optimized:
      h = conv(self.features, 3, residual_init, 'conv1', x)
      h = conv(self.features, 3, residual_init, 'conv2', nn.relu(h))
      h = downsample(h)
      return h + conv(self.features, 1, glorot_init, 'shortcut', downsample(x))
    h = conv(self.features, 3, residual_init, 'conv1', nn.relu(x))
    h = conv(self.features, 3, residual_init, 'conv2', nn.relu(h))
    shortcut = x
    if self.downsample or x.shape[-1] != self.features:
      shortcut = conv(self.features, 1, glorot_init, 'shortcut', x)
    if self.downsample:
      h, shortcut = downsample(h), downsample(shortcut)
    return h + shortcut


class ResNetGenerator(nn.Module):
  """SN-GAN's ResNet generator: ``z [B, latent_dim] (, y [B]) -> [B, H, W, C]`` in [-1, 1].

  Use it for the benchmark GANs (SN-GAN, cGAN-PD, WGAN-GP's ResNet) at 32x32,
  48x48 or 64x64. Architecture: Dense to ``bottom_h x bottom_w x channels *
  multipliers[0]``; one :class:`GeneratorBlock` (upsampling) to ``channels *
  m`` per further ``m`` in ``multipliers``; BatchNorm, ReLU, 3x3 conv to
  ``C``, tanh. ``bottom = (H, W) / 2**(len(multipliers) - 1)``. CIFAR-10
  (Miyato et al. 2018, Table 4): ``channels=256``, ``multipliers=(1, 1, 1,
  1)`` from 4x4, about 4.3M parameters. With ``num_classes`` the blocks use
  conditional batch norm (cGAN-PD; the last BatchNorm stays unconditional, as
  in Miyato & Koyama's code).

  References:
    Miyato et al. 2018, https://arxiv.org/abs/1802.05957; Miyato & Koyama
    2018, https://arxiv.org/abs/1802.05637

  Attributes:
    image_shape: ``(H, W, C)``.
    latent_dim: size of ``z``.
    channels: base width (256 for CIFAR-10, 64 for STL-10 / 64x64).
    multipliers: widths of the stages in units of ``channels``, bottom first;
      None: :func:`architecture` of ``image_shape``.
    num_classes: None, or ``C``: called as ``G(z, y, train=...)``.
    axis_name: mapped axis over which batch norm averages its statistics.
    momentum, epsilon: batch-norm options.
    dtype: computation dtype (parameters and statistics stay float32).
    fast_conv_grad: convs with :func:`ganjax.models.layers.conv_general_dilated`
      (fast gradients on CPU inside ``lax.scan``; reverse mode only).
  """

  image_shape: tuple[int, int, int]
  latent_dim: int
  channels: int = 256
  multipliers: tuple[int, ...] | None = None
  num_classes: int | None = None
  axis_name: str | None = None
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None
  fast_conv_grad: bool = True

  def __post_init__(self):
    self._layout()  # fail at construction on impossible shapes
    conditioning.check_heads(self.num_classes, False, type(self).__name__)
    super().__post_init__()

  def _layout(self) -> tuple[tuple[int, ...], int, int]:
    mult = (architecture(self.image_shape)['g_multipliers']
            if self.multipliers is None else tuple(self.multipliers))
    h, w, _ = self.image_shape
    n = len(mult) - 1
    if not mult or h % 2 ** n or w % 2 ** n:
      raise ValueError(
          f'ResNetGenerator: image_shape {tuple(self.image_shape)} cannot be '
          f'reached by {n} 2x upsamplings (multipliers={mult}); pass '
          'multipliers with one entry more than the number of times H and W '
          'can be halved, e.g. (1, 1, 1, 1) for 32x32.')
    return mult, h // 2 ** n, w // 2 ** n

  @property
  def output_range(self) -> tuple[float, float]:
    """``(-1.0, 1.0)``: the tanh output."""
    return (-1.0, 1.0)

  @nn.compact
  def __call__(self, z: Array, y: Array | None = None, *,
               train: bool) -> Array:
    """Generates images.

    Args:
      z: ``[B, latent_dim]``.
      y: ``int32 [B]`` labels, required with ``num_classes``, refused otherwise.
      train: batch statistics (and running-average updates in
        ``'batch_stats'``) if True, running averages if False.

    Returns:
      ``[B, H, W, C]`` in ``[-1, 1]``.
    """
    conditioning.check_labels(y, self.num_classes, z.shape[0],
                              type(self).__name__)
    mult, sh, sw = self._layout()
    features = self.channels * mult[0]
    x = nn.Dense(sh * sw * features, kernel_init=glorot_init, dtype=self.dtype,
                 name='dense')(z)
    x = x.reshape((z.shape[0], sh, sw, features))
    for i, m in enumerate(mult[1:]):
      x = GeneratorBlock(self.channels * m, upsample=True,
                         num_classes=self.num_classes,
                         axis_name=self.axis_name, momentum=self.momentum,
                         epsilon=self.epsilon, dtype=self.dtype,
                         fast_conv_grad=self.fast_conv_grad,
                         name=f'block{i + 1}')(x, y, train=train)
    x = nn.BatchNorm(use_running_average=not train, axis_name=self.axis_name,
                     momentum=self.momentum, epsilon=self.epsilon,
                     dtype=self.dtype, name='bn')(x)
    x = _conv(self.image_shape[-1], 3, glorot_init, self.dtype,
              self.fast_conv_grad, 'conv_out')(nn.relu(x))
    return jnp.tanh(x)


class ResNetDiscriminator(nn.Module):
  """SN-GAN's ResNet discriminator: ``x [B, H, W, C] (, y [B]) -> logits [B]``.

  Architecture: the optimised :class:`DiscriminatorBlock` to ``channels *
  multipliers[0]`` (downsampling), one block per further multiplier
  (downsampling where ``downsample`` says), ReLU, global sum pooling to
  ``phi(x) [B, F]``, linear ``psi``. Every conv and linear layer spectrally
  normalised (``spectral_norm``; off for WGAN-GP, whose penalty replaces it).
  CIFAR-10 (Miyato et al. 2018, Table 4): ``channels=128``, four blocks,
  downsampling in the first two, about 1.05M parameters. With
  ``num_classes``: the projection discriminator (Miyato & Koyama 2018),
  ``logit = psi(phi) + <embed(y), phi>`` (embedding spectrally normalised
  too); ``aux_classifier``: the AC-GAN head instead.

  References:
    Miyato et al. 2018, https://arxiv.org/abs/1802.05957; Miyato & Koyama
    2018, https://arxiv.org/abs/1802.05637

  Attributes:
    image_shape: ``(H, W, C)``.
    channels: base width (128 for CIFAR-10, 64 for STL-10 / 64x64).
    multipliers: block widths in units of ``channels``; None:
      :func:`architecture` of ``image_shape``.
    downsample: one flag per block (the first must be True); None: from
      :func:`architecture`.
    spectral_norm: spectral normalisation of every layer (state in
      ``'batch_stats'``, updated when ``train``).
    num_classes: None, or ``C`` (projection; called as ``D(x, y, train=...)``).
    aux_classifier: the AC-GAN head ``Dense(C)`` on ``phi`` (needs
      ``num_classes``; D then ignores ``y``); D returns a dict.
    return_features: also return ``"features": phi`` ``[B, F]``.
    dtype: computation dtype.
    fast_conv_grad: convs with :func:`ganjax.models.layers.conv_general_dilated`.
  """

  image_shape: tuple[int, int, int]
  channels: int = 128
  multipliers: tuple[int, ...] | None = None
  downsample: tuple[bool, ...] | None = None
  spectral_norm: bool = True
  num_classes: int | None = None
  aux_classifier: bool = False
  return_features: bool = False
  dtype: Any = None
  fast_conv_grad: bool = True

  def __post_init__(self):
    self._layout()
    conditioning.check_heads(self.num_classes, self.aux_classifier,
                             type(self).__name__)
    super().__post_init__()

  def _layout(self) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    arch = architecture(self.image_shape)
    mult = (arch['d_multipliers'] if self.multipliers is None
            else tuple(self.multipliers))
    down = (arch['d_downsample'] if self.downsample is None
            else tuple(bool(d) for d in self.downsample))
    h, w, _ = self.image_shape
    n = sum(down)
    if len(mult) != len(down) or not down or not down[0] or h % 2 ** n or \
        w % 2 ** n:
      raise ValueError(
          f'ResNetDiscriminator: image_shape {tuple(self.image_shape)} with '
          f'multipliers={mult} and downsample={down}: give one downsample '
          'flag per block, the first True (the optimised block halves), and '
          'no more halvings than H and W allow.')
    return mult, down

  @nn.compact
  def __call__(self, x: Array, y: Array | None = None, *,
               train: bool) -> Array | dict[str, Array]:
    """Scores images.

    Args:
      x: ``[B, H, W, C]``.
      y: ``int32 [B]`` labels, required with ``num_classes`` (optional and
        ignored with ``aux_classifier``), refused otherwise.
      train: update the spectral-norm state if True.

    Returns:
      Logits ``[B]``, or a dict ``{"logits": [B], ...}`` with
      ``aux_classifier`` / ``return_features``.
    """
    conditioning.check_labels(y, self.num_classes, x.shape[0],
                              type(self).__name__,
                              required=not self.aux_classifier)
    mult, down = self._layout()
    h = x
    for i, (m, d) in enumerate(zip(mult, down)):
      h = DiscriminatorBlock(self.channels * m, downsample=d, optimized=i == 0,
                             spectral_norm=self.spectral_norm,
                             dtype=self.dtype,
                             fast_conv_grad=self.fast_conv_grad,
                             name=f'block{i + 1}')(h, train=train)
    phi = jnp.sum(nn.relu(h), axis=(1, 2))   # global sum pooling
    wrap = (conditioning.spectral(train) if self.spectral_norm
            else conditioning.plain)
    logits = wrap(nn.Dense(1, kernel_init=glorot_init, dtype=self.dtype,
                           name='linear'), phi, 'linear_sn')[:, 0]
    return conditioning.discriminator_outputs(
        logits, phi, y, num_classes=self.num_classes,
        aux_classifier=self.aux_classifier,
        return_features=self.return_features, wrap=wrap,
        kernel_init=glorot_init, embedding_init=glorot_init, dtype=self.dtype)


def resnet(
    image_shape: tuple[int, int, int] = (32, 32, 3),
    latent_dim: int = 128,
    g_channels: int | None = None,
    d_channels: int | None = None,
    num_classes: int | None = None,
    spectral_norm: bool = True,
    aux_classifier: bool = False,
    return_features: bool = False,
) -> tuple[ResNetGenerator, ResNetDiscriminator]:
  """Builds SN-GAN's ResNet generator/discriminator pair.

  32x32 with the defaults is SN-GAN's CIFAR-10 model (G 256, D 128 channels:
  4,276,739 + 1,053,825 parameters; published about 4.3M and 1.0M);
  with ``num_classes`` it is cGAN-PD (conditional batch norm in G, projection
  D); with ``spectral_norm=False`` WGAN-GP's ResNet (use the gradient
  penalty). 48x48 and 64x64 get the published STL-10 / 64x64 layouts
  (:func:`architecture`).

  References:
    Miyato et al. 2018, https://arxiv.org/abs/1802.05957; Miyato & Koyama
    2018, https://arxiv.org/abs/1802.05637

  Args:
    image_shape: ``(H, W, C)``.
    latent_dim: size of ``z`` (128 in SN-GAN).
    g_channels: base width of G; None: the published one for the size (256
      at 32x32, 64 at 48x48 / 64x64).
    d_channels: base width of D; None: published (128 at 32x32, else 64).
    num_classes: None, or ``C`` for the class-conditional pair.
    spectral_norm: spectral normalisation in D.
    aux_classifier: the AC-GAN head in D instead of the projection.
    return_features: D also returns ``phi(x)``.

  Returns:
    ``(generator, discriminator)``.
  """
  image_shape = tuple(int(d) for d in image_shape)
  arch = architecture(image_shape)
  generator = ResNetGenerator(
      image_shape=image_shape, latent_dim=latent_dim,
      channels=arch['g_channels'] if g_channels is None else int(g_channels),
      num_classes=num_classes)
  discriminator = ResNetDiscriminator(
      image_shape=image_shape,
      channels=arch['d_channels'] if d_channels is None else int(d_channels),
      spectral_norm=spectral_norm, num_classes=num_classes,
      aux_classifier=aux_classifier, return_features=return_features)
  return generator, discriminator
