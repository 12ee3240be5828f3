"""The class-conditional game: learning, AC-GAN, sampling by class, the model contract.

Conditional ring setting (documented in the README): ``toy_mlp(2, hidden=64,
depth=2, num_classes=8)`` with one class per mode of the ring of 8 Gaussians,
a 2-d latent, Adam(1e-3, b1=0.5) for both players, batch 256, k = 1, the
non-saturating loss, fake labels drawn uniformly (the default), 300 steps.
Measured: 100% of the samples asked for class c are nearest mode c for every c
from step 250 on, 98% within 0.1 of it (5 std); untrained, 0-62% per class.
"""

import dataclasses
import warnings

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax.data import toy


def _ring_gan():
  G, D = gj.models.toy_mlp(2, hidden=64, depth=2, num_classes=8)
  return gj.GAN(G, D, g_optimizer=optax.adam(1e-3, b1=0.5),
                d_optimizer=optax.adam(1e-3, b1=0.5), latent_dim=2,
                num_classes=8)


def _nearest_mode(points):
  centers = toy.ring_centers()
  return jnp.argmin(jnp.sum((points[:, None] - centers[None]) ** 2, -1), -1)


def test_conditional_ring_samples_land_on_their_class_mode():
  gan, batch_size = _ring_gan(), 256
  state = gan.init(jax.random.key(0), jnp.zeros((batch_size, 2)))

  def data(key):
    points, modes = toy.ring(key, batch_size, return_modes=True)
    return {"image": points[None], "label": modes[None]}

  labels = jnp.arange(800) % 8
  untrained = _nearest_mode(gan.sample(state, jax.random.key(2), labels=labels))
  state, _ = gj.loops.scan_steps(gan.step, data, num_steps=300)(
      state, jax.random.key(1))
  samples = gan.sample(state, jax.random.key(2), 800, labels=labels)
  nearest = _nearest_mode(samples)
  accuracy = [float(jnp.mean(nearest[labels == c] == c)) for c in range(8)]
  assert min(accuracy) >= 0.9, accuracy
  distance = jnp.linalg.norm(samples - toy.ring_centers()[labels], axis=-1)
  # at least 80% within 5 standard deviations of their mode, counted exactly
  # (float32's mean of 640 of 800 is 0.79999995)
  assert int(jnp.sum(distance < 0.1)) >= 640, int(jnp.sum(distance < 0.1))
  # The control: before training, the classes do not pick their modes.
  assert min(float(jnp.mean(untrained[labels == c] == c))
             for c in range(8)) < 0.5


def test_auxiliary_classifier_losses_match_closed_form():
  real_class = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
  fake_class = jnp.array([[0.5, 0.5, 0.5], [1.0, -1.0, 3.0]])
  out = gj.terms.UpdateOutputs(
      step=jnp.zeros((), jnp.int32), real_logits=jnp.zeros(2),
      fake_logits=jnp.zeros(2), real_aux={"class_logits": real_class},
      fake_aux={"class_logits": fake_class}, real_labels=jnp.array([0, 1]),
      fake_labels=jnp.array([2, 2]))

  def ce(logits, labels):  # -log softmax(logits)[label], averaged
    logits = np.asarray(logits, np.float64)
    log_z = np.log(np.exp(logits).sum(-1))
    return np.mean(log_z - logits[np.arange(len(labels)), labels])

  term = gj.terms.AuxiliaryClassifier(weight=0.5)
  d_terms = term(gj.terms.DISCRIMINATOR, out)
  np.testing.assert_allclose(d_terms["ac_real"], 0.5 * ce(real_class, [0, 1]),
                             rtol=1e-6)
  np.testing.assert_allclose(d_terms["ac_fake"], 0.5 * ce(fake_class, [2, 2]),
                             rtol=1e-6)
  assert set(term(gj.terms.GENERATOR, out)) == {"ac_fake"}
  with pytest.raises(ValueError, match="class_logits.*aux_classifier=True"):
    term(gj.terms.DISCRIMINATOR, out._replace(real_aux={}))


