"""Fully connected generators and discriminators: the paper's MLPs and small ones.

Contract shared by every ganjax model:
  * a generator maps ``z`` ``[B, latent_dim]`` to samples ``[B, *data_shape]``;
  * a discriminator maps ``x`` ``[B, *data_shape]`` to logits ``[B]``;
  * both take ``train: bool``; dropout draws from the ``'dropout'`` rng, one
    mask per example from its global index (``ganjax.models.layers.Dropout``);
  * with ``num_classes`` set they also take labels ``y`` ``int [B]``
    (``G(z, y, train=...)``, ``D(x, y, train=...)``), here concatenated as
    one-hot vectors to ``z`` and to ``x`` (Mirza & Osindero 2014).
"""

import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ganjax.models import conditioning
from ganjax.models import layers

_OUTPUT_ACTIVATIONS: dict[str, Callable] = {
    "sigmoid": nn.sigmoid,   # data in [0, 1], as in the GAN paper
    "tanh": jnp.tanh,        # data in [-1, 1]
    "linear": lambda x: x,   # unbounded data (toy distributions)
}
_OUTPUT_RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "linear": None}


def _kernel_init(init_range: float) -> Callable:
  """U[-init_range, init_range] (pylearn2's ``irange``); 0: flax's default."""
  if not init_range:
    return nn.linear.default_kernel_init

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -init_range, init_range)

  return init


def _output_activation(name: str) -> Callable:
  if name not in _OUTPUT_ACTIVATIONS:
    raise ValueError(f"Unknown output activation {name!r}; choose one of "
                     f"{sorted(_OUTPUT_ACTIVATIONS)}.")
  return _OUTPUT_ACTIVATIONS[name]


class Maxout(nn.Module):
  """Maxout layer: the max over ``pieces`` affine maps, ``[B, D] -> [B, units]``.

  References:
    Goodfellow et al., 2013, Maxout Networks (https://arxiv.org/abs/1302.4389).
  """
  units: int
  pieces: int
  dtype: Any = None
  kernel_init: Callable = nn.linear.default_kernel_init

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(self.units * self.pieces, dtype=self.dtype,
                 kernel_init=self.kernel_init)(x)
    return jnp.max(y.reshape(x.shape[0], self.units, self.pieces), axis=-1)


class MLPGenerator(nn.Module):
  """``z [B, latent_dim] -> [B, *data_shape]`` through ReLU hidden layers.

  Attributes:
    data_shape: shape of one sample, e.g. ``(28, 28, 1)`` or ``(2,)``.
    hidden: widths of the hidden layers.
    output_activation: ``'sigmoid'`` (data in [0, 1]), ``'tanh'`` or ``'linear'``.
    dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters stay
      float32. None: inferred from inputs and parameters.
    init_range: weights drawn from U[-init_range, init_range] (pylearn2's
      ``irange``); 0: flax's default (LeCun normal). Biases start at 0.
    latent_dim: size of ``z``, for ``GAN.init`` to check; None: not stated
      (the first layer takes its width from ``z``).
    num_classes: None, or the number of classes ``C``: the generator is
      called as ``G(z, y, train=...)`` and its input is ``[z, one_hot(y)]``
      (Mirza & Osindero 2014).
  """
  data_shape: Sequence[int]
  hidden: Sequence[int] = (1200, 1200)
  output_activation: str = "sigmoid"
  dtype: Any = None
  init_range: float = 0.0
  latent_dim: Optional[int] = None
  num_classes: Optional[int] = None

  def __post_init__(self):
    conditioning.check_heads(self.num_classes, False, type(self).__name__)
    super().__post_init__()

  @property
  def output_range(self) -> Optional[tuple[float, float]]:
    """Value range of the output: (0, 1) sigmoid, (-1, 1) tanh, None linear."""
    _output_activation(self.output_activation)  # ValueError if unknown
    return _OUTPUT_RANGES[self.output_activation]

  @nn.compact
  def __call__(self, z, y=None, train: bool = True):
    """``z [B, latent] (, y int [B]) -> [B, *data_shape]``."""
    del train  # no dropout or batch norm
    conditioning.check_labels(y, self.num_classes, z.shape[0],
                              type(self).__name__)
    init = _kernel_init(self.init_range)
    x = z
    if self.num_classes is not None:
      x = jnp.concatenate(
          [x, conditioning.one_hot_labels(y, self.num_classes, x.dtype)], -1)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, dtype=self.dtype, kernel_init=init)(x))
    x = nn.Dense(math.prod(self.data_shape), dtype=self.dtype,
                 kernel_init=init)(x)
    x = _output_activation(self.output_activation)(x)
    return x.reshape((z.shape[0],) + tuple(self.data_shape))


