"""Extra loss terms: what research code adds to a player's loss without forking the step.

A term is a callable ``term(player, outputs) -> {name: scalar}``. The step
calls every term of ``GAN(loss_terms=...)`` in each discriminator update
(``player == "discriminator"``) and in the generator update (``"generator"``),
adds the returned scalars to that player's loss and reports each as a metric
``d_<name>`` or ``g_<name>`` (discriminator metrics averaged over the k
updates). ``outputs`` (``UpdateOutputs``) holds what the update computed.

Reduce over the batch with ``batch_mean`` (not ``jnp.mean``) where a term is not
a mean of per-example values, so that it is the term of the global batch under
``ganjax.parallel`` as on one device.
"""

import dataclasses
from typing import Any, Callable, ClassVar, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax

DISCRIMINATOR, GENERATOR = "discriminator", "generator"


class UpdateOutputs(NamedTuple):
  """What a discriminator or generator update computed, for loss terms.

  Attributes:
    step: int32 scalar, generator updates done before this step.
    real_logits, fake_logits: ``[B]`` float32 logits of D on the (augmented)
      real and generated inputs.
    real_aux, fake_aux: D's auxiliary outputs (every entry of the dict it
      returns except ``"logits"``, e.g. ``"class_logits" [B, C]``,
      ``"features" [B, F]``); empty dicts for a D that returns logits only.
    real_labels, fake_labels: int32 ``[B]`` class labels (None for an
      unconditional GAN): the data's, and those G was asked for.
    axis_name: the named axis of the data-parallel step, or None.
    fake: ``[B, ...]`` G's samples before augmentation and instance noise,
      differentiable in G's parameters; generator update only (None in
      discriminator updates).
    latents: ``[B, latent_dim]`` float32 latents G got; generator update
      only (None in discriminator updates).
  """
  step: chex.Array
  real_logits: chex.Array
  fake_logits: chex.Array
  real_aux: dict
  fake_aux: dict
  real_labels: Optional[chex.Array]
  fake_labels: Optional[chex.Array]
  axis_name: Optional[str] = None
  fake: Optional[chex.Array] = None
  latents: Optional[chex.Array] = None


LossTerm = Callable[[str, UpdateOutputs], dict]


def batch_mean(x: chex.Array, axis_name: Optional[str]) -> chex.Array:
  """Mean over the global batch of ``x`` ``[B, ...]`` -> ``[...]`` (all devices)."""
  mean = jnp.mean(x.astype(jnp.float32), axis=0)
  return mean if axis_name is None else jax.lax.pmean(mean, axis_name)


def _aux(aux: dict, name: str, term: str) -> Any:
  if name not in aux:
    raise ValueError(
        f"{term} needs the discriminator to return a dict with {name!r} (got "
        f"entries {sorted(aux) + ['logits']}). ganjax discriminators do with "
        f"{'aux_classifier' if name == 'class_logits' else 'return_features'}"
        f"=True; a custom D returns {{'logits': [B], {name!r}: ...}}.")
  return aux[name]


@dataclasses.dataclass(frozen=True)
class AuxiliaryClassifier:
  """AC-GAN: both players also minimise D's class cross-entropy.

  D's loss gains ``weight * (CE(real) + CE(fake))`` (metrics ``d_ac_real``,
  ``d_ac_fake``), G's ``weight * CE(fake)`` (``g_ac_fake``), with
  ``CE = E[-log softmax(class_logits)[label]]`` of D's auxiliary head.

  References:
    Odena et al., 2017, Conditional Image Synthesis with Auxiliary Classifier
    GANs, Eqs. 2-3 (https://arxiv.org/abs/1610.09585).

  Attributes:
    weight: multiplies the cross-entropies.
  """
  weight: float = 1.0

  def __call__(self, player: str, out: UpdateOutputs) -> dict:
    if out.fake_labels is None:
      raise ValueError("AuxiliaryClassifier needs a conditional GAN: set "
                       "GAN(num_classes=...) and feed labelled batches.")
    ce = lambda aux, labels: jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(
            _aux(aux, "class_logits", "AuxiliaryClassifier").astype(
                jnp.float32), labels))
    fake = self.weight * ce(out.fake_aux, out.fake_labels)
    if player == GENERATOR:
      return {"ac_fake": fake}
    return {"ac_real": self.weight * ce(out.real_aux, out.real_labels),
            "ac_fake": fake}