def test_acgan_step_reports_both_players_cross_entropies():
  G, D = gj.models.small_mlp((4, 4, 1), hidden=8, num_classes=3,
                             aux_classifier=True)
  gan = gj.GAN(G, D, latent_dim=4, num_classes=3,
               loss_terms=[gj.terms.AuxiliaryClassifier()])
  images = jax.random.uniform(jax.random.key(0), (1, 6, 4, 4, 1))
  batch = {"image": images, "label": jnp.array([[0, 1, 2, 0, 1, 2]])}
  state = gan.init(jax.random.key(0), images[0])
  _, metrics = jax.jit(gan.step)(state, batch)
  for name in ("d_ac_real", "d_ac_fake", "g_ac_fake"):
    # An untrained 3-class head: cross-entropy near log 3.
    assert abs(float(metrics[name]) - np.log(3)) < 0.3, metrics


def test_sample_and_generate_by_class_under_jit():
  G, D = gj.models.dcgan((8, 8, 1), latent_dim=4, base_features=4,
                         num_classes=3)
  gan = gj.GAN(G, D, latent_dim=4, num_classes=3, ema_decay=0.9)
  state = gan.init(jax.random.key(0), jnp.zeros((2, 8, 8, 1)))
  labels = jnp.array([0, 1, 2, 2])
  z = jax.random.normal(jax.random.key(1), (4, 4))
  generate = jax.jit(gan.generate)  # compiled once: 4 examples every call
  by_generate = generate(state, z, labels)
  by_sample = jax.jit(gan.sample)(state, jax.random.key(1), labels=labels)
  closed = jax.jit(lambda s, key: gan.sample(s, key, 4, labels))(
      state, jax.random.key(1))
  chex.assert_trees_all_close(by_sample, closed)
  assert by_generate.shape == (4, 8, 8, 1)
  # The label changes the sample for the same z; the same label does not.
  # (Conditional batch norm starts as the identity for every class: perturb.)
  leaves, treedef = jax.tree.flatten(state.ema_g_params)
  keys = jax.random.split(jax.random.key(4), len(leaves))
  state = state.replace(ema_g_params=jax.tree.unflatten(treedef, [
      leaf + 0.1 * jax.random.normal(key, leaf.shape)
      for leaf, key in zip(leaves, keys)]))
  same_z = jnp.broadcast_to(z[:1], (4, 4))
  per_class = generate(state, same_z, labels)
  assert not np.allclose(per_class[0], per_class[1])
  np.testing.assert_allclose(
      generate(state, same_z, jnp.array([1, 1, 1, 1]))[0], per_class[1],
      atol=1e-6)
  # Without labels, sample draws them uniformly.
  assert gan.sample(state, jax.random.key(3), 5).shape == (5, 8, 8, 1)
  with pytest.raises(ValueError, match="generate.*needs labels"):
    gan.generate(state, z)
  with pytest.raises(ValueError, match=r"labels must be integer \[4\]"):
    gan.sample(state, jax.random.key(1), 4, labels=jnp.zeros((4, 3)))
  with pytest.raises(ValueError, match="positive Python int"):
    gan.sample(state, jax.random.key(1), 0)


def test_conditional_step_requires_labelled_batches():
  G, D = gj.models.small_mlp((4, 4, 1), hidden=8, num_classes=3)
  gan = gj.GAN(G, D, latent_dim=4, num_classes=3)
  images = jnp.zeros((1, 2, 4, 4, 1))
  state = gan.init(jax.random.key(0), images[0])
  with pytest.raises(ValueError, match="conditional.*'label'"):
    gan.step(state, images)
  with pytest.raises(ValueError, match=r"integer \[k, B\]"):
    gan.step(state, {"image": images, "label": jnp.zeros((1, 2), jnp.float32)})


