"""The naive baseline: separate jitted D and G steps driven from Python.

What a GAN training loop looks like without ``GAN.step``'s fusion: one jitted
discriminator step and one jitted generator step, called k + 1 times per
iteration of Algorithm 1 (k + 1 dispatches, the state passed back and forth
through Python). Same models, losses, optimizers, batch and initial
parameters as ``ganjax.GAN`` (the state comes from ``GAN.init``); noise is
drawn per batch from a key carried in the state, as such loops usually do.
Both steps donate the state.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import optax

import ganjax as gj


@flax.struct.dataclass
class NaiveState:
  g_params: dict
  d_params: dict
  g_stats: dict
  d_stats: dict
  g_opt_state: optax.OptState
  d_opt_state: optax.OptState
  key: jax.Array


def _apply(module, params, stats, x, rngs):
  """Training-mode apply; returns ``(out, new_stats)``."""
  variables = {"params": params}
  if stats:
    out, mutated = module.apply({**variables, "batch_stats": stats}, x,
                                train=True, rngs=rngs, mutable=["batch_stats"])
    return out, mutated["batch_stats"]
  return module.apply(variables, x, train=True, rngs=rngs), stats


class NaiveGAN:
  """k jitted D steps and one jitted G step per iteration, from Python."""

  def __init__(self, gan: gj.GAN):
    self.gan = gan
    self.G, self.D = gan.generator, gan.discriminator
    self.loss_fn = gj.losses.get(gan.loss)
    self.d_step = jax.jit(self._d_step, donate_argnums=0)
    self.g_step = jax.jit(self._g_step, donate_argnums=0)

  def init(self, key: jax.Array, example_batch: jax.Array) -> NaiveState:
    """The same initial parameters and optimizer states as ``GAN.init``."""
    s = self.gan.init(key, example_batch)
    return NaiveState(s.g_params, s.d_params, s.g_batch_stats, s.d_batch_stats,
                      s.g_opt_state, s.d_opt_state,
                      jax.random.key_data(jax.random.fold_in(key, 1)))

  def _z(self, key, n):
    return jax.random.normal(key, (n, self.gan.latent_dim), jnp.float32)

  def _d_step(self, state: NaiveState, real: jax.Array):
    key, z_key, g_drop, d_drop = jax.random.split(
        jax.random.wrap_key_data(state.key), 4)
    n = real.shape[0]
    fake, _ = _apply(self.G, state.g_params, state.g_stats, self._z(z_key, n),
                     {"dropout": g_drop})
    fake = jax.lax.stop_gradient(fake)

    def loss(params):
      if state.d_stats:
        real_logits, stats = _apply(self.D, params, state.d_stats, real,
                                    {"dropout": d_drop})
        fake_logits, stats = _apply(self.D, params, stats, fake,
                                    {"dropout": d_drop})
      else:
        logits, stats = _apply(self.D, params, state.d_stats,
                               jnp.concatenate([real, fake]), {"dropout": d_drop})
        real_logits, fake_logits = jnp.split(logits, 2)
      d_loss, _ = self.loss_fn(real_logits, fake_logits)
      return d_loss, stats

    grads, d_stats = jax.grad(loss, has_aux=True)(state.d_params)
    updates, d_opt_state = self.gan.d_optimizer.update(
        grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, updates)
    return state.replace(d_params=d_params, d_opt_state=d_opt_state,
                         d_stats=d_stats, key=jax.random.key_data(key))

  def _g_step(self, state: NaiveState, real: jax.Array):
    key, z_key, g_drop, d_drop = jax.random.split(
        jax.random.wrap_key_data(state.key), 4)
    n = real.shape[0]

    def loss(params):
      fake, g_stats = _apply(self.G, params, state.g_stats, self._z(z_key, n),
                             {"dropout": g_drop})
      fake_logits, _ = _apply(self.D, state.d_params, state.d_stats, fake,
                              {"dropout": d_drop})
      # Non-relativistic losses ignore the real logits: pass placeholders.
      _, g_loss = self.loss_fn(jnp.zeros_like(fake_logits), fake_logits)
      return g_loss, (g_stats, g_loss)

    grads, (g_stats, g_loss) = jax.grad(loss, has_aux=True)(state.g_params)
    updates, g_opt_state = self.gan.g_optimizer.update(
        grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    return state.replace(g_params=g_params, g_opt_state=g_opt_state,
                         g_stats=g_stats, key=jax.random.key_data(key)), g_loss

  def step(self, state: NaiveState, batch: jax.Array):
    """One iteration: ``k`` D dispatches then one G dispatch; no host sync."""
    for real in batch:  # k slices of the [k, B, ...] batch, on the device
      state = self.d_step(state, real)
    return self.g_step(state, batch[-1])
