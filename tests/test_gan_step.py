"""The k:1 update schedule of Algorithm 1, purity, determinism and input checks."""

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax import backend
from ganjax import losses


class ConstantGenerator(nn.Module):
  """G(z) = m for every z: makes the step's noise irrelevant, so a plain
  reference loop can reproduce the step exactly."""
  data_shape: tuple = (2,)

  @nn.compact
  def __call__(self, z, train=True):
    mean = self.param("mean", nn.initializers.normal(1.0), self.data_shape)
    return jnp.broadcast_to(mean, (z.shape[0],) + self.data_shape)


D = gj.models.MLPDiscriminator(hidden=(8,))
LR_D, LR_G = 0.3, 0.2


def _batch(k=3, b=4, seed=0):
  return jax.random.normal(jax.random.key(seed), (k, b, 2)) + 1.0


def _gan(**kwargs):
  defaults = dict(generator=ConstantGenerator(), discriminator=D,
                  loss="non_saturating", g_optimizer=optax.sgd(LR_G),
                  d_optimizer=optax.sgd(LR_D), k=3, latent_dim=4)
  defaults.update(kwargs)
  return gj.GAN(**defaults)


def _tree_allclose(a, b, atol=1e-6):
  chex.assert_trees_all_close(a, b, atol=atol, rtol=1e-5)


def _reference_step(state, batch, d_for_generator="updated"):
  """Algorithm 1 written plainly: k SGD steps on D, then one on G."""
  apply_d = lambda p, x: D.apply({"params": p}, x)
  fake_of = lambda gp, b: jnp.broadcast_to(gp["mean"], (b, 2))
  d_params, g_params = state.d_params, state.g_params
  for real in batch:
    def d_loss(p):
      return losses.non_saturating(apply_d(p, real),
                                   apply_d(p, fake_of(g_params, len(real))))[0]
    grads = jax.grad(d_loss)(d_params)
    d_params = jax.tree.map(lambda p, g: p - LR_D * g, d_params, grads)
  d_used = d_params if d_for_generator == "updated" else state.d_params

  def g_loss(gp):
    return losses.non_saturating(apply_d(d_used, batch[-1]),
                                 apply_d(d_used, fake_of(gp, batch.shape[1])))[1]
  grads = jax.grad(g_loss)(g_params)
  g_params = jax.tree.map(lambda p, g: p - LR_G * g, g_params, grads)
  return d_params, g_params


def test_k_discriminator_updates_then_generator_on_updated_discriminator():
  gan, batch = _gan(), _batch()
  state = gan.init(jax.random.key(0), batch[0])
  new_state, _ = jax.jit(gan.step)(state, batch)
  want_d, want_g = _reference_step(state, batch)
  _tree_allclose(new_state.d_params, want_d)
  _tree_allclose(new_state.g_params, want_g)
  # ... and not what a generator update through the *old* discriminator gives.
  _, stale_g = _reference_step(state, batch, d_for_generator="old")
  assert not np.allclose(new_state.g_params["mean"], stale_g["mean"], atol=1e-5)


def test_scan_and_unrolled_discriminator_loops_agree():
  G, Dm = gj.models.dcgan(image_shape=(8, 8, 1), latent_dim=4, base_features=4)
  batch = jax.random.uniform(jax.random.key(1), (2, 4, 8, 8, 1), minval=-1.0)
  results = []
  for loop in ("scan", "unroll"):
    gan = gj.GAN(G, Dm, k=2, latent_dim=4, d_loop=loop)
    state = gan.init(jax.random.key(0), batch[0])
    results.append(jax.jit(gan.step)(state, batch))
  chex.assert_trees_all_close(results[0], results[1], atol=1e-5, rtol=1e-5)


def _dcgan_gan(**kwargs):
  G, Dm = gj.models.dcgan(image_shape=(8, 8, 1), latent_dim=4, base_features=4)
  kwargs = {"k": 2, "latent_dim": 4, "g_optimizer": optax.sgd(0.1),
            "d_optimizer": optax.sgd(0.1), **kwargs}
  return gj.GAN(G, kwargs.pop("discriminator", Dm), **kwargs)


def _toy_gan():
  G, Dm = gj.models.toy_mlp(2, hidden=8, depth=2)
  return gj.GAN(G, Dm, k=2, latent_dim=4, g_optimizer=optax.sgd(0.1),
                d_optimizer=optax.sgd(0.1))


