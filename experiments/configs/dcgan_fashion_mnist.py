"""DCGAN on the real Fashion-MNIST (28x28x1), Radford et al. 2015 hyperparameters.

Offline: `apt-get install -y dataset-fashion-mnist` then
`python -m experiments.prepare_data fashion_mnist` prepares it for TFDS.
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "fashion_mnist"
  c.model = base.model_config("dcgan", base_features=64, spectral_norm=False)
  c.latent_dim = 100
  c.loss = "non_saturating"
  c.k = 1
  c.batch_size = 128
  c.num_steps = 20_000        # ~43 epochs
  adam = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.ema_decay = 0.999
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 2000
  c.evaluation.every = 2000         # FID etc. of 2,000 samples; best kept
  return c
