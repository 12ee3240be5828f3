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

A checkpoint that does not fit the template (another model, latent size,
optimizer, EMA on or off) is not a broken one: ``restore_newest_readable``
compares the checkpoint's metadata (array names, shapes, dtypes) with the
template first and raises ``CheckpointMismatchError``, saying what differs,
instead of setting it aside; only a checkpoint whose metadata or arrays do
not read back is set aside (or, for readers, skipped).
"""

import collections.abc
import os
import shutil
import sys
import threading
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any
# The items of a checkpoint: the state (the folder a single-item orbax
# checkpoint uses, so those read back too) and an optional JSON record.
_STATE, _RECORD = "default", "record"
_PARTIAL = ".orbax-checkpoint-tmp"  # in the folder name of an unfinished write


# What sets the arrays of a GANState field (``_LEAF_CAUSES``: their shapes
# and dtypes; ``_FIELD_CAUSES``: arrays or None), in the order causes are named.
_LEAF_CAUSES = {
    "g_params": "the generator's architecture (its widths, latent_dim, "
                "image shape, num_classes)",
    "d_params": "the discriminator's architecture (its widths, image shape, "
                "num_classes, heads)",
    "g_batch_stats": "the generator's normalisation layers",
    "d_batch_stats": "the discriminator's normalisation layers (batch norm, "
                     "spectral norm)",
    "g_opt_state": "g_optimizer (its kind, or settings that add state)",
    "d_opt_state": "d_optimizer (its kind, or settings that add state)",
}
_FIELD_CAUSES = {"ema_g_params": "ema_decay (on or off)",
                 "augment_p": "ada (on or off)"}
_ORDER = tuple(_LEAF_CAUSES) + ("ema_g_params",)


def _field(line: str) -> tuple[str, bool]:
  """``(state field, whether the line is about one of its leaves)``."""
  head = line.split(":")[0]
  return head.split(".")[0], "." in head


def likely_causes(differences: list[str]) -> list[str]:
  """The settings likely behind ``differences`` (lines of ``differences()``).

  An optimizer state or an EMA whose arrays differ as the parameters do
  follows them: only the parameters' cause is named then.
  """
  fields = {_field(line) for line in differences}
  causes = []
  for field, leaf in sorted(fields, key=lambda f: _ORDER.index(f[0])
                            if f[0] in _ORDER else len(_ORDER)):
    follows = (field.endswith("opt_state") and (field[0] + "_params", True)
               in fields) or (field == "ema_g_params" and leaf)
    cause = (_LEAF_CAUSES if leaf else _FIELD_CAUSES).get(field)
    if cause and not follows and cause not in causes:
      causes.append(cause)
  return causes


def _ordered(differences: list[str]) -> list[str]:
  """Parameters first, then batch statistics, optimizer states, the rest."""
  rank = lambda line: (_ORDER.index(_field(line)[0]) if _field(line)[0] in _ORDER
                       else len(_ORDER))
  return sorted(differences, key=rank)


class CheckpointMismatchError(ValueError):
  """A checkpoint reads back but does not fit the template; says what differs
  (the first leaves) and the settings likely behind it."""

  def __init__(self, directory: str, step: int, differences: list[str]):
    differences = _ordered(differences)
    self.step, self.differences = step, differences
    shown = differences[:8] + ([f"... {len(differences) - 8} more"]
                               if len(differences) > 8 else [])
    causes = likely_causes(differences)
    super().__init__(
        f"the checkpoint of step {step} in {directory} does not fit the "
        f"state of this config ({'; '.join(shown)})."
        + (f" Likely cause: {'; '.join(causes)}." if causes else ""))


def _describe(x) -> str:
  return f"{tuple(x.shape)} {np.dtype(x.dtype).name}"


def _top_level(tree) -> Optional[dict]:
  """``{field: subtree}`` of a dataclass / dict state, else None."""
  if hasattr(tree, "__dataclass_fields__"):
    return {name: getattr(tree, name) for name in tree.__dataclass_fields__}
  if isinstance(tree, collections.abc.Mapping) or (
      hasattr(tree, "keys") and hasattr(tree, "__getitem__")):
    return {name: tree[name] for name in tree.keys()}  # orbax's TreeMetadata
  return None


def differences(template: PyTree, metadata: PyTree) -> list[str]:
  """How a checkpoint's metadata differs from ``template`` (empty: it fits).

  Compares the arrays' names, shapes and dtypes, and the top-level fields
  (a field that is None on one side and arrays on the other, e.g. an EMA
  kept by one config and not by the other). A field of the template that
  the checkpoint lacks and that is None in the template (a field added to
  the state since the checkpoint was written, unused here) fits.

  Args:
    template: the state the caller would restore into (arrays or
      ``jax.ShapeDtypeStruct``s).
    metadata: the checkpoint's tree metadata (``Checkpointer.metadata``).

  Returns:
    one line per difference, e.g. ``"g_params.Dense_0.kernel: checkpoint
    (8, 64) float32, config (16, 64) float32"``.
  """
  out, fields = [], []
  ours, theirs = _top_level(template), _top_level(metadata)
  if ours is not None and theirs is not None:
    for name in sorted(set(ours) | set(theirs)):
      if name not in theirs and ours[name] is None:
        continue  # a field added since, off here: restored as None
      if name not in theirs:
        out.append(f"{name}: not in the checkpoint")
      elif name not in ours:
        out.append(f"{name}: in the checkpoint, not in this state")
      elif (ours[name] is None) != (theirs[name] is None):
        out.append(f"{name}: {'None' if theirs[name] is None else 'arrays'} "
                   f"in the checkpoint, {'None' if ours[name] is None else 'arrays'}"
                   " in this config")
      else:
        continue
      fields.append(name + ".")
  flat_ours = ocp.tree.to_flat_dict(
      ocp.tree.serialize_tree(_abstract(template), keep_empty_nodes=False),
      sep=".")
  flat_theirs = ocp.tree.to_flat_dict(metadata, sep=".")
  flat_theirs = {k: v for k, v in flat_theirs.items() if hasattr(v, "shape")}
  for name in sorted(set(flat_ours) | set(flat_theirs)):
    if (name + ".").startswith(tuple(fields)):
      continue  # said above
    if name not in flat_theirs:
      out.append(f"{name}: not in the checkpoint")
    elif name not in flat_ours:
      out.append(f"{name}: in the checkpoint, not in this state")
    elif (tuple(flat_ours[name].shape) != tuple(flat_theirs[name].shape) or
          np.dtype(flat_ours[name].dtype) != np.dtype(flat_theirs[name].dtype)):
      out.append(f"{name}: checkpoint {_describe(flat_theirs[name])}, "
                 f"config {_describe(flat_ours[name])}")
  return out


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


def _quiet_closed_event_loops() -> None:
  """Drops the "Event loop is closed" errors of a failed checkpoint read.

  When one array of a checkpoint does not read back, orbax closes its asyncio
  loop while tensorstore still completes the other reads; each completion
  then fails in a tensorstore thread and Python prints it as an unraisable
  exception (a dozen tracebacks for one broken checkpoint). Only that error
  is filtered; every other unraisable exception goes to the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_ganjax_quiet", False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      return
    previous(unraisable)

  hook._ganjax_quiet = True  # pylint: disable=protected-access
  sys.unraisablehook = hook


