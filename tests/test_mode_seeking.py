"""ModeSeeking (Mao et al. 2019): its formula, its gradient through the step,
shared labels within pairs, 8 devices equal to one, and the config's weight."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from experiments import builders
from experiments.configs import cdcgan_fashion_mnist
from ganjax import parallel


class _ScaleG(nn.Module):
  """``G(z, y) = s * z + y`` as a 2x2 image: a pair with one label is
  ``|s| |z_1 - z_2|`` apart, so the term's ratio is exactly ``|s|``."""
  num_classes: int = 3
  latent_dim: int = 4

  @nn.compact
  def __call__(self, z, labels, train=True):
    s = self.param("scale", lambda _: jnp.asarray(0.5, jnp.float32))
    x = s * z + labels[:, None].astype(jnp.float32)
    return x.reshape(-1, 2, 2, 1)


def _gan(terms, g_lr=0.1, **kwargs):
  D = gj.models.MLPDiscriminator(hidden=(8,), maxout_pieces=2, num_classes=3)
  return gj.GAN(_ScaleG(), D, latent_dim=4, num_classes=3,
                g_optimizer=optax.sgd(g_lr), d_optimizer=optax.sgd(0.1),
                loss_terms=terms, **kwargs)


def _batch(batch_size=16):
  images = jax.random.uniform(jax.random.key(1), (1, batch_size, 2, 2, 1))
  labels = jax.random.randint(jax.random.key(2), (1, batch_size), 0, 3)
  return {"image": images, "label": labels}


def test_the_term_is_weight_over_the_ratio_of_mean_distances():
  fake = jnp.array([[0., 2.], [1., 0.], [3., 3.], [3., 1.]])  # pairs (0,1), (2,3)
  latents = jnp.array([[0., 0.], [1., 1.], [2., 0.], [0., 0.]])
  out = gj.terms.UpdateOutputs(
      step=jnp.zeros((), jnp.int32), real_logits=jnp.zeros(4),
      fake_logits=jnp.zeros(4), real_aux={}, fake_aux={}, real_labels=None,
      fake_labels=None, fake=fake, latents=latents)
  # image distances 1.5 and 1 (mean 1.25), latent distances 1 and 1 (mean 1)
  term = gj.terms.ModeSeeking(weight=2.0, eps=0.0)
  np.testing.assert_allclose(term("generator", out)["mode_seeking"],
                             2.0 / 1.25, rtol=1e-6)
  assert term("discriminator", out) == {}
  with pytest.raises(ValueError, match="UpdateOutputs.fake and .latents"):
    term("generator", out._replace(latents=None))
  with pytest.raises(ValueError, match="must be even; got 3"):
    term("generator", out._replace(fake=fake[:3], latents=latents[:3]))
  np.testing.assert_array_equal(
      gj.terms.share_pair_labels(jnp.array([2, 0, 1, 1, 0, 2])),
      [2, 2, 1, 1, 0, 0])


@functools.lru_cache(maxsize=None)
def _one_device_step():
  """``(state, batch, step(state, weight))``: one compiled step of the term at
  a traced weight (0: the same shared labels, no gradient)."""
  batch = _batch()
  state = _gan([gj.terms.ModeSeeking()]).init(jax.random.key(0),
                                               batch["image"][0])
  step = jax.jit(lambda state, weight: _gan(
      [gj.terms.ModeSeeking(weight=weight)]).step(state, batch))
  return state, batch, step


def test_in_the_step_pairs_share_labels_and_g_moves_by_the_closed_form():
  """The term is ``w / (|s| + eps)`` (``s = 0.5``) only when the pairs share
  their label; its gradient adds ``lr w / (s + eps)^2`` to the scale's SGD
  step (lr 0.1) and D's update does not see it."""
  weight, eps = 0.3, 1e-5
  state, _, step = _one_device_step()
  got, metrics = step(state, weight)
  want, _ = step(state, 0.0)
  np.testing.assert_allclose(metrics["g_mode_seeking"], weight / (0.5 + eps),
                             rtol=1e-5)
  np.testing.assert_allclose(
      got.g_params["scale"] - want.g_params["scale"],
      0.1 * weight / (0.5 + eps) ** 2, rtol=1e-4)
  np.testing.assert_array_equal(got.d_params["Dense_0"]["kernel"],
                                want.d_params["Dense_0"]["kernel"])


def test_eight_devices_equal_one():
  """Pairs are adjacent examples: each device's 2 examples are one pair."""
  state, batch, step = _one_device_step()
  want, want_metrics = step(state, 0.3)
  gan = _gan([gj.terms.ModeSeeking(0.3)])
  rstate, metrics = parallel.pmap_step(gan)(parallel.replicate(state),
                                            parallel.shard(batch))
  got = parallel.unreplicate(rstate)
  np.testing.assert_allclose(got.g_params["scale"], want.g_params["scale"],
                             rtol=1e-6)
  np.testing.assert_allclose(parallel.unreplicate(metrics)["g_mode_seeking"],
                             want_metrics["g_mode_seeking"], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               got.d_params, want.d_params)


def test_the_config_builds_the_term():
  c = cdcgan_fashion_mnist.get_config()
  assert builders.build_loss_terms(c, 10) == ()
  c.loss_terms.mode_seeking = 0.5
  assert builders.build_loss_terms(c, 10) == (gj.terms.ModeSeeking(weight=0.5),)
  gan = builders.build(c, data_shape=(28, 28, 1), num_devices=1,
                       dataset_classes=10).gan
  assert gan.loss_terms == (gj.terms.ModeSeeking(weight=0.5),)
  c.loss_terms.mode_seeking = -1.0
  with pytest.raises(builders.ConfigError,
                     match="loss_terms.mode_seeking is a weight >= 0"):
    builders.build_loss_terms(c, 10)
