"""Optimizer setups from the papers, built from optax (any optax transformation works)."""

import jax.numpy as jnp
import optax


def goodfellow_sgd(learning_rate: float = 0.1,
                   decay_factor: float = 1.000004,
                   min_learning_rate: float = 1e-6,
                   initial_momentum: float = 0.5,
                   final_momentum: float = 0.7,
                   momentum_saturate_steps: int = 125_000,
                   ) -> optax.GradientTransformation:
  """SGD with momentum as in the GAN paper's MNIST experiments.

  The learning rate decays exponentially, divided by ``decay_factor`` at every
  update down to ``min_learning_rate``; the momentum rises linearly from
  ``initial_momentum`` to ``final_momentum`` over ``momentum_saturate_steps``
  updates (250 epochs of 500 minibatches of 100 in the paper's setup).

  References:
    Goodfellow et al., 2014, Generative Adversarial Nets
    (https://arxiv.org/abs/1406.2661), and its published pylearn2 configuration
    (``mnist.yaml``: lr 0.1, ExponentialDecay 1.000004, min_lr 1e-6,
    MomentumAdjustor 0.5 -> 0.7 saturating at epoch 250).

  Returns:
    an ``optax.GradientTransformation`` whose state carries the current
    learning rate and momentum (``state.hyperparams``).
  """
  def learning_rate_schedule(count):
    decayed = learning_rate * jnp.power(decay_factor, -count.astype(jnp.float32))
    return jnp.maximum(decayed, min_learning_rate)

  momentum_schedule = optax.linear_schedule(
      init_value=initial_momentum, end_value=final_momentum,
      transition_steps=momentum_saturate_steps)
  return optax.inject_hyperparams(optax.sgd)(
      learning_rate=learning_rate_schedule, momentum=momentum_schedule)
