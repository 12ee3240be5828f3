"""R3GAN's models: layers against hand-written numpy references, the fix-up
initialisation, no normalisation anywhere, the published parameter counts, the
conditional step on 8 devices, and learning on the digits."""

import functools
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax import metrics, parallel
from ganjax.metrics import real_data
from ganjax.models.r3gan import (BiasedActivation, Conv, ResidualBlock,
                                 downsample, lowpass_filter, upsample)

key = jax.random.key
count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))


def randn(shape, seed=0, scale=1.0):
  return scale * np.random.default_rng(seed).standard_normal(shape).astype(
      np.float32)


# ------------------------------------------------------ numpy references

def conv_ref(x, kernel, groups=1):
  """'SAME' grouped cross-correlation by loops: x [B, H, W, C], kernel
  [K, K, C / groups, O] (PyTorch's groups: output o sees its group's inputs)."""
  b, h, w, c = x.shape
  k, _, ci, o = kernel.shape
  go, p = o // groups, (k - 1) // 2
  xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))).astype(np.float64)
  out = np.zeros((b, h, w, o))
  for oc in range(o):
    g = oc // go
    for i in range(k):
      for j in range(k):
        out[..., oc] += xp[:, i:i + h, j:j + w, g * ci:(g + 1) * ci] @ \
            kernel[i, j, :, oc]
  return out


def leaky(x):
  return np.where(x > 0, x, 0.2 * x)


def upfirdn_ref(x, kernel2d, up, down, pad0, pad1, gain):
  """StyleGAN2's upfirdn2d on [B, H, W, C]: zero insertion, padding, 2-D
  FIR filter (convolution), decimation; channel by channel."""
  b, h, w, c = x.shape
  u = np.zeros((b, h * up, w * up, c))
  u[:, ::up, ::up] = x
  u = np.pad(u, ((0, 0), (pad0, pad1), (pad0, pad1), (0, 0)))
  f = kernel2d[::-1, ::-1] * gain
  m = f.shape[0]
  oh = u.shape[1] - m + 1
  out = np.zeros((b, oh, oh, c))
  for i in range(m):
    for j in range(m):
      out += f[i, j] * u[:, i:i + oh, j:j + oh]
  return out[:, ::down, ::down]


def lowpass_2d(weights=(1, 2, 1)):
  k = np.convolve(weights, [1, 1]).reshape(1, -1).astype(np.float64)
  k = k.T @ k
  return k / k.sum()


# ---------------------------------------------------------------- layers

@pytest.mark.parametrize('fast_conv_grad', [True, False])
def test_grouped_conv_matches_loops(fast_conv_grad):
  x = randn((2, 5, 5, 6))
  conv = Conv(9, kernel_size=3, groups=3, fast_conv_grad=fast_conv_grad)
  variables = conv.init(key(0), jnp.asarray(x))
  kernel = np.asarray(variables['params']['kernel'])
  assert kernel.shape == (3, 3, 2, 9)
  np.testing.assert_allclose(conv.apply(variables, jnp.asarray(x)),
                             conv_ref(x, kernel, 3), rtol=1e-5, atol=1e-5)


def test_resampling_is_stylegan2_upfirdn2d_with_the_1331_filter():
  x = randn((2, 6, 6, 3))
  taps = lowpass_filter((1, 2, 1))
  np.testing.assert_allclose(taps, np.array([1, 3, 3, 1]) / 8)
  k2 = lowpass_2d()
  # upsample2d: up 2, pad ((4 + 1) // 2, (4 - 2) // 2), gain 4.
  np.testing.assert_allclose(upsample(jnp.asarray(x), taps),
                             upfirdn_ref(x, k2, 2, 1, 2, 1, 4.0), atol=1e-5)
  # downsample2d: pad ((4 - 1) // 2, (4 - 2) // 2), down 2.
  np.testing.assert_allclose(downsample(jnp.asarray(x), taps),
                             upfirdn_ref(x, k2, 1, 2, 1, 1, 1.0), atol=1e-5)
  # Constants stay constant away from the zero-padded border.
  ones = jnp.ones((1, 8, 8, 1))
  np.testing.assert_allclose(upsample(ones, taps)[0, 2:-2, 2:-2], 1.0,
                             rtol=1e-6)
  np.testing.assert_allclose(downsample(ones, taps)[0, 1:-1, 1:-1], 1.0,
                             rtol=1e-6)


