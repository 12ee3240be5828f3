"""The GAN object: ``init``, a pure ``step`` (k discriminator updates, one generator update), ``sample``.

Algorithm 1 of Goodfellow et al., 2014 (https://arxiv.org/abs/1406.2661): for
each training iteration, k times update the discriminator on a fresh minibatch
of m real examples and m noise samples, then update the generator once on fresh
noise, against the discriminator as it is after its k updates.

Randomness. Every random draw comes from ``state.rng`` folded with the step
counter, the update index and the *global index of the example*, so the noise
of example i does not depend on how a batch is split across devices: the step
on 8 devices with a global batch B computes what one device computes on B.

Data parallelism. With ``axis_name`` set (``ganjax.parallel`` does it), the
step averages gradients, metrics and batch statistics over that named axis, so
the same code runs under ``jax.pmap`` and under ``jax.shard_map``.

Mixed precision. With ``compute_dtype=jnp.bfloat16`` both players compute in
bfloat16 (their ``dtype`` field), while parameters, optimizer states, batch
statistics, logits, losses, penalty norms and metrics stay float32.
"""

import dataclasses
import functools
from typing import Any, Callable

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ganjax import losses as losses_lib
from ganjax import penalties as penalties_lib

PyTree = Any

# Per-example random streams, derived from one key per example and update.
_LATENT, _DROPOUT_REAL, _DROPOUT_FAKE, _PENALTY, _NOISE_REAL, _NOISE_FAKE = range(6)
_NUM_STREAMS = 6


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


def _apply(module: nn.Module, params, stats, x, train: bool, rngs):
  """Applies ``module``; returns ``(output, new_stats)`` (stats unchanged in eval)."""
  variables = {"params": params}
  if stats:
    variables["batch_stats"] = stats
  if stats and train:
    out, mutated = module.apply(variables, x, train=True, rngs=rngs,
                                mutable=["batch_stats"])
    return out, mutated["batch_stats"]
  return module.apply(variables, x, train=train, rngs=rngs), stats


def _like(new: PyTree, old: PyTree) -> PyTree:
  """``new`` with the dtypes of ``old`` (statistics stay float32 in bf16 runs)."""
  return jax.tree.map(lambda n, o: n.astype(o.dtype), new, old)


def _as_key(rng) -> jax.Array:
  """Accepts a typed key or legacy uint32 key data; returns a typed key."""
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return rng
  return jax.random.wrap_key_data(rng)


def _draws_rng(module: nn.Module, collection: str, params_def, params_avals,
               x_aval) -> bool:
  """Whether ``module.apply(..., train=True)`` consumes the rng ``collection``.

  Traced abstractly on one example: the rng's key is used by some operation
  of the jaxpr (dropout with rate > 0 in training mode) or not (no dropout
  layer, or rate 0: flax does not draw then). Cached for hashable modules.
  """
  draws = _draws_rng_cached if _hashable(module) else _draws_rng_uncached
  return draws(module, collection, params_def, params_avals, x_aval)


def _hashable(module: nn.Module) -> bool:
  """Whether ``module`` can key a cache (not, e.g., with an array field)."""
  try:
    hash(module)
  except TypeError:
    return False
  return True


def _draws_rng_uncached(module, collection, params_def, params_avals, x_aval):
  params = jax.tree.unflatten(params_def, params_avals)
  x = jax.ShapeDtypeStruct((1,) + x_aval.shape[1:], x_aval.dtype)

  def apply(params, x, key):
    return module.apply({"params": params}, x, train=True,
                        rngs={collection: key})

  jaxpr = jax.make_jaxpr(apply)(params, x, jax.random.key(0)).jaxpr
  key = jaxpr.invars[-1]
  return (any(key is v for eqn in jaxpr.eqns for v in eqn.invars)
          or any(key is v for v in jaxpr.outvars))


_draws_rng_cached = functools.lru_cache(maxsize=256)(_draws_rng_uncached)


