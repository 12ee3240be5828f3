"""The ring of 8 Gaussians (radius 2, std 0.02): the mode-collapse benchmark of
unrolled GANs (Metz et al., 2016) and VEEGAN (Srivastava et al., 2017).

3-layer ReLU MLPs of 128 units, Adam. With one device the batches are drawn
on the device and many steps run in one compiled call
(``ganjax.loops.scan_steps``). The sample PNGs are scatter plots of 1000
samples from fixed noise (blue) over real data (grey).
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.dataset = "toy_ring8"
  c.model = base.model_config("toy_mlp", hidden=128, depth=3)
  c.latent_dim = 16
  c.loss = "non_saturating"
  c.k = 1
  c.batch_size = 512
  c.num_steps = 10_000
  adam = dict(name="adam", learning_rate=1e-4, b1=0.5, b2=0.999)
  c.g_optimizer = ml_collections.ConfigDict(adam)
  c.d_optimizer = ml_collections.ConfigDict(adam)
  c.log_every = 500
  c.eval_every = 1000
  c.num_eval_samples = 1000
  c.checkpoint_every = 5000
  c.evaluation.every = 1000    # mode coverage of 2,500 samples (the protocol)
  c.evaluation.num_samples = 2500
  return c