class _ColumnLogits(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(1)(x.reshape(x.shape[0], -1))  # [B, 1]: the mistake


class _NoTrain(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


class _LabelledD(nn.Module):
  """A custom conditional D without a num_classes field: needs labels."""
  @nn.compact
  def __call__(self, x, y, train=False):
    return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0] + y


def _contract_error(match, **changes):
  G, D = gj.models.small_mlp((4, 4, 1), hidden=8)
  kwargs = dict(generator=G, discriminator=D, latent_dim=4)
  kwargs.update(changes)
  with pytest.raises(ValueError, match=match):
    gj.GAN(**kwargs).init(jax.random.key(0), jnp.full((2, 4, 4, 1), 0.5))


def test_model_contract_violations_name_the_fix():
  _contract_error(r"one logit per example.*logits\[:, 0\]",
                  discriminator=_ColumnLogits())
  _contract_error("must take a `train` keyword", discriminator=_NoTrain())
  _contract_error("latent_dim=16 but the GAN has latent_dim=4",
                  generator=gj.models.dcgan((8, 8, 1), latent_dim=16)[0])
  conditional_g, conditional_d = gj.models.small_mlp((4, 4, 1), hidden=8,
                                                     num_classes=3)
  _contract_error(r"conditional \(num_classes=3\).*GAN\(num_classes=3\)",
                  generator=conditional_g)
  _contract_error("is unconditional: build a conditional model", num_classes=3,
                  generator=conditional_g)
  _contract_error("num_classes=3 but the GAN has num_classes=4",
                  num_classes=4, generator=conditional_g,
                  discriminator=conditional_d)
  _contract_error("produces samples of shape",
                  generator=gj.models.small_mlp((5, 5, 1), hidden=8)[0])
  _contract_error(r"_LabelledD takes labels \(its __call__ needs 'y'\) but "
                  r"the GAN is unconditional: pass GAN\(num_classes=C\)",
                  discriminator=_LabelledD())


def test_labels_out_of_range_are_refused_eagerly_and_flagged_in_the_step():
  G, D = gj.models.small_mlp((4, 4, 1), hidden=8, num_classes=3)
  gan = gj.GAN(G, D, latent_dim=4, num_classes=3)
  images = jnp.full((1, 4, 4, 4, 1), 0.5)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\) "
                     r"\(num_classes=3\); got values from 0 to 5"):
    gan.init(jax.random.key(0), {"image": images, "label": jnp.array([[0, 1, 2, 5]])})
  state = gan.init(jax.random.key(0), images[0])
  with pytest.raises(ValueError, match=r"\[0, 3\).*from 3 to 5"):
    gan.generate(state, jnp.zeros((3, 4)), jnp.array([3, 4, 5]))
  with pytest.raises(ValueError, match=r"\[0, 3\).*from -1 to 0"):
    gan.sample(state, jax.random.key(1), labels=jnp.array([-1, 0]))
  # Inside the jitted step: a flag, and no NaN.
  step = jax.jit(gan.step)
  _, fine = step(state, {"image": images, "label": jnp.array([[0, 1, 2, 0]])})
  _, bad = step(state, {"image": images, "label": jnp.array([[0, 1, 12, 0]])})
  assert float(fine["label_out_of_range"]) == 0.0
  assert float(bad["label_out_of_range"]) == 1.0
  assert all(np.isfinite(float(v)) for v in bad.values())


def test_data_outside_the_generator_range_warns():
  G, D = gj.models.small_mlp((4, 4, 1), hidden=8)  # sigmoid: [0, 1]
  gan = gj.GAN(G, D, latent_dim=4)
  with pytest.warns(UserWarning, match=r"data lie in \[-1, 1\].*\[0.0, 1.0\]"):
    gan.init(jax.random.key(0), jnp.linspace(-1, 1, 32).reshape(2, 4, 4, 1))
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    gan.init(jax.random.key(0), jnp.linspace(0, 1, 32).reshape(2, 4, 4, 1))


def test_step_names_the_data_shape_that_does_not_fit():
  G, D = gj.models.small_mlp((4, 4, 1), hidden=8)
  gan = gj.GAN(G, D, latent_dim=4)
  state = gan.init(jax.random.key(0), jnp.zeros((2, 4, 4, 1)))
  with pytest.raises(ValueError, match=r"shape \(4, 4, 3\).*makes \(4, 4, 1\)"):
    gan.step(state, jnp.zeros((1, 2, 4, 4, 3)))
  with pytest.raises(ValueError, match="empty minibatch"):
    gan.step(state, jnp.zeros((1, 0, 4, 4, 1)))
  # The fake labels option is checked.
  with pytest.raises(ValueError, match="fake_labels must be one of"):
    dataclasses.replace(gan, num_classes=3, fake_labels="random")