def test_residual_block_matches_its_formula():
  block = ResidualBlock(cardinality=2, expansion=2, kernel_size=3,
                           num_blocks=4)
  x = randn((2, 4, 4, 4))
  variables = block.init(key(0), jnp.asarray(x))
  # Random values everywhere, the zero-initialised projection included.
  leaves, tree = jax.tree.flatten(variables)
  variables = jax.tree.unflatten(tree, [
      jnp.asarray(randn(l.shape, seed=i, scale=0.3))
      for i, l in enumerate(leaves)])
  p = jax.tree.map(np.asarray, variables['params'])
  y = conv_ref(x, p['expand']['kernel'])
  y = leaky(y + p['act1']['bias'])
  y = conv_ref(y, p['grouped']['kernel'], groups=2)
  y = leaky(y + p['act2']['bias'])
  want = x + conv_ref(y, p['project']['kernel'])
  np.testing.assert_allclose(block.apply(variables, jnp.asarray(x)), want,
                             rtol=1e-4, atol=1e-5)
  assert p['expand']['kernel'].shape == (1, 1, 4, 8)
  assert p['grouped']['kernel'].shape == (3, 3, 4, 8)  # 8 channels, 2 groups
  assert p['project']['kernel'].shape == (1, 1, 8, 4)


def _tiny(num_classes=None):
  return gj.models.r3gan((8, 8, 1), latent_dim=3, widths=(4, 2),
                         cardinalities=(2, 1), blocks=(1, 1),
                         num_classes=num_classes)


def _randomised(variables, scale=0.3):
  leaves, tree = jax.tree.flatten(variables)
  return jax.tree.unflatten(tree, [jnp.asarray(randn(l.shape, i, scale))
                                   for i, l in enumerate(leaves)])


def _block_ref(x, p, groups):
  y = leaky(conv_ref(x, p['expand']['kernel']) + p['act1']['bias'])
  y = leaky(conv_ref(y, p['grouped']['kernel'], groups) + p['act2']['bias'])
  return x + conv_ref(y, p['project']['kernel'])


def test_generator_and_discriminator_match_their_composition():
  """The tiny conditional pair (8x8: stages 4x4 at width 4, 8x8 at width 2)
  against numpy: basis, blocks, transitions, resampling, heads, embeddings."""
  g, d = _tiny(num_classes=3)
  z, y = randn((2, 3)), np.array([0, 2])
  gv = _randomised(g.init(key(0), jnp.asarray(z), jnp.asarray(y)))
  images = g.apply(gv, jnp.asarray(z), jnp.asarray(y))
  p = jax.tree.map(np.asarray, gv['params'])
  v = np.concatenate([z, p['embedding'][y]], -1) @ p['basis_scale']['kernel']
  h = p['basis'][None] * v[:, None, None, :]
  h = _block_ref(h, p['stage0_block0'], 2)
  h = conv_ref(h, p['stage1_transition']['kernel'])
  h = upfirdn_ref(h, lowpass_2d(), 2, 1, 2, 1, 4.0)
  h = _block_ref(h, p['stage1_block0'], 1)
  want = conv_ref(h, p['to_image']['kernel'])
  np.testing.assert_allclose(images, want, rtol=1e-4, atol=1e-5)

  x = randn((2, 8, 8, 1))
  dv = _randomised(d.init(key(1), jnp.asarray(x), jnp.asarray(y)))
  p = jax.tree.map(np.asarray, dv['params'])
  h = conv_ref(x, p['from_image']['kernel'])
  h = _block_ref(h, p['stage0_block0'], 1)
  h = upfirdn_ref(h, lowpass_2d(), 1, 2, 1, 1, 1.0)
  h = conv_ref(h, p['stage0_transition']['kernel'])
  h = _block_ref(h, p['stage1_block0'], 2)
  phi = np.einsum('bhwc,hwc->bc', h, p['basis']) @ p['logit']['kernel']
  want = np.sum(phi * p['embedding'][y], -1)
  np.testing.assert_allclose(d.apply(dv, jnp.asarray(x), jnp.asarray(y)),
                             want, rtol=1e-4, atol=1e-5)
  assert p['embedding'].shape == (3, 4)  # D projects onto G's first width


