"""R3GAN on ImageNet 32x32, class-conditional: the published protocol.

The ImageNet-32 preset of the official code (brownvc/R3GAN ``train.py`` and
its README command ``--batch=4096 --cond=1 --preset=ImageNet-32``): 1,536
channels per stage from 4x4 to 32x32, cardinality 96, 2 blocks per stage,
expansion 2, noise 64, class embeddings of 64 (G) and 1,536 (D) (G 82,914,304
/ D 86,548,992 parameters); batch 4096; RpGAN with R1 and R2, gamma from 0.5
to 0.05, Adam (b1 = 0) from 2e-4 to 5e-5 with b2 from 0.9 to 0.99, along a
cosine over 200M images (48,829 steps); the EMA half-life rising from 0 to
50M images over the same 200M; fakes drawn for the real minibatch's
classes. The data: TFDS's ``imagenet_resized/32x32`` (Chrabaszcz et al.
2017's box-resized ImageNet, prepared by hand: TFDS cannot download
ImageNet). Not as published, as in ``r3gan_cifar10``: DiffAugment at a fixed
0.5 instead of the official ADA pipeline ramped to 0.5; float32 everywhere.
Published FID 1.27.
"""

import ml_collections

from experiments.configs import base
from experiments.configs import r3gan_cifar10

BATCH_SIZE = 4096
DECAY_IMAGES = 200_000_000


def get_config() -> ml_collections.ConfigDict:
  c = r3gan_cifar10.get_config()
  decay_steps = -(-DECAY_IMAGES // BATCH_SIZE)  # 48,829
  c.dataset = "imagenet_resized/32x32"
  c.model = base.model_config("r3gan", preset="imagenet32",
                              fast_conv_grad=False)
  c.num_classes = 1000
  c.batch_size = BATCH_SIZE
  c.num_steps = decay_steps
  for optimizer in (c.g_optimizer, c.d_optimizer):
    optimizer.decay_steps = decay_steps
  c.penalty.weight, c.penalty.final_weight = 0.5, 0.05
  c.penalty.decay_steps = decay_steps
  c.ema_half_life_images = 50_000_000.0
  c.ema_ramp_images = float(DECAY_IMAGES)
  c.augment.probability = 0.5
  return c
