"""SN-GAN on CIFAR-10 (32x32x3): the ResNet models of Miyato et al. 2018 with
spectral normalisation in D and the hinge loss.

Published protocol (mimicry's table; Miyato et al. 2018, Table 3 setting):
ResNet G (256 channels) / D (128 channels), batch 64, Adam(2e-4, b1=0,
b2=0.9) for both players with the learning rate decayed linearly to 0 over
the run, k = 5 discriminator updates per generator update, 100,000
generator steps; FID 23.90 (TF Inception pool3, 10k real / 5k fake).
CIFAR-10 must be prepared for TFDS on this machine (no download).
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "cifar10"
  c.model = base.model_config("resnet", g_channels=256, d_channels=128,
                              spectral_norm=True)
  c.latent_dim = 128
  c.loss = "hinge"
  c.k = 5
  c.batch_size = 64
  c.num_steps = 100_000
  adam = dict(name="adam", learning_rate=2e-4, b1=0.0, b2=0.9, decay="linear")
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.ema_decay = 0.0           # the published numbers use no EMA
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint_every = 5000
  return c