class MLPDiscriminator(nn.Module):
  """``x [B, *data_shape] -> logits [B]`` through ReLU or maxout hidden layers.

  Attributes:
    hidden: widths of the hidden layers (units, for maxout).
    maxout_pieces: 0 for ReLU layers, else pieces per maxout unit.
    input_dropout: dropout rate on the input.
    hidden_dropout: dropout rate after every hidden layer.
    dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters stay
      float32. None: inferred from inputs and parameters.
    init_range: as for ``MLPGenerator``.
    num_classes: None, or the number of classes ``C``: called as
      ``D(x, y, train=...)``, the flattened ``x`` (after input dropout) is
      concatenated with ``one_hot(y)`` (Mirza & Osindero 2014); with
      ``aux_classifier`` instead, ``y`` is accepted and ignored.
    aux_classifier: add the AC-GAN head ``Dense(C)`` (named
      ``'aux_classifier'``) on the features ``phi(x)``, the input of the last
      layer (Odena et al. 2017); D returns ``{"logits", "class_logits"}``.
    return_features: also return ``"features": phi(x)`` ``[B, F]`` (after
      dropout, as the last layer sees them); D returns a dict.
    axis_name: the mapped axis the batch is split over (set by
      ``GAN.parallel``): dropout masks by global example index
      (``ganjax.models.layers.Dropout``).
  """
  hidden: Sequence[int] = (128,)
  maxout_pieces: int = 0
  input_dropout: float = 0.0
  hidden_dropout: float = 0.0
  dtype: Any = None
  init_range: float = 0.0
  num_classes: Optional[int] = None
  aux_classifier: bool = False
  return_features: bool = False
  axis_name: Optional[str] = None

  def __post_init__(self):
    conditioning.check_heads(self.num_classes, self.aux_classifier,
                             type(self).__name__)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, y=None, train: bool = True):
    """``x [B, *data_shape] (, y int [B]) -> logits [B]`` (or a dict)."""
    conditioning.check_labels(y, self.num_classes, x.shape[0],
                              type(self).__name__,
                              required=not self.aux_classifier)
    init = _kernel_init(self.init_range)
    x = x.reshape(x.shape[0], -1)
    dropout = lambda rate, x: layers.Dropout(
        rate, axis_name=self.axis_name, deterministic=not train)(x)
    x = dropout(self.input_dropout, x)
    if self.num_classes is not None and not self.aux_classifier:
      x = jnp.concatenate(
          [x, conditioning.one_hot_labels(y, self.num_classes, x.dtype)], -1)
    for width in self.hidden:
      if self.maxout_pieces:
        x = Maxout(width, self.maxout_pieces, dtype=self.dtype,
                   kernel_init=init)(x)
      else:
        x = nn.relu(nn.Dense(width, dtype=self.dtype, kernel_init=init)(x))
      x = dropout(self.hidden_dropout, x)
    logits = nn.Dense(1, dtype=self.dtype, kernel_init=init)(x)[:, 0]
    # The label is already in x: no projection term (num_classes=None here).
    return conditioning.discriminator_outputs(
        logits, x, y, num_classes=self.num_classes if self.aux_classifier
        else None, aux_classifier=self.aux_classifier,
        return_features=self.return_features, wrap=conditioning.plain,
        kernel_init=init, embedding_init=init, dtype=self.dtype)


