"""Class conditioning for generators and discriminators.

* :func:`check_labels`: the one check every ganjax model runs on its labels
  (a conditional model needs ``y``, an unconditional one refuses it).
* :class:`ConditionalBatchNorm`: batch norm whose scale and shift depend on the
  class (Dumoulin et al. 2017; de Vries et al. 2017), for generators.
* :func:`discriminator_outputs`: the output of a discriminator from its
  features ``phi(x)``: the projection term (Miyato & Koyama 2018), the AC-GAN
  head (Odena et al. 2017) and the features themselves (Salimans et al. 2016).
* :func:`one_hot_labels`: labels concatenated to inputs (Mirza & Osindero 2014).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = Any


def check_labels(y: Array | None, num_classes: int | None, batch_size: int,
                 model: str, required: bool = True) -> None:
  """Checks the labels a model is called with against its ``num_classes``.

  Args:
    y: ``int [B]`` class labels, or None.
    num_classes: the model's ``num_classes`` field (None: unconditional).
    batch_size: ``B``, the leading dimension of the model's other input.
    model: the model's name, for the message.
    required: whether a model with ``num_classes`` needs ``y`` (False for an
      AC-GAN discriminator, which accepts labels and ignores them).

  Raises:
    ValueError: a conditional model without labels, an unconditional model
      with labels (or ``train`` passed positionally, where ``y`` now sits),
      labels of the wrong shape or dtype.
  """
  if isinstance(y, bool):
    raise ValueError(
        f'{model} got a bool where its labels y go: pass train as a keyword, '
        f'e.g. model.apply(variables, x, train={y}).')
  if num_classes is None:
    if y is not None:
      raise ValueError(
          f'{model} is unconditional (num_classes=None) but was called with '
          'labels y. Build it with num_classes=C (e.g. '
          'ganjax.models.dcgan(..., num_classes=10)) to condition on them, '
          'or call it without y.')
    return
  if y is None:
    if not required:
      return
    raise ValueError(
        f'{model} is conditional (num_classes={num_classes}) and needs class '
        'labels: call it as model.apply(variables, inputs, y, train=...) with '
        f'y int32 [B] in [0, {num_classes}) (ganjax.GAN(num_classes='
        f'{num_classes}) does this), or build it with num_classes=None.')
  if jnp.ndim(y) != 1 or jnp.shape(y)[0] != batch_size or \
      not jnp.issubdtype(jnp.result_type(y), jnp.integer):
    raise ValueError(
        f'{model}: labels y must be integers of shape [B] = [{batch_size}], '
        f'got {jnp.result_type(y)} of shape {jnp.shape(y)}. Pass class '
        'indices (e.g. y.astype(jnp.int32)), not one-hot vectors.')


def one_hot_labels(y: Array, num_classes: int, dtype: Any) -> Array:
  """``int [B] -> [B, num_classes]`` one-hot in ``dtype`` (float32 if None).

  References:
    Mirza & Osindero 2014, Conditional Generative Adversarial Nets,
    https://arxiv.org/abs/1411.1784
  """
  return jax.nn.one_hot(y, num_classes, dtype=dtype or jnp.float32)


class ConditionalBatchNorm(nn.Module):
  """Batch norm with a class-dependent scale and shift: ``gamma_y * x_hat + beta_y``.

  Use it in place of ``nn.BatchNorm`` in class-conditional generators (as in
  SN-GAN's cGAN-PD and BigGAN). ``x_hat`` is ``nn.BatchNorm`` without its own
  scale and bias (batch statistics in training, running averages otherwise,
  kept in ``'batch_stats'``); ``gamma_y`` and ``beta_y`` are rows of two
  per-class embeddings initialised to ones and zeros, so that at
  initialisation the layer is plain batch norm.

  References:
    Dumoulin, Shlens, Kudlur 2017, A Learned Representation for Artistic
    Style, https://arxiv.org/abs/1610.07629; de Vries et al. 2017,
    Modulating early visual processing by language,
    https://arxiv.org/abs/1707.00683

  Attributes:
    num_classes: number of classes ``C``.
    use_running_average: normalise with the running averages (evaluation).
    axis_name: mapped axis over which batch statistics are averaged.
    momentum: momentum of the running averages.
    epsilon: added to the variance.
    dtype: computation dtype (parameters and statistics stay float32).
  """

  num_classes: int
  use_running_average: bool = False
  axis_name: str | None = None
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: Array, y: Array) -> Array:
    """Normalises ``x`` and applies the class-dependent affine map.

    Args:
      x: ``[B, ..., F]`` (channels last).
      y: ``int [B]`` class labels in ``[0, num_classes)``.

    Returns:
      ``[B, ..., F]``: ``gamma[y] * x_hat + beta[y]``, broadcast over the
      middle axes.
    """
    features = x.shape[-1]
    x_hat = nn.BatchNorm(use_running_average=self.use_running_average,
                         axis_name=self.axis_name, momentum=self.momentum,
                         epsilon=self.epsilon, use_scale=False, use_bias=False,
                         dtype=self.dtype, name='norm')(x)
    gamma = nn.Embed(self.num_classes, features, dtype=self.dtype,
                     embedding_init=nn.initializers.ones, name='scale')(y)
    beta = nn.Embed(self.num_classes, features, dtype=self.dtype,
                    embedding_init=nn.initializers.zeros, name='bias')(y)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (features,)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape)


Wrap = Callable[[nn.Module, Array, str], Array]


def plain(module: nn.Module, inputs: Array, name: str) -> Array:
  """A :data:`Wrap` that applies ``module`` as it is."""
  del name
  return module(inputs)


def spectral(train: bool) -> Wrap:
  """A :data:`Wrap` that applies ``module`` under ``nn.SpectralNorm``.

  The power-iteration state lives in ``'batch_stats'`` and is updated only when
  ``train`` (Miyato et al. 2018, https://arxiv.org/abs/1802.05957).
  """
  def wrap(module, inputs, name):
    return nn.SpectralNorm(module, name=name)(inputs, update_stats=train)
  return wrap


def discriminator_outputs(
    logits: Array, phi: Array, y: Array | None, *, num_classes: int | None,
    aux_classifier: bool, return_features: bool, wrap: Wrap,
    kernel_init: Callable[..., Array], embedding_init: Callable[..., Array],
    dtype: Any) -> Array | dict[str, Array]:
  """A discriminator's output from its unconditional logits and features.

  Call it inside the discriminator's compact ``__call__``; it creates, in that
  module, the layers it needs: ``'projection'`` (``nn.Embed(C, F)``) for the
  projection discriminator, ``'aux_classifier'`` (``nn.Dense(C)``) for the
  AC-GAN head, each applied through ``wrap`` (``spectral(train)`` to
  spectrally normalise them like the rest of D; the wrappers are named
  ``'projection_sn'`` / ``'aux_classifier_sn'``).

  Projection (``num_classes`` set, ``aux_classifier`` False):
  ``logit = psi(phi(x)) + <embed(y), phi(x)>``. AC-GAN: the logits stay
  unconditional (``y`` is ignored) and ``class_logits = W phi(x) + b``.

  References:
    Miyato & Koyama 2018, cGANs with Projection Discriminator,
    https://arxiv.org/abs/1802.05637; Odena, Olah, Shlens 2017, Conditional
    Image Synthesis with Auxiliary Classifier GANs,
    https://arxiv.org/abs/1610.09585; Salimans et al. 2016, Improved
    Techniques for Training GANs, https://arxiv.org/abs/1606.03498

  Args:
    logits: ``psi(phi(x))``, ``[B]``.
    phi: features ``[B, F]``.
    y: ``int [B]`` labels (checked by the caller with :func:`check_labels`).
    num_classes: ``C`` or None.
    aux_classifier: add the AC-GAN head instead of the projection.
    return_features: add ``"features": phi``.
    wrap: how to apply the new layers (:func:`plain` or :func:`spectral`).
    kernel_init: initializer of the AC-GAN head's kernel.
    embedding_init: initializer of the projection embedding.
    dtype: computation dtype.

  Returns:
    ``logits [B]``, or ``{"logits": [B], "class_logits": [B, C],
    "features": [B, F]}`` (the entries that were asked for) when
    ``aux_classifier`` or ``return_features``.
  """
  if num_classes is not None and not aux_classifier:
    embed = nn.Embed(num_classes, phi.shape[-1], dtype=dtype,
                     embedding_init=embedding_init, name='projection')
    logits = logits + jnp.sum(wrap(embed, y, 'projection_sn') * phi, axis=-1)
  aux = {}
  if aux_classifier:
    head = nn.Dense(num_classes, kernel_init=kernel_init, dtype=dtype,
                    name='aux_classifier')
    aux['class_logits'] = wrap(head, phi, 'aux_classifier_sn')
  if return_features:
    aux['features'] = phi
  return {'logits': logits, **aux} if aux else logits


def check_heads(num_classes: int | None, aux_classifier: bool,
                model: str) -> None:
  """Raises ValueError for an AC-GAN head without ``num_classes``."""
  if num_classes is not None and (isinstance(num_classes, bool) or
                                  int(num_classes) < 1):
    raise ValueError(f'{model}: num_classes must be a positive int or None, '
                     f'got {num_classes!r}.')
  if aux_classifier and num_classes is None:
    raise ValueError(
        f'{model}: aux_classifier=True (the AC-GAN head) needs num_classes; '
        'pass num_classes=C (the number of classes of the data).')
