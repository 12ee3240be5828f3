"""GAN losses computed from discriminator logits.

Every loss has the same signature, after compare_gan::

    d_loss, g_loss = loss(real_logits, fake_logits)

with ``real_logits = D(x)`` and ``fake_logits = D(G(z))`` as raw (pre-sigmoid)
scores of shape ``[B]``, and both losses means over the batch, to be *minimised*
by the discriminator and the generator respectively. The probabilistic losses
are written with ``jax.nn.log_sigmoid`` so that they stay finite at any logit.

The contract with ``ganjax.GAN`` (these losses, and any function given as
``GAN(loss=...)``):

* the logits are those of the whole global batch: under ``ganjax.parallel``
  the step gathers them from every device before calling the loss, so a mean,
  a relativistic pairing or any other reduction over the batch is the one of
  one device (write losses with plain ``jnp.mean``);
* in the generator's update ``real_logits`` come under
  ``jax.lax.stop_gradient``: G's gradient flows through ``fake_logits`` only,
  also for losses whose ``g_loss`` uses the real logits (relativistic ones);
* real example ``i`` and fake example ``i`` have the same global index.
"""

from typing import Callable

import chex
import jax
import jax.numpy as jnp

LossFn = Callable[[chex.Array, chex.Array], tuple[chex.Array, chex.Array]]


def _check(real_logits: chex.Array, fake_logits: chex.Array) -> None:
  chex.assert_rank([real_logits, fake_logits], 1)
  chex.assert_type([real_logits, fake_logits], float)


def _discriminator_cross_entropy(real_logits, fake_logits):
  # -E[log D(x)] - E[log(1 - D(G(z)))], with log D = log_sigmoid(l) and
  # log(1 - D) = log_sigmoid(-l): exact and finite for any logit l.
  return -(jnp.mean(jax.nn.log_sigmoid(real_logits))
           + jnp.mean(jax.nn.log_sigmoid(-fake_logits)))


def minimax(real_logits: chex.Array, fake_logits: chex.Array):
  """The original minimax game, with the saturating generator loss.

  The value function of the paper's Eq. 1: D maximises
  ``E[log D(x)] + E[log(1 - D(G(z)))]`` and G minimises ``E[log(1 - D(G(z)))]``.
  Use it to reproduce the paper's theory; in practice its generator gradient
  vanishes when D rejects samples confidently (prefer ``non_saturating``).

  References:
    Goodfellow et al., 2014, Generative Adversarial Nets, Eq. 1
    (https://arxiv.org/abs/1406.2661).

  Args:
    real_logits: ``[B]`` discriminator logits on real data.
    fake_logits: ``[B]`` discriminator logits on generated data.

  Returns:
    ``(d_loss, g_loss)``, scalars: ``d_loss = -V(D, G)`` and
    ``g_loss = E[log(1 - D(G(z)))]``.
  """
  _check(real_logits, fake_logits)
  d_loss = _discriminator_cross_entropy(real_logits, fake_logits)
  g_loss = jnp.mean(jax.nn.log_sigmoid(-fake_logits))  # log(1 - sigmoid(l))
  return d_loss, g_loss


def non_saturating(real_logits: chex.Array, fake_logits: chex.Array):
  """The minimax discriminator with the non-saturating generator loss.

  G maximises ``log D(G(z))`` instead of minimising ``log(1 - D(G(z)))``: the
  same fixed point, but strong gradients early in training when D rejects
  generated samples. The loss everyone uses in practice.

  References:
    Goodfellow et al., 2014, Generative Adversarial Nets, Section 3
    (https://arxiv.org/abs/1406.2661).

  Args:
    real_logits: ``[B]`` discriminator logits on real data.
    fake_logits: ``[B]`` discriminator logits on generated data.

  Returns:
    ``(d_loss, g_loss)``, scalars; ``g_loss = -E[log D(G(z))]``.
  """
  _check(real_logits, fake_logits)
  d_loss = _discriminator_cross_entropy(real_logits, fake_logits)
  g_loss = -jnp.mean(jax.nn.log_sigmoid(fake_logits))
  return d_loss, g_loss


def wasserstein(real_logits: chex.Array, fake_logits: chex.Array):
  """The Wasserstein GAN critic and generator losses.

  The critic maximises ``E[D(x)] - E[D(G(z))]``; it must be kept (about)
  1-Lipschitz, by weight clipping or a gradient penalty (``ganjax.penalties``).

  References:
    Arjovsky et al., 2017, Wasserstein GAN (https://arxiv.org/abs/1701.07875).

  Args:
    real_logits: ``[B]`` critic scores on real data.
    fake_logits: ``[B]`` critic scores on generated data.

  Returns:
    ``(d_loss, g_loss)``: ``E[D(G(z))] - E[D(x)]`` and ``-E[D(G(z))]``.
  """
  _check(real_logits, fake_logits)
  d_loss = jnp.mean(fake_logits) - jnp.mean(real_logits)
  g_loss = -jnp.mean(fake_logits)
  return d_loss, g_loss


def hinge(real_logits: chex.Array, fake_logits: chex.Array):
  """The hinge loss of geometric GAN / SAGAN / BigGAN.

  References:
    Lim & Ye, 2017, Geometric GAN (https://arxiv.org/abs/1705.02894);
    Miyato et al., 2018, Spectral Normalization (https://arxiv.org/abs/1802.05957).

  Args:
    real_logits: ``[B]`` discriminator scores on real data.
    fake_logits: ``[B]`` discriminator scores on generated data.

  Returns:
    ``(d_loss, g_loss)``: ``E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]`` and
    ``-E[D(G(z))]``.
  """
  _check(real_logits, fake_logits)
  d_loss = (jnp.mean(jax.nn.relu(1.0 - real_logits))
            + jnp.mean(jax.nn.relu(1.0 + fake_logits)))
  g_loss = -jnp.mean(fake_logits)
  return d_loss, g_loss


