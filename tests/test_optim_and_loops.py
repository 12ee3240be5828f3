"""The paper's optimizer schedule, and many steps fused into one call."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import ganjax as gj
from ganjax.data import toy


def test_goodfellow_sgd_schedules():
  opt = gj.optim.goodfellow_sgd(learning_rate=0.1, decay_factor=1.5,
                                min_learning_rate=0.02, initial_momentum=0.5,
                                final_momentum=0.7, momentum_saturate_steps=4)
  params = {"w": jnp.ones(3)}
  state = opt.init(params)
  lrs, moms = [], []
  for _ in range(6):
    _, state = opt.update({"w": jnp.ones(3)}, state, params)
    # inject_hyperparams records the values the update just used.
    lrs.append(float(state.hyperparams["learning_rate"]))
    moms.append(float(state.hyperparams["momentum"]))
  np.testing.assert_allclose(lrs, [0.1, 0.1 / 1.5, 0.1 / 1.5**2, 0.1 / 1.5**3,
                                   0.02, 0.02], rtol=1e-5)
  np.testing.assert_allclose(moms, [0.5, 0.55, 0.6, 0.65, 0.7, 0.7], rtol=1e-5)


def test_goodfellow_sgd_is_sgd_with_momentum():
  opt = gj.optim.goodfellow_sgd(decay_factor=1.0, initial_momentum=0.5,
                                final_momentum=0.5)
  ref = optax.sgd(0.1, momentum=0.5)
  params = {"w": jnp.array([1.0, -2.0])}
  s, r = opt.init(params), ref.init(params)
  for g in [jnp.array([1.0, 2.0]), jnp.array([-0.5, 0.25])]:
    u, s = opt.update({"w": g}, s, params)
    v, r = ref.update({"w": g}, r, params)
    chex.assert_trees_all_close(u, v, atol=1e-7)


def test_scan_steps_equals_single_steps():
  G, D = gj.models.toy_mlp(2, hidden=16, depth=2)
  gan = gj.GAN(G, D, g_optimizer=optax.sgd(0.05), d_optimizer=optax.sgd(0.05),
               k=2, latent_dim=4)
  sample = lambda key: toy.ring(key, 2 * 32).reshape(2, 32, 2)
  state = gan.init(jax.random.key(0), jnp.zeros((32, 2)))
  data_key = jax.random.key(7)

  step = jax.jit(gan.step)
  single = state
  losses = []
  for _ in range(6):
    batch = sample(jax.random.fold_in(data_key, single.step))
    single, metrics = step(single, batch)
    losses.append(metrics["d_loss"])

  run = gj.loops.scan_steps(gan.step, sample, num_steps=3)
  fused, m1 = run(state, data_key)
  fused, m2 = run(fused, data_key)  # resumes where the first call stopped
  chex.assert_trees_all_close(fused, single, atol=1e-6, rtol=1e-6)
  np.testing.assert_allclose(np.concatenate([m1["d_loss"], m2["d_loss"]]),
                             losses, rtol=1e-5)
  assert int(fused.step) == 6
