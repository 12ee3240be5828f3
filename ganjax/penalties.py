"""Regularisers of the discriminator: gradient penalties, weight clipping, instance noise.

Penalties are small frozen dataclasses passed to ``ganjax.GAN`` (``penalty=``,
one or a sequence, each optionally ``Lazy`` or ``Scheduled``;
``instance_noise=``, ``weight_clip=``). A penalty is ``(d_fn, real, fake,
keys) -> scalar``; ``GAN`` passes a ``Critic`` as ``d_fn`` (callable on real
inputs, ``.fake`` for generated ones). Each is called with per-example random
keys, so that what it draws does not depend on how a batch is split across
devices. ``d_fn`` below is the discriminator as a function ``[B, ...] -> [B]``
that treats examples independently (no batch statistics), so that the gradient
of ``sum(d_fn(x))`` with respect to ``x`` is the per-example input gradient.
"""

import dataclasses
import re
from typing import Callable, Sequence

import chex
import jax
import jax.numpy as jnp

DiscriminatorFn = Callable[[chex.Array], chex.Array]

# Added under the square root of a gradient norm: keeps d||g||/dg finite at g = 0
# (sqrt has an infinite derivative at 0, which would turn the penalty into NaN).
_NORM_EPSILON = 1e-12


def per_example_norm(x: chex.Array) -> chex.Array:
  """Euclidean norm of each example, safe to differentiate at zero.

  Args:
    x: ``[B, ...]`` array.

  Returns:
    ``[B]`` float32 norms ``sqrt(sum(x**2) + 1e-12)``.
  """
  x = x.reshape(x.shape[0], -1).astype(jnp.float32)
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=-1) + _NORM_EPSILON)


def input_gradients(d_fn: DiscriminatorFn, x: chex.Array) -> chex.Array:
  """Per-example gradients ``dD(x_i)/dx_i``, ``[B, ...]``, of a per-example ``d_fn``."""
  return jax.grad(lambda v: jnp.sum(d_fn(v)))(x)


def gradient_penalty(d_fn: DiscriminatorFn, real: chex.Array,
                     fake: chex.Array, alpha: chex.Array,
                     target: float = 1.0) -> chex.Array:
  """WGAN-GP's two-sided penalty on random interpolates of real and fake.

  References:
    Gulrajani et al., 2017, Improved Training of Wasserstein GANs, Eq. 3
    (https://arxiv.org/abs/1704.00028).

  Args:
    d_fn: the discriminator, ``[B, ...] -> [B]``.
    real: ``[B, ...]`` real examples.
    fake: ``[B, ...]`` generated examples (treated as constants).
    alpha: ``[B]`` interpolation weights in [0, 1].
    target: the norm the gradient is pulled toward (1 in the paper).

  Returns:
    scalar ``E[(||grad D(x_hat)|| - target)^2]`` with
    ``x_hat = alpha * real + (1 - alpha) * fake``.
  """
  chex.assert_equal_shape([real, fake])
  chex.assert_shape(alpha, (real.shape[0],))
  alpha = alpha.reshape((-1,) + (1,) * (real.ndim - 1)).astype(real.dtype)
  x_hat = alpha * real + (1.0 - alpha) * jax.lax.stop_gradient(fake)
  norms = per_example_norm(input_gradients(d_fn, x_hat))
  return jnp.mean(jnp.square(norms - target))


def r1_penalty(d_fn: DiscriminatorFn, real: chex.Array) -> chex.Array:
  """The R1 penalty: squared gradient norm of D on real data.

  References:
    Mescheder et al., 2018, Which Training Methods for GANs do actually
    Converge?, Eq. 9 (https://arxiv.org/abs/1801.04406).

  Args:
    d_fn: the discriminator, ``[B, ...] -> [B]``.
    real: ``[B, ...]`` real examples.

  Returns:
    scalar ``E[||grad D(x)||^2]`` (multiply by ``gamma / 2``).
  """
  grads = input_gradients(d_fn, real).reshape(real.shape[0], -1)
  return jnp.mean(jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=-1))


