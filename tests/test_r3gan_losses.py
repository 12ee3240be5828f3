"""R3GAN's game: the relativistic losses (RpGAN, RaGAN), R2, R1 + R2 composed, lazy and
scheduled, the cosine schedules of its optimizer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax import losses, penalties


def _log_sigmoid(x):
  return -np.log1p(np.exp(-np.asarray(x, np.float64)))


# ---------------------------------------------------------------- RpGAN

def test_rpgan_pairs_each_real_logit_with_the_fake_of_its_index():
  real, fake = jnp.array([1.0, -2.0, 0.5]), jnp.array([0.0, 3.0, 0.5])
  d_loss, g_loss = losses.rpgan(real, fake)
  np.testing.assert_allclose(
      d_loss, -np.mean(_log_sigmoid(np.array([1.0, -5.0, 0.0]))), rtol=1e-6)
  np.testing.assert_allclose(
      g_loss, -np.mean(_log_sigmoid(np.array([-1.0, 5.0, 0.0]))), rtol=1e-6)
  # Equal scores in every pair: both players at log 2.
  np.testing.assert_allclose(losses.rpgan(real, real), (np.log(2),) * 2,
                             rtol=1e-6)
  # Pairs, not sets: permuting both sides together changes nothing,
  # permuting one side does.
  perm = jnp.array([2, 0, 1])
  np.testing.assert_allclose(losses.rpgan(real[perm], fake[perm]),
                             (d_loss, g_loss), rtol=1e-6)
  assert not np.isclose(losses.rpgan(real, fake[perm])[0], d_loss)
  # Only differences matter: a shift of every logit changes nothing.
  np.testing.assert_allclose(losses.rpgan(real + 7.0, fake + 7.0),
                             (d_loss, g_loss), rtol=1e-6)


def test_rpgan_gradients_and_extreme_logits():
  real, fake = jnp.array([2.0, -1.0]), jnp.array([0.0, 1.0])
  # d/dr_i softplus(f_i - r_i) / B = -sigmoid(f_i - r_i) / B.
  grad_real, grad_fake = jax.grad(lambda r, f: losses.rpgan(r, f)[0],
                                  argnums=(0, 1))(real, fake)
  want = -1.0 / (1.0 + np.exp(-(np.array([0.0, 1.0]) - [2.0, -1.0]))) / 2
  np.testing.assert_allclose(grad_real, want, rtol=1e-6)
  np.testing.assert_allclose(grad_fake, -want, rtol=1e-6)
  big = jnp.array([100.0, -100.0])
  d_loss, g_loss = losses.rpgan(big, -big)
  np.testing.assert_allclose(d_loss, np.mean([0.0, 200.0]), atol=1e-6)
  np.testing.assert_allclose(g_loss, np.mean([200.0, 0.0]), atol=1e-6)
  grads = jax.grad(lambda r, f: sum(losses.rpgan(r, f)), argnums=(0, 1))(
      big, -big)
  assert all(np.all(np.isfinite(g)) for g in grads)
  with pytest.raises(AssertionError):
    losses.rpgan(jnp.zeros(3), jnp.zeros(2))  # pairs need equal batches


# ---------------------------------------------------------------- RaGAN

def test_ragan_compares_each_side_with_the_other_sides_mean():
  """Jolicoeur-Martineau (2019), Eqs. 9-10, with batches of unequal size
  (the closed form on equal ones is in test_losses)."""
  real, fake = np.array([2.0, -1.0]), np.array([0.0, 1.0, 3.0])
  real_rel, fake_rel = real - fake.mean(), fake - real.mean()
  # softplus(-t) = -log sigmoid(t)
  want_d = -_log_sigmoid(real_rel).mean() - _log_sigmoid(-fake_rel).mean()
  want_g = -_log_sigmoid(fake_rel).mean() - _log_sigmoid(-real_rel).mean()
  np.testing.assert_allclose(losses.ragan(jnp.asarray(real), jnp.asarray(fake)),
                             (want_d, want_g), rtol=1e-6)
  # D scores everything alike: relative scores 0, both losses 2 log 2.
  same = jnp.full((3,), 0.4)
  np.testing.assert_allclose(losses.ragan(same, same), (2 * np.log(2),) * 2,
                             rtol=1e-6)
  # Only differences between the two sides count.
  np.testing.assert_allclose(
      losses.ragan(jnp.asarray(real) + 5.0, jnp.asarray(fake) + 5.0),
      (want_d, want_g), rtol=1e-6)
  # The gradients: d/dr_k = -(sigmoid(mean f - r_k) + mean_j sigmoid(f_j -
  # mean r)) / B_r; d/df_k = (mean_i sigmoid(mean f - r_i) + sigmoid(f_k -
  # mean r)) / B_f.
  grad_real, grad_fake = jax.grad(lambda r, f: losses.ragan(r, f)[0],
                                  argnums=(0, 1))(jnp.asarray(real),
                                                  jnp.asarray(fake))
  s_real = np.exp(_log_sigmoid(fake.mean() - real))
  s_fake = np.exp(_log_sigmoid(fake - real.mean()))
  np.testing.assert_allclose(grad_real, (-s_real - s_fake.mean()) / 2,
                             rtol=1e-6)
  np.testing.assert_allclose(grad_fake, (s_real.mean() + s_fake) / 3,
                             rtol=1e-6)


# ------------------------------------------------------------------- R2

def _quadratic_critic(w):
  # D(x) = 1/2 <w, x^2>: its input gradient is w * x.
  return lambda x: 0.5 * jnp.sum(x.reshape(x.shape[0], -1) ** 2 * w.ravel(), -1)


def test_r2_on_a_critic_with_a_known_gradient_on_fake_data():
  w = jnp.array([1.0, 2.0, 3.0])
  real = jax.random.normal(jax.random.key(0), (8, 3))
  fake = jax.random.normal(jax.random.key(1), (8, 3))
  keys = jax.random.split(jax.random.key(2), 8)
  d_fn = _quadratic_critic(w)
  want = np.mean(np.sum((np.asarray(w) * np.asarray(fake)) ** 2, -1))
  np.testing.assert_allclose(penalties.r2_penalty(d_fn, fake), want,
                             rtol=1e-5)
  np.testing.assert_allclose(penalties.R2(gamma=3.0)(d_fn, real, fake, keys),
                             1.5 * want, rtol=1e-5)
  # R1 looks at the real data, R2 at the fakes.
  want_r1 = np.mean(np.sum((np.asarray(w) * np.asarray(real)) ** 2, -1))
  np.testing.assert_allclose(penalties.R1(gamma=3.0)(d_fn, real, fake, keys),
                             1.5 * want_r1, rtol=1e-5)
  # Through a Critic, R2 scores the fakes with its fake scorer.
  critic = penalties.Critic(real=d_fn, fake=_quadratic_critic(2 * w))
  np.testing.assert_allclose(penalties.R2(3.0)(critic, real, fake, keys),
                             4 * 1.5 * want, rtol=1e-5)
  np.testing.assert_allclose(penalties.R1(3.0)(critic, real, fake, keys),
                             1.5 * want_r1, rtol=1e-5)
  # Its gradient with respect to D's parameters: d/dw E[sum w^2 x^2] =
  # 2 w E[x^2]; the fakes are constants.
  grad = jax.grad(lambda w: penalties.r2_penalty(_quadratic_critic(w), fake))(w)
  np.testing.assert_allclose(
      grad, 2 * np.asarray(w) * np.mean(np.asarray(fake) ** 2, 0), rtol=1e-5)


def _gan(**kwargs):
  G, D = gj.models.small_mlp((4, 4, 1), hidden=8)
  return gj.GAN(G, D, latent_dim=4, loss="rpgan", g_optimizer=optax.sgd(0.1),
                d_optimizer=optax.sgd(0.1), **kwargs)


_BATCH = jax.random.uniform(jax.random.key(1), (1, 8, 4, 4, 1))


def test_r1_and_r2_compose_lazily_and_on_a_schedule():
  r1, r2 = penalties.R1(1.0), penalties.R2(1.0)
  state = _gan().init(jax.random.key(0), _BATCH[0])
  run = lambda gan, state: jax.jit(gan.step)(state, _BATCH)
  _, both = run(_gan(penalty=[r1, r2]), state)
  assert float(both["d_penalty_r2"]) > 0
  assert not np.isclose(both["d_penalty_r1"], both["d_penalty_r2"])
  np.testing.assert_allclose(both["d_penalty"],
                             both["d_penalty_r1"] + both["d_penalty_r2"],
                             rtol=1e-6)
  # Lazy R2 every 2 updates: twice R2 at update 0, nothing at update 1.
  lazy = _gan(penalty=[r1, penalties.Lazy(r2, every=2)])
  step0, lazy0 = run(lazy, state)
  np.testing.assert_allclose(lazy0["d_penalty_r1"], both["d_penalty_r1"],
                             rtol=1e-5)
  np.testing.assert_allclose(lazy0["d_penalty_r2"], 2 * both["d_penalty_r2"],
                             rtol=1e-5)
  _, lazy1 = run(lazy, step0)
  assert float(lazy1["d_penalty_r2"]) == 0.0 and float(lazy1["d_penalty_r1"]) > 0
  # Scheduled: the weight of the update count (0.5 at update 0).
  halving = lambda update: 0.5 ** (update + 1)
  _, got = run(_gan(penalty=[r1, penalties.Scheduled(r2, halving)]), state)
  np.testing.assert_allclose(got["d_penalty_r2"], 0.5 * both["d_penalty_r2"],
                             rtol=1e-5)
  # Inside Lazy, the schedule sees the same update count.
  d_fn, x = _quadratic_critic(jnp.ones(2)), jnp.ones((4, 2))
  keys = jax.random.split(jax.random.key(0), 4)
  nested = penalties.Lazy(penalties.Scheduled(r2, halving), every=2)
  for update, want in [(0, 2 * 0.5), (1, 0.0), (2, 2 * 0.125)]:
    np.testing.assert_allclose(
        penalties.evaluate(nested, d_fn, x, x, keys, update),
        want * 0.5 * 2.0, rtol=1e-6)  # R2(1) of this critic at x = 1: 1


class _LabelScaledCritic(nn.Module):
  """D(x, y) = (sum(x) + b) * (y + 1): its input gradient is y + 1 per pixel."""
  num_classes: int = 2

  @nn.compact
  def __call__(self, x, y, train=False):
    b = self.param("b", nn.initializers.zeros_init(), ())
    return (jnp.sum(x.reshape(x.shape[0], -1), -1) + b) * (y + 1)


def test_r2_scores_the_fakes_with_the_labels_they_were_drawn_for():
  """A conditional game with fake labels drawn in the step: R1 sees the
  real labels (all 0: gradient 1), R2 the fakes' (uniform over {0, 1}:
  gradient 1 or 2 per pixel)."""
  G = gj.models.MLPGenerator((2, 2, 1), hidden=(4,), num_classes=2)
  gan = gj.GAN(G, _LabelScaledCritic(), loss="rpgan", latent_dim=2,
               num_classes=2, penalty=[penalties.R1(2.0), penalties.R2(2.0)])
  batch = {"image": jnp.zeros((1, 64, 2, 2, 1)),
           "label": jnp.zeros((1, 64), jnp.int32)}
  state = gan.init(jax.random.key(0), batch["image"][0])
  _, metrics = jax.jit(gan.step)(state, batch)
  pixels = 4
  np.testing.assert_allclose(metrics["d_penalty_r1"], pixels, rtol=1e-6)
  # E[(y + 1)^2] * pixels with y the fake labels: 1 + 3 * (share of 1s).
  share_of_ones = (float(metrics["d_penalty_r2"]) / pixels - 1) / 3
  assert 0.2 < share_of_ones < 0.8, share_of_ones
  np.testing.assert_allclose(share_of_ones * 64, round(share_of_ones * 64),
                             atol=1e-3)


# ------------------------------------------------------------ schedules

def test_cosine_schedule_and_r3gan_adam():
  schedule = gj.optim.cosine_schedule(0.05, 0.005, 100)
  for t, want in [(0, 0.05), (50, 0.0275), (100, 0.005), (1000, 0.005)]:
    np.testing.assert_allclose(schedule(t), want, rtol=1e-5)
  np.testing.assert_allclose(schedule(25), 0.005 + 0.045 * 0.5 * (
      1 + np.cos(np.pi / 4)), rtol=1e-5)
  with pytest.raises(ValueError, match="decay_steps must be > 0"):
    gj.optim.cosine_schedule(1.0, 0.0, 0)
  tx = gj.optim.r3gan_adam(decay_steps=10)
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  for _ in range(11):  # the state holds the values of the last update's count
    _, state = tx.update({"w": jnp.ones(3)}, state, params)
  np.testing.assert_allclose(state.hyperparams["learning_rate"], 5e-5,
                             rtol=1e-5)
  np.testing.assert_allclose(state.hyperparams["b2"], 0.99, rtol=1e-6)
  assert float(state.hyperparams["b1"]) == 0.0
