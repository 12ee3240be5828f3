"""DCGAN on sklearn's real 8x8 handwritten digits: the offline default.

The 1797 digits (1500 in the "train" split) ship inside scikit-learn, so this
runs on any machine, with no network and no prepared data, in a few minutes
on two CPU cores.

Size: the native 8x8. DCGAN then has one upsampling stage (4x4 -> 8x8), so
the generator is Dense(z) -> 4x4x64, BatchNorm, ReLU, ConvTranspose -> 8x8x1,
tanh; the discriminator one stride-2 conv and a dense layer. Resizing the
digits to 16x16 or 32x32 adds no information (bilinear interpolation of 8x8
pictures) and, on CPU, costs far more than the pixel count suggests: the
weight gradients of convolutions inside the k-update ``lax.scan`` of
``GAN.step`` run about 80x slower per step at 16x16 than at 8x8 on XLA:CPU.
At 8x8, with Adam(5e-4, b1=0.5) (sharper than DCGAN's 2e-4 in 4000 steps)
and an EMA of G for the samples, most samples are recognisable digits after
4000 steps, about 1-1.5 minutes on two busy CPU cores.
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "digits"
  c.image_size = 0             # native 8x8
  c.model = base.model_config("dcgan", base_features=64, spectral_norm=False)
  c.latent_dim = 64
  c.loss = "non_saturating"
  c.k = 1
  c.batch_size = 64
  c.num_steps = 4000
  adam = dict(name="adam", learning_rate=5e-4, b1=0.5, b2=0.999)
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.ema_decay = 0.999
  c.log_every = 100
  c.eval_every = 500
  c.num_eval_samples = 64
  c.checkpoint_every = 1000
  return c
