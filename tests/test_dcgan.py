"""ganjax.models.layers (ConvTranspose, conv_general_dilated) and the DCGAN models."""
import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.models.dcgan import (DCGANDiscriminator, DCGANGenerator, dcgan,
                                 num_upsamplings)
from ganjax.models import layers
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
  # impl='auto' picks one of these or plain lax.conv_transpose (= flax); the
  # 'conv' and 'lax' impls also with the canonical-gradient convolution.
  mods = {impl: ConvTranspose(**kw, impl=impl) for impl in ('conv', 'matmul')}
  for impl in ('conv', 'lax'):
    mods[impl + '+canonical'] = ConvTranspose(
        **kw, impl=impl, conv_general_dilated=layers.conv_general_dilated)

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
# conv_general_dilated: lax.conv_general_dilated with a canonical backward pass

# (input NHWC, kernel HWIO, strides, padding, lhs_dilation, rhs_dilation,
# feature_group_count): DCGAN's discriminator convs (4x4 stride 2 SAME, on
# even and odd sizes), VALID, explicit and negative padding, mixed strides,
# dilations, feature groups, 1-D and 3-D.
CONV_CASES = [
    ((2, 28, 28, 1), (4, 4, 1, 8), (2, 2), 'SAME', None, None, 1),
    ((2, 7, 7, 8), (4, 4, 8, 16), (2, 2), 'SAME', None, None, 1),
    ((2, 7, 9, 3), (3, 3, 3, 4), (1, 1), 'VALID', None, None, 1),
    ((2, 7, 9, 3), (3, 2, 3, 4), (2, 3), ((1, 2), (0, -1)), None, None, 1),
    ((2, 8, 8, 3), (3, 3, 3, 5), (1, 2), ((2, 1), (1, 1)), (2, 1), (1, 2), 1),
    ((2, 7, 9, 4), (3, 3, 2, 6), (2, 1), 'SAME', None, None, 2),
    ((2, 6, 6, 3), (3, 3, 1, 3), (2, 2), 'SAME', None, None, 3),  # depthwise
    ((2, 9, 3), (3, 3, 4), (2,), 'SAME', None, None, 1),
    ((1, 5, 6, 4, 2), (3, 2, 3, 2, 3), (2, 1, 2), 'SAME', None, None, 1),
]


def _conv_fns(case):
  shape, kshape, strides, padding, lhs_d, rhs_d, groups = case
  nd = len(shape) - 2
  dn = layers._channels_last_specs(nd)
  kw = dict(window_strides=strides, padding=padding, lhs_dilation=lhs_d,
            rhs_dilation=rhs_d, dimension_numbers=dn,
            feature_group_count=groups)
  return (lambda x, w: jax.lax.conv_general_dilated(x, w, **kw),
          lambda x, w: layers.conv_general_dilated(x, w, **kw))


def _first_and_second_order(conv, x, w, cot):
  """Output, (dx, dw), and the gradients of the squared gradient norms."""
  loss = lambda x, w: jnp.vdot(jnp.sin(conv(x, w)), cot)
  grads = jax.grad(loss, (0, 1))(x, w)
  # d/dw ||dL/dx||^2 (a gradient penalty) and d/dx ||dL/dw||^2.
  gp_w = jax.grad(lambda w: jnp.sum(jax.grad(loss, 0)(x, w) ** 2))(w)
  gp_x = jax.grad(lambda x: jnp.sum(jax.grad(loss, 1)(x, w) ** 2))(x)
  return conv(x, w), grads, (gp_w, gp_x)


@pytest.mark.parametrize('case', CONV_CASES)
def test_conv_general_dilated_matches_lax(case):
  """Same output and first and second order gradients as lax, every case."""
  ref, mine = _conv_fns(case)
  x = randn(case[0], seed=0)
  w = randn(case[1], seed=1, scale=0.3)
  cot = jnp.cos(jnp.arange(ref(x, w).size, dtype=jnp.float32)).reshape(
      ref(x, w).shape)

  @jax.jit
  def run(x, w):
    return (_first_and_second_order(ref, x, w, cot),
            _first_and_second_order(mine, x, w, cot))

  want, got = run(x, w)
  np.testing.assert_array_equal(got[0], want[0])  # the same forward call
  jax.tree.map(functools.partial(assert_close, tol=1e-6), got[1:], want[1:])