def goodfellow_mlp(image_shape: Sequence[int] = (28, 28, 1),
                   latent_dim: int = 100, num_classes: Optional[int] = None,
                   aux_classifier: bool = False, return_features: bool = False
                   ) -> tuple[nn.Module, nn.Module]:
  """The GAN paper's MNIST networks.

  G: ``z -> 1200 ReLU -> 1200 ReLU -> pixels`` with a sigmoid (data in [0, 1]).
  D: two maxout layers of 240 units x 5 pieces with dropout (0.2 on the input,
  0.5 on hidden units) -> one logit. Weights start uniform in [-0.05, 0.05]
  (G) and [-0.005, 0.005] (D), as in ``mnist.yaml``. Use with
  ``ganjax.optim.goodfellow_sgd`` and ``k = 1`` to reproduce the paper's
  setup.

  References:
    Goodfellow et al., 2014, Generative Adversarial Nets, Section 5
    (https://arxiv.org/abs/1406.2661), and its pylearn2 ``mnist.yaml``.

  Args:
    image_shape: ``(H, W, C)`` of the data.
    latent_dim: size of ``z`` (kept for a uniform builder signature).
    num_classes: None, or ``C`` for the conditional GAN of Mirza & Osindero
      2014 (one-hot labels concatenated to ``z`` and to ``x``).
    aux_classifier: the AC-GAN head in D (needs ``num_classes``).
    return_features: D also returns its features.

  Returns:
    ``(generator, discriminator)`` flax modules.
  """
  del latent_dim  # the generator's input width is taken from z
  generator = MLPGenerator(tuple(image_shape), hidden=(1200, 1200),
                           output_activation="sigmoid", init_range=0.05,
                           num_classes=num_classes)
  discriminator = MLPDiscriminator(hidden=(240, 240), maxout_pieces=5,
                                   input_dropout=0.2, hidden_dropout=0.5,
                                   init_range=0.005, num_classes=num_classes,
                                   aux_classifier=aux_classifier,
                                   return_features=return_features)
  return generator, discriminator


def small_mlp(image_shape: Sequence[int] = (28, 28, 1), latent_dim: int = 100,
              hidden: int = 128, num_classes: Optional[int] = None,
              aux_classifier: bool = False, return_features: bool = False
              ) -> tuple[nn.Module, nn.Module]:
  """The 100-128-784 generator and 784-128-1 discriminator of a classic tutorial.

  One ReLU hidden layer each; the generator ends in a sigmoid (data in [0, 1]).
  The smallest GAN that learns MNIST-like data; trained with Adam(1e-3).

  Args:
    image_shape: ``(H, W, C)`` of the data.
    latent_dim: size of ``z`` (100 in the tutorial).
    hidden: width of the hidden layers.
    num_classes: None, or ``C``: one-hot labels concatenated to ``z`` and
      ``x`` (Mirza & Osindero 2014).
    aux_classifier: the AC-GAN head in D (needs ``num_classes``).
    return_features: D also returns its features.

  Returns:
    ``(generator, discriminator)`` flax modules.
  """
  del latent_dim
  return (MLPGenerator(tuple(image_shape), hidden=(hidden,),
                       output_activation="sigmoid", num_classes=num_classes),
          MLPDiscriminator(hidden=(hidden,), num_classes=num_classes,
                           aux_classifier=aux_classifier,
                           return_features=return_features))


def toy_mlp(data_dim: int = 2, hidden: int = 128, depth: int = 3,
            num_classes: Optional[int] = None, aux_classifier: bool = False,
            return_features: bool = False) -> tuple[nn.Module, nn.Module]:
  """ReLU MLPs for low-dimensional toy data (the 8-Gaussian ring, the 25-grid).

  The setting of the unrolled-GAN and VEEGAN mixture experiments: ``depth``
  hidden layers of ``hidden`` units in both players, a linear generator output.
  With ``num_classes`` (e.g. one class per mode of the ring), one-hot labels
  are concatenated to ``z`` and ``x`` (Mirza & Osindero 2014);
  ``aux_classifier`` adds the AC-GAN head, ``return_features`` returns D's
  features.

  Returns:
    ``(generator, discriminator)`` mapping ``[B, latent] -> [B, data_dim]`` and
    ``[B, data_dim] -> [B]``.
  """
  widths = (hidden,) * depth
  return (MLPGenerator((data_dim,), hidden=widths, output_activation="linear",
                       num_classes=num_classes),
          MLPDiscriminator(hidden=widths, num_classes=num_classes,
                           aux_classifier=aux_classifier,
                           return_features=return_features))
