"""The GAN object: ``init``, a pure ``step`` (k discriminator updates, one generator update), ``sample``.

Algorithm 1 of Goodfellow et al., 2014 (https://arxiv.org/abs/1406.2661): for
each training iteration, k times update the discriminator on a fresh minibatch
of m real examples and m noise samples, then update the generator once on fresh
noise, against the discriminator as it is after its k updates.

Batches. ``step`` takes ``[k, B, *data_shape]`` real data, or a dict
``{"image": [k, B, *data_shape], "label": int32 [k, B]}``. With
``num_classes`` set the game is class-conditional (Mirza & Osindero, 2014):
G is called as ``G(z, y, train=...)``, D as ``D(x, y, train=...)``, real
examples keep their labels and the labels of the fakes are drawn in the step.
What the models and batches must be is ``ganjax.contract``'s.

Randomness. Every random draw comes from ``state.rng`` folded with the step
counter, the update index and the *global index of the example*
(``ganjax.streams``), so the noise (and the fake labels, dropout masks,
augmentations) of example i does not depend on how a batch is split across
devices: the step on 8 devices with a global batch B computes what one device
computes on B.

Data parallelism. With ``axis_name`` set (``ganjax.parallel`` does it), the
step averages gradients, metrics and batch statistics over that named axis, so
the same code runs under ``jax.pmap`` and under ``jax.shard_map``.

Mixed precision. With ``compute_dtype=jnp.bfloat16`` both players compute in
bfloat16 (their ``dtype`` field), while parameters, optimizer states, batch
statistics, logits, losses, penalty norms and metrics stay float32.
"""

import dataclasses
from typing import Any, Callable, Sequence

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ganjax import augment as augment_lib
from ganjax import backend
from ganjax import contract
from ganjax import losses as losses_lib
from ganjax import parallel
from ganjax import penalties as penalties_lib
from ganjax import streams
from ganjax import terms as terms_lib
from ganjax.streams import (AUGMENT_FAKE, AUGMENT_REAL, LABEL, LATENT,
                            NOISE_FAKE, NOISE_REAL, PENALTY)

PyTree = Any
FAKE_LABELS = contract.FAKE_LABELS


@flax.struct.dataclass
class GANState:
  """Everything a run needs to continue: a pytree, checkpointable as a whole.

  Attributes:
    step: int32 scalar, generator updates done so far.
    g_params, d_params: the players' parameters.
    g_batch_stats, d_batch_stats: mutable collections (batch norm running
      averages, spectral-norm vectors); empty dicts when a model has none.
    g_opt_state, d_opt_state: optax states.
    rng: uint32 key data (``jax.random.key_data``) of the run's base key.
    ema_g_params: exponential moving average of ``g_params``, or None.
    augment_p: float32 scalar, ADA's augmentation probability, or None.
  """
  step: jax.Array
  g_params: PyTree
  d_params: PyTree
  g_batch_stats: PyTree
  d_batch_stats: PyTree
  g_opt_state: optax.OptState
  d_opt_state: optax.OptState
  rng: jax.Array
  ema_g_params: PyTree = None
  augment_p: jax.Array | None = None


def _apply(module: nn.Module, params, stats, inputs: tuple, train: bool, rngs):
  """Applies ``module`` to ``inputs``; returns ``(output, new_stats)`` (stats unchanged in eval)."""
  variables = {"params": params}
  if stats:
    variables["batch_stats"] = stats
  if stats and train:
    out, mutated = module.apply(variables, *inputs, train=True, rngs=rngs,
                                mutable=["batch_stats"])
    return out, mutated["batch_stats"]
  return module.apply(variables, *inputs, train=train, rngs=rngs), stats


def _split_outputs(out) -> tuple[jax.Array, dict]:
  """D's output -> ``(logits [B] float32, aux dict)`` (see ``ganjax.terms``)."""
  if isinstance(out, dict):
    aux = {name: value for name, value in out.items() if name != "logits"}
    return out["logits"].astype(jnp.float32), aux
  return out.astype(jnp.float32), {}


def _like(new: PyTree, old: PyTree) -> PyTree:
  """``new`` with the dtypes of ``old`` (statistics stay float32 in bf16 runs)."""
  return jax.tree.map(lambda n, o: n.astype(o.dtype), new, old)


