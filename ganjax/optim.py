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


def cosine_schedule(init_value: float, end_value: float, decay_steps: int):
  """From ``init_value`` to ``end_value`` along half a cosine, then constant.

  ``value(t) = init + (end - init) * (1 - cos(pi * min(t, T) / T)) / 2``:
  R3GAN's ``cosine_decay_with_warmup`` without warm-up, which it uses for the
  learning rate, Adam's beta2, the R1/R2 weight, the EMA half-life and the
  augmentation probability (``end_value`` may be larger than ``init_value``).

  References:
    Loshchilov & Hutter, 2017, SGDR (https://arxiv.org/abs/1608.03983);
    Huang et al., 2024, A Modern GAN Baseline
    (https://arxiv.org/abs/2501.05441), official code ``training_loop.py``.

  Args:
    init_value: the value at step 0.
    end_value: the value from step ``decay_steps`` on.
    decay_steps: ``T`` > 0.

  Returns:
    a schedule ``step -> float32 scalar`` (an optax schedule).
  """
  if decay_steps <= 0:
    raise ValueError(f"cosine_schedule: decay_steps must be > 0, got "
                     f"{decay_steps}.")

  def schedule(count):
    t = jnp.minimum(jnp.asarray(count, jnp.float32), decay_steps) / decay_steps
    return init_value + (end_value - init_value) * 0.5 * (1 - jnp.cos(jnp.pi * t))

  return schedule


def r3gan_adam(learning_rate: float = 2e-4, final_learning_rate: float = 5e-5,
               b2: float = 0.9, final_b2: float = 0.99,
               decay_steps: int = 39_063, eps: float = 1e-8
               ) -> optax.GradientTransformation:
  """Adam as R3GAN trains both players: ``b1 = 0``, learning rate and ``b2`` on cosine schedules.

  The defaults are the CIFAR-10 preset of the official code: the learning
  rate from 2e-4 to 5e-5 and beta2 from 0.9 to 0.99 over 20M images (39,063
  updates of 512), ``eps = 1e-8``.

  References:
    Huang et al., 2024, A Modern GAN Baseline
    (https://arxiv.org/abs/2501.05441), official code ``train.py``.

  Returns:
    an ``optax.GradientTransformation`` whose state carries the current
    ``learning_rate`` and ``b2`` (``state.hyperparams``).
  """
  return optax.inject_hyperparams(optax.adam)(
      learning_rate=cosine_schedule(learning_rate, final_learning_rate,
                                    decay_steps),
      b1=0.0, b2=cosine_schedule(b2, final_b2, decay_steps), eps=eps)


def ema_half_life_decay(batch_size: int, half_life_images: float,
                        ramp_images: float = 0.0):
  """An EMA decay schedule from a half-life counted in images, as StyleGAN and R3GAN set it.

  The decay at a step is ``0.5 ** (batch_size / h)``: the average forgets
  half of a weight in ``h`` images. ``h`` rises from 0 to
  ``half_life_images`` along ``cosine_schedule`` over ``ramp_images`` images
  (R3GAN: 5M over 20M images for CIFAR-10), so that the average follows the
  weights closely early on; at ``h = 0`` it is the weights themselves.
  Pass it as ``ganjax.GAN(ema_decay=...)``.

  References:
    Karras et al., 2020, Training Generative Adversarial Networks with
    Limited Data (https://arxiv.org/abs/2006.06676), ``ema_kimg``; Huang et
    al., 2024, A Modern GAN Baseline (https://arxiv.org/abs/2501.05441),
    official code ``training_loop.py``.

  Args:
    batch_size: images per generator step (the global batch).
    half_life_images: the half-life after the ramp.
    ramp_images: images over which it rises from 0; 0: constant from step 0.

  Returns:
    a schedule ``step -> decay`` (float32 scalar in [0, 1)).
  """
  if batch_size < 1 or half_life_images <= 0 or ramp_images < 0:
    raise ValueError(
        f"ema_half_life_decay needs batch_size >= 1, half_life_images > 0 "
        f"and ramp_images >= 0; got {batch_size}, {half_life_images}, "
        f"{ramp_images}.")
  ramp_steps = ramp_images / batch_size
  if ramp_steps > 0:
    half_life = cosine_schedule(0.0, half_life_images, ramp_steps)
  else:
    half_life = lambda step: jnp.float32(half_life_images)

  def schedule(step):
    return jnp.power(0.5, batch_size / jnp.maximum(half_life(step), 1e-8))

  return schedule
