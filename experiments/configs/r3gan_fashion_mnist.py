"""R3GAN on the real Fashion-MNIST at 32x32, sized for a CPU.

The 28x28 images are resized (bilinear) to 32x32 as in
``sngan_fashion_mnist``, so that the layout of the published CIFAR-10 model
applies: 4 stages from 4x4, 2 blocks each, expansion 2; RpGAN with R1 + R2
(gamma 0.05 cosine-decayed to 0.005), Adam with b1 = 0 (learning rate 2e-4
to 5e-5, b2 0.9 to 0.99 on cosines), the EMA of G by its half-life (rising
to 1/4 of the images seen) as in ``r3gan_cifar10``. Batch 64 and 10,000
steps, as ``sngan_fashion_mnist``.

The width is reduced so that it runs on a CPU: 64 channels per stage with
cardinality 8 (16 channels per group, as in the published models;
published: 768 with cardinality 96, about 140x the compute). On an
accelerator set ``model.widths`` and ``model.cardinalities`` to the cifar10
preset's (768 and 96 per stage).

Offline: `apt-get install -y dataset-fashion-mnist` then
`python -m experiments.prepare_data fashion_mnist` prepares it for TFDS.
"""

import ml_collections

from experiments.configs import base

NUM_STEPS = 10_000
BATCH_SIZE = 64


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "fashion_mnist"
  c.image_size = 32           # resized (bilinear) from 28x28, not padded
  c.model = base.model_config("r3gan", widths=(64,) * 4,
                              cardinalities=(8,) * 4, blocks=(2,) * 4)
  c.latent_dim = 64
  c.loss = "rpgan"
  c.k = 1
  c.batch_size = BATCH_SIZE
  c.num_steps = NUM_STEPS
  adam = dict(name="r3gan_adam", learning_rate=2e-4, final_learning_rate=5e-5,
              b2=0.9, final_b2=0.99, decay_steps=NUM_STEPS, eps=1e-8)
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.penalty = ml_collections.ConfigDict(dict(
      name="r1_r2", weight=0.05, decay="cosine", final_weight=0.005,
      decay_steps=0))
  c.ema_half_life_images = NUM_STEPS * BATCH_SIZE / 4
  c.ema_ramp_images = float(NUM_STEPS * BATCH_SIZE)
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.evaluation.every = 1000         # FID etc. (project CNN) of 2,000 samples
  return c