@dataclasses.dataclass(frozen=True, eq=False)
class GAN:
  """A generative adversarial network: two flax modules, a loss, two optimizers.

  Compared by identity (``eq=False``), so that any callable, hashable or not,
  can be a loss, penalty or loss term, and ``jax.jit(gan.step)`` still works.

  Attributes:
    generator: flax module, ``G(z [B, latent_dim], train=...) -> [B,
      *data_shape]``; conditional: ``G(z, y [B], train=...)``.
    discriminator: flax module, ``D(x [B, *data_shape], train=...) -> logits
      [B]`` (or a dict ``{"logits": [B], **aux}``, see ``ganjax.terms``);
      conditional: ``D(x, y, train=...)``. It sees a batch per call, as
      ``d_apply`` says, never one example at a time.
    d_apply: how D is applied to an update's examples, in D's updates and in
      G's alike: ``'separate'`` (the default: the B real and the B fake
      examples in two calls, so that batch norm or a minibatch-std layer sees
      a batch of real or of fake examples) or ``'joint'`` (one call on the 2B
      examples ``[real; fake]``).
    loss: a name in ``ganjax.losses.LOSSES`` or a function
      ``(real_logits, fake_logits) -> (d_loss, g_loss)``, called with the
      logits of the whole global batch (gathered over devices under
      ``ganjax.parallel``), the real logits under ``stop_gradient`` in G's
      update. The losses of ``ganjax.losses`` are recognised by name or as
      functions (``d_real``, ``d_fake`` metrics for the probabilistic ones).
    g_optimizer, d_optimizer: optax transformations.
    k: discriminator updates per generator update (Algorithm 1's k).
    latent_dim: size of ``z``.
    latent_distribution: ``'normal'`` (N(0, I)) or ``'uniform'`` (U[-1, 1]).
    num_classes: None (unconditional) or the number of classes C of a
      class-conditional game; batches then carry int32 labels in [0, C).
    fake_labels: with ``num_classes``, the labels G is asked for in each
      update: ``'uniform'`` (the default: drawn uniformly over the classes,
      per example, in the step) or ``'real'`` (the labels of that update's
      real minibatch: the data's class frequencies, paired fake and real).
    penalty: None, a penalty ``(d_fn, real, fake, keys) -> scalar``
      (``ganjax.penalties.GradientPenalty``, ``R1``, ``R2``, any of them
      wrapped in ``Lazy`` or ``Scheduled``), or a sequence of them, all
      added to D's loss (metrics ``d_penalty``, the sum, and
      ``d_penalty_<name>`` for each, e.g. ``d_penalty_r1``; a lazy one's is
      its value on the updates it is applied in, 0 in a step without one).
    instance_noise: optional ``ganjax.penalties.InstanceNoise`` added to every
      input of the discriminator.
    augment: optional ``ganjax.augment.DiffAugment`` (or any ``(x [B, ...],
      keys [B], probability) -> x``) applied to every input of D, real and
      fake, in D's updates and in G's, before penalties and instance noise.
    ada: optional ``ganjax.augment.ADA``: the probability of ``augment`` is
      ``state.augment_p``, adapted after each step (needs ``augment``).
    loss_terms: callables ``(player, ganjax.terms.UpdateOutputs) -> {name:
      scalar}`` added to that player's loss and reported as ``d_<name>`` /
      ``g_<name>`` (e.g. ``ganjax.terms.AuxiliaryClassifier`` for AC-GAN,
      ``ganjax.terms.FeatureMatching``).
    weight_clip: optional WGAN clipping value c; D's parameters are clipped to
      [-c, c] after each of its updates.
    ema_decay: optional decay of an exponential moving average of G's weights
      (kept in ``state.ema_g_params``, used by ``sample``), warmed up as in
      ``ema_decay_at``; or a schedule ``step -> decay`` used as it is (e.g.
      ``ganjax.optim.ema_half_life_decay``).
    d_loop: how the k discriminator updates are compiled: ``'scan'`` (one
      ``jax.lax.scan``: compile time independent of k), ``'unroll'`` (k copies
      of the update: compile time grows with k) or ``'auto'`` (the default:
      ``'scan'``, except on CPU for a discriminator with plain
      ``lax.conv_general_dilated`` convolutions, e.g. ``flax.linen.Conv``'s
      default), decided once by ``init`` (``ganjax.backend``). Both compute
      the same thing.
    axis_name: named axis over which gradients, metrics and batch statistics
      are averaged and the logits gathered for the loss; set by
      ``ganjax.parallel``, None on one device.
    compute_dtype: None (float32) or a float dtype, e.g. ``jnp.bfloat16``,
      in which G and D compute (mixed precision). The models are cloned with
      ``dtype=compute_dtype``; real batches and latents are cast to it;
      parameters, optimizer states and batch statistics stay float32, and
      logits are cast to float32 before losses, penalties and metrics.
  """
  generator: nn.Module
  discriminator: nn.Module
  loss: str | Callable = "non_saturating"
  d_apply: str = "separate"
  g_optimizer: optax.GradientTransformation = dataclasses.field(
      default_factory=lambda: optax.adam(2e-4, b1=0.5))
  d_optimizer: optax.GradientTransformation = dataclasses.field(
      default_factory=lambda: optax.adam(2e-4, b1=0.5))
  k: int = 1
  latent_dim: int = 100
  latent_distribution: str = "normal"
  num_classes: int | None = None
  fake_labels: str = "uniform"
  penalty: Callable | Sequence[Callable] | None = None
  instance_noise: penalties_lib.InstanceNoise | None = None
  augment: Callable | None = None
  ada: augment_lib.ADA | None = None
  loss_terms: Sequence[Callable] = ()
  weight_clip: float | None = None
  ema_decay: float | Callable | None = None
  d_loop: str = "auto"
  axis_name: str | None = None
  compute_dtype: Any = None

  def __post_init__(self):
    if callable(self.loss_terms):
      object.__setattr__(self, "loss_terms", (self.loss_terms,))
    object.__setattr__(self, "loss_terms", tuple(self.loss_terms))
    contract.check_options(self)
    losses_lib.get(self.loss)  # fails early, listing the known losses
    _ = self._compute_generator, self._compute_discriminator  # dtype fields

  @property
  def penalties(self) -> tuple:
    """``penalty`` as a tuple (empty without one)."""
    if self.penalty is None:
      return ()
    if callable(self.penalty):
      return (self.penalty,)
    return tuple(self.penalty)

  @property
  def conditional(self) -> bool:
    return self.num_classes is not None

  @property
  def _compute_generator(self) -> nn.Module:
    """The generator as the step runs it (in ``compute_dtype``)."""
    return contract.with_compute_dtype(self.generator, self.compute_dtype,
                                       "generator")

  @property
  def _compute_discriminator(self) -> nn.Module:
    """The discriminator as the step runs it (in ``compute_dtype``)."""
    return contract.with_compute_dtype(self.discriminator, self.compute_dtype,
                                       "discriminator")

  def _cast(self, x: jax.Array) -> jax.Array:
    """``x`` in the compute dtype (unchanged without mixed precision)."""
    return x if self.compute_dtype is None else x.astype(self.compute_dtype)

  @property
  def loss_fn(self) -> losses_lib.LossFn:
    return losses_lib.get(self.loss)

  def parallel(self, axis_name: str, sync_batch_norm: bool = True) -> "GAN":
    """This GAN with collectives over ``axis_name`` (used by ``ganjax.parallel``).

    With ``sync_batch_norm`` (the default), the models (those with an
    ``axis_name`` field, every ganjax model) see the global batch: batch
    norm normalises with its statistics, dropout masks follow global example
    indices, minibatch-std groups span devices. ``False`` keeps each
    device's layers to its own examples.
    """
    gan = dataclasses.replace(self, axis_name=axis_name)
    if sync_batch_norm:
      gan = dataclasses.replace(
          gan, generator=contract.with_axis_name(self.generator, axis_name),
          discriminator=contract.with_axis_name(self.discriminator, axis_name))
    return gan

  def _model_inputs(self, x: jax.Array, labels) -> tuple:
    return (x,) if labels is None or not self.conditional else (x, labels)

  # ------------------------------------------------------------------ init

  def init(self, rng: jax.Array, example_batch) -> GANState:
    """Initialises parameters, batch statistics, optimizer states and the rng.

    Checks the model contract once (``ganjax.contract``): both models take
    ``train``; G's ``latent_dim`` and the models' ``num_classes`` agree with
    the GAN's; G produces samples of the data's shape; D returns logits
    ``[B]``; data outside G's ``output_range`` (ganjax generators have one)
    give a warning. Resolves ``d_loop='auto'`` for this backend.

    Args:
      rng: a key (``jax.random.key(seed)``) or legacy uint32 key data.
      example_batch: real data, ``[B, *data_shape]`` or a step batch
        ``[k, B, *data_shape]`` (or such a dict with ``"image"``); its shape
        is checked against G's samples, its values against G's output range.

    Returns:
      a ``GANState`` at step 0.
    """
    contract.check_models(self.generator, self.discriminator, self.latent_dim,
                          self.num_classes)
    images = (example_batch[contract.IMAGE]
              if isinstance(example_batch, dict) else example_batch)
    if isinstance(example_batch, dict) and self.conditional:
      contract.check_label_range(example_batch.get(contract.LABEL),
                                 self.num_classes)
    g_key, d_key, run_key = jax.random.split(streams.as_key(rng), 3)
    z = jnp.zeros((2, self.latent_dim), jnp.float32)
    y = jnp.zeros((2,), jnp.int32) if self.conditional else None
    first = lambda a: None if a is None else a[:1]
    g_vars = backend.init_variables(self.generator, g_key,
                                    self._model_inputs(z[:1], first(y)))
    fake_shape = jax.eval_shape(
        lambda v: self.generator.apply(v, *self._model_inputs(z, y),
                                       train=False), g_vars).shape[1:]
    contract.check_sample_shape(fake_shape, images.shape)
    contract.warn_outside_output_range(self.generator, images)
    x = jnp.zeros((2,) + fake_shape, jnp.float32)
    d_vars = backend.init_variables(self.discriminator, d_key,
                                    self._model_inputs(x[:1], first(y)))
    contract.check_discriminator_output(jax.eval_shape(
        lambda v: self.discriminator.apply(v, *self._model_inputs(x, y),
                                           train=False), d_vars))
    g_params, d_params = g_vars.get("params", {}), d_vars.get("params", {})
    d_stats = d_vars.get("batch_stats", {})
    self._d_loop(d_params, d_stats, self._model_inputs(x[:1], first(y)))
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        d_params=d_params,
        g_batch_stats=g_vars.get("batch_stats", {}),
        d_batch_stats=d_stats,
        g_opt_state=self.g_optimizer.init(g_params),
        d_opt_state=self.d_optimizer.init(d_params),
        rng=jax.random.key_data(run_key),
        ema_g_params=(jax.tree.map(jnp.copy, g_params)
                      if self.ema_decay is not None else None),
        augment_p=(jnp.asarray(self.ada.initial_probability, jnp.float32)
                   if self.ada is not None else None))

  def _d_loop(self, d_params, d_stats, inputs: tuple) -> str:
    """The resolved ``d_loop`` (``ganjax.backend``: decided once per D and shape)."""
    return backend.choose_d_loop(self.d_loop, self._compute_discriminator,
                                 d_params, d_stats, inputs)

  # ----------------------------------------------------------------- step

  def step(self, state: GANState, batch):
    """One iteration of Algorithm 1: k discriminator updates, then one for G.

    Pure and jittable: ``jax.jit(gan.step, donate_argnums=0)``. The k updates
    run in one ``jax.lax.scan`` (or unrolled, see ``d_loop``).

    Args:
      state: a ``GANState``.
      batch: float ``[k, B, *data_shape]``: one real minibatch per
        discriminator update (on one device; under ``ganjax.parallel`` the
        local shard ``[k, B / devices, ...]``), or a dict ``{"image": that,
        "label": int32 [k, B]}`` (labels required with ``num_classes``,
        ignored without).

    Returns:
      ``(new_state, metrics)``; metrics are float32 scalars: ``d_loss``,
      ``g_loss``, ``real_logit``, ``fake_logit`` (mean logits), ``d_real``,
      ``d_fake`` (mean D(x), D(G(z)) for the probabilistic losses),
      ``d_grad_norm``, ``g_grad_norm``; when used ``d_penalty`` and
      ``d_penalty_<name>``, ``instance_noise_std``, ``augment_p`` and
      ``ada_r_t`` (ADA), each loss term's ``d_<name>`` / ``g_<name>``, and
      ``label_out_of_range`` (conditional: 1 when a label of the batch is
      outside [0, num_classes); the step then uses it clipped into range).
      Discriminator metrics are means over the k updates.
    """
    images, labels = contract.unpack(batch, self.k, self.num_classes)
    images = self._cast(images)
    label_flag = None
    if labels is not None:
      label_flag, labels = self._clip_labels(labels)
    d_keys, g_key = streams.update_keys(streams.as_key(state.rng),
                                        state.step, self.k)
    d_updates = state.step * self.k + jnp.arange(self.k, dtype=jnp.int32)

    loop = backend.loop(self._d_loop(
        state.d_params, state.d_batch_stats,
        self._model_inputs(images[0], None if labels is None else labels[0])))
    (d_params, d_opt_state, d_stats), d_metrics = loop(
        lambda carry, xs: self._d_update(state, carry, xs),
        (state.d_params, state.d_opt_state, state.d_batch_stats),
        (images, labels, d_keys, d_updates))
    state = state.replace(d_params=d_params, d_opt_state=d_opt_state,
                          d_batch_stats=d_stats)

    g_params, g_opt_state, g_stats, g_metrics = self._g_update(
        state, images[-1], None if labels is None else labels[-1], g_key)
    ema = state.ema_g_params
    if self.ema_decay is not None:
      decay = self.ema_decay_at(state.step)
      ema = optax.incremental_update(g_params, ema, 1.0 - decay)
    metrics = jax.tree.map(jnp.mean, d_metrics)
    metrics.update(penalties_lib.step_metrics(self.penalties, d_metrics,
                                              d_updates))
    metrics.update(g_metrics)
    if label_flag is not None:
      metrics["label_out_of_range"] = label_flag
    augment_p = state.augment_p
    if self.ada is not None:
      metrics["augment_p"] = augment_p
      devices = 1 if self.axis_name is None else jax.lax.psum(1, self.axis_name)
      augment_p = self.ada.update(augment_p, metrics["ada_r_t"],
                                  self.k * images.shape[1] * devices)
    if self.instance_noise is not None:
      metrics["instance_noise_std"] = self.instance_noise.std_at(state.step)
    new_state = state.replace(
        step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state,
        g_batch_stats=g_stats, ema_g_params=ema, augment_p=augment_p)
    return new_state, metrics

  def _d_update(self, state: GANState, carry, inputs):
    """One discriminator update on one real minibatch and fresh noise."""
    d_params, d_opt_state, d_stats = carry
    real, real_labels, update_key, update = inputs
    keys = self._example_keys(update_key, real.shape[0])
    fake_labels = self._fake_labels(keys, real_labels)
    fake, _ = self._generate(state.g_params, state.g_batch_stats, keys,
                             fake_labels, update_key, train=True)
    contract.check_step_shapes(fake.shape, real.shape)
    fake = jax.lax.stop_gradient(fake)
    real_in = self._d_input(real, keys, AUGMENT_REAL, NOISE_REAL, state)
    fake_in = self._d_input(fake, keys, AUGMENT_FAKE, NOISE_FAKE, state)

    def loss_fn(params):
      (real_logits, real_aux), (fake_logits, fake_aux), stats = (
          self._discriminate_both(params, d_stats, real_in, fake_in,
                                  real_labels, fake_labels, update_key))
      d_loss, _ = self.loss_fn(*self._global(real_logits, fake_logits))
      metrics = {"d_loss": d_loss,
                 "real_logit": jnp.mean(real_logits),
                 "fake_logit": jnp.mean(fake_logits)}
      if losses_lib.is_probabilistic(self.loss):
        metrics["d_real"] = jnp.mean(jax.nn.sigmoid(real_logits))
        metrics["d_fake"] = jnp.mean(jax.nn.sigmoid(fake_logits))
      if self.ada is not None:
        metrics["ada_r_t"] = jnp.mean(jnp.sign(real_logits))
      total = d_loss
      if self.penalties:
        total = total + self._penalty(params, stats, real_in, fake_in,
                                      real_labels, fake_labels, keys,
                                      update_key, update,
                                      metrics)
      outputs = terms_lib.UpdateOutputs(
          state.step, real_logits, fake_logits, real_aux, fake_aux,
          real_labels, fake_labels, self.axis_name)
      total = self._add_terms(terms_lib.DISCRIMINATOR, outputs, total, metrics)
      return total, (stats, metrics)

    grads, (d_stats, metrics) = jax.grad(loss_fn, has_aux=True)(d_params)
    grads, d_stats, metrics = self._mean((grads, d_stats, metrics))
    updates, d_opt_state = self.d_optimizer.update(grads, d_opt_state, d_params)
    d_params = optax.apply_updates(d_params, updates)
    if self.weight_clip is not None:
      d_params = penalties_lib.clip_weights(d_params, self.weight_clip)
    metrics["d_grad_norm"] = optax.tree.norm(grads)
    return (d_params, d_opt_state, d_stats), metrics

  def _g_update(self, state: GANState, real, real_labels, update_key):
    """One generator update on fresh noise, through the current discriminator."""
    keys = self._example_keys(update_key, real.shape[0])
    fake_labels = self._fake_labels(keys, real_labels)
    if fake_labels is not None and any(
        getattr(t, "pairs_share_labels", False) for t in self.loss_terms):
      fake_labels = terms_lib.share_pair_labels(fake_labels)  # ModeSeeking
    latents = self._latents(keys[:, LATENT])  # G's and the terms'
    real_in = self._d_input(real, keys, AUGMENT_REAL, NOISE_REAL, state)

    def loss_fn(params):
      fake, g_stats = self._generate(params, state.g_batch_stats, keys,
                                     fake_labels, update_key, train=True,
                                     latents=latents)
      fake_in = self._d_input(fake, keys, AUGMENT_FAKE, NOISE_FAKE, state)
      # D's batch statistics are not updated here. The real logits serve the
      # losses and terms that use them (relativistic ones, feature matching);
      # with 'separate' calls XLA drops that forward pass otherwise.
      (real_logits, real_aux), (fake_logits, fake_aux), _ = (
          self._discriminate_both(state.d_params, state.d_batch_stats,
                                  real_in, fake_in, real_labels, fake_labels,
                                  update_key))
      real_logits = jax.lax.stop_gradient(real_logits)
      _, g_loss = self.loss_fn(*self._global(real_logits, fake_logits))
      metrics = {"g_loss": g_loss}
      outputs = terms_lib.UpdateOutputs(
          state.step, real_logits, fake_logits, real_aux, fake_aux,
          real_labels, fake_labels, self.axis_name, fake=fake,
          latents=latents)
      total = self._add_terms(terms_lib.GENERATOR, outputs, g_loss, metrics)
      return total, (g_stats, metrics)

    grads, (g_stats, metrics) = jax.grad(loss_fn, has_aux=True)(state.g_params)
    grads, g_stats, metrics = self._mean((grads, g_stats, metrics))
    updates, g_opt_state = self.g_optimizer.update(
        grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    metrics["g_grad_norm"] = optax.tree.norm(grads)
    return g_params, g_opt_state, g_stats, metrics

  def ema_decay_at(self, step: jax.Array) -> jax.Array:
    """The EMA decay used at generator update ``step``: ``min(d, (1+t)/(10+t))``.

    The warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=t)``:
    early averages follow the weights closely, so that the random
    initialisation does not linger in the average (with a constant 0.999 it
    still weighs 5% after 3,000 steps). A schedule ``ema_decay`` is called
    instead, with no warm-up of its own.
    """
    if callable(self.ema_decay):
      return jnp.asarray(self.ema_decay(step), jnp.float32)
    t = jnp.asarray(step, jnp.float32)
    return jnp.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))

  # -------------------------------------------------------------- players

  def _generate(self, g_params, g_stats, keys, labels, update_key,
                train: bool, latents=None):
    """Samples ``[B, ...]`` and G's new batch stats from per-example keys
    (``latents``: the keys' latents, when the caller has drawn them)."""
    z = self._cast(self._latents(keys[:, LATENT]) if latents is None
                   else latents)
    rngs = {"dropout": streams.call_key(update_key, streams.G_CALL)}
    fake, new_stats = _apply(self._compute_generator, g_params, g_stats,
                             self._model_inputs(z, labels), train, rngs)
    return self._cast(fake), _like(new_stats, g_stats)

  def _discriminate(self, d_params, d_stats, x, labels, rng):
    """``((logits [B], aux), new_stats)``: one call of D in training mode."""
    out, new_stats = _apply(self._compute_discriminator, d_params, d_stats,
                            self._model_inputs(x, labels), True,
                            {"dropout": rng})
    return _split_outputs(out), _like(new_stats, d_stats)

  def _discriminate_both(self, d_params, d_stats, real, fake, real_labels,
                         fake_labels, update_key):
    """``(real_out, fake_out, new_stats)`` of D on an update's real and fake
    examples, in the calls ``d_apply`` says (``out``: ``(logits [B], aux)``)."""
    call = lambda stream: streams.call_key(update_key, stream)
    if self.d_apply == "separate":
      real_out, stats = self._discriminate(d_params, d_stats, real,
                                           real_labels, call(streams.D_REAL_CALL))
      fake_out, stats = self._discriminate(d_params, stats, fake, fake_labels,
                                           call(streams.D_FAKE_CALL))
      return real_out, fake_out, stats
    labels = (None if real_labels is None
              else jnp.concatenate([real_labels, fake_labels]))
    both, stats = self._discriminate(d_params, d_stats,
                                     jnp.concatenate([real, fake]), labels,
                                     call(streams.D_JOINT_CALL))
    real_out, fake_out = (jax.tree.map(lambda a, i=i: jnp.split(a, 2)[i], both)
                          for i in (0, 1))
    return real_out, fake_out, stats

  def _global(self, *logits):
    """The logits of the whole global batch (``ganjax.parallel.gather_batch``)."""
    return tuple(parallel.gather_batch(x, self.axis_name) for x in logits)

  def _d_input(self, x, keys, augment_stream, noise_stream, state):
    """What D sees of ``x``: augmented, then with instance noise."""
    if self.augment is not None:
      probability = state.augment_p if self.ada is not None else None
      x = self.augment(x, keys[:, augment_stream], probability)
    if self.instance_noise is not None:
      x = self.instance_noise(x, keys[:, noise_stream], state.step)
    return x

  def _mean(self, tree):
    if self.axis_name is None:
      return tree
    return jax.lax.pmean(tree, self.axis_name)

  def _add_terms(self, player: str, outputs, loss, metrics):
    """``loss`` plus the loss terms of ``player``, each also in ``metrics``."""
    prefix = "d_" if player == terms_lib.DISCRIMINATOR else "g_"
    for term in self.loss_terms:
      for name, value in term(player, outputs).items():
        value = jnp.asarray(value, jnp.float32)
        chex.assert_shape(value, ())
        metrics[prefix + name] = value
        loss = loss + value
    return loss

  def _penalty(self, params, stats, real_in, fake_in, real_labels,
               fake_labels, keys, update_key, update, metrics):
    """The sum of the penalties (``ganjax.penalties.apply_all``), each also in
    ``metrics`` by name."""
    score = lambda labels, call: lambda x: self._discriminate(
        params, stats, x, labels, streams.call_key(update_key, call))[0][0]
    d_fn = penalties_lib.Critic(real=score(real_labels, streams.D_REAL_CALL),
                                fake=score(fake_labels, streams.D_FAKE_CALL))
    total, values = penalties_lib.apply_all(self.penalties, d_fn, real_in,
                                            fake_in, keys[:, PENALTY], update)
    metrics.update(values, d_penalty=total)
    return total

  # ----------------------------------------------------------- randomness

  def _example_keys(self, key: jax.Array, batch_size: int) -> jax.Array:
    """``[B, streams]`` keys, one row per example, from its global index."""
    return streams.example_keys(
        key, parallel.global_index(batch_size, self.axis_name),
        extra=self.conditional or self.augment is not None)

  def _latents(self, keys: jax.Array) -> jax.Array:
    """``[B, latent_dim]`` latents, one per example key ``[B]``."""
    shape = (self.latent_dim,)
    if self.latent_distribution == "uniform":
      draw = lambda k: jax.random.uniform(k, shape, jnp.float32, -1.0, 1.0)
    else:
      draw = lambda k: jax.random.normal(k, shape, jnp.float32)
    return jax.vmap(draw)(keys)

  def _uniform_labels(self, keys: jax.Array) -> jax.Array:
    """``[B]`` int32 labels uniform over the classes, one per key ``[B]``."""
    return jax.vmap(
        lambda k: jax.random.randint(k, (), 0, self.num_classes))(keys)

  def _clip_labels(self, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(flag, labels)``: flag (float32, global) 1 when a label lies outside
    [0, num_classes), and the labels clipped into that range."""
    outside = jnp.any((labels < 0) | (labels >= self.num_classes))
    if self.axis_name is not None:
      outside = jax.lax.pmax(outside, self.axis_name)
    return (outside.astype(jnp.float32),
            jnp.clip(labels, 0, self.num_classes - 1))

  def _fake_labels(self, keys: jax.Array, real_labels):
    """The labels G is asked for in one update (see ``fake_labels``)."""
    if not self.conditional:
      return None
    if self.fake_labels == "real":
      return real_labels
    return self._uniform_labels(keys[:, LABEL])

  # --------------------------------------------------------------- sample

  def generate(self, state: GANState, z: jax.Array, labels=None,
               use_ema: bool = True) -> jax.Array:
    """G in inference mode on given latents: ``[B, *data_shape]`` float32.

    For fixed noise and interpolation; jittable as it is
    (``jax.jit(gan.generate)``). Uses the EMA weights when the state has them
    and ``use_ema``, with the running batch statistics of the trained G
    (``state.g_batch_stats``: batch norm's averages are not averaged again).

    Args:
      state: a ``GANState``.
      z: ``[B, latent_dim]`` latents.
      labels: int ``[B]`` classes, required for a conditional GAN.
      use_ema: use ``state.ema_g_params`` when present.
    """
    chex.assert_shape(z, (None, self.latent_dim))
    labels = contract.check_labels(labels, z.shape[0], self.num_classes)
    contract.check_label_range(labels, self.num_classes)
    if self.conditional and labels is None:
      raise ValueError("generate() of a conditional GAN needs labels [B].")
    params = (state.ema_g_params if use_ema and state.ema_g_params is not None
              else state.g_params)
    images = _apply(self._compute_generator, params, state.g_batch_stats,
                    self._model_inputs(self._cast(z), labels), False,
                    {"dropout": jax.random.key(0)})[0]
    return images.astype(jnp.float32)

  def sample(self, state: GANState, rng: jax.Array, num: int | None = None,
             labels=None, use_ema: bool = True) -> jax.Array:
    """Draws ``num`` samples ``[num, *data_shape]`` with G in inference mode.

    ``num`` is a Python int (the output shape); with ``labels`` it may be
    omitted, so ``jax.jit(gan.sample)(state, key, labels=labels)`` works, as
    does ``gan.sample(state, key, 64)`` inside any jitted function.

    Args:
      state: a ``GANState``.
      rng: a key; the latents are ``jax.random.split(rng, num)``'s draws.
      num: number of samples.
      labels: int ``[num]`` classes for a conditional GAN; None draws them
        uniformly (from ``rng``).
      use_ema: use the EMA weights when present (see ``generate``).
    """
    rng = streams.as_key(rng)
    if num is None:
      if labels is None:
        raise ValueError("sample() needs num (or labels, whose length is num).")
      num = jnp.shape(labels)[0]
    if not isinstance(num, (int, np.integer)) or isinstance(num, bool) or num < 1:
      raise ValueError(f"sample(num=...) must be a positive Python int, got "
                       f"{num!r}; under jax.jit close over it "
                       f"(lambda s, k: gan.sample(s, k, 64)).")
    keys = jax.random.split(rng, num)
    if self.conditional and labels is None:
      labels = self._uniform_labels(jax.random.split(
          jax.random.fold_in(rng, streams.EXTRA_SALT), num))
    return self.generate(state, self._latents(keys), labels, use_ema)