def _plain_convs_in(jaxpr) -> bool:
  """Whether ``jaxpr`` has a ``conv_general_dilated`` outside a ``custom_vjp``."""
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      return True
    if name.startswith("custom_vjp"):
      continue  # a custom backward pass, e.g. ganjax.models.layers'
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
        if hasattr(sub, "eqns") and _plain_convs_in(sub):
          return True
  return False


def _has_plain_convs(module: nn.Module, params, stats, x) -> bool:
  """Whether ``module`` applies plain ``lax`` convs (slow gradients in loops on CPU)."""
  avals = lambda tree: jax.tree.map(_aval, tree)
  jaxpr = jax.make_jaxpr(
      lambda p, s, x: _apply(module, p, s, x, True,
                             {"dropout": jax.random.key(0)})
  )(avals(params), avals(stats), _aval(x[:1])).jaxpr
  return _plain_convs_in(jaxpr)


def _aval(x) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(x.shape, x.dtype)


def _unrolled_scan(f, init, xs):
  """``jax.lax.scan(f, init, xs)`` unrolled into straight-line code."""
  length = jax.tree.leaves(xs)[0].shape[0]
  carry, outputs = init, []
  for i in range(length):
    carry, out = f(carry, jax.tree.map(lambda x: x[i], xs))
    outputs.append(out)
  return carry, jax.tree.map(lambda *ys: jnp.stack(ys), *outputs)


def _initializer_key(key: jax.Array) -> jax.Array:
  """An ``rbg`` key seeded from ``key``, for drawing initial parameters.

  XLA:CPU compiles threefry initialisers slowly (the DCGAN discriminator's
  jitted init: 4.5 s with threefry, 1.3 s with rbg, measured here); the
  parameters are still a deterministic function of the user's key.
  """
  return jax.random.wrap_key_data(
      jax.random.bits(key, (4,), jnp.uint32), impl="rbg")


@functools.partial(jax.jit, static_argnums=0)
def _jitted_init(module: nn.Module, key: jax.Array, x: jax.Array):
  return module.init({"params": key}, x, train=False)


def _init_variables(module: nn.Module, key: jax.Array, x: jax.Array):
  """``module.init`` (eval mode), jitted; compiled once per (equal) module
  and input shape when the module is hashable."""
  if not _hashable(module):
    return jax.jit(lambda key: module.init({"params": key}, x, train=False))(key)
  return _jitted_init(module, key, x)


def _with_compute_dtype(module: nn.Module, dtype, role: str) -> nn.Module:
  """Clones a model to compute in ``dtype`` (its ``dtype`` field)."""
  if dtype is None:
    return module
  if "dtype" not in {f.name for f in dataclasses.fields(module)}:
    raise ValueError(
        f"GAN(compute_dtype={jnp.dtype(dtype).name}) needs a {role} with a "
        f"`dtype` field (the computation dtype passed to its layers, as every "
        f"ganjax model has); {type(module).__name__} has none.")
  return module.clone(dtype=dtype)


def _with_axis_name(module: nn.Module, axis_name: str) -> nn.Module:
  """Clones a model so that its batch norm averages statistics over ``axis_name``."""
  if "axis_name" in {f.name for f in dataclasses.fields(module)}:
    return module.clone(axis_name=axis_name)
  return module