def r2_penalty(d_fn: DiscriminatorFn, fake: chex.Array) -> chex.Array:
  """The R2 penalty: squared gradient norm of D on generated data.

  R1's twin on the other distribution: together they keep D flat on both,
  which the relativistic pairing loss needs to converge locally.

  References:
    Mescheder et al., 2018, Which Training Methods for GANs do actually
    Converge?, Eq. 10 (https://arxiv.org/abs/1801.04406); Huang et al.,
    2024, A Modern GAN Baseline, Eq. 4 (https://arxiv.org/abs/2501.05441).

  Args:
    d_fn: the discriminator as it scores fake examples, ``[B, ...] -> [B]``.
    fake: ``[B, ...]`` generated examples (treated as constants).

  Returns:
    scalar ``E[||grad D(G(z))||^2]`` (multiply by ``gamma / 2``).
  """
  return r1_penalty(d_fn, jax.lax.stop_gradient(fake))


@dataclasses.dataclass(frozen=True)
class Critic:
  """The discriminator as penalties see it, for real and for fake inputs.

  ``critic(x)`` (or ``critic.real(x)``) scores ``x`` as D scores real
  examples, ``critic.fake(x)`` as it scores fake ones: a conditional D gets
  the real examples' labels in the first and the fake examples' labels in
  the second (the same function for an unconditional D). Each is
  ``[B, ...] -> [B]``, per example. ``GAN`` passes one to every penalty;
  penalties written for a plain ``d_fn`` call it as before.
  """
  real: DiscriminatorFn
  fake: DiscriminatorFn

  def __call__(self, x: chex.Array) -> chex.Array:
    return self.real(x)


def fake_scorer(d_fn) -> DiscriminatorFn:
  """``d_fn.fake`` of a ``Critic``; a plain function scores both alike."""
  return getattr(d_fn, "fake", d_fn)


def _uniform_per_example(keys: chex.PRNGKey) -> chex.Array:
  return jax.vmap(lambda k: jax.random.uniform(k, ()))(keys)


@dataclasses.dataclass(frozen=True)
class GradientPenalty:
  """WGAN-GP: ``weight * E[(||grad D(x_hat)|| - target)^2]`` added to D's loss."""
  weight: float = 10.0
  target: float = 1.0

  def __call__(self, d_fn, real, fake, keys):
    """``keys``: ``[B]`` per-example keys; returns the weighted scalar penalty."""
    alpha = _uniform_per_example(keys)
    return self.weight * gradient_penalty(d_fn, real, fake, alpha, self.target)


@dataclasses.dataclass(frozen=True)
class R1:
  """R1: ``gamma / 2 * E[||grad D(x)||^2]`` on real data added to D's loss."""
  gamma: float = 10.0

  def __call__(self, d_fn, real, fake, keys):
    del fake, keys  # R1 looks at real data only.
    return 0.5 * self.gamma * r1_penalty(d_fn, real)


@dataclasses.dataclass(frozen=True)
class R2:
  """R2: ``gamma / 2 * E[||grad D(G(z))||^2]`` on generated data added to D's loss.

  Composes with ``R1`` in a penalty list (``penalty=[R1(g), R2(g)]`` is
  R3GAN's regulariser), and with ``Lazy`` and ``Scheduled``. A conditional
  D scores the fakes with their own labels (``Critic.fake``).
  """
  gamma: float = 10.0

  def __call__(self, d_fn, real, fake, keys):
    del real, keys  # R2 looks at generated data only.
    return 0.5 * self.gamma * r2_penalty(fake_scorer(d_fn), fake)


def evaluate(penalty: Callable, d_fn, real, fake, keys,
             update: chex.Numeric) -> chex.Array:
  """``penalty``'s value at discriminator update ``update``.

  Penalties that depend on the update count (``Lazy``, ``Scheduled``) get
  it; every other penalty is called as ``penalty(d_fn, real, fake, keys)``.
  """
  if isinstance(penalty, (Lazy, Scheduled)):
    return penalty(d_fn, real, fake, keys, update)
  return penalty(d_fn, real, fake, keys)


