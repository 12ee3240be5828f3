"""Many training steps in one compiled call, for data that lives on the device.

Small models are bound by Python dispatch: one call per step costs more than
the step. ``scan_steps`` runs ``num_steps`` steps inside one ``jax.lax.scan``,
drawing each step's batch on the device (toy distributions, or an in-memory
dataset indexed with a random permutation).

On XLA:CPU, convolution gradients inside a loop body are fast only in the
canonical form of ``ganjax.models.layers.conv_general_dilated`` (the DCGAN
models' default); ``benchmarks/results/benchmark.md`` compares it with flax's
default convolutions, inside and outside loops.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ganjax.gan import GANState

BatchSampler = Callable[[jax.Array], jax.Array]


def scan_steps(step_fn: Callable, sample_batch: BatchSampler,
               num_steps: int) -> Callable:
  """Fuses ``num_steps`` calls of ``step_fn`` into one jitted function.

  Args:
    step_fn: ``(state, batch) -> (state, metrics)``, e.g. ``gan.step``.
    sample_batch: ``key -> batch [k, B, ...]``, traced on the device.
    num_steps: steps per call.

  Returns:
    ``run(state, data_key) -> (state, metrics)`` with every metric stacked to
    ``[num_steps]``. Step ``s`` draws its batch from
    ``fold_in(data_key, state.step)``, so a run split into several calls, or
    resumed, sees the same data as one long call.
  """

  def run(state: GANState, data_key: jax.Array):
    def body(state, _):
      batch = sample_batch(jax.random.fold_in(data_key, state.step))
      return step_fn(state, batch)

    return jax.lax.scan(body, state, None, length=num_steps)

  return jax.jit(run, donate_argnums=0)


def scan_steps_at(step_fn: Callable, batch_at: Callable[[jax.Array], Any],
                  num_steps: int) -> Callable:
  """Fuses ``num_steps`` steps whose batches are a function of the step.

  For data sets on the device (``ganjax.data.on_device.batch_at``): the batch
  of generator step ``s`` depends on ``s`` only, so any split of a run into
  calls, a resume, or another device count sees the same data.

  Args:
    step_fn: ``(state, batch) -> (state, metrics)``, e.g. ``gan.step``.
    batch_at: ``step (int32 scalar) -> batch``, traced on the device.
    num_steps: steps per call.

  Returns:
    ``run(state) -> (state, metrics)``, metrics stacked to ``[num_steps]``;
    not jitted, so that ``jax.jit`` or a ``ganjax.parallel`` wrapper can map it.
  """

  def run(state: GANState):
    def body(state, _):
      return step_fn(state, batch_at(state.step))

    return jax.lax.scan(body, state, None, length=num_steps)

  return run


def fori_steps(step: Callable, carry, num_steps, max_steps: int):
  """``num_steps`` calls of ``step`` in a ``jax.lax.fori_loop``, metrics kept.

  For a call whose step count is an argument: one compilation serves any
  ``num_steps`` up to ``max_steps``.

  Args:
    step: ``carry -> (carry, metrics)``.
    carry: the initial carry (e.g. a ``GANState``).
    num_steps: int32 scalar, possibly traced, at most ``max_steps``.
    max_steps: static; the length of the stacked metrics.

  Returns:
    ``(carry, metrics)``, every metric stacked to ``[max_steps, ...]``; the
    rows from ``num_steps`` on are zeros.
  """

  def body(i, loop_carry):
    carry, stacked = loop_carry
    carry, metrics = step(carry)
    return carry, jax.tree.map(lambda all_, m: all_.at[i].set(m), stacked,
                               metrics)

  shapes = jax.eval_shape(step, carry)[1]
  stacked = jax.tree.map(lambda m: jnp.zeros((max_steps,) + m.shape, m.dtype),
                         shapes)
  return jax.lax.fori_loop(0, num_steps, body, (carry, stacked))
