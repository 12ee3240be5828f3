"""Checkpoints of the whole ``GANState`` with ``orbax.checkpoint``.

A ``GANState`` is a flax struct, i.e. a pytree: parameters, batch statistics,
both optimizer states, the EMA of G's weights, the step counter and the run's
rng. ``Checkpointer`` saves and restores all of it as one pytree through an
``orbax.checkpoint.CheckpointManager`` (``ocp.args.StandardSave`` /
``ocp.args.StandardRestore``), so that a resumed run continues exactly where
the interrupted one stopped. Restores are bit-exact.

    ckpt = Checkpointer(workdir + "/checkpoints", save_every=1000, keep=3)
    state = ckpt.restore(state)            # the latest one, or ``state`` as is
    ...
    ckpt.save(step, state)                 # writes when step % save_every == 0
    ckpt.close()                           # waits for pending writes

States replicated over devices (``ganjax.parallel.replicate``) are saved as
one copy (``ganjax.parallel.unreplicate`` first), so that a run can resume on
a different number of devices. Nothing here imports TensorFlow.
"""

import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any


def _abstract(tree: PyTree) -> PyTree:
  """Shape/dtype template of ``tree`` for ``StandardRestore``.

  Leaves that are committed ``jax.Array``s (placed on a device on purpose, or
  sharded) keep their sharding; every other leaf (uncommitted arrays, numpy,
  ``jax.ShapeDtypeStruct`` without sharding) is restored to host memory and
  then put on the default device uncommitted, like a freshly initialised
  state, so that jitted steps do not recompile for it.
  """

  def leaf(x):
    if isinstance(x, jax.Array) and getattr(x, "_committed", True):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    if isinstance(x, jax.ShapeDtypeStruct):
      return jax.ShapeDtypeStruct(x.shape, x.dtype,
                                  sharding=getattr(x, "sharding", None))
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    return jax.ShapeDtypeStruct(x.shape, x.dtype)

  return jax.tree.map(leaf, tree)


def _to_device(tree: PyTree) -> PyTree:
  return jax.tree.map(
      lambda x: jnp.asarray(x) if isinstance(x, np.ndarray) else x, tree)


