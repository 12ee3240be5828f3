"""ganjax.models.layers.ConvTranspose and the DCGAN models."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.models.dcgan import (DCGANDiscriminator, DCGANGenerator, dcgan,
                                 num_upsamplings)
from ganjax.models.layers import ConvTranspose, _PhasePlan


def key(seed):
  # XLA:CPU compiles each threefry random shape in ~1.5 CPU-s; 'rbg' in ~0.2.
  return jax.random.key(seed, impl='rbg')


def randn(shape, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(scale * rng.standard_normal(shape), dtype=jnp.float32)


def assert_close(actual, desired, tol=1e-5):
  """Float32 agreement relative to the scale of ``desired``."""
  actual, desired = np.asarray(actual), np.asarray(desired)
  assert actual.shape == desired.shape
  scale = max(1.0, float(np.abs(desired).max()))
  np.testing.assert_allclose(actual, desired, rtol=tol, atol=tol * scale)


# ----------------------------------------------------------------------------
# ConvTranspose


def test_phase_plan_k4_s2_same():
  """lax.conv_transpose 'SAME', k=4, s=2 pads the dilated input by (2, 2):
  even outputs 2q use taps 0, 2 on x[q-1], x[q]; odd outputs 2q+1 use taps
  1, 3 on x[q], x[q+1]. So one 2-tap conv over x padded by 1 gives both."""
  p = _PhasePlan(n=7, k=4, s=2, lo=2, hi=2)
  assert p.out == 14 and p.q == 7 and p.m == 2
  assert p.starts == [0, 1]                  # first tap of each phase
  assert p.d_min == -1 and p.offsets == [0, 1]  # phase 0 reads x[q-1], 1 x[q]
  assert (p.pad_lo, p.pad_hi) == (1, 1)


# (input NHWC, features, kernel, strides, padding): the DCGAN generator layers
# for 28x28x1, 32x32x3, 64x64x3 and 32x48x3 (channels shrunk), odd and
# non-square sizes, kernels 3/4/5, and non-SAME paddings.
CASES = [
    ((2, 7, 7, 8), 4, (4, 4), (2, 2), 'SAME'),      # 28x28: 7 -> 14
    ((2, 14, 14, 4), 1, (4, 4), (2, 2), 'SAME'),    # 28x28: 14 -> 28, C=1
    ((2, 4, 6, 8), 4, (4, 4), (2, 2), 'SAME'),      # 32x48: 4x6 -> 8x12
    ((2, 16, 16, 4), 3, (4, 4), (2, 2), 'SAME'),    # 32x32: 16 -> 32, C=3
    ((1, 32, 32, 2), 3, (4, 4), (2, 2), 'SAME'),    # 64x64: 32 -> 64, C=3
    ((2, 5, 3, 3), 2, (4, 4), (2, 2), 'SAME'),      # odd, non-square
    ((2, 7, 7, 3), 2, (5, 5), (2, 2), 'SAME'),
    ((2, 7, 6, 3), 2, (3, 3), (2, 2), 'SAME'),
    ((2, 5, 4, 3), 2, (4, 3), (2, 3), 'SAME'),      # mixed kernel and stride
    ((2, 5, 5, 3), 2, (4, 4), (2, 2), 'VALID'),
    ((2, 5, 4, 3), 2, (3, 4), (2, 2), ((-1, 2), (2, -1))),  # explicit pairs
    ((2, 4, 4, 3), 2, (1, 1), (3, 3), 'SAME'),      # kernel < stride
]


def _value_and_grads(module, params, x, cotangent):
  def loss(params, x):
    y = module.apply(params, x)
    return jnp.vdot(y.ravel(), cotangent), y

  (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
  return y, grads


@pytest.mark.parametrize('shape,features,kernel,strides,padding', CASES)
def test_conv_transpose_matches_flax(shape, features, kernel, strides, padding):
  """Outputs and gradients w.r.t. input, kernel and bias, every impl."""
  x = randn(seed=0, shape=shape)
  kw = dict(features=features, kernel_size=kernel, strides=strides,
            padding=padding)
  ref = nn.ConvTranspose(**kw, bias_init=nn.initializers.normal(1.0))
  params = ref.init(key(1), x)
  # impl='auto' picks one of these or plain lax.conv_transpose (= flax).
  mods = {impl: ConvTranspose(**kw, impl=impl) for impl in ('conv', 'matmul')}

  @jax.jit  # one compilation for all implementations
  def run(params, x):
    y = ref.apply(params, x)
    cot = jnp.cos(jnp.arange(y.size, dtype=jnp.float32))
    return (_value_and_grads(ref, params, x, cot),
            {k: _value_and_grads(m, params, x, cot) for k, m in mods.items()})

  (y_ref, (gp_ref, gx_ref)), results = run(params, x)
  for impl, (y, (gp, gx)) in results.items():
    assert_close(y, y_ref)
    assert_close(gx, gx_ref)
    assert_close(gp['params']['kernel'], gp_ref['params']['kernel'])
    assert_close(gp['params']['bias'], gp_ref['params']['bias'])


@pytest.mark.parametrize('kw', [
    {},
    {'use_bias': False},
    {'kernel_init': nn.initializers.normal(0.02),
     'bias_init': nn.initializers.uniform(0.5)},
    {'transpose_kernel': True},
    {'param_dtype': jnp.bfloat16, 'dtype': jnp.float32},
])
def test_conv_transpose_init_and_output_identical_to_flax(kw):
  x = randn(seed=0, shape=(2, 5, 6, 3))
  args = dict(features=4, kernel_size=(4, 4), strides=(2, 2), **kw)

  @jax.jit
  def run(x):
    ref = nn.ConvTranspose(**args).init(key(3), x)
    mine = ConvTranspose(**args).init(key(3), x)
    return ref, mine, (ConvTranspose(**args, impl='conv').apply(ref, x),
                       nn.ConvTranspose(**args).apply(ref, x))

  ref, mine, (y, y_ref) = run(x)
  assert jax.tree.structure(ref) == jax.tree.structure(mine)
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(mine)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  assert_close(y, y_ref)


def test_conv_transpose_batch_dims_and_1d_3d():
  x = randn(seed=0, shape=(2, 3, 5, 4, 3))  # two batch dims
  cases = [(x, (4, 4)), (x[0, 0], (4, 4)), (x[..., 0, :], (4,)),
           (x, (3, 2, 4))]

  @jax.jit
  def run(x):
    out = []
    for x, k in cases:
      args = dict(features=2, kernel_size=k, strides=2)
      params = nn.ConvTranspose(**args).init(key(1), x)
      out.append((ConvTranspose(**args, impl='conv').apply(params, x),
                  nn.ConvTranspose(**args).apply(params, x)))
    return out

  for y, y_ref in run(x):
    assert_close(y, y_ref)


def test_conv_transpose_unsupported_settings_raise():
  x = jnp.ones((1, 4, 4, 2))
  with pytest.raises(NotImplementedError, match='CIRCULAR'):
    ConvTranspose(2, (4, 4), strides=(2, 2), padding='CIRCULAR').init(
        key(0), x)
  with pytest.raises(NotImplementedError, match='kernel_dilation'):
    ConvTranspose(2, (4, 4), strides=(2, 2), kernel_dilation=2).init(
        key(0), x)


# ----------------------------------------------------------------------------
# DCGAN

SHAPES = [(28, 28, 1), (32, 32, 3), (64, 64, 3), (32, 48, 3)]


@pytest.mark.parametrize('image_shape,n', [((28, 28, 1), 2), ((32, 32, 3), 3),
                                           ((64, 64, 3), 4), ((48, 48, 1), 3),
                                           ((32, 48, 3), 3), ((8, 8, 1), 1)])
def test_num_upsamplings(image_shape, n):
  assert num_upsamplings(image_shape) == n


@pytest.mark.parametrize('image_shape', [(7, 7, 1), (6, 6, 1), (30, 31, 3),
                                         (28, 28)])
def test_impossible_image_shape_raises(image_shape):
  with pytest.raises(ValueError, match='image_shape'):
    dcgan(image_shape)
  with pytest.raises(ValueError, match='image_shape'):
    DCGANGenerator(image_shape=image_shape, latent_dim=4)


@pytest.mark.parametrize('image_shape', SHAPES)
def test_shapes(image_shape):
  g, d = dcgan(image_shape, latent_dim=8, base_features=4)
  z = jnp.zeros((3, 8))
  gv = jax.eval_shape(functools.partial(g.init, train=False), key(1), z)
  images, _ = jax.eval_shape(
      functools.partial(g.apply, train=True, mutable=['batch_stats']), gv, z)
  assert images.shape == (3,) + image_shape and images.dtype == jnp.float32
  dv = jax.eval_shape(functools.partial(d.init, train=False),
                      key(2), images)
  assert 'batch_stats' not in dv  # no batch norm in D by default
  logits = jax.eval_shape(functools.partial(d.apply, train=True), dv, images)
  assert logits.shape == (3,)


def test_values_and_ranges():
  g, d = dcgan((28, 28, 1), latent_dim=8, base_features=4)
  z = randn((3, 8), scale=3.0)

  @jax.jit
  def run(z):
    gv = g.init(key(1), z, train=False)
    images, _ = g.apply(gv, z, train=True, mutable=['batch_stats'])
    dv = d.init(key(2), images, train=False)
    return images, d.apply(dv, images, train=True)

  images, logits = run(z)
  assert float(jnp.abs(images).max()) <= 1.0
  assert float(images.std()) > 0.0
  assert logits.shape == (3,) and bool(jnp.all(jnp.isfinite(logits)))


def test_generator_28x28_layout():
  g, _ = dcgan((28, 28, 1), latent_dim=100, base_features=64)
  v = jax.eval_shape(functools.partial(g.init, train=False), key(0),
                     jnp.ones((1, 100)))
  shapes = jax.tree.map(lambda a: a.shape, v['params'])
  assert shapes['Dense_0']['kernel'] == (100, 7 * 7 * 128)
  assert shapes['ConvTranspose_0']['kernel'] == (4, 4, 128, 64)
  assert shapes['ConvTranspose_1']['kernel'] == (4, 4, 64, 1)


def test_spectral_norm_discriminator_updates_stats():
  _, d = dcgan((28, 28, 1), base_features=4, spectral_norm=True)
  x = randn(seed=0, shape=(2, 28, 28, 1))

  @jax.jit
  def run(x):
    v = d.init(key(1), x, train=False)
    logits, updates = d.apply(v, x, train=True, mutable=['batch_stats'])
    return v, logits, updates, d.apply(v, x, train=False)

  v, logits, updates, logits_eval = run(x)
  stats, new = v['batch_stats'], updates['batch_stats']
  assert len(stats) == 3  # 2 convs + dense
  assert logits.shape == logits_eval.shape == (2,)
  for layer, s in stats.items():
    for name, value in s.items():
      if name.endswith('/u'):  # power iteration moved u
        assert float(jnp.abs(new[layer][name] - value).max()) > 1e-3
      else:  # flax stores normalised kernels at init, so sigma is ~1 here
        np.testing.assert_allclose(new[layer][name], 1.0, rtol=1e-4)


def test_discriminator_batch_norm_option():
  d = DCGANDiscriminator((32, 32, 3), base_features=4, batch_norm=True)
  x = jnp.zeros((2, 32, 32, 3))
  v = jax.eval_shape(functools.partial(d.init, train=False), key(1), x)
  # After every conv but the first.
  assert list(v['batch_stats']) == ['BatchNorm_0', 'BatchNorm_1']
  logits, _ = jax.eval_shape(
      functools.partial(d.apply, train=True, mutable=['batch_stats']), v, x)
  assert logits.shape == (2,)


@pytest.mark.parametrize('image_shape', [(28, 28, 1), (16, 24, 3)])
def test_fast_and_flax_conv_transpose_generators_agree(image_shape):
  """Same params give the same images and gradients with either layer."""
  fast = DCGANGenerator(image_shape, latent_dim=8, base_features=4)
  slow = fast.clone(fast_conv_transpose=False)
  z = randn(seed=0, shape=(3, 8))
  v = jax.jit(functools.partial(fast.init, train=False))(key(1), z)
  v_slow = jax.eval_shape(functools.partial(slow.init, train=False),
                          key(1), z)
  assert jax.tree.map(jnp.shape, v) == jax.tree.map(jnp.shape, v_slow)

  def outputs(module, params):
    def loss(params):
      y, _ = module.apply({**v, 'params': params}, z, train=True,
                          mutable=['batch_stats'])
      return jnp.sum(y * jnp.cos(jnp.arange(y.size)).reshape(y.shape)), y
    (_, y_train), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return y_train, module.apply({**v, 'params': params}, z, train=False), grads

  both = jax.jit(lambda p: (outputs(fast, p), outputs(slow, p)))(v['params'])
  jax.tree.map(assert_close, both[0], both[1])


def test_pmap_synchronised_batch_norm_matches_single_device():
  n_dev = jax.local_device_count()
  if n_dev < 2:
    pytest.skip('needs several (fake) devices')
  g = DCGANGenerator((28, 28, 1), latent_dim=8, base_features=4)
  g_sync = g.clone(axis_name='batch')
  z = randn(seed=0, shape=(2 * n_dev, 8))
  v = jax.jit(functools.partial(g.init, train=False))(key(1), z)

  y, upd = jax.jit(functools.partial(g.apply, train=True,
                                     mutable=['batch_stats']))(v, z)

  @functools.partial(jax.pmap, axis_name='batch')
  def step(v, z):
    return g_sync.apply(v, z, train=True, mutable=['batch_stats'])

  v_rep = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_dev,) + a.shape), v)
  y_dev, upd_dev = step(v_rep, z.reshape(n_dev, 2, 8))
  assert_close(y_dev.reshape(y.shape), y)
  for a, b in zip(jax.tree.leaves(upd_dev), jax.tree.leaves(upd)):
    for i in range(n_dev):
      assert_close(a[i], b)