@dataclasses.dataclass(frozen=True)
class Scheduled:
  """A penalty whose weight follows a schedule of the discriminator update count.

  ``schedule(update) * penalty(...)``: with the penalty's own weight 1 the
  schedule is the weight itself, e.g. R3GAN's gamma decayed from 0.05 to
  0.005 over training (``ganjax.optim.cosine_schedule``).

  Attributes:
    penalty: any penalty ``(d_fn, real, fake, keys) -> scalar`` (``Lazy``
      inside or outside composes: both see the same update count).
    schedule: ``update (int32 scalar) -> weight``, e.g. an optax schedule;
      the update count is ``step * k + i`` for the i-th update of a step.
  """
  penalty: Callable
  schedule: Callable

  def __call__(self, d_fn, real, fake, keys, update: chex.Numeric):
    """``schedule(update) * penalty(...)``, float32."""
    weight = jnp.asarray(self.schedule(update), jnp.float32)
    return weight * evaluate(self.penalty, d_fn, real, fake, keys, update)


@dataclasses.dataclass(frozen=True)
class Lazy:
  """A penalty applied every ``every`` discriminator updates, ``every`` times as strong.

  Lazy regularisation: the penalty changes slowly, so computing it on one
  update in ``every`` with its weight multiplied by ``every`` keeps its
  average effect and saves most of its cost (the double backward pass of R1
  or the gradient penalty).

  References:
    Karras et al., 2020, Analyzing and Improving the Image Quality of StyleGAN,
    Section 3.1 (https://arxiv.org/abs/1912.04958): R1 every 16 minibatches.

  Attributes:
    penalty: any penalty ``(d_fn, real, fake, keys) -> scalar``.
    every: period in discriminator updates (counted over the whole run:
      ``step * k + i`` for the i-th update of a step).
  """
  penalty: Callable
  every: int = 16

  def __post_init__(self):
    if not isinstance(self.every, int) or self.every < 1:
      raise ValueError(f"Lazy penalty: every must be an integer >= 1, got "
                       f"{self.every!r}.")

  def __call__(self, d_fn, real, fake, keys, update: chex.Numeric):
    """``every * penalty(...)`` when ``update % every == 0``, else 0 (not computed)."""
    return jax.lax.cond(
        update % self.every == 0,
        lambda: (self.every * evaluate(self.penalty, d_fn, real, fake, keys,
                                       update)).astype(jnp.float32),
        lambda: jnp.zeros((), jnp.float32))


@dataclasses.dataclass(frozen=True)
class InstanceNoise:
  """Gaussian noise added to every input of D, its std annealed linearly to 0.

  Makes the supports of the real and generated distributions overlap, so that
  the discriminator cannot separate them perfectly early in training.

  References:
    Sonderby et al., 2016, Amortised MAP Inference for Image Super-resolution,
    Section 3.2 (https://arxiv.org/abs/1610.04490); Huszar, 2016, Instance
    Noise: A trick for stabilising GAN training.

  Attributes:
    std: the noise standard deviation at step 0, in data units.
    anneal_steps: steps over which the std falls linearly to 0; 0 keeps it
      constant.
  """
  std: float = 0.1
  anneal_steps: int = 0

  def std_at(self, step: chex.Numeric) -> chex.Array:
    """The noise std at generator step ``step`` (a scalar)."""
    if self.anneal_steps <= 0:
      return jnp.asarray(self.std, jnp.float32)
    remaining = 1.0 - jnp.asarray(step, jnp.float32) / self.anneal_steps
    return self.std * jnp.clip(remaining, 0.0, 1.0)

  def __call__(self, x: chex.Array, keys: chex.PRNGKey,
               step: chex.Numeric) -> chex.Array:
    """Adds noise to ``x`` ``[B, ...]`` with one key per example (``[B]``)."""
    noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], x.dtype))(keys)
    return x + self.std_at(step).astype(x.dtype) * noise


