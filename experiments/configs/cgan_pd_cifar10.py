"""cGAN-PD on CIFAR-10: class-conditional SN-GAN with conditional batch norm in
the ResNet generator and a projection discriminator (Miyato & Koyama 2018),
hinge loss.

Published protocol (mimicry's table): ResNet G (256 channels) / D (128
channels), batch 64, Adam(2e-4, b1=0, b2=0.9) for both players with the
learning rate decayed linearly to 0, k = 5 discriminator updates per
generator update, 100,000 generator steps; FID 10.84 (TF Inception pool3,
50k / 50k). Fake labels are drawn uniformly over the 10 classes (the GAN's
default). CIFAR-10 must be prepared for TFDS on this machine (no download).
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "cifar10"
  c.num_classes = 10
  c.model = ml_collections.ConfigDict(
      dict(name="resnet", g_channels=256, d_channels=128, spectral_norm=True))
  c.latent_dim = 128
  c.loss = "hinge"
  c.k = 5
  c.batch_size = 64
  c.num_steps = 100_000
  adam = dict(name="adam", learning_rate=2e-4, b1=0.0, b2=0.9, decay="linear")
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.ema_decay = 0.0
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint_every = 5000
  return c