def test_joint_and_separate_calls_agree_for_a_per_example_discriminator():
  """D without batch-dependent layers: one call on [real; fake] or two."""
  gan, shape = _toy_gan(), (2,)
  batch = jax.random.uniform(jax.random.key(1), (2, 8) + shape, minval=-1.0)
  state = gan.init(jax.random.key(0), batch[0])
  separate = jax.jit(gan.step)(state, batch)
  joint = jax.jit(dataclasses.replace(gan, d_apply="joint").step)(state, batch)
  chex.assert_trees_all_close(separate, joint, atol=1e-5, rtol=1e-5)
  with pytest.raises(ValueError, match="d_apply must be one of"):
    dataclasses.replace(gan, d_apply="per_example")


_SEEN = []


class _MinibatchStdD(nn.Module):
  """A minibatch-std D, optionally with dropout, that records the batch of
  every call (while traced)."""
  dropout: float = 0.0
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train=True):
    _SEEN.append(x.shape[0])
    x = gj.models.MinibatchStd(group_size=4, axis_name=self.axis_name)(x)
    x = gj.models.Dropout(self.dropout, axis_name=self.axis_name,
                          deterministic=not train)(x.reshape(x.shape[0], -1))
    return nn.Dense(1)(x)[:, 0]


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_a_minibatch_std_discriminator_sees_the_batch_d_apply_says(dropout):
  G = gj.models.MLPGenerator((2, 2, 1), hidden=(8,), output_activation="tanh")
  batch = jax.random.uniform(jax.random.key(1), (1, 8, 2, 2, 1), minval=-1.0)
  for d_apply, per_call in (("separate", 8), ("joint", 16)):
    gan = gj.GAN(G, _MinibatchStdD(dropout), latent_dim=4, d_apply=d_apply)
    state = gan.init(jax.random.key(0), batch[0])
    _SEEN.clear()
    jax.jit(gan.step).lower(state, batch)  # traces D's and G's updates
    # D's update, then G's: two calls of B, or one of 2B, each.
    assert _SEEN == [per_call] * (4 if d_apply == "separate" else 2), _SEEN


def test_penalties_through_fast_conv_grad_match_lax_convs():
  """Second order gradients through D's custom-VJP convs, in the scan."""
  fast = _dcgan_gan(loss="wasserstein", d_loop="scan", k=1, penalty=[
      gj.penalties.GradientPenalty(10.0), gj.penalties.R1(10.0)])
  slow = dataclasses.replace(
      fast, discriminator=fast.discriminator.clone(fast_conv_grad=False))
  batch = jax.random.uniform(jax.random.key(1), (1, 8, 8, 8, 1), minval=-1.0)
  state = fast.init(jax.random.key(0), batch[0])
  got = jax.jit(fast.step)(state, batch)
  want = jax.jit(slow.step)(state, batch)
  assert float(got[1]["d_penalty_gradient_penalty"]) > 0
  assert float(got[1]["d_penalty_r1"]) > 0
  chex.assert_trees_all_close(got, want, atol=1e-6, rtol=1e-6)


def test_auto_d_loop_scans_unless_plain_convs_on_cpu():
  batch = jnp.zeros((2, 8, 8, 8, 1))

  def loop(gan, batch=batch):
    """What init decided, once per discriminator and shape."""
    state = gan.init(jax.random.key(0), batch[0])
    return gan._d_loop(state.d_params, state.d_batch_stats, (batch[0],))

  assert loop(_dcgan_gan()) == "scan"
  assert loop(_dcgan_gan(discriminator=gj.models.DCGANDiscriminator(
      (8, 8, 1), base_features=4, spectral_norm=True))) == "scan"
  assert loop(_mlp_gan(), jnp.zeros((2, 8, 4, 4, 1))) == "scan"
  # flax's default convs: XLA:CPU's gradients of them are slow in a loop.
  plain = gj.models.DCGANDiscriminator((8, 8, 1), base_features=4,
                                       fast_conv_grad=False)
  on_cpu = jax.default_backend() == "cpu"
  assert (loop(_dcgan_gan(discriminator=plain)) == "scan") != on_cpu
  assert loop(_dcgan_gan(discriminator=plain, d_loop="scan")) == "scan"


def test_optimizer_update_counts_are_k_and_one():
  gan = _gan(g_optimizer=optax.adam(1e-3), d_optimizer=optax.adam(1e-3), k=3)
  batch = _batch()
  state = gan.init(jax.random.key(0), batch[0])
  step = jax.jit(gan.step)
  for _ in range(2):
    state, _ = step(state, batch)
  assert int(state.d_opt_state[0].count) == 6
  assert int(state.g_opt_state[0].count) == 2
  assert int(state.step) == 2


