"""The GAN paper's MNIST experiment (Goodfellow et al., 2014, Section 5).

G: 100-d noise -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid; D: two maxout layers
(240 units x 5 pieces) with dropout 0.2 on the input and 0.5 on hidden units.
SGD with momentum as in the paper's pylearn2 ``mnist.yaml``: lr 0.1 decaying
by 1/1.000004 per update, momentum 0.5 -> 0.7; k = 1; minibatches of 100.
(pylearn2 drew the noise from U[-sqrt(3), sqrt(3)]; here U[-1, 1].)

MNIST must be prepared for TFDS on this machine (no download); offline, run
on Fashion-MNIST with --config.dataset=fashion_mnist.
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "mnist"
  c.model = base.model_config("goodfellow_mlp")
  c.latent_dim = 100
  c.latent_distribution = "uniform"
  c.loss = "non_saturating"
  c.k = 1
  c.batch_size = 100
  c.num_steps = 100_000        # 200 epochs of 500 minibatches
  sgd = dict(name="goodfellow_sgd", learning_rate=0.1, decay_factor=1.000004,
             min_learning_rate=1e-6, initial_momentum=0.5, final_momentum=0.7,
             momentum_saturate_steps=125_000)
  c.g_optimizer = ml_collections.ConfigDict(sgd)
  c.d_optimizer = ml_collections.ConfigDict(sgd)
  c.log_every = 500
  c.eval_every = 5000
  c.num_eval_samples = 100
  c.checkpoint_every = 5000
  c.evaluation.every = 5000         # FID etc. of 2,000 samples; best kept
  return c