# -------------------------------------------------------- initialisation

def _module_types(module, variables, *args):
  seen = set()

  def record(next_fun, fn_args, kwargs, context):
    seen.add(type(context.module))
    return next_fun(*fn_args, **kwargs)

  with nn.intercept_methods(record):
    module.apply(variables, *args)
  return seen


def test_no_normalisation_layer_anywhere_and_examples_never_interact():
  g, d = _tiny(num_classes=3)
  z, y = jnp.asarray(randn((4, 3))), jnp.arange(4) % 3
  gv = g.init(key(0), z, y)
  images = g.apply(gv, z, y)
  dv = d.init(key(1), images, y)
  assert set(gv) == {'params'} and set(dv) == {'params'}   # no batch stats
  norms = (nn.BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm,
           nn.SpectralNorm, nn.WeightNorm, gj.models.ConditionalBatchNorm)
  types = (_module_types(g, gv, z, y) | _module_types(d, dv, images, y))
  assert types >= {ResidualBlock, Conv, BiasedActivation}
  assert not [t for t in types if issubclass(t, norms)], types
  leaf_names = {path[-1].key for path, _ in
                jax.tree_util.tree_flatten_with_path((gv, dv))[0]}
  assert leaf_names == {'kernel', 'bias', 'basis', 'embedding'}
  # Each example's output is the same alone as in a batch.
  dv = _randomised(dv)
  together = d.apply(dv, images, y)
  alone = jnp.stack([d.apply(dv, images[i:i + 1], y[i:i + 1])[0]
                     for i in range(4)])
  np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_fixup_initialisation():
  """Every residual branch ends in a zero layer (blocks start as identities),
  biases start at 0, the other kernels are N(0, gain^2 / fan_in) with the
  leaky-ReLU gain times L^(-1/4) in the branches (L = residual blocks of
  the network) and 1 elsewhere; G's basis is N(0, 1)."""
  g, _ = gj.models.r3gan((8, 8, 1), latent_dim=64, widths=(128, 64),
                         cardinalities=(8, 4), blocks=(2, 2))
  params = g.init(key(0), jnp.zeros((1, 64)))['params']
  gain = math.sqrt(2 / 1.04) * 4 ** -0.25
  for stage, width in ((0, 128), (1, 64)):
    for i in range(2):
      p = params[f'stage{stage}_block{i}']
      assert not np.any(p['project']['kernel'])
      assert not np.any(p['act1']['bias']) and not np.any(p['act2']['bias'])
      np.testing.assert_allclose(np.std(p['expand']['kernel']),
                                 gain / math.sqrt(width), rtol=0.05)
      # 3x3 kernels over the 2 * width / cardinality = 32 inputs of a group.
      np.testing.assert_allclose(np.std(p['grouped']['kernel']),
                                 gain / math.sqrt(9 * 32), rtol=0.05)
  np.testing.assert_allclose(np.std(params['basis_scale']['kernel']),
                             1 / 8, rtol=0.05)
  np.testing.assert_allclose(np.std(params['stage1_transition']['kernel']),
                             1 / math.sqrt(128), rtol=0.05)
  np.testing.assert_allclose(np.std(params['basis']), 1.0, rtol=0.05)
  block = ResidualBlock(cardinality=4, num_blocks=4)
  x = jnp.asarray(randn((2, 4, 4, 8)))
  np.testing.assert_array_equal(block.apply(block.init(key(0), x), x), x)


# ---------------------------------------------------- published models

