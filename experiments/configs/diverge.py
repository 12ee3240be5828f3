"""A run that diverges on purpose (for the runner's NaN/Inf handling).

The toy ring with a tiny MLP and a discriminator learning rate so large that
its weights overflow to Inf within a few steps: the runner stops with exit
code 3 and says at which step and which player, or, with
``--config.skip_nonfinite_updates=True``, skips those updates and counts them.

    python -m experiments.train --config=experiments/configs/diverge.py \\
        --workdir=/tmp/diverge
"""

import ml_collections

from experiments.configs import base
from experiments.configs import toy_ring8


def get_config() -> ml_collections.ConfigDict:
  c = toy_ring8.get_config()
  c.model = base.model_config("toy_mlp", hidden=8, depth=1)
  c.batch_size = 16
  c.num_steps = 40
  c.d_optimizer = ml_collections.ConfigDict(
      dict(name="sgd", learning_rate=1e30, momentum=0.0))
  c.log_every = 4
  c.eval_every = 40
  c.num_eval_samples = 50
  c.checkpoint_every = 4
  return c