def least_squares(real_logits: chex.Array, fake_logits: chex.Array):
  """The least-squares GAN loss with targets a = 0, b = c = 1.

  References:
    Mao et al., 2017, Least Squares Generative Adversarial Networks, Eq. 2
    (https://arxiv.org/abs/1611.04076), with its 1/2 factors.

  Args:
    real_logits: ``[B]`` discriminator outputs on real data (no sigmoid).
    fake_logits: ``[B]`` discriminator outputs on generated data.

  Returns:
    ``(d_loss, g_loss)``: ``1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]`` and
    ``1/2 E[(D(G(z)) - 1)^2]``.
  """
  _check(real_logits, fake_logits)
  d_loss = 0.5 * (jnp.mean(jnp.square(real_logits - 1.0))
                  + jnp.mean(jnp.square(fake_logits)))
  g_loss = 0.5 * jnp.mean(jnp.square(fake_logits - 1.0))
  return d_loss, g_loss


def rpgan(real_logits: chex.Array, fake_logits: chex.Array):
  """The relativistic pairing GAN loss (RpGAN) with ``f = softplus``.

  Each real example is paired with the fake example of the same index:
  D learns to score the real one above its fake partner, G the other way
  round. With R1 and R2 (``ganjax.penalties.R1``, ``R2``) it is the loss
  of R3GAN, locally convergent where the unpaired losses are not. Pairs
  never cross example indices, so the loss is a plain batch mean of
  per-pair terms: on several devices each pair is on one device and the
  step computes what one device computes.

  References:
    Jolicoeur-Martineau, 2019, The relativistic discriminator: a key element
    missing from standard GAN, Eq. 8 (https://arxiv.org/abs/1807.00734);
    Huang et al., 2024, The GAN is dead; long live the GAN! A Modern GAN
    Baseline, Eq. 2 (https://arxiv.org/abs/2501.05441).

  Args:
    real_logits: ``[B]`` critic scores on real data.
    fake_logits: ``[B]`` critic scores on generated data; ``fake_logits[i]``
      is paired with ``real_logits[i]``.

  Returns:
    ``(d_loss, g_loss)``: ``E[softplus(D(G(z)) - D(x))]`` and
    ``E[softplus(D(x) - D(G(z)))]``.
  """
  _check(real_logits, fake_logits)
  chex.assert_equal_shape([real_logits, fake_logits])
  # softplus(-(r - f)) = -log sigmoid(r - f): finite for any logits.
  d_loss = jnp.mean(jax.nn.softplus(fake_logits - real_logits))
  g_loss = jnp.mean(jax.nn.softplus(real_logits - fake_logits))
  return d_loss, g_loss


def ragan(real_logits: chex.Array, fake_logits: chex.Array):
  """The relativistic average GAN loss (RaGAN), with ``f = softplus``.

  Each real logit is compared with the mean fake logit and each fake logit
  with the mean real one: D learns that real data look more real than the
  average fake, G the other way round. The means are over the whole global
  batch (the step gathers the logits from every device first), so the loss
  is the same on any number of devices.

  References:
    Jolicoeur-Martineau, 2019, The relativistic discriminator: a key element
    missing from standard GAN, Eqs. 9-10 (https://arxiv.org/abs/1807.00734).

  Args:
    real_logits: ``[B]`` critic scores C(x) on real data.
    fake_logits: ``[B']`` critic scores C(G(z)) on generated data.

  Returns:
    ``(d_loss, g_loss)``: ``E[softplus(-(C(x) - mean C(G(z))))]
    + E[softplus(C(G(z)) - mean C(x))]``, and the same with real and fake
    exchanged.
  """
  _check(real_logits, fake_logits)
  real_rel = real_logits - jnp.mean(fake_logits)  # -log sigmoid(t) = softplus(-t)
  fake_rel = fake_logits - jnp.mean(real_logits)
  d_loss = (jnp.mean(jax.nn.softplus(-real_rel))
            + jnp.mean(jax.nn.softplus(fake_rel)))
  g_loss = (jnp.mean(jax.nn.softplus(-fake_rel))
            + jnp.mean(jax.nn.softplus(real_rel)))
  return d_loss, g_loss


LOSSES: dict[str, LossFn] = {
    "minimax": minimax,
    "non_saturating": non_saturating,
    "wasserstein": wasserstein,
    "hinge": hinge,
    "least_squares": least_squares,
    "rpgan": rpgan,
    "ragan": ragan,
}

# Losses whose discriminator output is a probability through a sigmoid, so
# that D(x) = sigmoid(logit) is meaningful (it goes to 1/2 at equilibrium).
PROBABILISTIC = frozenset({"minimax", "non_saturating"})


def is_probabilistic(loss: str | LossFn) -> bool:
  """Whether D's output through a sigmoid is a probability for ``loss`` (a name or function)."""
  if isinstance(loss, str):
    return loss in PROBABILISTIC
  return any(loss is LOSSES[name] for name in PROBABILISTIC)


def get(name: str | LossFn) -> LossFn:
  """Returns the loss function called ``name`` (a callable passes through)."""
  if callable(name):
    return name
  if name not in LOSSES:
    raise ValueError(
        f"Unknown GAN loss {name!r}. Choose one of {sorted(LOSSES)}, or pass a "
        "function (real_logits, fake_logits) -> (d_loss, g_loss).")
  return LOSSES[name]
