"""Class-conditional models: conditional batch norm, the projection
discriminator, label concatenation in the MLPs, the AC-GAN head, and the
label checks, against hand-written formulas on tiny inputs."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ganjax as gj
from ganjax.models import conditioning


def key(seed):
  return jax.random.key(seed, impl='rbg')


# References are computed in numpy (no per-op XLA compilation); model calls
# go through one jax.jit each.


def randn(shape, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return (scale * rng.standard_normal(shape)).astype(np.float32)


def randomize(tree, seed):
  """Every leaf replaced by N(0, 1) values (so no init value hides a bug)."""
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(
      treedef, [randn(l.shape, seed + i) for i, l in enumerate(leaves)])


def init(module, *args, **kwargs):
  return jax.tree.map(np.asarray, jax.jit(
      functools.partial(module.init, **kwargs))(*args))


def apply(module, *args, **kwargs):
  return jax.tree.map(np.asarray, jax.jit(
      functools.partial(module.apply, **kwargs))(*args))


def relu(x):
  return np.maximum(x, 0)


def one_hot(y, n):
  return np.eye(n, dtype=np.float32)[y]


def l2n(v):
  return v / np.sqrt(np.sum(v * v) + 1e-12)


def sn_sigma(w, u):
  """One power iteration from ``u`` on ``w`` reshaped to ``[-1, out]``:
  ``v = u W^T / |.|``, ``u' = v W / |.|``, ``sigma = v W u'^T`` (Miyato et al.
  2018, Algorithm 1)."""
  w = w.reshape(-1, w.shape[-1])
  v = l2n(u @ w.T)
  u = l2n(v @ w)
  return (v @ w @ u.T)[0, 0]


LABELS = np.array([0, 2, 1, 2], np.int32)


def test_conditional_batch_norm_formula():
  """gamma[y] * (x - mean) / sqrt(var + eps) + beta[y], batch statistics in
  training, running averages in evaluation; embeddings start at 1 and 0."""
  cbn = conditioning.ConditionalBatchNorm(num_classes=3, epsilon=1e-3)
  x = randn((4, 2, 3, 5), scale=2.0) + 1.0
  v = init(cbn, key(0), x, LABELS)
  np.testing.assert_array_equal(v['params']['scale']['embedding'],
                                np.ones((3, 5)))
  np.testing.assert_array_equal(v['params']['bias']['embedding'],
                                np.zeros((3, 5)))
  assert set(v['params']) == {'scale', 'bias'}  # BatchNorm: no own affine
  params = randomize(v['params'], seed=1)
  gamma = params['scale']['embedding'][LABELS][:, None, None, :]
  beta = params['bias']['embedding'][LABELS][:, None, None, :]
  out, upd = apply(cbn, {'params': params, 'batch_stats': v['batch_stats']},
                   x, LABELS, mutable=['batch_stats'])
  mean = x.mean((0, 1, 2))
  var = x.var((0, 1, 2))
  np.testing.assert_allclose(
      out, gamma * (x - mean) / np.sqrt(var + 1e-3) + beta, rtol=1e-5,
      atol=1e-5)
  np.testing.assert_allclose(upd['batch_stats']['norm']['mean'], 0.1 * mean,
                             rtol=1e-5, atol=1e-6)
  evaluated = apply(cbn.clone(use_running_average=True),
                    {'params': params, 'batch_stats': v['batch_stats']}, x,
                    LABELS)
  np.testing.assert_allclose(evaluated, gamma * x / np.sqrt(1 + 1e-3) + beta,
                             rtol=1e-5, atol=1e-5)


def test_conditional_dcgan_generator_uses_conditional_batch_norm():
  g, _ = gj.models.dcgan((8, 8, 1), latent_dim=3, base_features=2,
                         num_classes=3)
  z = randn((4, 3))
  v = init(g, key(0), z, LABELS, train=False)
  assert set(v['params']) == {'Dense_0', 'ConditionalBatchNorm_0',
                              'ConvTranspose_0'}
  assert v['params']['ConditionalBatchNorm_0']['scale']['embedding'].shape \
      == (3, 2)
  params = randomize(v['params'], seed=2)
  out = apply(g, {'params': params, 'batch_stats': v['batch_stats']}, z,
              LABELS, train=False)
  # By hand: Dense, reshape, class-dependent affine of the running-average
  # normalisation, ReLU, transposed conv (via the module), tanh.
  h = (z @ params['Dense_0']['kernel']).reshape(4, 4, 4, 2)
  cbn = params['ConditionalBatchNorm_0']
  h = (cbn['scale']['embedding'][LABELS][:, None, None] * h / np.sqrt(1 + 1e-5)
       + cbn['bias']['embedding'][LABELS][:, None, None])
  h = apply(gj.models.ConvTranspose(1, (4, 4), strides=(2, 2)),
            {'params': params['ConvTranspose_0']}, relu(h))
  np.testing.assert_allclose(out, np.tanh(h), rtol=1e-5, atol=1e-5)
  assert g.output_range == (-1.0, 1.0)
  # Another class changes the image.
  other = apply(g, {'params': params, 'batch_stats': v['batch_stats']}, z,
                (LABELS + 1) % 3, train=False)
  assert float(np.abs(other - out).max()) > 1e-3


@pytest.mark.parametrize('spectral_norm', [False, True])
def test_projection_discriminator_formula(spectral_norm):
  """logit = psi(phi(x)) + <embed(y), phi(x)> (Miyato & Koyama 2018), the
  embedding spectrally normalised with the rest of D when asked."""
  kw = dict(image_shape=(8, 8, 1), base_features=2,
            spectral_norm=spectral_norm)
  d = gj.models.DCGANDiscriminator(**kw, num_classes=3, return_features=True)
  d_uncond = gj.models.DCGANDiscriminator(**kw)
  x = randn((4, 8, 8, 1))
  v = init(d, key(0), x, LABELS, train=False)
  v['params'] = randomize(v['params'], seed=3)
  out = apply(d, v, x, LABELS, train=False)
  assert set(out) == {'logits', 'features'}
  phi = out['features']
  assert phi.shape == (4, 4 * 4 * 2)
  uncond_vars = {c: {k: s for k, s in t.items() if not k.startswith('proj')}
                 for c, t in v.items()}
  psi = apply(d_uncond, uncond_vars, x, train=False)
  embed = v['params']['projection']['embedding']
  if spectral_norm:
    u = v['batch_stats']['projection_sn']['projection/embedding/u']
    embed = embed / sn_sigma(embed, u)
  expected = psi + np.sum(embed[LABELS] * phi, axis=-1)
  np.testing.assert_allclose(out['logits'], expected, rtol=1e-5, atol=1e-5)
  if spectral_norm:  # training mode moves the projection's power iteration
    _, upd = apply(d, v, x, LABELS, train=True, mutable=['batch_stats'])
    assert 'projection_sn' in upd['batch_stats']


def test_unconditional_parameter_trees_are_unchanged():
  """Existing checkpoints still load: no new variables without num_classes."""
  g, d = gj.models.dcgan((8, 8, 1), latent_dim=3, base_features=2,
                         spectral_norm=True)
  gv = jax.eval_shape(functools.partial(g.init, train=False), key(0),
                      jnp.zeros((2, 3)))
  dv = jax.eval_shape(functools.partial(d.init, train=False), key(0),
                      jnp.zeros((2, 8, 8, 1)))
  shapes = lambda t: jax.tree.map(lambda a: a.shape, t)
  assert shapes(gv) == {
      'params': {'Dense_0': {'kernel': (3, 32)},
                 'BatchNorm_0': {'scale': (2,), 'bias': (2,)},
                 'ConvTranspose_0': {'kernel': (4, 4, 2, 1), 'bias': (1,)}},
      'batch_stats': {'BatchNorm_0': {'mean': (2,), 'var': (2,)}}}
  assert shapes(dv) == {
      'params': {'Conv_0': {'kernel': (4, 4, 1, 2), 'bias': (2,)},
                 'Dense_0': {'kernel': (32, 1), 'bias': (1,)}},
      'batch_stats': {
          'SpectralNorm_0': {'Conv_0/kernel/u': (1, 2),
                             'Conv_0/kernel/sigma': ()},
          'SpectralNorm_1': {'Dense_0/kernel/u': (1, 1),
                             'Dense_0/kernel/sigma': ()}}}


def test_mlp_concatenates_one_hot_labels():
  """Mirza & Osindero 2014: G(z, y) = f([z, onehot(y)]), D(x, y) =
  f([flatten(x), onehot(y)])."""
  g, d = gj.models.small_mlp((2, 2, 1), latent_dim=3, hidden=5,
                             num_classes=3)
  z = randn((4, 3))
  gp = randomize(init(g, key(0), z, LABELS)['params'], seed=4)
  zy = np.concatenate([z, one_hot(LABELS, 3)], -1)
  h = relu(zy @ gp['Dense_0']['kernel'] + gp['Dense_0']['bias'])
  expected = 1 / (1 + np.exp(-(h @ gp['Dense_1']['kernel']
                               + gp['Dense_1']['bias'])))
  x = apply(g, {'params': gp}, z, LABELS, train=False)
  np.testing.assert_allclose(x, expected.reshape(4, 2, 2, 1), rtol=1e-5,
                             atol=1e-6)
  assert g.output_range == (0.0, 1.0)
  dp = randomize(init(d, key(1), x, LABELS, train=False)['params'], seed=5)
  xy = np.concatenate([x.reshape(4, 4), one_hot(LABELS, 3)], -1)
  h = relu(xy @ dp['Dense_0']['kernel'] + dp['Dense_0']['bias'])
  expected = (h @ dp['Dense_1']['kernel'] + dp['Dense_1']['bias'])[:, 0]
  np.testing.assert_allclose(apply(d, {'params': dp}, x, LABELS, train=False),
                             expected, rtol=1e-5, atol=1e-6)


def test_aux_classifier_head_and_features():
  """AC-GAN: class_logits = W phi(x) + b; D ignores y (accepts or omits it)."""
  _, d = gj.models.toy_mlp(2, hidden=4, depth=1, num_classes=3,
                           aux_classifier=True, return_features=True)
  x = randn((4, 2))
  v = init(d, key(0), x, train=False)
  assert set(v['params']) == {'Dense_0', 'Dense_1', 'aux_classifier'}
  assert v['params']['Dense_0']['kernel'].shape == (2, 4)  # no label input
  out = apply(d, v, x, train=False)
  assert set(out) == {'logits', 'class_logits', 'features'}
  head = v['params']['aux_classifier']
  np.testing.assert_allclose(out['class_logits'],
                             out['features'] @ head['kernel'] + head['bias'],
                             rtol=1e-5, atol=1e-6)
  assert out['class_logits'].shape == (4, 3) and out['logits'].shape == (4,)
  with_labels = apply(d, v, x, LABELS, train=False)
  jax.tree.map(np.testing.assert_array_equal, with_labels, out)
  # The DCGAN head, spectrally normalised with the rest of D.
  _, dd = gj.models.dcgan((8, 8, 1), base_features=2, spectral_norm=True,
                          num_classes=3, aux_classifier=True)
  dv = jax.eval_shape(functools.partial(dd.init, train=False), key(0),
                      jnp.zeros((4, 8, 8, 1)), LABELS)
  assert 'projection' not in dv['params']
  assert dv['params']['aux_classifier']['kernel'].shape == (32, 3)
  assert 'aux_classifier_sn' in dv['batch_stats']
  out = jax.eval_shape(functools.partial(dd.apply, train=False), dv,
                       jnp.zeros((4, 8, 8, 1)), LABELS)
  assert out['class_logits'].shape == (4, 3)


CONDITIONAL = {
    'dcgan': lambda **kw: gj.models.dcgan((8, 8, 1), latent_dim=3,
                                          base_features=2, **kw),
    'small_mlp': lambda **kw: gj.models.small_mlp((2, 2, 1), 3, hidden=2, **kw),
    'goodfellow_mlp': lambda **kw: gj.models.goodfellow_mlp((2, 2, 1), 3, **kw),
    'toy_mlp': lambda **kw: gj.models.toy_mlp(2, hidden=2, depth=1, **kw),
}


@pytest.mark.parametrize('name', sorted(CONDITIONAL))
def test_label_checks(name):
  g, d = CONDITIONAL[name](num_classes=3)
  z = jnp.zeros((4, 3))
  x = jnp.zeros((4,) + tuple(g.data_shape if hasattr(g, 'data_shape')
                             else g.image_shape))
  for model, inp in ((g, z), (d, x)):
    assert model.num_classes == 3
    # (The checks run before any layer: these calls cost nothing.)
    with pytest.raises(ValueError, match=r'needs class labels.*num_classes'):
      model.init(key(0), inp, train=False)
    with pytest.raises(ValueError, match='one-hot'):
      model.init(key(0), inp, jax.nn.one_hot(LABELS, 3), train=False)
  g, d = CONDITIONAL[name]()
  assert g.num_classes is None and d.num_classes is None
  for model, inp in ((g, z), (d, x)):
    with pytest.raises(ValueError, match='unconditional'):
      model.init(key(0), inp, LABELS, train=False)
    # train passed positionally lands where y goes: refused (DCGAN's train
    # is keyword-only, an MLP's has a default).
    with pytest.raises((ValueError, TypeError), match='keyword'):
      model.init(key(0), inp, True)
  with pytest.raises(ValueError, match='needs num_classes'):
    CONDITIONAL[name](aux_classifier=True)


def test_output_ranges():
  assert gj.models.dcgan((8, 8, 1))[0].output_range == (-1.0, 1.0)
  assert gj.models.goodfellow_mlp((2, 2, 1))[0].output_range == (0.0, 1.0)
  assert gj.models.toy_mlp(2)[0].output_range is None
  assert gj.models.MLPGenerator((2,), output_activation='tanh').output_range \
      == (-1.0, 1.0)