@pytest.mark.parametrize("frozen", ["generator", "discriminator"])
def test_zero_learning_rate_freezes_that_player(frozen):
  kwargs = {"g_optimizer": optax.sgd(0.0)} if frozen == "generator" else {
      "d_optimizer": optax.sgd(0.0)}
  gan, batch = _gan(**kwargs), _batch()
  state = gan.init(jax.random.key(0), batch[0])
  new_state, _ = jax.jit(gan.step)(state, batch)
  frozen_before = state.g_params if frozen == "generator" else state.d_params
  frozen_after = new_state.g_params if frozen == "generator" else new_state.d_params
  chex.assert_trees_all_equal(frozen_before, frozen_after)
  moving_before = state.d_params if frozen == "generator" else state.g_params
  moving_after = new_state.d_params if frozen == "generator" else new_state.g_params
  assert not np.allclose(jax.tree.leaves(moving_before)[0],
                         jax.tree.leaves(moving_after)[0])


def _mlp_gan(**kwargs):
  G, Dm = gj.models.goodfellow_mlp((4, 4, 1))
  G = G.clone(hidden=(16,))
  Dm = Dm.clone(hidden=(8,), maxout_pieces=2)
  return gj.GAN(G, Dm, k=2, latent_dim=8, **kwargs)


def test_no_retracing_across_calls():
  gan = _mlp_gan()
  batch = jax.random.uniform(jax.random.key(1), (2, 8, 4, 4, 1))
  state = gan.init(jax.random.key(0), batch[0])
  step = jax.jit(chex.assert_max_traces(gan.step, n=1))
  for i in range(3):
    state, metrics = step(state, batch + i)
  assert int(state.step) == 3


def test_same_seed_bit_identical_different_seed_differs():
  gan = _mlp_gan()
  batch = jax.random.uniform(jax.random.key(1), (2, 8, 4, 4, 1))

  step = jax.jit(gan.step)

  def run(seed):
    state = gan.init(jax.random.key(seed), batch[0])
    for _ in range(3):
      state, _ = step(state, batch)
    return state

  a, b, c = run(0), run(0), run(1)
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(a.g_params["Dense_0"]["kernel"],
                            c.g_params["Dense_0"]["kernel"])


def test_metrics_are_finite_scalars_with_probabilities():
  gan = _mlp_gan()
  batch = jax.random.uniform(jax.random.key(1), (2, 8, 4, 4, 1))
  state = gan.init(jax.random.key(0), batch[0])
  _, metrics = jax.jit(gan.step)(state, batch)
  for name in ["d_loss", "g_loss", "d_real", "d_fake", "real_logit",
               "fake_logit", "d_grad_norm", "g_grad_norm"]:
    assert metrics[name].shape == () and np.isfinite(metrics[name]), name
  assert 0 < metrics["d_real"] < 1 and 0 < metrics["d_fake"] < 1


def test_wgan_gp_step_reports_finite_penalty_and_no_probabilities():
  gan = _mlp_gan(loss="wasserstein", penalty=gj.penalties.GradientPenalty(10.0))
  batch = jax.random.uniform(jax.random.key(1), (2, 8, 4, 4, 1))
  state = gan.init(jax.random.key(0), batch[0])
  state, metrics = jax.jit(gan.step)(state, batch)
  assert np.isfinite(metrics["d_penalty"]) and metrics["d_penalty"] > 0
  assert "d_real" not in metrics
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.d_params))


def test_weight_clipping_bounds_discriminator():
  gan = _mlp_gan(loss="wasserstein", weight_clip=0.01,
                 d_optimizer=optax.rmsprop(5e-2))
  batch = jax.random.uniform(jax.random.key(1), (2, 8, 4, 4, 1))
  state = gan.init(jax.random.key(0), batch[0])
  state, _ = jax.jit(gan.step)(state, batch)
  assert max(float(jnp.max(jnp.abs(p)))
             for p in jax.tree.leaves(state.d_params)) <= 0.01 + 1e-7


def test_instance_noise_reported_and_annealed():
  noise = gj.penalties.InstanceNoise(std=0.5, anneal_steps=2)
  gan = _mlp_gan(instance_noise=noise)
  batch = jax.random.uniform(jax.random.key(1), (2, 8, 4, 4, 1))
  state = gan.init(jax.random.key(0), batch[0])
  step = jax.jit(gan.step)
  stds = []
  for _ in range(3):
    state, metrics = step(state, batch)
    stds.append(float(metrics["instance_noise_std"]))
  np.testing.assert_allclose(stds, [0.5, 0.25, 0.0])


