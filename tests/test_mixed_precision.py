"""Mixed precision: ``GAN(compute_dtype=jnp.bfloat16)``.

G and D compute in bfloat16; parameters, optimizer states, batch statistics,
logits, losses and penalties stay float32.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj

BF16 = jnp.bfloat16


def _dcgan(**d_kwargs):
  G, D = gj.models.dcgan(image_shape=(8, 8, 1), latent_dim=8, base_features=8)
  return G, D.clone(**d_kwargs)


def _mlp():
  G, D = gj.models.goodfellow_mlp((4, 4, 1))
  return G.clone(hidden=(16,)), D.clone(hidden=(8,), maxout_pieces=2)


def _gan(models, compute_dtype=BF16, **kwargs):
  G, D = models
  defaults = dict(k=2, latent_dim=8, g_optimizer=optax.adam(1e-3),
                  d_optimizer=optax.adam(1e-3))
  defaults.update(kwargs)
  return gj.GAN(G, D, compute_dtype=compute_dtype, **defaults)


def _batch(shape, k=2, b=8, seed=1):
  return jax.random.uniform(jax.random.key(seed), (k, b) + shape, minval=-1.0,
                            maxval=1.0)


def _dtypes(tree):
  return {str(x.dtype) for x in jax.tree.leaves(tree)}


def _float_state_leaves(state):
  """Every floating leaf of the state (optimizer counts are int32)."""
  return [x for x in jax.tree.leaves(state)
          if jnp.issubdtype(x.dtype, jnp.floating)]


# Each model with a loss and the penalties or noise that touch its inputs'
# gradients: R1 and instance noise, the gradient penalty (second-order
# gradients in bf16).
_R1_NOISE = dict(loss="hinge", penalty=gj.penalties.R1(10.0),
                 instance_noise=gj.penalties.InstanceNoise(0.1, 100))
_WGAN_GP = dict(loss="wasserstein", penalty=gj.penalties.GradientPenalty(10.0))


@pytest.mark.parametrize("models,shape,kwargs", [
    (_dcgan(), (8, 8, 1), _R1_NOISE),
    (_dcgan(batch_norm=True), (8, 8, 1), {}),
    (_dcgan(spectral_norm=True), (8, 8, 1), _WGAN_GP),
    (_mlp(), (4, 4, 1), _WGAN_GP),
], ids=["dcgan_r1_noise", "dcgan_bn_d", "dcgan_sn_d_wgan_gp", "paper_mlp_wgan_gp"])
def test_bf16_step_keeps_float32_state_and_metrics(models, shape, kwargs):
  gan = _gan(models, ema_decay=0.99, **kwargs)
  batch = _batch(shape)
  state = gan.init(jax.random.key(0), batch[0])
  step = jax.jit(gan.step)
  for _ in range(2):
    state, metrics = step(state, batch)
    for name, value in metrics.items():
      assert value.dtype == jnp.float32, name
      assert np.isfinite(value), name
    assert not gan.penalties or metrics["d_penalty"] >= 0
  leaves = _float_state_leaves(state)
  assert _dtypes(leaves) == {"float32"}
  assert all(np.all(np.isfinite(x)) for x in leaves)
  assert gan.sample(state, jax.random.key(2), 3).dtype == jnp.float32


def test_bf16_models_compute_in_bf16():
  gan = _gan(_dcgan())
  batch = _batch((8, 8, 1))
  state = gan.init(jax.random.key(0), batch[0])
  jaxpr = str(jax.make_jaxpr(gan.step)(state, batch))
  convs = [l for l in jaxpr.splitlines()
           if "conv_general_dilated[" in l or "dot_general[" in l]
  assert convs
  bf16_ops = [l for l in convs if "bf16[" in l.split("=")[0]]
  # Every matmul and convolution of the players produces bf16 (the only f32
  # ones would be those of a model that ignores its dtype field).
  assert len(bf16_ops) == len(convs), [l for l in convs if l not in bf16_ops]


def test_bf16_losses_close_to_float32_at_init():
  shape = (8, 8, 1)
  batch = _batch(shape, b=32)
  metrics = {}
  for dtype in (None, BF16):
    gan = _gan(_dcgan(), compute_dtype=dtype)
    state = gan.init(jax.random.key(0), batch[0])
    _, metrics[dtype] = jax.jit(gan.step)(state, batch)
  for name in ("d_loss", "g_loss", "real_logit", "fake_logit"):
    np.testing.assert_allclose(metrics[BF16][name], metrics[None][name],
                               atol=2e-2, rtol=2e-2, err_msg=name)


def test_init_is_independent_of_compute_dtype():
  batch = _batch((8, 8, 1))
  s32 = _gan(_dcgan(), None).init(jax.random.key(0), batch[0])
  s16 = _gan(_dcgan(), BF16).init(jax.random.key(0), batch[0])
  jax.tree.map(np.testing.assert_array_equal, s32, s16)


def test_bf16_under_pmap_matches_one_device():
  gan = _gan(_mlp(), k=1)
  batch = _batch((4, 4, 1), k=1, b=16)
  state = gan.init(jax.random.key(0), batch[0])
  one, m_one = jax.jit(gan.step)(state, batch)
  n = 8
  rstate, m_par = gj.parallel.pmap_step(gan, donate=False)(
      gj.parallel.replicate(state, jax.local_devices()[:n]),
      gj.parallel.shard(batch, n))
  par = gj.parallel.unreplicate(rstate)
  # bf16 sums in a different order per device split: agreement to bf16 rounding.
  np.testing.assert_allclose(m_par["d_loss"][0], m_one["d_loss"], rtol=2e-2)
  assert _dtypes(_float_state_leaves(par)) == {"float32"}


class _NoDtype(nn.Module):
  @nn.compact
  def __call__(self, x, train=True):
    return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


def test_models_without_dtype_field_are_rejected():
  G, _ = _mlp()
  with pytest.raises(ValueError, match="dtype"):
    gj.GAN(G, _NoDtype(), compute_dtype=BF16)
  with pytest.raises(ValueError, match="floating"):
    gj.GAN(*_mlp(), compute_dtype=jnp.int32)
  # Without mixed precision any module is fine.
  gj.GAN(G, _NoDtype())


def test_replace_compute_dtype_back_to_float32():
  gan = _gan(_mlp())
  gan32 = dataclasses.replace(gan, compute_dtype=None)
  batch = _batch((4, 4, 1))
  state = gan32.init(jax.random.key(0), batch[0])
  jaxpr = str(jax.make_jaxpr(gan32.step)(state, batch))
  assert "bf16" not in jaxpr