def test_conv_general_dilated_under_vmap_and_bfloat16():
  ref, mine = _conv_fns(CONV_CASES[1])
  x, w = randn((3, 7, 7, 8), seed=0), randn((4, 4, 8, 16), seed=1, scale=0.3)

  def grads(conv, x, w):
    # Per-example application, as GAN._discriminate does for dropout models.
    one = lambda xi, w: conv(xi[None], w)[0]
    return jax.grad(lambda x, w: jnp.sum(jnp.sin(jax.vmap(
        one, (0, None))(x, w)).astype(jnp.float32)), (0, 1))(x, w)

  run = jax.jit(lambda x, w: (grads(ref, x, w), grads(mine, x, w)))
  want, got = run(x, w)
  jax.tree.map(assert_close, got, want)
  want, got = run(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))
  assert {g.dtype for g in got} == {jnp.dtype(jnp.bfloat16)}
  jax.tree.map(lambda a, b: assert_close(a.astype(jnp.float32),
                                         b.astype(jnp.float32), tol=1e-2),
               got, want)


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='XLA:CPU layouts')
def test_conv_general_dilated_gradients_are_canonical_inside_scan():
  """The forward, input and kernel gradient convs in a scan: b01f_01io->b01f.

  With lax.conv_general_dilated the gradient convs inside the loop keep
  non-canonical dimension numbers (f01b_i01o->01bf), which XLA:CPU runs in a
  slow loop emitter. (Second order gradients are canonical too, except where
  XLA's algebraic simplifier swaps the operands of a kernel-gradient conv
  whose "kernel" is larger than its input, which it does outside loops too.)
  """
  ref, mine = _conv_fns(CONV_CASES[1])
  x, w = randn((3, 7, 7, 8), seed=0), randn((4, 4, 8, 16), seed=1, scale=0.3)

  def labels(conv):
    grad = jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), (0, 1))
    body = lambda c, x: (c, grad(x, w))
    hlo = jax.jit(lambda xs: jax.lax.scan(body, 0, xs)).lower(
        x[None]).compile().as_text()
    return re.findall(r'convolution\(.*dim_labels=([^,\s]+)', hlo)

  assert labels(mine) == ['b01f_01io->b01f'] * 3
  assert len(labels(ref)) == 3 and set(labels(ref)) != {'b01f_01io->b01f'}


def test_conv_general_dilated_unsupported_arguments_raise():
  x, w = jnp.ones((1, 6, 6, 4)), jnp.ones((3, 3, 4, 8))
  conv = functools.partial(layers.conv_general_dilated, window_strides=(1, 1),
                           padding='SAME')
  dn = ('NHWC', 'HWIO', 'NHWC')
  with pytest.raises(NotImplementedError, match='channels-last'):
    conv(x, w)  # dimension_numbers=None means NCHW
  with pytest.raises(NotImplementedError, match='channels-last'):
    conv(jnp.ones((1, 4, 6, 6)), jnp.ones((8, 4, 3, 3)),
         dimension_numbers=('NCHW', 'OIHW', 'NCHW'))
  with pytest.raises(NotImplementedError, match='batch_group_count'):
    conv(x, jnp.ones((3, 3, 4, 2)), dimension_numbers=dn, batch_group_count=2)
  with pytest.raises(NotImplementedError, match='preferred_element_type'):
    conv(x, w, dimension_numbers=dn, preferred_element_type=jnp.float32)
  with pytest.raises(ValueError, match='feature_group_count'):
    conv(x, w, dimension_numbers=dn, feature_group_count=3)
  with pytest.raises(ValueError, match='lhs_dilation'):
    conv(x, w, dimension_numbers=dn, lhs_dilation=(2, 2))
  with pytest.raises(NotImplementedError, match='1-3 spatial'):
    conv(jnp.ones((1, 4)), jnp.ones((4, 8)), dimension_numbers=('NC', 'IO', 'NC'))


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


@pytest.mark.parametrize('spectral_norm', [False, True])
def test_fast_conv_grad_discriminator_equals_flax_conv(spectral_norm):
  """Same parameters, logits, gradients and gradient-penalty gradients."""
  fast = DCGANDiscriminator((16, 16, 1), base_features=4,
                            spectral_norm=spectral_norm)
  slow = fast.clone(fast_conv_grad=False)
  x = randn(seed=0, shape=(3, 16, 16, 1))

  def results(module, v):
    def apply(p, x):
      return module.apply({**v, 'params': p}, x, train=False)
    loss = lambda p, x: jnp.sum(jnp.sin(apply(p, x)))
    gp = lambda p: jnp.sum(jax.grad(lambda x: jnp.sum(apply(p, x)))(x) ** 2)
    return (apply(v['params'], x), jax.grad(loss, (0, 1))(v['params'], x),
            jax.grad(gp)(v['params']))

  @jax.jit
  def run(x):
    v = fast.init(key(1), x, train=False)
    return v, slow.init(key(1), x, train=False), results(fast, v), results(
        slow, v)

  v_fast, v_slow, got, want = run(x)
  jax.tree.map(np.testing.assert_array_equal, v_fast, v_slow)
  jax.tree.map(functools.partial(assert_close, tol=1e-6), got, want)


def test_fast_conv_grad_generator_equals_lax_convs():
  fast = DCGANGenerator((28, 28, 1), latent_dim=8, base_features=4)
  slow = fast.clone(fast_conv_grad=False)
  z = randn(seed=0, shape=(3, 8))
  v = jax.jit(functools.partial(fast.init, train=False))(key(1), z)

  def grads(module):
    def loss(p):
      y, _ = module.apply({**v, 'params': p}, z, train=True,
                          mutable=['batch_stats'])
      return jnp.sum(jnp.sin(3 * y))
    return jax.grad(loss)(v['params'])

  got, want = jax.jit(lambda: (grads(fast), grads(slow)))()
  jax.tree.map(functools.partial(assert_close, tol=1e-6), got, want)
