"""DCGAN on CIFAR-10 (32x32x3), Radford et al. 2015 hyperparameters.

CIFAR-10 must be prepared for TFDS on this machine (no download).
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "cifar10"
  c.model = base.model_config("dcgan", base_features=64, spectral_norm=False)
  c.latent_dim = 100
  c.loss = "non_saturating"
  c.k = 1
  c.batch_size = 128
  c.num_steps = 50_000
  adam = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.ema_decay = 0.999
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint_every = 5000
  return c
