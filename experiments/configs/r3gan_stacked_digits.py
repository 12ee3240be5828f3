"""R3GAN on stacked digits (8x8x3, 1,000 modes): the mode-coverage benchmark on CPU.

The offline stand-in for the R3GAN paper's Stacked-MNIST experiment: three
of sklearn's 8x8 digits in the RGB channels (``ganjax.data.stacked``), scored
by ``modes26k_stacked_digits`` / ``mode_kl26k_stacked_digits`` (``python -m
experiments.evaluate --workdir=... --num=26000``). RpGAN with R1 + R2 (gamma
1 cosine-decayed to 0.1), a small R3GAN at the native 8x8 (stages 4x4 and
8x8 of width 32, cardinality 4 — 16 channels per group as in the published
models —, one block each: sized for a shared 2-core CPU), Adam with b1 = 0 (1e-3 decayed to 2.5e-4, b2 0.9 to
0.99 along a cosine), the EMA of G by its half-life (10k images, ramped from
0) as R3GAN sets it, and batch 64 as ``dcgan_digits``, so that it
compares with DCGAN at equal steps
(``--config=experiments/configs/dcgan_digits.py
--config.dataset=stacked_digits``). The published Stacked-MNIST model (28x28,
its own training length) is not reproduced on this CPU.
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "stacked_digits"
  c.image_size = 0             # native 8x8
  c.model = base.model_config("r3gan", widths=(32, 32), cardinalities=(4, 4),
                              blocks=(1, 1))
  c.latent_dim = 64
  c.loss = "rpgan"
  c.k = 1
  c.batch_size = 64
  c.num_steps = 2000
  adam = dict(name="r3gan_adam", learning_rate=1e-3, final_learning_rate=2.5e-4,
              b2=0.9, final_b2=0.99, decay_steps=c.num_steps, eps=1e-8)
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.penalty = ml_collections.ConfigDict(dict(
      name="r1_r2", weight=1.0, decay="cosine", final_weight=0.1,
      decay_steps=0))
  c.ema_half_life_images = 10_000.0
  c.ema_ramp_images = float(c.num_steps * c.batch_size)
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.evaluation.num_samples = 26_000
  return c
