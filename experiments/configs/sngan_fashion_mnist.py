"""SN-GAN (ResNet, spectral norm, hinge loss) on the real Fashion-MNIST, at 32x32.

The 28x28 images are RESIZED to 32x32 (bilinear, the pipeline's
``image_size`` option), not padded, so that the published 32x32 ResNet
layout applies unchanged (Miyato et al. 2018: three up-blocks from 4x4 in G;
the optimised block and three blocks in D). The rest is SN-GAN's CIFAR-10
protocol: batch 64, Adam(2e-4, b1=0, b2=0.9) decayed linearly to 0 over
``num_steps``, k = 5 discriminator updates per generator update, hinge loss.

The width is reduced so that it runs on a CPU: G and D with 32 base channels
(published: 256 and 128, about 60x the compute; about 2.4 s per step at
k = 5 on this project's shared 2-core CPU with 32, about 9 s with 64). On an
accelerator use ``--config.model.g_channels=256 --config.model.d_channels=128``.
The class-conditional variant (cGAN-PD) is ``--config.num_classes=10``.

Offline: `apt-get install -y dataset-fashion-mnist` then
`python -m experiments.prepare_data fashion_mnist` prepares it for TFDS.
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "fashion_mnist"
  c.image_size = 32           # resized (bilinear) from 28x28, not padded
  c.model = base.model_config("resnet", g_channels=32, d_channels=32,
                              spectral_norm=True)
  c.latent_dim = 128
  c.loss = "hinge"
  c.k = 5
  c.batch_size = 64
  c.num_steps = 10_000
  adam = dict(name="adam", learning_rate=2e-4, b1=0.0, b2=0.9, decay="linear")
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.ema_decay = 0.0
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.evaluation.every = 1000         # FID etc. (project CNN) of 2,000 samples
  return c
