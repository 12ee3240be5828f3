"""SN-GAN's ResNet models: each residual block and spectral normalisation
against hand-written references on tiny inputs, shapes, label checks, the
parameter counts of the published 32x32 architecture, and a short SN-GAN run
on the real digits that moves FID down."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax import metrics
from ganjax.metrics import real_data
from ganjax.models.resnet import (DiscriminatorBlock, GeneratorBlock,
                                  downsample, upsample)


def key(seed):
  return jax.random.key(seed, impl='rbg')


def randn(shape, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(scale * rng.standard_normal(shape), dtype=jnp.float32)


def randomize(tree, seed):
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(
      treedef, [randn(l.shape, seed + i, 0.5) for i, l in enumerate(leaves)])


def count(tree):
  return sum(int(np.prod(l.shape)) for l in jax.tree.leaves(tree))


# ---------------------------------------------------------------- references


def conv(x, p, w=None):
  """'SAME' convolution, stride 1, NHWC/HWIO, plus bias."""
  w = p['kernel'] if w is None else w
  y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y + p['bias']


def up(x):  # nearest neighbour: out[2i + a, 2j + b] = x[i, j]
  return x[:, np.arange(2 * x.shape[1]) // 2][:, :, np.arange(2 * x.shape[2]) // 2]


def down(x):  # mean of each 2x2 window
  return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2]
          + x[:, 1::2, 1::2]) / 4


def batch_norm(x, gamma, beta, eps=1e-5):
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  return gamma * (x - mean) / jnp.sqrt(var + eps) + beta


def l2n(v):
  return v / jnp.sqrt(jnp.sum(v * v) + 1e-12)


def sn_sigma(w, u):
  """Flax's estimate from the stored ``u``: one power iteration on ``w``
  reshaped to ``[-1, out]`` (Miyato et al. 2018, Algorithm 1)."""
  w = w.reshape(-1, w.shape[-1])
  v = l2n(u @ w.T)
  u = l2n(v @ w)
  return (v @ w @ u.T)[0, 0]


LABELS = jnp.array([1, 0], jnp.int32)


def test_upsample_and_downsample():
  x = randn((2, 3, 2, 4))
  np.testing.assert_array_equal(upsample(x), up(x))
  np.testing.assert_allclose(downsample(up(x)), x, rtol=1e-6)
  np.testing.assert_allclose(downsample(randn((2, 4, 6, 3))),
                             down(randn((2, 4, 6, 3))), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('conditional', [False, True])
def test_generator_block(conditional):
  """relu(bn) -> up -> conv3 -> relu(bn) -> conv3, plus up -> conv1: the
  pre-activation up-block (Miyato et al. 2018, Figure 8a); with labels the
  batch norms take gamma[y], beta[y]."""
  block = GeneratorBlock(3, upsample=True,
                            num_classes=2 if conditional else None)
  x = randn((2, 2, 3, 4), scale=2.0)
  y = LABELS if conditional else None
  v = block.init(key(0), x, y, train=False)
  params = randomize(v['params'], seed=1)
  assert set(params) == {'bn1', 'conv1', 'bn2', 'conv2', 'shortcut'}
  assert params['conv1']['kernel'].shape == (3, 3, 4, 3)
  assert params['shortcut']['kernel'].shape == (1, 1, 4, 3)

  def affine(name):
    p = params[name]
    if conditional:
      return (p['scale']['embedding'][y][:, None, None],
              p['bias']['embedding'][y][:, None, None])
    return p['scale'], p['bias']

  @jax.jit
  def run(x):
    out, _ = block.apply({'params': params, 'batch_stats': v['batch_stats']},
                         x, y, train=True, mutable=['batch_stats'])
    h = jax.nn.relu(batch_norm(x, *affine('bn1')))
    h = conv(up(h), params['conv1'])
    h = jax.nn.relu(batch_norm(h, *affine('bn2')))
    h = conv(h, params['conv2'])
    return out, h + conv(up(x), params['shortcut'])

  out, expected = run(x)
  assert out.shape == (2, 4, 6, 3)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


# (optimized, downsample, in, out): the first block of D, a downsampling
# block, a block with the identity shortcut, a block that widens.
D_BLOCKS = [(True, True, 2, 3), (False, True, 3, 3), (False, False, 3, 3),
            (False, False, 2, 3)]


@pytest.mark.parametrize('optimized,downsample,cin,cout', D_BLOCKS)
def test_discriminator_block(optimized, downsample, cin, cout):
  """Normal: down(conv2(relu(conv1(relu(x))))) + down(sc(x)); optimised:
  down(conv2(relu(conv1(x)))) + sc(down(x)) (Miyato et al. 2018, B.4);
  sc is the identity when the block neither downsamples nor widens."""
  block = DiscriminatorBlock(cout, downsample=downsample,
                                optimized=optimized, spectral_norm=False)
  x = randn((2, 4, 6, cin))
  params = randomize(block.init(key(0), x, train=False)['params'], seed=2)
  learnable = optimized or downsample or cin != cout
  assert ('shortcut' in params) == learnable

  @jax.jit
  def run(x):
    out = block.apply({'params': params}, x, train=True)
    if optimized:
      h = down(conv(jax.nn.relu(conv(x, params['conv1'])), params['conv2']))
      return out, h + conv(down(x), params['shortcut'])
    h = conv(jax.nn.relu(conv(jax.nn.relu(x), params['conv1'])),
             params['conv2'])
    sc = conv(x, params['shortcut']) if learnable else x
    return out, (down(h) + down(sc)) if downsample else h + sc

  out, expected = run(x)
  assert out.shape == ((2, 2, 3, cout) if downsample else (2, 4, 6, cout))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_spectral_norm_power_iteration_and_eval_mode():
  """The optimised D block with spectral norm: every conv uses W / sigma,
  sigma from one power iteration on the stored u; in training mode u moves
  and after a few steps the largest singular value of W / sigma is ~1; in
  evaluation mode the state does not change."""
  block = DiscriminatorBlock(3, optimized=True, spectral_norm=True)
  x = randn((2, 4, 4, 2))
  v = block.init(key(0), x, train=False)
  v = {'params': randomize(v['params'], seed=3),
       'batch_stats': v['batch_stats']}
  assert set(v['batch_stats']) == {'conv1_sn', 'conv2_sn', 'shortcut_sn'}

  @functools.partial(jax.jit, static_argnums=1)
  def step(v, train):
    out, upd = block.apply(v, x, train=train, mutable=['batch_stats'])
    return out, {'params': v['params'], 'batch_stats': upd['batch_stats']}

  def sigma_errors(v):
    """|sigma_max(W / sigma_estimate) - 1| for each conv."""
    errors = []
    for name in ('conv1', 'conv2', 'shortcut'):
      w = v['params'][name]['kernel']
      u = v['batch_stats'][name + '_sn'][name + '/kernel/u']
      top = np.linalg.svd(np.asarray(w).reshape(-1, w.shape[-1]),
                          compute_uv=False)[0]
      errors.append(abs(top / float(sn_sigma(w, u)) - 1))
    return np.array(errors)

  # Evaluation mode: nothing changes, output uses W / sigma(u).
  out, same = step(v, False)
  jax.tree.map(np.testing.assert_array_equal, same['batch_stats'],
               v['batch_stats'])
  p = v['params']
  w = {n: p[n]['kernel'] / sn_sigma(
      p[n]['kernel'], v['batch_stats'][n + '_sn'][n + '/kernel/u'])
       for n in ('conv1', 'conv2', 'shortcut')}
  h = conv(jax.nn.relu(conv(x, p['conv1'], w['conv1'])), p['conv2'],
           w['conv2'])
  expected = down(h) + conv(down(x), p['shortcut'], w['shortcut'])
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)

  # Training mode: the power iteration converges.
  first = sigma_errors(v)
  for _ in range(10):
    _, v = step(v, True)
  assert float(jnp.abs(v['batch_stats']['conv1_sn']['conv1/kernel/u']
                       - same['batch_stats']['conv1_sn']['conv1/kernel/u']
                       ).max()) > 1e-3
  last = sigma_errors(v)
  assert np.all(last < 1e-3), last
  assert first.max() > last.max()


def test_resnet_runs_on_tiny_images():
  """cGAN-PD on 8x8 (one up-block from 4x4; D: optimised block, 3 blocks)."""
  g, d = gj.models.resnet((8, 8, 1), latent_dim=3, g_channels=2, d_channels=2,
                          num_classes=2)
  assert g.output_range == (-1.0, 1.0) and g.latent_dim == 3
  assert g.num_classes == d.num_classes == 2
  z = randn((2, 3), scale=3.0)

  @jax.jit
  def run(z):
    gv = g.init(key(1), z, LABELS, train=False)
    images, _ = g.apply(gv, z, LABELS, train=True, mutable=['batch_stats'])
    dv = d.init(key(2), images, LABELS, train=False)
    logits, _ = d.apply(dv, images, LABELS, train=True,
                        mutable=['batch_stats'])
    return gv, dv, images, logits

  gv, dv, images, logits = run(z)
  assert images.shape == (2, 8, 8, 1)
  assert float(jnp.abs(images).max()) <= 1.0 and float(images.std()) > 0
  assert logits.shape == (2,) and bool(jnp.all(jnp.isfinite(logits)))
  assert set(gv['params']) == {'dense', 'block1', 'bn', 'conv_out'}
  assert 'scale' in gv['params']['block1']['bn1']   # conditional batch norm
  assert set(dv['params']) == {'block1', 'block2', 'block3', 'block4',
                               'linear', 'projection'}
  assert 'projection_sn' in dv['batch_stats']
  with pytest.raises(ValueError, match='needs class labels'):
    g.init(key(0), z, train=False)
  with pytest.raises(ValueError, match='needs class labels'):
    d.init(key(0), images, train=False)
  # The unconditional pair has no label layers and refuses labels.
  g, d = gj.models.resnet((8, 8, 1), latent_dim=3, g_channels=2, d_channels=2)
  gv = jax.eval_shape(functools.partial(g.init, train=False), key(0), z)
  assert set(gv['params']['block1']['bn1']) == {'scale', 'bias'}
  assert gv['params']['block1']['bn1']['scale'].shape == (2,)
  dv = jax.eval_shape(functools.partial(d.init, train=False), key(0), images)
  assert 'projection' not in dv['params']
  with pytest.raises(ValueError, match='unconditional'):
    d.init(key(0), images, LABELS, train=False)


def test_published_parameter_counts_32x32():
  """SN-GAN CIFAR-10 (Miyato et al. 2018, Table 4): G ~4.3M, D ~1.0M."""
  shapes = {}
  for num_classes in (None, 10):
    g, d = gj.models.resnet((32, 32, 3), num_classes=num_classes)
    assert (g.channels, d.channels, g.latent_dim) == (256, 128, 128)
    y = None if num_classes is None else jnp.zeros((2,), jnp.int32)
    gv = jax.eval_shape(functools.partial(g.init, train=False), key(0),
                        jnp.zeros((2, 128)), y)
    images = jax.eval_shape(functools.partial(g.apply, train=False), gv,
                            jnp.zeros((2, 128)), y)
    assert images.shape == (2, 32, 32, 3)
    dv = jax.eval_shape(functools.partial(d.init, train=False), key(0),
                        images, y)
    shapes[num_classes] = count(gv['params']), count(dv['params'])
  # By hand: Dense 128 -> 4*4*256 (528,384); 3 up-blocks of two 3x3 convs,
  # one 1x1 shortcut and two batch norms (1,246,976 each); BN and a 3x3
  # conv to RGB (7,427). D: optimised block 151,680, a downsampling block
  # with shortcut 311,680, two identity-shortcut blocks 295,168 each,
  # linear 129.
  assert shapes[None] == (4_276_739, 1_053_825)
  # cGAN-PD: the 6 block batch norms get 10-class scale and shift
  # (+6 * 9 * 512), D a 10 x 128 projection embedding.
  assert shapes[10] == (4_276_739 + 27_648, 1_053_825 + 1_280)


def test_architectures_and_mixed_precision():
  for shape, g_chan, d_blocks in (((48, 48, 3), 512, 5), ((64, 64, 3), 1024, 5)):
    g, d = gj.models.resnet(shape)
    gv = jax.eval_shape(functools.partial(g.init, train=False), key(0),
                        jnp.zeros((1, 128)))
    assert gv['params']['block1']['conv1']['kernel'].shape[2] == g_chan
    dv = jax.eval_shape(functools.partial(d.init, train=False), key(0),
                        jnp.zeros((1,) + shape))
    assert len([k for k in dv['params'] if k.startswith('block')]) == d_blocks
  g, d = gj.models.resnet((8, 8, 1), latent_dim=3, g_channels=2, d_channels=2)
  g, d = g.clone(dtype=jnp.bfloat16), d.clone(dtype=jnp.bfloat16)
  gv = jax.eval_shape(functools.partial(g.init, train=False), key(0),
                      jnp.zeros((2, 3)))
  images, _ = jax.eval_shape(functools.partial(
      g.apply, train=True, mutable=['batch_stats']), gv, jnp.zeros((2, 3)))
  assert images.dtype == jnp.bfloat16
  assert {l.dtype for l in jax.tree.leaves(gv)} == {jnp.dtype(jnp.float32)}
  dv = jax.eval_shape(functools.partial(d.init, train=False), key(0), images)
  assert {l.dtype for l in jax.tree.leaves(dv)} == {jnp.dtype(jnp.float32)}
  with pytest.raises(ValueError, match='multipliers'):
    gj.models.ResNetGenerator((12, 12, 1), latent_dim=3,
                              multipliers=(1, 1, 1, 1))


def test_sngan_configs_and_linear_decay():
  """The issue-14 configs build the published setting; decay='linear' takes
  Adam's step size from 2e-4 to 0 over the run (D: num_steps * k updates)."""
  from experiments import builders
  from experiments.configs import (cgan_pd_cifar10, sngan_cifar10,
                                   sngan_fashion_mnist, wgan_gp_resnet_cifar10)
  for module, loss, sn, classes in (
      (sngan_cifar10, 'hinge', True, None),
      (cgan_pd_cifar10, 'hinge', True, 10),
      (wgan_gp_resnet_cifar10, 'wasserstein', False, None)):
    c = module.get_config()
    gan = builders.build(c, data_shape=(32, 32, 3), num_devices=1,
                         dataset_classes=10).gan
    assert isinstance(gan.generator, gj.models.ResNetGenerator)
    assert gan.num_classes == gan.generator.num_classes == classes
    assert gan.discriminator.num_classes == classes  # projection D
    assert (gan.generator.channels, gan.discriminator.channels) == (256, 128)
    assert gan.discriminator.spectral_norm == sn and gan.loss == loss
    assert (gan.k, c.batch_size, c.num_steps) == (5, 64, 100_000)
    assert c.d_optimizer.to_dict() == dict(
        name='adam', learning_rate=2e-4, b1=0.0, b2=0.9, decay='linear')
  c = sngan_fashion_mnist.get_config()
  assert c.image_size == 32 and c.dataset == 'fashion_mnist'
  adam = builders.build_optimizer(c.d_optimizer, 'discriminator', 10)
  state = adam.init(np.zeros(()))
  steps = []
  for _ in range(11):  # a constant gradient: Adam's update is -lr_t
    update, state = adam.update(np.ones((), np.float32), state)
    steps.append(-float(update))
  np.testing.assert_allclose(steps, 2e-4 * (1 - np.arange(11) / 10),
                             rtol=1e-4, atol=1e-10)
  c.d_optimizer.decay = 'cosine'
  with pytest.raises(builders.ConfigError, match="'none' or 'linear'"):
    builders.build_optimizer(c.d_optimizer, 'discriminator', 10)


