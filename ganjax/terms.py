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
from typing import Any, Callable, NamedTuple, Optional

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
  """
  step: chex.Array
  real_logits: chex.Array
  fake_logits: chex.Array
  real_aux: dict
  fake_aux: dict
  real_labels: Optional[chex.Array]
  fake_labels: Optional[chex.Array]
  axis_name: Optional[str] = None


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