def _wrapped(penalty: Callable) -> list:
  """``penalty`` and the penalties it wraps (``Lazy``, ``Scheduled``), outermost first."""
  chain = [penalty]
  while isinstance(chain[-1], (Lazy, Scheduled)):
    chain.append(chain[-1].penalty)
  return chain


def name_of(penalty: Callable) -> str:
  """The metric name of a penalty: its ``name`` attribute, else its class or
  function name in snake case (``R1`` -> ``r1``, ``GradientPenalty`` ->
  ``gradient_penalty``); ``Lazy`` and ``Scheduled`` penalties are named after
  the one they wrap."""
  penalty = _wrapped(penalty)[-1]
  name = getattr(penalty, "name", None)
  if not isinstance(name, str):
    name = getattr(penalty, "__name__", type(penalty).__name__)
  return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def period(penalty: Callable) -> int:
  """Every how many discriminator updates ``penalty`` is applied (``Lazy``
  inside it, at any depth; 1 otherwise)."""
  lazy = [p.every for p in _wrapped(penalty) if isinstance(p, Lazy)]
  return lazy[0] if lazy else 1


def metric_names(penalties: Sequence[Callable]) -> list[str]:
  """``d_penalty_<name>`` for each of ``penalties`` (``name_of``; a repeated
  name gets the penalty's position: ``d_penalty_r1``, ``d_penalty_r1_1``)."""
  names = []
  for penalty in penalties:
    name = "d_penalty_" + name_of(penalty)
    names.append(name if name not in names else f"{name}_{len(names)}")
  return names


def apply_all(penalties: Sequence[Callable], d_fn, real: chex.Array,
              fake: chex.Array, keys: chex.PRNGKey,
              update: chex.Numeric) -> tuple[chex.Array, dict]:
  """The penalties of a discriminator update, as ``GAN`` adds them to D's loss.

  Args:
    penalties: the ``GAN``'s penalties.
    d_fn: a ``Critic``.
    real, fake: ``[B, ...]`` what D saw of the real and the fake examples.
    keys: ``[B]`` per-example keys; penalty ``i > 0`` folds ``i`` into them.
    update: int32 scalar, the discriminator update count.

  Returns:
    ``(total, metrics)``: the sum, and ``{metric_names[i]: value}``.
  """
  total, metrics = jnp.zeros((), jnp.float32), {}
  for i, (name, penalty) in enumerate(zip(metric_names(penalties), penalties)):
    penalty_keys = keys if not i else jax.vmap(
        lambda k: jax.random.fold_in(k, i))(keys)
    metrics[name] = evaluate(penalty, d_fn, real, fake, penalty_keys, update)
    total = total + metrics[name]
  return total, metrics


def step_metrics(penalties: Sequence[Callable], metrics: dict,
                 updates: chex.Array) -> dict:
  """A step's penalty metrics from its k updates' (``[k]`` each, as
  ``apply_all`` gave them): a lazy penalty's mean over the updates it was
  applied in (0 without one), every other's mean over the k updates."""
  out = {}
  for name, penalty in zip(metric_names(penalties), penalties):
    applied = (updates % period(penalty) == 0).astype(jnp.float32)
    out[name] = (jnp.sum(metrics[name] * applied)
                 / jnp.maximum(jnp.sum(applied), 1.0))
  return out


def clip_weights(params: chex.ArrayTree, clip_value: float) -> chex.ArrayTree:
  """WGAN's weight clipping: every parameter into ``[-c, c]``.

  References:
    Arjovsky et al., 2017, Wasserstein GAN, Algorithm 1
    (https://arxiv.org/abs/1701.07875).
  """
  return jax.tree.map(lambda p: jnp.clip(p, -clip_value, clip_value), params)
