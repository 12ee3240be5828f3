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

from experiments.configs import sngan_cifar10


def get_config() -> ml_collections.ConfigDict:
  c = sngan_cifar10.get_config()  # the same protocol, conditional
  c.num_classes = 10  # conditional batch norm in G, a projection D
  return c
