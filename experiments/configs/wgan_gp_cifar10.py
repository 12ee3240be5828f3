"""WGAN-GP on CIFAR-10 (Gulrajani et al., 2017): k = 5 critic updates per G update,
the Wasserstein loss with a gradient penalty of weight 10, Adam(1e-4, b1=0, b2=0.9).

The critic has no batch norm (the penalty is per example); DCGAN-style nets.
CIFAR-10 must be prepared for TFDS on this machine (no download).
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "cifar10"
  c.model = base.model_config("dcgan", base_features=64, spectral_norm=False)
  c.latent_dim = 128
  c.loss = "wasserstein"
  c.penalty = ml_collections.ConfigDict(dict(name="gradient_penalty", weight=10.0))
  c.k = 5
  c.batch_size = 64
  c.num_steps = 100_000
  adam = dict(name="adam", learning_rate=1e-4, b1=0.0, b2=0.9)
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.ema_decay = 0.999
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint_every = 5000
  return c