def test_ema_tracks_generator_and_is_used_for_sampling():
  gan = _mlp_gan(ema_decay=0.75)
  batch = jax.random.uniform(jax.random.key(1), (2, 8, 4, 4, 1))
  state = gan.init(jax.random.key(0), batch[0])
  step = jax.jit(gan.step)
  for _ in range(30):  # past the warm-up: (1 + t) / (10 + t) > 0.75 at t >= 26
    state, _ = step(state, batch)
  new_state, _ = step(state, batch)
  want = jax.tree.map(lambda old, new: 0.75 * old + 0.25 * new,
                      state.ema_g_params, new_state.g_params)
  _tree_allclose(new_state.ema_g_params, want)
  np.testing.assert_allclose(gan.ema_decay_at(0), 0.1)
  np.testing.assert_allclose(gan.ema_decay_at(8), 0.5)
  key = jax.random.key(5)
  ema_samples = gan.sample(new_state, key, 6)
  raw_samples = gan.sample(new_state, key, 6, use_ema=False)
  assert ema_samples.shape == (6, 4, 4, 1)
  assert not np.allclose(ema_samples, raw_samples)
  np.testing.assert_array_equal(ema_samples, gan.sample(new_state, key, 6))


def test_sample_shape_and_range():
  gan = _mlp_gan()
  state = gan.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
  images = jax.jit(gan.sample, static_argnums=2)(state, jax.random.key(1), 10)
  assert images.shape == (10, 4, 4, 1)
  assert jnp.all((images >= 0) & (images <= 1))


def test_uniform_latents():
  gan = _mlp_gan(latent_distribution="uniform")
  state = gan.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
  assert gan.sample(state, jax.random.key(1), 3).shape == (3, 4, 4, 1)


# ----------------------------------------------------------- bad input


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_bad_k_is_refused(k):
  with pytest.raises(ValueError, match="k .*must be an integer >= 1"):
    _gan(k=k)


def test_unknown_loss_is_refused():
  with pytest.raises(ValueError, match="Unknown GAN loss 'wgan'.*hinge"):
    _gan(loss="wgan")


def test_wrong_batch_shape_names_the_expected_layout():
  gan = _mlp_gan()  # k = 2
  state = gan.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
  with pytest.raises(ValueError, match=r"\[k, B, \*data_shape\] with k=2"):
    gan.step(state, jnp.zeros((8, 4, 4, 1)))
  with pytest.raises(ValueError, match="floating-point"):
    gan.step(state, jnp.zeros((2, 8, 4, 4, 1), jnp.uint8))


def test_image_shape_the_model_cannot_produce():
  gan = _mlp_gan()  # generator makes 4x4x1
  with pytest.raises(ValueError, match=r"produces samples of shape \(4, 4, 1\).*"
                     r"examples of shape \(28, 28, 1\).*"
                     r"dcgan\(image_shape=\(28, 28, 1\)\)"):
    gan.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
  # A flat generator and a step batch [k, B, H, W, C]: the suggestion is the
  # image shape, without the batch size.
  flat = gj.GAN(gj.models.MLPGenerator((64,), hidden=(8,)),
                gj.models.MLPDiscriminator(hidden=(8,)), latent_dim=4)
  with pytest.raises(ValueError, match=r"read as \[k, B, \.\.\.\]\). .*"
                     r"dcgan\(image_shape=\(8, 8, 1\)\)\.$"):
    flat.init(jax.random.key(0), jnp.zeros((1, 64, 8, 8, 1)))


def test_init_accepts_a_step_batch():
  gan = _mlp_gan()
  state = gan.init(jax.random.key(0), jnp.zeros((2, 8, 4, 4, 1)))
  assert int(state.step) == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"ema_decay": 1.5}, "ema_decay"),
    ({"weight_clip": 0.0}, "weight_clip"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"latent_distribution": "cauchy"}, "latent_distribution"),
    ({"d_loop": "while"}, "d_loop"),
])
def test_bad_options_are_refused(kwargs, match):
  with pytest.raises(ValueError, match=match):
    _gan(**kwargs)


def test_vmapped_init_equals_init_per_key():
  """Member i of a population initialised under jax.vmap is init of key i,
  bit for bit (the parameters come from rbg keys, mapped one by one)."""
  keys = jax.random.split(jax.random.key(0), 3)
  gan, x = _dcgan_gan(ema_decay=0.9), jnp.zeros((2, 8, 8, 1))
  members = jax.jit(jax.vmap(lambda k: gan.init(k, x)))(keys)
  for i in range(len(keys)):
    chex.assert_trees_all_equal(jax.tree.map(lambda a: a[i], members),
                                gan.init(keys[i], x))
