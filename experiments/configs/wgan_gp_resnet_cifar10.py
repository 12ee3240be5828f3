"""WGAN-GP with the ResNet models on CIFAR-10 (Gulrajani et al. 2017): the
Wasserstein loss with a gradient penalty of weight 10, no spectral norm (and no
normalisation) in the critic.

Published protocol (mimicry's table): ResNet G (256 channels) / D (128
channels), batch 64, Adam(2e-4, b1=0, b2=0.9) for both players with the
learning rate decayed linearly to 0, k = 5 critic updates per generator
update, 100,000 generator steps; FID 26.08 (TF Inception pool3, 50k / 50k).
The DCGAN-architecture version is ``wgan_gp_cifar10.py``. CIFAR-10 must be
prepared for TFDS on this machine (no download).
"""

import ml_collections

from experiments.configs import sngan_cifar10


def get_config() -> ml_collections.ConfigDict:
  c = sngan_cifar10.get_config()  # the same models and protocol, but:
  c.model.spectral_norm = False
  c.loss = "wasserstein"
  c.penalty = ml_collections.ConfigDict(dict(name="gradient_penalty",
                                             weight=10.0))
  return c
