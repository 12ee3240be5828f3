"""The 100-128-784 / 784-128-1 MLP GAN of the classic tutorial (seed 002), Adam 1e-3.

The smallest GAN that learns MNIST-like digits. MNIST must be prepared for
TFDS on this machine; offline, use --config.dataset=fashion_mnist.
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "mnist"
  c.model = base.model_config("small_mlp", hidden=128)
  c.latent_dim = 100
  c.loss = "non_saturating"
  c.k = 1
  c.batch_size = 128
  c.num_steps = 50_000
  c.g_optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3))
  c.d_optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3))
  c.log_every = 500
  c.eval_every = 5000
  c.num_eval_samples = 100
  c.checkpoint_every = 5000
  return c