def _to_device(tree: PyTree) -> PyTree:
  return jax.tree.map(
      lambda x: jnp.asarray(x) if isinstance(x, np.ndarray) else x, tree)


class Checkpointer:
  """Saves a pytree every ``save_every`` steps, keeps the last ``keep``.

  Use it to make a training run resumable: restore the latest checkpoint at
  start-up, save periodically, close at the end.

  With ``async_save`` a save copies the state to host memory (so the caller
  may donate its buffers right away), starts the write in a background
  thread and returns: training goes on while it writes. The next ``save``,
  ``wait``, ``close`` and every query wait for it first; a write that failed
  is raised there (and by ``check_for_errors``, which does not wait), never
  printed from the thread.

  Each checkpoint may carry a small JSON ``record`` beside the state (the
  runner stores the run's resolved config there), read back by ``record``.

  Args:
    directory: where checkpoints go (one sub-folder per step); created.
    save_every: steps between saves; ``save`` skips other steps unless
      forced. 0 or None saves whenever ``save`` is called.
    keep: how many of the most recent checkpoints to keep (None: all; at
      least 1 otherwise).
    async_save: write in a background thread.
    remove_partial: first delete the folders of writes that never finished
      (``<step>.orbax-checkpoint-tmp*``, left by a killed process; never
      restored), named in ``removed_partial``. Only the one writer of a
      directory may: readers leave a live run's writes alone.
  """

  def __init__(self, directory: str, save_every: Optional[int] = None,
               keep: Optional[int] = 3, async_save: bool = True,
               remove_partial: bool = False):
    if keep is not None and (not isinstance(keep, (int, np.integer)) or
                             isinstance(keep, bool) or keep < 1):
      raise ValueError(f"keep must be None (keep all) or a positive number "
                       f"of checkpoints, got {keep!r}: with 0 every "
                       "checkpoint would be deleted as soon as it is written.")
    self.directory = os.path.abspath(os.fspath(directory))
    self.save_every = int(save_every or 0)
    self.async_save = async_save
    self._writer = None   # the thread of the write in progress
    self._error = None    # the exception of a write that failed
    # Removed here, synchronously: orbax's own clean-up runs in a background
    # thread that races with a reader's and with the first save.
    self.removed_partial = sorted(
        name for name in (os.listdir(self.directory) if remove_partial and
                          os.path.isdir(self.directory) else ())
        if _PARTIAL in name)
    for name in self.removed_partial:
      shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={_STATE: ocp.StandardCheckpointHandler(),
                       _RECORD: ocp.JsonCheckpointHandler()})

  # --------------------------------------------------------------- queries

  def latest_step(self) -> Optional[int]:
    """The step of the newest finished checkpoint, or None."""
    self.wait()
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of the checkpoints on disk, oldest first."""
    self.wait()
    return sorted(self._manager.all_steps())

  def metadata(self, step: int) -> PyTree:
    """The tree metadata (names, shapes, dtypes) of checkpoint ``step``.

    Raises:
      an exception from orbax / tensorstore when it does not read back.
    """
    self.wait()
    try:
      metadata = self._manager.item_metadata(int(step))[_STATE]
    except Exception:
      _quiet_closed_event_loops()
      raise
    if metadata is None:
      raise ValueError(f"checkpoint {step} has no readable metadata")
    return metadata

  def record(self, step: int) -> Optional[dict]:
    """The JSON record saved with checkpoint ``step``, or None (saved
    without one, or unreadable)."""
    self.wait()
    try:
      return self._manager.restore(int(step), args=ocp.args.Composite(
          **{_RECORD: ocp.args.JsonRestore()}))[_RECORD]
    except Exception:  # pylint: disable=broad-except
      return None

  def check_fits(self, template: PyTree, step: int) -> None:
    """Raises ``CheckpointMismatchError`` when checkpoint ``step`` does not
    fit ``template`` (other errors when its metadata do not read back)."""
    found = differences(template, self.metadata(step))
    if found:
      raise CheckpointMismatchError(self.directory, int(step), found)

  # ------------------------------------------------------------ save/load

  def should_save(self, step: int) -> bool:
    return self.save_every <= 0 or step % self.save_every == 0

  def save(self, step: int, state: PyTree, force: bool = False,
           record: Optional[dict] = None) -> bool:
    """Saves ``state`` (and ``record``) as checkpoint ``step`` when due (or ``force``).

    Waits for the previous write first (raising its error). The state is
    copied to host memory before this returns (a device sync), then
    written: in the background with ``async_save`` (``wait`` for it).

    Returns:
      whether a checkpoint was started.
    """
    step = int(step)
    if not (force or self.should_save(step)):
      return False
    if step in self.all_steps():  # waits for the previous write
      return False
    items = {_STATE: ocp.args.StandardSave(jax.device_get(state))}
    if record is not None:
      items[_RECORD] = ocp.args.JsonSave(record)
    if not self.async_save:
      self._write(step, items)
      self.check_for_errors()
      return True
    self._writer = threading.Thread(target=self._write, args=(step, items),
                                    name=f"checkpoint-{step}", daemon=True)
    self._writer.start()
    return True

  def _write(self, step: int, items: dict) -> None:
    try:
      self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    except BaseException as e:  # pylint: disable=broad-except
      self._error = e  # raised in the caller's thread

  def check_for_errors(self) -> None:
    """Raises the error of a write that failed (disk full, no permission...);
    cheap, does not wait for a write in progress."""
    if self._error is not None and (self._writer is None or
                                    not self._writer.is_alive()):
      error, self._error = self._error, None
      raise error

  def writing(self) -> bool:
    """Whether a background write is in progress."""
    return self._writer is not None and self._writer.is_alive()

  def restore(self, template: PyTree, step: Optional[int] = None,
              missing_ok: bool = True) -> PyTree:
    """Restores checkpoint ``step`` (default the latest) shaped like ``template``.

    Every array's name, shape and dtype is checked against ``template``
    first (``check_fits``).

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

    Raises:
      CheckpointMismatchError: the checkpoint does not fit ``template``; the
        message names the first differing leaves and the likely settings.
      FileNotFoundError: no checkpoint, unless ``missing_ok``.
    """
    self.wait()
    if step is None:
      step = self.latest_step()
    if step is None:
      if missing_ok:
        return template
      raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    self.check_fits(template, int(step))
    try:
      return self._restore(template, int(step))
    except Exception:
      _quiet_closed_event_loops()
      raise

  def _restore(self, template: PyTree, step: int) -> PyTree:
    fields = _top_level(template) if hasattr(
        template, "__dataclass_fields__") else None
    if fields is not None and any(v is None for v in fields.values()):
      on_disk = set(self.metadata(step).keys())
      if any(name not in on_disk for name in fields):
        # Fields added to the state since the checkpoint was written, None
        # here: restore the others and keep the template's None.
        restored = self._restore_state(
            step, _abstract({k: v for k, v in fields.items() if k in on_disk}))
        return _to_device(template.replace(**restored))
    return _to_device(self._restore_state(step, _abstract(template)))

  def _restore_state(self, step: int, abstract: PyTree) -> PyTree:
    return self._manager.restore(step, args=ocp.args.Composite(
        **{_STATE: ocp.args.StandardRestore(abstract)}))[_STATE]

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
      on_failure: Optional[Callable[[int, Exception, Optional[str]], None]] = None,
      move_aside: bool = True):
    """Restores the newest checkpoint that reads back, skipping broken ones.

    Use it at start-up (``move_aside=True``, the trainer) and in every reader
    of a run (``move_aside=False``: sampling, evaluation), so that all fall
    back the same way. A checkpoint truncated or corrupted on disk (a file
    missing or cut short, which orbax's atomic commit makes unlikely but a
    failing disk or a hand-edited directory does not), or one ``check``
    rejects, is skipped, and moved aside with ``quarantine`` when
    ``move_aside``; the one before it is tried. A checkpoint that reads but
    does not fit ``template`` is not broken: ``CheckpointMismatchError`` is
    raised and nothing is moved.

    Args:
      template: as for ``restore``.
      check: ``check(step, state)`` raises for a restored state that is not
        usable (e.g. a step counter that does not match).
      on_failure: ``on_failure(step, error, moved_to)`` is called for every
        checkpoint skipped (to say so to the user); ``moved_to`` is None
        when nothing was moved.
      move_aside: move skipped checkpoints to ``<directory>.unreadable/``.

    Returns:
      ``(state, step)``, or ``(template, None)`` when no checkpoint reads.

    Raises:
      CheckpointMismatchError: the newest checkpoint whose metadata read
        back does not fit ``template``.
    """
    for step in sorted(self.all_steps(), reverse=True):
      try:
        state = self.restore(template, step, missing_ok=False)
        if check is not None:
          check(step, state)
        return state, step
      except CheckpointMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        moved_to = self.quarantine(step) if move_aside else None
        if on_failure is not None:
          on_failure(step, e, moved_to)
    return template, None

  def wait(self) -> None:
    """Blocks until the background write has finished; raises its error."""
    if self._writer is not None:
      self._writer.join()
      self._writer = None
    self.check_for_errors()

  def close(self) -> None:
    """Waits for the write in progress (raising its error) and releases the
    manager."""
    try:
      self.wait()
    finally:
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

  Every array's name, shape and dtype is checked against ``template``.

  Raises:
    FileNotFoundError: when the directory holds no checkpoint.
    CheckpointMismatchError: the checkpoint does not fit ``template``; the
      message names the first differing leaves and the likely settings.
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