class Checkpointer:
  """Saves a pytree every ``save_every`` steps, keeps the last ``keep``.

  Use it to make a training run resumable: restore the latest checkpoint at
  start-up, save periodically, close at the end.

  Args:
    directory: where checkpoints go (one sub-folder per step); created.
    save_every: steps between saves; ``save`` skips other steps unless
      forced. 0 or None saves whenever ``save`` is called.
    keep: how many of the most recent checkpoints to keep (None: all).
    async_save: write in a background thread (the state is first copied to
      host memory, so the caller may donate its buffers right away).
  """

  def __init__(self, directory: str, save_every: Optional[int] = None,
               keep: Optional[int] = 3, async_save: bool = True):
    self.directory = os.path.abspath(os.fspath(directory))
    self.save_every = int(save_every or 0)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  # --------------------------------------------------------------- queries

  def latest_step(self) -> Optional[int]:
    """The step of the newest finished checkpoint, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of the checkpoints on disk, oldest first."""
    return sorted(self._manager.all_steps())

  # ------------------------------------------------------------ save/load

  def should_save(self, step: int) -> bool:
    return self.save_every <= 0 or step % self.save_every == 0

  def save(self, step: int, state: PyTree, force: bool = False) -> bool:
    """Saves ``state`` as checkpoint ``step`` when due (or ``force``).

    The state is copied to host memory before this returns (a device sync),
    then written, in the background with ``async_save``.

    Returns:
      whether a checkpoint was started.
    """
    step = int(step)
    if not (force or self.should_save(step)):
      return False
    if step in self._manager.all_steps():
      return False
    host_state = jax.device_get(state)
    return bool(self._manager.save(
        step, args=ocp.args.StandardSave(host_state), force=True))

  def restore(self, template: PyTree, step: Optional[int] = None,
              missing_ok: bool = True) -> PyTree:
    """Restores checkpoint ``step`` (default the latest) shaped like ``template``.

    Args:
      template: a pytree of the same structure as what was saved (the initial
        ``GANState``, or its ``jax.eval_shape``); gives shapes, dtypes and
        where the restored arrays go (a committed leaf's sharding, else the
        default device, uncommitted).
      step: which checkpoint; None for the latest.
      missing_ok: with no checkpoint on disk, return ``template`` unchanged
        instead of raising ``FileNotFoundError``.

    Returns:
      the restored pytree (``jax.Array`` leaves), bit-exact.
    """
    if step is None:
      step = self.latest_step()
    if step is None:
      if missing_ok:
        return template
      raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    return _to_device(self._manager.restore(
        int(step), args=ocp.args.StandardRestore(_abstract(template))))

  def quarantine(self, step: int) -> str:
    """Moves checkpoint ``step`` out of the way, keeping it for inspection.

    Use it for a checkpoint that cannot be read: it goes to
    ``<directory>.unreadable/<step>-<unix time>`` (nothing is deleted), so
    that the previous checkpoint becomes the latest and a new checkpoint of
    ``step`` can be written later.

    Returns:
      the new path of the checkpoint.
    """
    src = os.path.join(self.directory, str(int(step)))
    dst_dir = self.directory + ".unreadable"
    dst = os.path.join(dst_dir, f"{int(step)}-{int(time.time())}")
    if jax.process_index() == 0:  # one process moves it; the others wait
      os.makedirs(dst_dir, exist_ok=True)
      os.replace(src, dst)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f"ganjax_quarantine_{int(step)}")
    self._manager.reload()
    return dst

  def restore_newest_readable(
      self, template: PyTree,
      check: Optional[Callable[[int, PyTree], None]] = None,
      on_failure: Optional[Callable[[int, Exception, str], None]] = None):
    """Restores the newest checkpoint that reads back, skipping broken ones.

    Use it at start-up: a checkpoint truncated or corrupted on disk (a file
    missing or cut short, which orbax's atomic commit makes unlikely but a
    failing disk or a hand-edited directory does not) is moved aside with
    ``quarantine`` and the one before it is tried.

    Args:
      template: as for ``restore``.
      check: ``check(step, state)`` raises for a restored state that is not
        usable (e.g. a step counter that does not match).
      on_failure: ``on_failure(step, error, moved_to)`` is called for every
        checkpoint skipped (to say so to the user).

    Returns:
      ``(state, step)``, or ``(template, None)`` when no checkpoint reads.
    """
    for step in sorted(self.all_steps(), reverse=True):
      try:
        state = self.restore(template, step, missing_ok=False)
        if check is not None:
          check(step, state)
        return state, step
      except Exception as e:  # pylint: disable=broad-except
        moved_to = self.quarantine(step)
        if on_failure is not None:
          on_failure(step, e, moved_to)
    return template, None

  def wait(self) -> None:
    """Blocks until background writes have finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending writes and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def save(directory: str, step: int, state: PyTree) -> None:
  """Writes one checkpoint of ``state`` at ``step`` and waits for it."""
  with Checkpointer(directory, keep=None, async_save=False) as ckpt:
    ckpt.save(step, state, force=True)


def restore(directory: str, template: PyTree,
            step: Optional[int] = None) -> PyTree:
  """Reads checkpoint ``step`` (default the latest) of ``directory``.

  Raises:
    FileNotFoundError: when the directory holds no checkpoint.
  """
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No checkpoint directory {directory}.")
  with Checkpointer(directory, keep=None, async_save=False) as ckpt:
    return ckpt.restore(template, step, missing_ok=False)


def latest_step(directory: str) -> Optional[int]:
  """The newest checkpoint step in ``directory``, or None."""
  if not os.path.isdir(directory):
    return None
  with Checkpointer(directory, keep=None, async_save=False) as ckpt:
    return ckpt.latest_step()
