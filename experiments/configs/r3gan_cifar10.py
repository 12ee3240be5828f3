"""R3GAN on CIFAR-10 (32x32x3): RpGAN + R1 + R2, the modern ResNet, the published protocol.

The CIFAR-10 preset of the official code (brownvc/R3GAN ``train.py`` and its
README command ``--batch=512 --cond=1 --preset=CIFAR10``): class-conditional
(the paper's CIFAR-10 model; ``--config.num_classes=0`` is the unconditional
one the code also ships), fakes drawn for the real minibatch's classes
(``fake_labels="real"``, as the official step pairs them); G and D with 768
channels per stage from 4x4 to 32x32, cardinality 96, 2 blocks per stage,
expansion 2, noise 64 (G 20,781,952 / D 21,280,512 parameters conditional,
20,732,160 / 20,683,776 unconditional); batch 512; the relativistic pairing
loss; R1 and R2 with gamma decayed from 0.05 to 0.005 and Adam (b1 = 0,
eps = 1e-8) with the learning rate decayed from 2e-4 to 5e-5 and b2 raised
from 0.9 to 0.99, all along a cosine over 20M images (39,063 steps); an EMA
of G whose half-life rises from 0 to 5M images over the same 20M.

Not as published: the augmentation. The official code runs StyleGAN2-ADA's
pipeline (x-flips, 90-degree rotations, translations, scaling, rotation,
anisotropy, colour, cutout) with its probability raised from 0 to 0.55 over
the 20M images, on a data set mirrored by x-flips; ganjax has DiffAugment
(colour, translation, cutout), used here at a fixed 0.55. The official code
also computes three of G's and D's stages in bfloat16
(``--config.compute_dtype=bfloat16`` computes all of them so). The training
length is not in the official code (it trains until stopped): num_steps
covers the schedules once. CIFAR-10 must be prepared for TFDS, FID needs the
InceptionV3 weights (docs/inception_weights.md). The grouped convolutions
are single ``feature_group_count`` convolutions (``fast_conv_grad=False``,
for accelerators; ``True`` is the CPU form, see
``ganjax.models.r3gan.Conv``). Published FID 1.96
(conditional, 50k samples against the training set).
"""

import ml_collections

from experiments.configs import base

BATCH_SIZE = 512
DECAY_IMAGES = 20_000_000


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  decay_steps = -(-DECAY_IMAGES // BATCH_SIZE)  # 39,063
  c.dataset = "cifar10"
  c.model = base.model_config("r3gan", preset="cifar10", fast_conv_grad=False)
  c.latent_dim = 64
  c.num_classes = 10
  c.fake_labels = "real"
  c.loss = "rpgan"
  c.k = 1
  c.batch_size = BATCH_SIZE
  c.num_steps = decay_steps
  adam = dict(name="r3gan_adam", learning_rate=2e-4, final_learning_rate=5e-5,
              b2=0.9, final_b2=0.99, decay_steps=decay_steps, eps=1e-8)
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.penalty = ml_collections.ConfigDict(dict(
      name="r1_r2", weight=0.05, decay="cosine", final_weight=0.005,
      decay_steps=decay_steps))
  c.ema_half_life_images = 5_000_000.0
  c.ema_ramp_images = float(DECAY_IMAGES)
  c.augment.policy = "color,translation,cutout"
  c.augment.probability = 0.55
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint_every = 2000
  c.evaluation.num_samples = 50_000
  c.evaluation.networks = "inception"
  return c
