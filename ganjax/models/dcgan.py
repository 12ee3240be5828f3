"""DCGAN generator and discriminator for images of any size divisible by 2**n.

References:
  Radford, Metz, Chintala. Unsupervised Representation Learning with Deep
  Convolutional Generative Adversarial Networks, 2015.
  https://arxiv.org/abs/1511.06434
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ganjax.models import conditioning
from ganjax.models.layers import ConvTranspose, conv_general_dilated

Array = Any

# Radford et al.: "All weights were initialized from a zero-centered Normal
# distribution with standard deviation 0.02."
dcgan_init = nn.initializers.normal(0.02)


def num_upsamplings(image_shape: tuple[int, int, int]) -> int:
  """Number of stride-2 stages for ``image_shape`` ``(H, W, C)``.

  The largest ``n`` such that ``H`` and ``W`` are divisible by ``2**n`` and
  ``H / 2**n`` and ``W / 2**n`` are both at least 4 (28 -> 2, from 7x7;
  32 -> 3, from 4x4; 64 -> 4; 48 -> 3, from 6x6).

  Raises:
    ValueError: if ``image_shape`` is not ``(H, W, C)`` or no ``n >= 1`` exists.
  """
  if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
    raise ValueError(
        f'DCGAN image_shape must be (height, width, channels), got {image_shape}.')
  h, w, _ = (int(d) for d in image_shape)
  n = 0
  while h % 2 ** (n + 1) == 0 and w % 2 ** (n + 1) == 0 and \
      h // 2 ** (n + 1) >= 4 and w // 2 ** (n + 1) >= 4:
    n += 1
  if n == 0:
    raise ValueError(
        f'DCGAN cannot build image_shape {tuple(image_shape)}: height and width'
        ' must both be even and at least 8 (divisible by 2**n with at least 4'
        ' pixels left after n halvings), e.g. 28x28, 32x32, 64x64 or 32x48.')
  return n


class DCGANGenerator(nn.Module):
  """DCGAN generator: latent vector -> image in [-1, 1] by stride-2 transposed convolutions.

  Use it for image GANs on small to medium images (MNIST 28x28, CIFAR 32x32,
  CelebA 64x64); it is the standard convolutional baseline generator.

  Architecture (``n = num_upsamplings(image_shape)``, start size
  ``(H / 2**n, W / 2**n)``): Dense to ``start_h * start_w * base_features *
  2**(n-1)``, reshape, BatchNorm, ReLU; ``n - 1`` blocks of [ConvTranspose 4x4
  stride 2 halving the features, BatchNorm, ReLU]; ConvTranspose 4x4 stride 2
  to ``C`` channels, tanh. Layers followed by BatchNorm have no bias.

  References:
    Radford et al. 2015, https://arxiv.org/abs/1511.06434

  Attributes:
    image_shape: output image shape ``(H, W, C)``.
    latent_dim: size of ``z``.
    base_features: channels of the last hidden layer; they double per stage
      towards the latent end (64 for 28x28 gives 128 -> 64 -> C).
    axis_name: if set, BatchNorm averages its batch statistics over this
      mapped axis (``pmap``/``shard_map``), e.g. ``'batch'``.
    momentum: BatchNorm momentum of the running averages.
    epsilon: BatchNorm epsilon.
    fast_conv_transpose: use :class:`ganjax.models.layers.ConvTranspose`
      (same result and parameters as ``nn.ConvTranspose``, much faster
      gradients on CPU); ``False`` selects ``nn.ConvTranspose``.
    kernel_init: initializer of Dense/ConvTranspose kernels (DCGAN: N(0, 0.02)).
    dtype: computation dtype of every layer (e.g. ``jnp.bfloat16``);
      parameters and batch statistics stay float32. None: inferred from inputs
      and parameters.
    fast_conv_grad: with ``fast_conv_transpose``, compute the transposed
      convolutions' convs with :func:`ganjax.models.layers.conv_general_dilated`
      (same values and gradients, fast inside ``lax.scan`` on CPU, e.g. in
      ``ganjax.loops.scan_steps``); reverse-mode differentiation only.
    num_classes: None (unconditional) or the number of classes ``C``: every
      BatchNorm becomes a :class:`~ganjax.models.conditioning.
      ConditionalBatchNorm` (class-dependent scale and shift; Dumoulin et al.
      2017) and the generator is called as ``G(z, y, train=...)``.
  """

  image_shape: tuple[int, int, int]
  latent_dim: int
  base_features: int = 64
  axis_name: str | None = None
  momentum: float = 0.9
  epsilon: float = 1e-5
  fast_conv_transpose: bool = True
  kernel_init: Callable[..., Array] = dcgan_init
  dtype: Any = None
  fast_conv_grad: bool = True
  num_classes: int | None = None

  def __post_init__(self):
    num_upsamplings(self.image_shape)  # fail at construction on bad shapes
    conditioning.check_heads(self.num_classes, False, type(self).__name__)
    super().__post_init__()

  @property
  def output_range(self) -> tuple[float, float]:
    """``(-1.0, 1.0)``: the tanh output."""
    return (-1.0, 1.0)

  @nn.compact
  def __call__(self, z: Array, y: Array | None = None, *,
               train: bool) -> Array:
    """Generates images.

    Args:
      z: latent vectors, float32 ``[B, latent_dim]``.
      y: ``int32 [B]`` class labels in ``[0, num_classes)``; required when
        ``num_classes`` is set, refused otherwise.
      train: use batch statistics (and update the running averages in
        ``'batch_stats'``) if True, the running averages if False.

    Returns:
      Images ``[B, H, W, C]`` in ``[-1, 1]``.
    """
    conditioning.check_labels(y, self.num_classes, z.shape[0],
                              type(self).__name__)
    h, w, c = self.image_shape
    n = num_upsamplings(self.image_shape)
    sh, sw = h // 2 ** n, w // 2 ** n
    if self.fast_conv_transpose:
      conv_t = functools.partial(
          ConvTranspose,
          conv_general_dilated=(conv_general_dilated if self.fast_conv_grad
                                else None))
    else:
      conv_t = nn.ConvTranspose
    if self.num_classes is None:
      bn = lambda: nn.BatchNorm(use_running_average=not train,
                                axis_name=self.axis_name,
                                momentum=self.momentum, epsilon=self.epsilon,
                                dtype=self.dtype)
    else:
      bn = lambda: functools.partial(conditioning.ConditionalBatchNorm(
          self.num_classes, use_running_average=not train,
          axis_name=self.axis_name, momentum=self.momentum,
          epsilon=self.epsilon, dtype=self.dtype), y=y)
    features = self.base_features * 2 ** (n - 1)
    x = nn.Dense(sh * sw * features, use_bias=False,
                 kernel_init=self.kernel_init, dtype=self.dtype)(z)
    x = x.reshape((z.shape[0], sh, sw, features))
    x = nn.relu(bn()(x))
    for _ in range(n - 1):
      features //= 2
      x = conv_t(features, (4, 4), strides=(2, 2), padding='SAME',
                 use_bias=False, kernel_init=self.kernel_init,
                 dtype=self.dtype)(x)
      x = nn.relu(bn()(x))
    x = conv_t(c, (4, 4), strides=(2, 2), padding='SAME',
               kernel_init=self.kernel_init, dtype=self.dtype)(x)
    return jnp.tanh(x)


class DCGANDiscriminator(nn.Module):
  """DCGAN discriminator: image -> real/fake logit by stride-2 convolutions.

  Use it with :class:`DCGANGenerator`; set ``spectral_norm=True`` for the
  spectrally normalised variant (Miyato et al. 2018) that most modern
  DCGAN-style discriminators use instead of batch norm.

  Architecture (``n = num_upsamplings(image_shape)``): ``n`` Conv 4x4
  stride 2 with ``base_features * 2**i`` features, each followed by leaky
  ReLU; flatten; Dense(1). There is no batch norm by default (unlike the
  original paper), so the discriminator has no batch statistics and real and
  fake images can be scored in one call. ``batch_norm=True`` adds BatchNorm
  after every conv except the first, as in the paper.

  References:
    Radford et al. 2015, https://arxiv.org/abs/1511.06434

  Attributes:
    image_shape: input image shape ``(H, W, C)``.
    base_features: features of the first conv; they double per stage.
    spectral_norm: wrap every Conv and Dense in ``nn.SpectralNorm`` (its power
      iteration state lives in ``'batch_stats'`` and is updated when
      ``train``).
    negative_slope: leaky ReLU slope.
    batch_norm: add BatchNorm after convs 2..n (default False).
    axis_name: mapped axis over which BatchNorm averages its statistics; only
      used with ``batch_norm=True``.
    momentum: BatchNorm momentum.
    epsilon: BatchNorm epsilon.
    kernel_init: initializer of Conv/Dense kernels (DCGAN: N(0, 0.02)).
    dtype: computation dtype of every layer (e.g. ``jnp.bfloat16``);
      parameters and batch/spectral-norm statistics stay float32. None:
      inferred from inputs and parameters.
    fast_conv_grad: compute the convs with
      :func:`ganjax.models.layers.conv_general_dilated` (the same values and
      gradients as ``lax.conv_general_dilated``, bit for bit here, with a
      backward pass that XLA:CPU runs ~10x faster inside ``lax.scan``);
      ``False`` selects flax's default. Reverse-mode only: set it to False
      to take ``jax.jvp`` / ``jax.jacfwd`` of the discriminator.
    num_classes: None (unconditional) or the number of classes ``C``: a
      projection discriminator (Miyato & Koyama 2018), ``logit = psi(phi(x))
      + <embed(y), phi(x)>`` with ``phi(x)`` the flattened last conv features
      and ``embed`` an ``nn.Embed(C, F)`` named ``'projection'``
      (spectrally normalised with ``spectral_norm``); called as
      ``D(x, y, train=...)``.
    aux_classifier: add the AC-GAN head (Odena et al. 2017), ``Dense(C)`` on
      ``phi(x)`` named ``'aux_classifier'``; needs ``num_classes``. D is then
      not projection-conditioned: it accepts ``y`` and ignores it. D returns
      ``{"logits": [B], "class_logits": [B, C]}``.
    return_features: also return ``"features": phi(x)`` ``[B, F]`` (feature
      matching, Salimans et al. 2016); D then returns a dict.
  """

  image_shape: tuple[int, int, int]
  base_features: int = 64
  spectral_norm: bool = False
  negative_slope: float = 0.2
  batch_norm: bool = False
  axis_name: str | None = None
  momentum: float = 0.9
  epsilon: float = 1e-5
  kernel_init: Callable[..., Array] = dcgan_init
  dtype: Any = None
  fast_conv_grad: bool = True
  num_classes: int | None = None
  aux_classifier: bool = False
  return_features: bool = False

  def __post_init__(self):
    num_upsamplings(self.image_shape)
    conditioning.check_heads(self.num_classes, self.aux_classifier,
                             type(self).__name__)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Array, y: Array | None = None, *,
               train: bool) -> Array | dict[str, Array]:
    """Scores images.

    Args:
      x: images ``[B, H, W, C]``.
      y: ``int32 [B]`` class labels; required when ``num_classes`` is set
        (optional and ignored with ``aux_classifier``), refused otherwise.
      train: update spectral-norm / batch-norm state if True.

    Returns:
      Raw logits ``[B]`` (no sigmoid); a dict ``{"logits": [B], ...}`` with
      ``aux_classifier`` or ``return_features``.
    """
    conditioning.check_labels(y, self.num_classes, x.shape[0],
                              type(self).__name__,
                              required=not self.aux_classifier)
    n = num_upsamplings(self.image_shape)

    def layer(module, y):
      if self.spectral_norm:
        return nn.SpectralNorm(module)(y, update_stats=train)
      return module(y)

    conv = conv_general_dilated if self.fast_conv_grad else None
    for i in range(n):
      use_bn = self.batch_norm and i > 0
      x = layer(nn.Conv(self.base_features * 2 ** i, (4, 4), strides=(2, 2),
                        padding='SAME', use_bias=not use_bn,
                        kernel_init=self.kernel_init, dtype=self.dtype,
                        conv_general_dilated=conv), x)
      if use_bn:
        x = nn.BatchNorm(use_running_average=not train, axis_name=self.axis_name,
                         momentum=self.momentum, epsilon=self.epsilon,
                         dtype=self.dtype)(x)
      x = nn.leaky_relu(x, self.negative_slope)
    phi = x.reshape((x.shape[0], -1))
    logits = layer(nn.Dense(1, kernel_init=self.kernel_init, dtype=self.dtype),
                   phi)[:, 0]
    wrap = (conditioning.spectral(train) if self.spectral_norm
            else conditioning.plain)
    return conditioning.discriminator_outputs(
        logits, phi, y, num_classes=self.num_classes,
        aux_classifier=self.aux_classifier,
        return_features=self.return_features, wrap=wrap,
        kernel_init=self.kernel_init, embedding_init=self.kernel_init,
        dtype=self.dtype)


def dcgan(
    image_shape: tuple[int, int, int] = (28, 28, 1),
    latent_dim: int = 100,
    base_features: int = 64,
    spectral_norm: bool = False,
    num_classes: int | None = None,
    aux_classifier: bool = False,
    return_features: bool = False,
) -> tuple[DCGANGenerator, DCGANDiscriminator]:
  """Builds a DCGAN generator/discriminator pair.

  References:
    Radford et al. 2015, https://arxiv.org/abs/1511.06434

  Args:
    image_shape: ``(H, W, C)``; H and W divisible by 2 with at least 4 pixels
      left after the halvings (28x28, 32x32, 64x64, 32x48, ...).
    latent_dim: size of the generator input ``z [B, latent_dim]``.
    base_features: width multiplier of both networks.
    spectral_norm: spectral normalisation in the discriminator.
    num_classes: None, or ``C`` for a class-conditional pair: conditional
      batch norm in G (Dumoulin et al. 2017) and, unless ``aux_classifier``,
      a projection discriminator (Miyato & Koyama 2018).
    aux_classifier: the AC-GAN head in D (Odena et al. 2017) instead of the
      projection; needs ``num_classes``.
    return_features: D also returns its features ``phi(x)``.

  Returns:
    ``(generator, discriminator)``: ``z [B, latent_dim] (, y [B]) ->
    [B, H, W, C]`` and ``x [B, H, W, C] (, y [B]) -> logits [B]`` (or a dict
    with ``aux_classifier`` / ``return_features``).
  """
  image_shape = tuple(int(d) for d in image_shape)
  generator = DCGANGenerator(image_shape=image_shape, latent_dim=latent_dim,
                             base_features=base_features,
                             num_classes=num_classes)
  discriminator = DCGANDiscriminator(image_shape=image_shape,
                                     base_features=base_features,
                                     spectral_norm=spectral_norm,
                                     num_classes=num_classes,
                                     aux_classifier=aux_classifier,
                                     return_features=return_features)
  return generator, discriminator