def test_published_parameter_counts(capsys):
  """The FFHQ-64 preset of the official code's train.py, counted from its
  PyTorch modules (brownvc/R3GAN, R3GAN/Networks.py): G 22,429,824 / D
  22,381,440 (the CIFAR-10 and ImageNet-32 presets are counted through their
  configs in test_r3gan_configs.py)."""
  g, d = gj.models.r3gan((64, 64, 3), preset='ffhq64')
  gv = jax.eval_shape(g.init, key(0), jnp.zeros((1, 64)))
  images = jax.eval_shape(g.apply, gv, jnp.zeros((1, 64)))
  assert images.shape == (1, 64, 64, 3)
  got = (count(gv), count(jax.eval_shape(d.init, key(0), images)))
  with capsys.disabled():
    print(f'\n  R3GAN ffhq64: G {got[0]:,} D {got[1]:,} (published '
          '22,429,824 / 22,381,440)')
  assert got == (22_429_824, 22_381_440)
  g, d = gj.models.r3gan((32, 32, 3))
  assert (g.widths, g.cardinalities, g.blocks, g.latent_dim, g.expansion) \
      == ((768,) * 4, (96,) * 4, (2,) * 4, 64, 2)
  with pytest.raises(ValueError, match='no published layout for 8x8'):
    gj.models.r3gan((8, 8, 1))
  with pytest.raises(ValueError, match='4 stages make 32x32'):
    gj.models.r3gan((16, 16, 1), widths=(8, 8, 8, 8))
  with pytest.raises(ValueError, match='cardinality 3 does not divide'):
    gj.models.r3gan((8, 8, 1), widths=(8, 8), cardinalities=(3, 1))


# ----------------------------------------------------------- the game

def _conditional_gan():
  g, d = _tiny(num_classes=3)
  gamma = gj.penalties.Scheduled(gj.penalties.R1(1.0),
                                 gj.optim.cosine_schedule(0.5, 0.05, 4))
  return gj.GAN(g, d, loss='rpgan', latent_dim=3, num_classes=3,
                g_optimizer=optax.sgd(0.05), d_optimizer=optax.sgd(0.05),
                penalty=[gamma, gj.penalties.Lazy(gj.penalties.R2(0.5), 2)])


def test_conditional_r3gan_step_on_8_devices_equals_one_device():
  gan = _conditional_gan()
  batch = {'image': jax.random.uniform(key(1), (1, 16, 8, 8, 1), minval=-1,
                                       maxval=1),
           'label': jax.random.randint(key(2), (1, 16), 0, 3)}
  state = gan.init(key(0), batch['image'][0])
  step = jax.jit(gan.step)
  pstep = parallel.pmap_step(gan)
  rstate, sharded = parallel.replicate(state), parallel.shard(batch)
  for _ in range(2):  # R2 applied in step 0 only (lazy, every 2)
    state, metrics = step(state, batch)
    rstate, pmetrics = pstep(rstate, sharded)
    assert float(metrics['d_penalty_r2']) >= 0
  chex.assert_trees_all_close(parallel.unreplicate(rstate), state, atol=2e-5,
                              rtol=2e-5)
  chex.assert_trees_all_close(parallel.unreplicate(pmetrics), metrics,
                              atol=1e-4, rtol=1e-4)


def test_r3gan_learns_the_digits(cache_dir):
  """RpGAN + R1 + R2 (gamma 1) with a small R3GAN (widths 16, one block per
  stage) on the real 8x8 digits, Adam(1e-3, 0, 0.9): 50 steps take FID (the
  project's digits CNN, 300 samples) below half the untrained generator's
  (measured: 225 -> 75; 51 after 100 steps)."""
  evaluator = metrics.Evaluator('digits', num=300, cache_dir=cache_dir,
                                parzen=False, verbose=False).prepare()
  train, _ = real_data.load_split('digits', 'train')
  data = jnp.asarray(train) * 2 - 1
  g, d = gj.models.r3gan((8, 8, 1), latent_dim=16, widths=(16, 16),
                         cardinalities=(2, 2), blocks=(1, 1))
  adam = lambda: optax.adam(1e-3, b1=0.0, b2=0.9)
  gan = gj.GAN(g, d, loss='rpgan', g_optimizer=adam(), d_optimizer=adam(),
               latent_dim=16, penalty=[gj.penalties.R1(1.0),
                                       gj.penalties.R2(1.0)])
  state = gan.init(key(1), data[:2])

  def fid(state):
    images = np.clip((np.asarray(gan.sample(state, key(2), 300)) + 1) / 2,
                     0, 1)
    return evaluator(images)['fid300_digits_cnn']

  before = fid(state)
  batch = lambda k: data[jax.random.randint(k, (1, 64), 0, data.shape[0])]
  state, m = gj.loops.scan_steps(gan.step, batch, 50)(state, key(1))
  after = fid(state)
  assert np.all(np.isfinite(m['d_loss'])) and int(state.step) == 50
  assert after < 0.5 * before, (before, after)
