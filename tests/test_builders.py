"""From a config to a GAN (experiments/builders.py): every config builds, and
every mistake in a config is one error naming the fix, before anything runs."""

import os

import ml_collections
import pytest

from experiments import builders
from ganjax import checkpoint
from experiments.configs import base
from experiments.configs import cdcgan_fashion_mnist
from tests import helpers as tt
from tests.helpers import REPO


def conditional_config(**overrides):
  """The tiny config, conditional on the digits' 10 classes."""
  c = tt.tiny_config(num_eval_samples=20, num_classes=-1)
  for key, value in overrides.items():
    c[key] = value
  return c


def test_every_config_builds():
  configs = os.path.join(REPO, "experiments", "configs")
  names = sorted(f[:-3] for f in os.listdir(configs)
                 if f.endswith(".py") and f != "__init__.py")
  assert {"goodfellow_mnist", "small_mlp_mnist", "dcgan_fashion_mnist",
          "dcgan_digits", "wgan_gp_cifar10", "dcgan_cifar10", "toy_ring8",
          "toy_grid25"} <= set(names)
  shapes = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1),
            "cifar10": (32, 32, 3), "digits": (8, 8, 1), "toy_ring8": (2,),
            "toy_grid25": (2,), "folder:my_images": (64, 64, 3),
            "stacked_digits": (8, 8, 3), "imagenet_resized/32x32": (32, 32, 3)}
  classes = {"imagenet_resized/32x32": 1000}  # not prepared here
  reference = set(base.get_config().keys())
  for name in names:
    module = __import__(f"experiments.configs.{name}", fromlist=["get_config"])
    c = module.get_config()
    assert set(c.keys()) == reference, name
    shape = shapes[c.dataset]
    if c.image_size:  # resized by the pipeline
      shape = (c.image_size, c.image_size) + shape[2:]
    exp = builders.build(c, data_shape=shape, num_devices=1,
                         dataset_classes=classes.get(c.dataset, -1))
    assert exp.gan.k == c.k
  wgan = __import__("experiments.configs.wgan_gp_cifar10",
                    fromlist=["x"]).get_config()
  gan = builders.build(wgan, data_shape=(32, 32, 3), num_devices=1).gan
  assert gan.k == 5 and gan.loss == "wasserstein" and gan.penalty.weight == 10.0


def _build_error(config, data_shape=(8, 8, 1), dataset_classes=10):
  with pytest.raises(builders.ConfigError) as e:
    builders.build(config, data_shape=data_shape, num_devices=1,
                   dataset_classes=dataset_classes)
  return str(e.value)


def test_conditional_config_errors_name_the_fix():
  assert "has 10 classes. Use --config.num_classes=10" in _build_error(
      conditional_config(num_classes=7))
  assert "integer >= 2" in _build_error(conditional_config(num_classes=1))
  assert "has no class labels" in _build_error(
      conditional_config(num_classes=-1, dataset="toy_gaussian1d",
                  model=ml_collections.ConfigDict(dict(name="toy_mlp"))),
      data_shape=(1,), dataset_classes=-1)
  assert "fake_labels must be 'uniform' or 'real'" in _build_error(
      conditional_config(fake_labels="random"))
  c = conditional_config()
  c.model.aux_classifier = True
  assert "--config.loss_terms.aux_classifier=1.0" in _build_error(c)
  c.num_classes = 0
  assert "needs a conditional run" in _build_error(c)
  c = conditional_config()
  c.loss_terms.aux_classifier = 1.0
  assert "--config.model.aux_classifier=True" in _build_error(c)
  c = conditional_config()
  c.augment.ada_target = 0.6
  assert "--config.augment.policy=" in _build_error(c)
  c.augment.policy = "colour"
  assert "config.augment:" in _build_error(c)
  with c.unlocked():
    c.augment.probabilty = 0.5
  assert "'probabilty'" in _build_error(c)
  # AC-GAN, DiffAugment and ADA build into the GAN's fields.
  c = conditional_config()
  c.model.aux_classifier = True
  c.loss_terms.aux_classifier = 0.5
  c.augment.policy = "color, translation"
  c.augment.ada_target = 0.6
  gan = builders.build(c, data_shape=(8, 8, 1), num_devices=1).gan
  assert gan.num_classes == 10 and gan.discriminator.aux_classifier
  assert [type(t).__name__ for t in gan.loss_terms] == ["AuxiliaryClassifier"]
  assert gan.loss_terms[0].weight == 0.5
  assert gan.augment.policy == ("color", "translation") and gan.ada.target == 0.6
  assert builders.build(cdcgan_fashion_mnist.get_config(), data_shape=(28, 28, 1),
                        num_devices=1, dataset_classes=10).gan.num_classes == 10


@pytest.mark.parametrize("change, message", [
    (dict(model=builders.Config({"name": "dcgann"})),
     "Unknown model 'dcgann'. Did you mean 'dcgan'?"),
    (dict(loss="hinje"), "Unknown loss 'hinje'. Did you mean 'hinge'?"),
    (dict(dataset="mnsit"), "Unknown dataset 'mnsit'"),
    (dict(k=0), "config.k must be a positive integer, got 0"),
    (dict(batch_size=0), "config.batch_size must be a positive integer"),
    (dict(batch_size=-8), "config.batch_size must be a positive integer"),
    (dict(num_devices=3, batch_size=8), "batch_size=8 is not divisible by the 3"),
    (dict(image_size=7), "Cannot build model 'dcgan' for data of shape"),
    (dict(dataset="mnist", data_dir="/nonexistent/tfds"),
     "is not prepared in /nonexistent/tfds"),
])
def test_bad_config_is_one_clear_error(tmp_path, change, message):
  c = tt.tiny_config()
  for key, value in change.items():
    c[key] = value
  with pytest.raises(ValueError) as info:
    tt.run(c, tmp_path)
  assert message in str(info.value), str(info.value)


def test_unknown_field_is_one_clear_error(tmp_path):
  c = tt.tiny_config()
  with c.unlocked():
    c.skip_nonfinite_update = True
  with pytest.raises(builders.ConfigError,
                     match="Did you mean 'skip_nonfinite_updates'"):
    tt.run(c, tmp_path)


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_checkpoints_below_one_is_refused(tmp_path, keep):
  with pytest.raises(builders.ConfigError,
                     match="config.keep_checkpoints must be a positive integer"):
    tt.run(tt.tiny_config(keep_checkpoints=keep), tmp_path)
  assert not os.listdir(tmp_path)
  with pytest.raises(ValueError, match="keep must be None"):
    checkpoint.Checkpointer(str(tmp_path / "c"), keep=keep)


@pytest.mark.parametrize("change, message", [
    (dict(num_eval_samples=0), "config.num_eval_samples must be a positive"),
    (dict(num_devices=0), "config.num_devices=0, but this machine has"),
    (dict(max_consecutive_skipped=0), "config.max_consecutive_skipped must"),
])
def test_more_bad_config_values_are_one_clear_error(tmp_path, change, message):
  with pytest.raises(builders.ConfigError, match=message):
    tt.run(tt.tiny_config(**change), tmp_path)


@pytest.mark.parametrize("learning_rate", [-1e-3, float("nan")])
def test_negative_or_nan_learning_rate_is_refused(tmp_path, learning_rate):
  c = tt.tiny_config()
  c.d_optimizer.learning_rate = learning_rate
  with pytest.raises(builders.ConfigError,
                     match=r"discriminator's learning rate must be a finite "
                     r"number >= 0, got .*--config.d_optimizer.learning_rate"):
    tt.run(c, tmp_path)