@dataclasses.dataclass(frozen=True)
class FeatureMatching:
  """G matches the mean of D's features on real data.

  G's loss gains ``weight * ||E f(x) - E f(G(z))||^2`` over the global batch
  (metric ``g_feature_matching``), f being D's ``"features"`` output; D is not
  changed.

  References:
    Salimans et al., 2016, Improved Techniques for Training GANs, Section 3.1
    (https://arxiv.org/abs/1606.03498).

  Attributes:
    weight: multiplies the squared distance.
  """
  weight: float = 1.0

  def __call__(self, player: str, out: UpdateOutputs) -> dict:
    if player != GENERATOR:
      return {}
    real = _aux(out.real_aux, "features", "FeatureMatching")
    fake = _aux(out.fake_aux, "features", "FeatureMatching")
    real_mean = jax.lax.stop_gradient(batch_mean(real, out.axis_name))
    fake_mean = batch_mean(fake, out.axis_name)
    return {"feature_matching":
            self.weight * jnp.sum(jnp.square(real_mean - fake_mean))}


def share_pair_labels(labels: chex.Array) -> chex.Array:
  """``[B]`` labels with example ``2j + 1`` given the label of example ``2j``.

  The pairs of ``ModeSeeking`` then share their condition. Pairs are adjacent
  examples, so every device's slice of an even batch holds whole pairs and the
  pairing does not depend on the device count.
  """
  _check_pairs(labels.shape[0], "share_pair_labels")
  return jnp.repeat(labels[0::2], 2, axis=0)


def _check_pairs(batch_size: int, term: str) -> None:
  if batch_size % 2:
    raise ValueError(
        f"{term} pairs examples 2j and 2j + 1 of each device's batch, which "
        f"must be even; got {batch_size}. Use an even per-device batch size "
        "(batch_size / number of devices).")


@dataclasses.dataclass(frozen=True)
class ModeSeeking:
  """Mode seeking: G maximises how far apart its samples are per unit of latent.

  G's loss gains ``weight / (ratio + eps)`` (metric ``g_mode_seeking``) with
  ``ratio = mean |G(z_1) - G(z_2)| / mean |z_1 - z_2|``, both means over the
  pairs of the global batch and over pixels (latent dimensions), as the
  authors' code computes it; D is not changed. The pairs are adjacent
  examples ``(2j, 2j + 1)`` of the generator update: any even per-device
  batch holds whole pairs, so 8 devices compute what one device computes. In
  a conditional GAN the two examples of a pair share the label (the GAN gives
  example ``2j + 1`` the label of ``2j`` in the generator update, see
  ``pairs_share_labels``), as in the paper's conditional setting where both
  latents get the same condition.

  References:
    Mao et al., 2019, Mode Seeking Generative Adversarial Networks for Diverse
    Image Synthesis, Eq. 3 (https://arxiv.org/abs/1903.05628); the authors'
    code (github.com/HelenMao/MSGAN) minimises ``1 / (ratio + 1e-5)``.

  Attributes:
    weight: multiplies the term (the paper's lambda_ms, 1 in its DCGAN runs).
    eps: keeps the term finite when the pairs coincide.
  """
  weight: float = 1.0
  eps: float = 1e-5
  # Read by ganjax.GAN: the generator update gives pairs one label.
  pairs_share_labels: ClassVar[bool] = True

  def __call__(self, player: str, out: UpdateOutputs) -> dict:
    if player != GENERATOR:
      return {}
    if out.fake is None or out.latents is None:
      raise ValueError(
          "ModeSeeking needs the generated batch and its latents "
          "(UpdateOutputs.fake and .latents); ganjax.GAN's generator update "
          "provides them. A custom step must fill both.")
    _check_pairs(out.fake.shape[0], "ModeSeeking")
    pair_mean = lambda x: jnp.mean(
        jnp.abs(x[0::2] - x[1::2]).astype(jnp.float32).reshape(
            x.shape[0] // 2, -1), axis=1)
    ratio = (batch_mean(pair_mean(out.fake), out.axis_name) /
             batch_mean(pair_mean(out.latents), out.axis_name))
    return {"mode_seeking": self.weight / (ratio + self.eps)}