@dataclasses.dataclass(frozen=True)
class GAN:
  """A generative adversarial network: two flax modules, a loss, two optimizers.

  Attributes:
    generator: flax module, ``(z [B, latent_dim], train) -> [B, *data_shape]``.
    discriminator: flax module, ``(x [B, *data_shape], train) -> logits [B]``.
    loss: a name in ``ganjax.losses.LOSSES`` or a function
      ``(real_logits, fake_logits) -> (d_loss, g_loss)``.
    g_optimizer, d_optimizer: optax transformations.
    k: discriminator updates per generator update (Algorithm 1's k).
    latent_dim: size of ``z``.
    latent_distribution: ``'normal'`` (N(0, I)) or ``'uniform'`` (U[-1, 1]).
    penalty: optional ``ganjax.penalties.GradientPenalty`` or ``R1``, added to
      the discriminator's loss.
    instance_noise: optional ``ganjax.penalties.InstanceNoise`` added to every
      input of the discriminator.
    weight_clip: optional WGAN clipping value c; D's parameters are clipped to
      [-c, c] after each of its updates.
    ema_decay: optional decay of an exponential moving average of G's weights
      (kept in ``state.ema_g_params``, used by ``sample``), warmed up as in
      ``ema_decay_at``.
    d_loop: how the k discriminator updates are compiled: ``'scan'`` (one
      ``jax.lax.scan``: compile time independent of k), ``'unroll'`` (k copies
      of the update: compile time grows with k) or ``'auto'`` (the default:
      ``'scan'``, except on CPU for a discriminator with plain
      ``lax.conv_general_dilated`` convolutions, e.g. ``flax.linen.Conv``'s
      default). Both compute the same thing. XLA:CPU runs the gradients of
      plain convolutions ~10x slower inside a loop body than outside (they
      are not rewritten into its fast canonical form); the models' convs use
      ``ganjax.models.layers.conv_general_dilated``, whose gradients are
      canonical, and run as fast in the scan as unrolled (see
      ``benchmarks/results/benchmark.md``). Use it in your own conv models
      (``nn.Conv(..., conv_general_dilated=...)``) to get the scan on CPU.
    axis_name: named axis over which gradients, metrics and batch statistics
      are averaged; set by ``ganjax.parallel``, None on one device.
    compute_dtype: None (float32) or a float dtype, e.g. ``jnp.bfloat16``,
      in which G and D compute (mixed precision, for accelerators with fast
      bfloat16 matrix units). The models are cloned with ``dtype=``
      ``compute_dtype``; real batches and latents are cast to it; parameters,
      optimizer states and batch statistics stay float32, and logits are cast
      to float32 before losses, penalties and metrics are reduced.
  """
  generator: nn.Module
  discriminator: nn.Module
  loss: str | Callable = "non_saturating"
  g_optimizer: optax.GradientTransformation = dataclasses.field(
      default_factory=lambda: optax.adam(2e-4, b1=0.5))
  d_optimizer: optax.GradientTransformation = dataclasses.field(
      default_factory=lambda: optax.adam(2e-4, b1=0.5))
  k: int = 1
  latent_dim: int = 100
  latent_distribution: str = "normal"
  penalty: Callable | None = None
  instance_noise: penalties_lib.InstanceNoise | None = None
  weight_clip: float | None = None
  ema_decay: float | None = None
  d_loop: str = "auto"
  axis_name: str | None = None
  compute_dtype: Any = None

  def __post_init__(self):
    if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
      raise ValueError(
          f"k (discriminator updates per generator update) must be an integer "
          f">= 1, got {self.k!r}; the paper uses k=1, WGAN-GP k=5.")
    if not isinstance(self.latent_dim, int) or self.latent_dim < 1:
      raise ValueError(f"latent_dim must be a positive integer, got "
                       f"{self.latent_dim!r}.")
    if self.latent_distribution not in ("normal", "uniform"):
      raise ValueError(f"latent_distribution must be 'normal' or 'uniform', "
                       f"got {self.latent_distribution!r}.")
    if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")
    if self.d_loop not in ("auto", "scan", "unroll"):
      raise ValueError(f"d_loop must be 'auto', 'scan' or 'unroll', got "
                       f"{self.d_loop!r}.")
    if self.weight_clip is not None and self.weight_clip <= 0:
      raise ValueError(f"weight_clip must be positive, got {self.weight_clip}.")
    losses_lib.get(self.loss)  # fails early, listing the known losses
    if self.compute_dtype is not None:
      if not jnp.issubdtype(self.compute_dtype, jnp.floating):
        raise ValueError(f"compute_dtype must be a floating dtype such as "
                         f"jnp.bfloat16, got {self.compute_dtype!r}.")
      # Fails early for models without a `dtype` field.
      _ = self._compute_generator, self._compute_discriminator

  @property
  def _compute_generator(self) -> nn.Module:
    """The generator as the step runs it (in ``compute_dtype``)."""
    return _with_compute_dtype(self.generator, self.compute_dtype, "generator")

  @property
  def _compute_discriminator(self) -> nn.Module:
    """The discriminator as the step runs it (in ``compute_dtype``)."""
    return _with_compute_dtype(self.discriminator, self.compute_dtype,
                               "discriminator")

  def _cast(self, x: jax.Array) -> jax.Array:
    """``x`` in the compute dtype (unchanged without mixed precision)."""
    return x if self.compute_dtype is None else x.astype(self.compute_dtype)

  @property
  def loss_fn(self) -> losses_lib.LossFn:
    return losses_lib.get(self.loss)

  def parallel(self, axis_name: str, sync_batch_norm: bool = False) -> "GAN":
    """This GAN with collectives over ``axis_name`` (used by ``ganjax.parallel``).

    With ``sync_batch_norm``, batch norm layers normalise with statistics of the
    global batch (models that have an ``axis_name`` field).
    """
    gan = dataclasses.replace(self, axis_name=axis_name)
    if sync_batch_norm:
      gan = dataclasses.replace(
          gan, generator=_with_axis_name(self.generator, axis_name),
          discriminator=_with_axis_name(self.discriminator, axis_name))
    return gan

  # ------------------------------------------------------------------ init

  def init(self, rng: jax.Array, example_batch: jax.Array) -> GANState:
    """Initialises parameters, batch statistics, optimizer states and the rng.

    Args:
      rng: a key (``jax.random.key(seed)``) or legacy uint32 key data.
      example_batch: real data, ``[B, *data_shape]`` (or a step batch
        ``[k, B, *data_shape]``); only its shape is used, to check that the
        generator produces samples of the data's shape.

    Returns:
      a ``GANState`` at step 0.
    """
    rng = _as_key(rng)
    g_key, d_key, run_key = jax.random.split(rng, 3)
    g_key, d_key = _initializer_key(g_key), _initializer_key(d_key)
    z = jnp.zeros((1, self.latent_dim), jnp.float32)
    g_vars = _init_variables(self.generator, g_key, z)
    fake_shape = jax.eval_shape(
        lambda v: self.generator.apply(v, z, train=False), g_vars).shape[1:]
    data_shape = tuple(example_batch.shape[1:])
    if data_shape != fake_shape and tuple(example_batch.shape[2:]) != fake_shape:
      raise ValueError(
          f"The generator produces samples of shape {fake_shape}, but the data "
          f"has shape {data_shape} (example batch {tuple(example_batch.shape)}). "
          f"Build the models for the data, e.g. "
          f"ganjax.models.dcgan(image_shape={data_shape}).")
    x = jnp.zeros((1,) + fake_shape, jnp.float32)
    d_vars = _init_variables(self.discriminator, d_key, x)
    g_params, d_params = g_vars.get("params", {}), d_vars.get("params", {})
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        d_params=d_params,
        g_batch_stats=g_vars.get("batch_stats", {}),
        d_batch_stats=d_vars.get("batch_stats", {}),
        g_opt_state=self.g_optimizer.init(g_params),
        d_opt_state=self.d_optimizer.init(d_params),
        rng=jax.random.key_data(run_key),
        ema_g_params=(jax.tree.map(jnp.copy, g_params)
                      if self.ema_decay is not None else None))

  # ----------------------------------------------------------- randomness

  def _example_keys(self, key: jax.Array, batch_size: int) -> jax.Array:
    """``[B, streams]`` keys, one row per example, from its global index."""
    offset = 0
    if self.axis_name is not None:
      offset = jax.lax.axis_index(self.axis_name) * batch_size
    index = offset + jnp.arange(batch_size)
    return jax.vmap(
        lambda i: jax.random.split(jax.random.fold_in(key, i), _NUM_STREAMS)
    )(index)

  def _latents(self, keys: jax.Array) -> jax.Array:
    """``[B, latent_dim]`` latents, one per example key ``[B]``."""
    shape = (self.latent_dim,)
    if self.latent_distribution == "uniform":
      draw = lambda k: jax.random.uniform(k, shape, jnp.float32, -1.0, 1.0)
    else:
      draw = lambda k: jax.random.normal(k, shape, jnp.float32)
    return jax.vmap(draw)(keys)

  # -------------------------------------------------------------- players

  def _generate(self, g_params, g_stats, keys, train: bool):
    """Samples ``[B, ...]`` and G's new batch stats from per-example keys."""
    z = self._cast(self._latents(keys[:, _LATENT]))
    rngs = {"dropout": keys[0, _DROPOUT_FAKE]}
    fake, new_stats = _apply(self._compute_generator, g_params, g_stats, z,
                             train, rngs)
    return self._cast(fake), _like(new_stats, g_stats)

  def _discriminate(self, d_params, d_stats, x, dropout_keys):
    """Logits ``[B]`` and D's new stats, in training mode.

    A discriminator with batch statistics (batch norm, spectral norm) sees
    the whole local batch. One without them that draws dropout masks is
    applied example by example (``vmap``) with each example's own dropout
    key, so that dropout masks too are independent of the device split. One
    without either (no dropout, e.g. DCGAN's, the small MLPs') is applied to
    the whole batch at once: what the per-example path computes (examples do
    not interact), without turning every layer into B per-example ones
    (DCGAN 28x28, k = 1, in a scan on CPU: 105 ms per step instead of 236).
    """
    discriminator = self._compute_discriminator
    if d_stats:
      logits, new_stats = _apply(discriminator, d_params, d_stats, x, True,
                                 {"dropout": dropout_keys[0]})
      return logits.astype(jnp.float32), _like(new_stats, d_stats)
    leaves, params_def = jax.tree.flatten(d_params)
    if not _draws_rng(discriminator, "dropout", params_def,
                      tuple(map(_aval, leaves)), _aval(x)):
      logits = discriminator.apply({"params": d_params}, x, train=True,
                                   rngs={"dropout": dropout_keys[0]})
      return logits.astype(jnp.float32), d_stats

    def one(xi, key):
      return discriminator.apply({"params": d_params}, xi[None],
                                 train=True, rngs={"dropout": key})[0]

    return jax.vmap(one)(x, dropout_keys).astype(jnp.float32), d_stats

  def _noisy(self, x, keys, step):
    if self.instance_noise is None:
      return x
    return self.instance_noise(x, keys, step)

  def _mean(self, tree):
    if self.axis_name is None:
      return tree
    return jax.lax.pmean(tree, self.axis_name)

  # ----------------------------------------------------------------- step

  def _d_update(self, state: GANState, carry, inputs):
    """One discriminator update on one real minibatch and fresh noise."""
    d_params, d_opt_state, d_stats = carry
    real, update_key = inputs
    keys = self._example_keys(update_key, real.shape[0])
    fake, _ = self._generate(state.g_params, state.g_batch_stats, keys,
                             train=True)
    fake = jax.lax.stop_gradient(fake)
    real_in = self._noisy(real, keys[:, _NOISE_REAL], state.step)
    fake_in = self._noisy(fake, keys[:, _NOISE_FAKE], state.step)

    def loss_fn(params):
      if d_stats:  # batch statistics: real and fake in separate calls
        real_logits, stats = self._discriminate(
            params, d_stats, real_in, keys[:, _DROPOUT_REAL])
        fake_logits, stats = self._discriminate(
            params, stats, fake_in, keys[:, _DROPOUT_FAKE])
      else:  # one call on real and fake together
        logits, stats = self._discriminate(
            params, d_stats, jnp.concatenate([real_in, fake_in]),
            jnp.concatenate([keys[:, _DROPOUT_REAL], keys[:, _DROPOUT_FAKE]]))
        real_logits, fake_logits = jnp.split(logits, 2)
      d_loss, _ = self.loss_fn(real_logits, fake_logits)
      metrics = {"d_loss": d_loss,
                 "real_logit": jnp.mean(real_logits),
                 "fake_logit": jnp.mean(fake_logits)}
      if self.loss in losses_lib.PROBABILISTIC:
        metrics["d_real"] = jnp.mean(jax.nn.sigmoid(real_logits))
        metrics["d_fake"] = jnp.mean(jax.nn.sigmoid(fake_logits))
      total = d_loss
      if self.penalty is not None:
        d_fn = lambda x: self._discriminate(
            params, stats, x, keys[:, _DROPOUT_REAL])[0]
        penalty = self.penalty(d_fn, real_in, fake_in, keys[:, _PENALTY])
        metrics["d_penalty"] = penalty
        total = total + penalty
      return total, (stats, metrics)

    grads, (d_stats, metrics) = jax.grad(loss_fn, has_aux=True)(d_params)
    grads, d_stats, metrics = self._mean((grads, d_stats, metrics))
    updates, d_opt_state = self.d_optimizer.update(grads, d_opt_state, d_params)
    d_params = optax.apply_updates(d_params, updates)
    if self.weight_clip is not None:
      d_params = penalties_lib.clip_weights(d_params, self.weight_clip)
    metrics["d_grad_norm"] = optax.tree.norm(grads)
    return (d_params, d_opt_state, d_stats), metrics

  def _g_update(self, state: GANState, real, update_key):
    """One generator update on fresh noise, through the current discriminator."""
    keys = self._example_keys(update_key, real.shape[0])
    real_in = self._noisy(real, keys[:, _NOISE_REAL], state.step)

    def loss_fn(params):
      fake, g_stats = self._generate(params, state.g_batch_stats, keys,
                                     train=True)
      fake_in = self._noisy(fake, keys[:, _NOISE_FAKE], state.step)
      fake_logits, _ = self._discriminate(
          state.d_params, state.d_batch_stats, fake_in, keys[:, _DROPOUT_FAKE])
      # Real logits only for losses that use them (relativistic ones); a loss
      # that ignores them lets XLA drop this forward pass.
      real_logits, _ = self._discriminate(
          state.d_params, state.d_batch_stats, real_in, keys[:, _DROPOUT_REAL])
      _, g_loss = self.loss_fn(jax.lax.stop_gradient(real_logits), fake_logits)
      return g_loss, (g_stats, g_loss)

    grads, (g_stats, g_loss) = jax.grad(loss_fn, has_aux=True)(state.g_params)
    grads, g_stats, g_loss = self._mean((grads, g_stats, g_loss))
    updates, g_opt_state = self.g_optimizer.update(
        grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    metrics = {"g_loss": g_loss, "g_grad_norm": optax.tree.norm(grads)}
    return g_params, g_opt_state, g_stats, metrics

  def ema_decay_at(self, step: jax.Array) -> jax.Array:
    """The EMA decay used at generator update ``step``: ``min(d, (1+t)/(10+t))``.

    The warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=t)``:
    early averages follow the weights closely, so that the random
    initialisation does not linger in the average (with a constant 0.999 it
    still weighs 5% after 3,000 steps).
    """
    t = jnp.asarray(step, jnp.float32)
    return jnp.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))

  def step(self, state: GANState, batch: jax.Array):
    """One iteration of Algorithm 1: k discriminator updates, then one for G.

    Pure and jittable: ``jax.jit(gan.step, donate_argnums=0)``. The k updates
    run in one ``jax.lax.scan`` (or unrolled, see ``d_loop``).

    Args:
      state: a ``GANState``.
      batch: float ``[k, B, *data_shape]``: one real minibatch per
        discriminator update (on one device; under ``ganjax.parallel`` the
        local shard ``[k, B / devices, ...]``).

    Returns:
      ``(new_state, metrics)``; metrics are scalars: ``d_loss``, ``g_loss``,
      ``real_logit``, ``fake_logit`` (mean logits), ``d_real``, ``d_fake``
      (mean D(x), D(G(z)) for the probabilistic losses), ``d_grad_norm``,
      ``g_grad_norm``, ``d_penalty`` and ``instance_noise_std`` when used.
      Discriminator metrics are means over the k updates.
    """
    self._check_batch(batch)
    batch = self._cast(batch)
    base_key = _as_key(state.rng)
    step_key = jax.random.fold_in(base_key, state.step)
    d_keys = jax.random.split(jax.random.fold_in(step_key, 0), self.k)
    g_key = jax.random.fold_in(step_key, 1)

    loop = self._d_updates_loop(state.d_params, state.d_batch_stats, batch[0])
    (d_params, d_opt_state, d_stats), d_metrics = loop(
        lambda carry, xs: self._d_update(state, carry, xs),
        (state.d_params, state.d_opt_state, state.d_batch_stats),
        (batch, d_keys))
    state = state.replace(d_params=d_params, d_opt_state=d_opt_state,
                          d_batch_stats=d_stats)

    g_params, g_opt_state, g_stats, g_metrics = self._g_update(
        state, batch[-1], g_key)
    ema = state.ema_g_params
    if self.ema_decay is not None:
      decay = self.ema_decay_at(state.step)
      ema = optax.incremental_update(g_params, ema, 1.0 - decay)
    new_state = state.replace(
        step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state,
        g_batch_stats=g_stats, ema_g_params=ema)

    metrics = jax.tree.map(jnp.mean, d_metrics)
    metrics.update(g_metrics)
    if self.instance_noise is not None:
      metrics["instance_noise_std"] = self.instance_noise.std_at(state.step)
    return new_state, metrics

  def _d_updates_loop(self, d_params, d_stats, real) -> Callable:
    """``jax.lax.scan``, or the same loop unrolled in Python (see ``d_loop``)."""
    loop = self.d_loop
    if loop == "auto":
      slow = (jax.default_backend() == "cpu" and _has_plain_convs(
          self._compute_discriminator, d_params, d_stats, real))
      loop = "unroll" if slow else "scan"
    return jax.lax.scan if loop == "scan" else _unrolled_scan

  def _check_batch(self, batch) -> None:
    if batch.ndim < 3 or batch.shape[0] != self.k:
      raise ValueError(
          f"GAN.step expects a batch of shape [k, B, *data_shape] with k={self.k} "
          f"real minibatches (one per discriminator update), got shape "
          f"{tuple(batch.shape)}. Reshape a [k*B, ...] batch with "
          f"batch.reshape(k, B, ...), or use ganjax.data pipelines with k={self.k}.")
    if not jnp.issubdtype(batch.dtype, jnp.floating):
      raise ValueError(f"GAN.step expects floating-point data scaled to the "
                       f"generator's output range, got dtype {batch.dtype}.")

  # --------------------------------------------------------------- sample

  def sample(self, state: GANState, rng: jax.Array, num: int,
             use_ema: bool = True) -> jax.Array:
    """Draws ``num`` samples ``[num, *data_shape]`` with G in inference mode.

    Uses the EMA weights when the state has them and ``use_ema``.
    """
    params = state.g_params
    if use_ema and state.ema_g_params is not None:
      params = state.ema_g_params
    keys = jax.random.split(_as_key(rng), num)
    z = self._cast(self._latents(keys))
    images = _apply(self._compute_generator, params, state.g_batch_stats, z,
                    False, {"dropout": keys[0]})[0]
    return images.astype(jnp.float32)
