"""DiffAugment and ADA: differentiable, the identity when off, one family for real and fake."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax import augment


def _images(n=4, size=8, channels=3, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, size, size, channels),
                            minval=-1.0, maxval=1.0)


def _keys(n, seed=1):
  return jax.random.split(jax.random.key(seed), n)


def test_probability_zero_is_the_identity_and_one_changes_every_image():
  x = _images()
  np.testing.assert_array_equal(
      augment.DiffAugment(probability=0.0)(x, _keys(4)), x)
  out = augment.DiffAugment()(x, _keys(4))
  assert out.shape == x.shape
  assert all(not np.allclose(out[i], x[i]) for i in range(4))


def test_translation_shifts_with_zero_fill_and_cutout_zeroes_a_square():
  x = jnp.zeros((8, 8, 1)).at[3, 4, 0].set(1.0)
  for seed in range(10):
    out = augment.translation(x, jax.random.key(seed))
    assert float(out.sum()) in (0.0, 1.0)  # shifted, or shifted out
    rows, cols = np.nonzero(np.asarray(out[..., 0]))
    # ratio 1/8 of 8 pixels: a shift of at most one pixel each way
    assert all(abs(i - 3) <= 1 for i in rows) and all(abs(j - 4) <= 1
                                                     for j in cols)
  ones = jnp.ones((8, 8, 1))
  for seed in range(10):
    holes = np.asarray(augment.cutout(ones, jax.random.key(seed)) == 0)[..., 0]
    rows, cols = np.nonzero(holes)
    assert 0 < holes.sum() <= 16
    # One axis-aligned rectangle: every pixel of its bounding box is zero.
    assert holes[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


def test_color_keeps_grey_images_grey_and_matches_its_formula():
  key = jax.random.key(3)
  x = _images(1, channels=1)[0]
  b, _, c = jax.random.split(key, 3)
  shift = jax.random.uniform(b, (), minval=-0.5, maxval=0.5)
  scale = jax.random.uniform(c, (), minval=0.5, maxval=1.5)
  y = x + shift  # saturation is a no-op on one channel
  want = (y - y.mean()) * scale + y.mean()
  np.testing.assert_allclose(augment.color(x, key), want, atol=1e-6)


def test_real_and_fake_get_the_same_transform_family():
  """The same key transforms any two images identically (a shared family of
  random transforms, not one for real and one for fake data)."""
  real, fake = _images(seed=0), _images(seed=1)
  keys = _keys(4)
  diff = augment.DiffAugment(policy="translation,cutout")
  # Translation and cutout are linear in the image: T(a) - T(b) = T(a - b).
  np.testing.assert_allclose(diff(real, keys) - diff(fake, keys),
                             diff(real - fake, keys), atol=1e-6)


def test_gradients_flow_and_the_gradient_penalty_stays_finite():
  x = (_images(2) + 1.0) / 2.0  # in the sigmoid generator's range
  diff = augment.DiffAugment()
  grads = jax.grad(lambda x: jnp.sum(diff(x, _keys(2)) ** 2))(x)
  assert np.isfinite(grads).all() and np.abs(grads).sum() > 0
  # Through a whole step with a gradient penalty (second-order gradients).
  G, D = gj.models.small_mlp((8, 8, 3), hidden=8)
  gan = gj.GAN(G, D, loss="wasserstein", latent_dim=4, augment=diff,
               penalty=gj.penalties.GradientPenalty(10.0))
  state = gan.init(jax.random.key(0), x)
  _, metrics = jax.jit(gan.step)(state, x[None])
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert float(metrics["d_penalty"]) > 0 and "augment_p" not in metrics  # no ADA


def test_bad_policies_are_refused():
  with pytest.raises(ValueError, match="policy must name transforms"):
    augment.DiffAugment(policy="colour")
  with pytest.raises(ValueError, match=r"probability must be in \[0, 1\]"):
    augment.DiffAugment(probability=1.5)
  with pytest.raises(ValueError, match="also pass augment="):
    G, D = gj.models.small_mlp((4, 4, 1), hidden=8)
    gj.GAN(G, D, ada=augment.ADA())


class _Overfit(nn.Module):
  """A discriminator sure that everything is real (r_t = 1)."""

  @nn.compact
  def __call__(self, x, train=False):
    bias = self.param("bias", nn.initializers.constant(5.0), ())
    return bias + 0.0 * jnp.mean(x.reshape(x.shape[0], -1), -1)


def test_ada_probability_rises_while_d_overfits_and_is_in_the_state():
  G, _ = gj.models.dcgan((8, 8, 1), latent_dim=4, base_features=4)
  ada = augment.ADA(target=0.6, speed_images=1000)
  gan = gj.GAN(G, _Overfit(), latent_dim=4, k=2, augment=augment.DiffAugment(),
               ada=ada, d_optimizer=optax.sgd(0.0))
  batch = jnp.zeros((2, 10, 8, 8, 1))
  state = gan.init(jax.random.key(0), batch[0])
  assert float(state.augment_p) == 0.0
  step = jax.jit(gan.step)
  for _ in range(3):
    state, metrics = step(state, batch)
  assert float(metrics["ada_r_t"]) == 1.0
  # Each step saw k * B = 20 real images: p rises by 20 / 1000 per step.
  np.testing.assert_allclose(float(state.augment_p), 3 * 20 / 1000, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["augment_p"]), 2 * 20 / 1000,
                             rtol=1e-5)
  # And falls when D is unsure (r_t = 0 < target), clipped at 0.
  np.testing.assert_allclose(ada.update(jnp.float32(0.01), 0.0, 20), 0.0)
  chex.assert_type(state.augment_p, jnp.float32)