def test_resnet_sngan_learns_the_digits(cache_dir):
  """A short SN-GAN run (ResNet G/D, spectral norm, hinge, k = 5) on the real
  8x8 digits moves FID (the project's digits CNN, 300 samples) from the
  untrained generator's to less than half of it."""
  evaluator = metrics.Evaluator('digits', num=300, cache_dir=cache_dir,
                                parzen=False, verbose=False).prepare()
  train, _ = real_data.load_split('digits', 'train')
  data = jnp.asarray(train) * 2 - 1                  # [N, 8, 8, 1] in [-1, 1]
  g, d = gj.models.resnet((8, 8, 1), latent_dim=16, g_channels=8,
                          d_channels=8)
  adam = lambda: optax.adam(1e-3, b1=0.0, b2=0.9)
  gan = gj.GAN(generator=g, discriminator=d, loss='hinge', g_optimizer=adam(),
               d_optimizer=adam(), k=5, latent_dim=16)
  state = gan.init(jax.random.key(0), data[:2])

  def fid(state):
    images = gan.sample(state, jax.random.key(2), 300)  # the same z each time
    return evaluator((np.asarray(images) + 1) / 2)['fid300_digits_cnn']

  before = fid(state)
  batch = lambda k: data[jax.random.randint(k, (5, 64), 0, data.shape[0])]
  run = gj.loops.scan_steps(gan.step, batch, 50)
  state, m = run(state, jax.random.key(1))
  after = fid(state)
  assert np.all(np.isfinite(m['d_loss'])) and int(state.step) == 50
  assert after < 0.5 * before, (before, after)
