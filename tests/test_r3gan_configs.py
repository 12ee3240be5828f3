"""The R3GAN configs build the published models and schedules (nothing is
trained: parameters are counted from shapes)."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ganjax as gj
from experiments import builders

count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))


def _build(name, data_shape, classes, **overrides):
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  for field, value in overrides.items():
    config[field] = value
  return config, builders.build(config, data_shape=data_shape, num_devices=1,
                                dataset_classes=classes)


def _parameter_counts(gan, data_shape, num_classes):
  y = None if num_classes is None else jnp.zeros((1,), jnp.int32)
  z = jnp.zeros((1, gan.latent_dim))
  g = jax.eval_shape(gan.generator.init, jax.random.key(0), z, y)
  images = jax.eval_shape(gan.generator.apply, g, z, y)
  assert images.shape == (1,) + tuple(data_shape)
  d = jax.eval_shape(gan.discriminator.init, jax.random.key(0), images, y)
  return count(g), count(d)


@pytest.mark.parametrize("name, shape, classes, overrides, published", [
    ("r3gan_cifar10", (32, 32, 3), 10, {}, (20_781_952, 21_280_512)),
    ("r3gan_cifar10", (32, 32, 3), 10, {"num_classes": 0},
     (20_732_160, 20_683_776)),
    ("r3gan_imagenet32", (32, 32, 3), 1000, {}, (82_914_304, 86_548_992)),
    ("r3gan_fashion_mnist", (32, 32, 1), 10, {}, None),
    ("r3gan_stacked_digits", (8, 8, 3), 1000, {}, None),
])
def test_r3gan_configs_build_the_published_models(name, shape, classes,
                                                  overrides, published):
  config, experiment = _build(name, shape, classes, **overrides)
  gan = experiment.gan
  assert gan.loss == "rpgan" and gan.latent_dim == 64
  assert experiment.value_range == (-1.0, 1.0)
  got = _parameter_counts(gan, shape, experiment.num_classes)
  print(f"\n  {name} {overrides or ''}: G {got[0]:,} D {got[1]:,}"
        f" (published {published})")
  if published:
    assert got == published
  # R1 and R2 with one gamma, cosine-decayed over the run's D updates.
  r1, r2 = gan.penalty
  assert isinstance(r1.penalty, gj.penalties.R1)
  assert isinstance(r2.penalty, gj.penalties.R2)
  updates = config.penalty.decay_steps or config.num_steps * config.k
  for schedule in (r1.schedule, r2.schedule):
    np.testing.assert_allclose(
        [schedule(0), schedule(updates)],
        [config.penalty.weight, config.penalty.final_weight], rtol=1e-5)
  # The EMA's half-life rises from 0 (no averaging) to its final value.
  ramp_steps = config.ema_ramp_images / config.batch_size
  np.testing.assert_allclose(float(gan.ema_decay_at(0)), 0.0, atol=1e-12)
  np.testing.assert_allclose(
      float(gan.ema_decay_at(ramp_steps)),
      0.5 ** (config.batch_size / config.ema_half_life_images), rtol=1e-5)


def test_cifar10_runs_the_published_schedule_length():
  config, _ = _build("r3gan_cifar10", (32, 32, 3), 10)
  assert config.batch_size == 512 and config.num_steps == 39_063
  assert config.g_optimizer.decay_steps == config.num_steps
  assert config.penalty.decay_steps == config.num_steps


def test_penalty_and_ema_config_errors():
  config, _ = _build("r3gan_stacked_digits", (8, 8, 3), 1000)
  config.penalty.decay = "linear"
  with pytest.raises(builders.ConfigError, match="'none' or 'cosine'"):
    builders.build_penalty(config.penalty, 100)
  config.penalty.decay, config.penalty.final_weight = "cosine", -1.0
  with pytest.raises(builders.ConfigError, match="final_weight"):
    builders.build_penalty(config.penalty, 100)
  config.ema_decay = 0.999
  with pytest.raises(builders.ConfigError, match="not both"):
    builders.build_ema_decay(config)
