"""Resuming a work directory: its config record, the config check, the newest usable state, the lock.

Every reader of a work directory (training, ``experiments.sample``,
``experiments.evaluate``) goes through here, so they all fall back from a
broken checkpoint the same way.
"""

import contextlib
import json
import os
import sys

import jax
import ml_collections
import numpy as np
from absl import logging

from ganjax import checkpoint as checkpoint_lib
from experiments import builders
from experiments import guards
from experiments import workdir as workdir_lib

CONFIG_JSON = workdir_lib.CONFIG_JSON


def resolved(experiment: builders.Experiment) -> dict:
  """What ``config.json`` records beside the config (devices, processes)."""
  record = experiment.resolved()
  if jax.process_count() > 1:
    record["num_devices"] = jax.device_count()
    record["num_processes"] = jax.process_count()
  return record


def write_config(workdir: str, config: ml_collections.ConfigDict,
                 experiment: builders.Experiment) -> None:
  """Writes ``config.json`` atomically; warns when it differs from an earlier run's.

  Called only once training starts with ``config`` (not by a run that is
  refused, fails before its first step or has nothing to do).
  """
  path = os.path.join(workdir, CONFIG_JSON)
  record = json.loads(config.to_json_best_effort())
  record["resolved"] = resolved(experiment)
  try:
    old = workdir_lib.read_config_record(workdir) or {}
  except workdir_lib.WorkdirError:
    old = {}
  changed = sorted(k for k in set(old) | set(record)
                   if old and old.get(k) != record.get(k))
  if changed:
    logging.warning("The config differs from the previous run in this "
                    "workdir in: %s", ", ".join(changed))
  workdir_lib.write_json(path, record)


def read_config(workdir: str):
  """``(config, resolved)`` from a workdir's ``config.json``.

  Raises:
    builders.ConfigError: no ``config.json`` (not a run's workdir).
    workdir_lib.WorkdirError: a ``config.json`` that does not read.
  """
  record = workdir_lib.read_config_record(workdir)
  if record is None:
    raise builders.ConfigError(
        f"{workdir} has no {CONFIG_JSON}: it is not the workdir of a "
        "training run (python -m experiments.train --workdir=...).")
  resolved = record.pop("resolved", {})
  return builders.config_from_dict(record), resolved


# Fields whose change makes a checkpoint mean something else (or not load):
# the data, the models, the latent space, the game and the optimizers' kinds.
STRUCTURAL_FIELDS = ("dataset", "image_size", "model", "latent_dim",
                     "latent_distribution", "loss", "k", "g_optimizer.name",
                     "d_optimizer.name", "ema_decay", "weight_clip",
                     "penalty.name")


def _get(record: dict, path: str):
  node = record
  for part in path.split("."):
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return node


def config_changes(workdir: str, config, experiment) -> list[str]:
  """``"field: old -> new"`` for the ``STRUCTURAL_FIELDS`` (and the resolved
  data shape, pixel range...) where ``config`` differs from the workdir's
  ``config.json`` (none when it has no readable one)."""
  try:
    old = workdir_lib.read_config_record(workdir)
  except workdir_lib.WorkdirError:
    old = None
  if old is None:
    return []
  new = json.loads(config.to_json_best_effort())
  new["resolved"] = resolved(experiment)
  fields = STRUCTURAL_FIELDS + ("resolved.data_shape", "resolved.value_range",
                                 "resolved.num_classes", "resolved.ada")
  return [f"{f}: {_get(old, f)!r} -> {_get(new, f)!r}" for f in fields
          if _get(old, f) != _get(new, f)]


def check_config_matches(workdir: str, config, experiment) -> None:
  """Refuses to resume a checkpoint written under a different config.

  Compares ``STRUCTURAL_FIELDS`` (and the resolved data shape / pixel range)
  of ``config`` with the workdir's ``config.json``, unless
  ``config.override_config`` (the checkpoint must still fit the new
  config's state; see ``restore_state``).
  """
  if config.override_config:
    return
  changed = config_changes(workdir, config, experiment)
  if changed:
    raise builders.ConfigError(
        f"{workdir} holds checkpoints of a run with a different config "
        f"({'; '.join(changed)}). Use a new --workdir for this config, or "
        "pass --config.override_config=True to resume these checkpoints "
        "anyway.")


@contextlib.contextmanager
def exclusive(workdir: str):
  """Holds the workdir's lock (process 0 takes it; every process stops when
  it cannot)."""
  lock = workdir_lib.Lock(workdir, enabled=jax.process_index() == 0)
  error = None
  try:
    lock.acquire()
  except workdir_lib.WorkdirError as e:
    error = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    if multihost_utils.broadcast_one_to_all(np.int32(error is not None)):
      error = error or workdir_lib.WorkdirError(
          f"process 0 cannot lock the workdir {workdir}; see its message.")
  if error is not None:
    raise error
  try:
    yield
  finally:
    lock.release()


def restore_state(ckpt: checkpoint_lib.Checkpointer, template, workdir: str,
                  config, experiment, move_aside: bool = True):
  """``(state, step)`` of the newest usable checkpoint, or ``(None, None)``.

  Every reader of a workdir (training, sampling, evaluation) falls back the
  same way: a checkpoint that does not read back, or holds another step or a
  NaN/Inf, is skipped with one line on stderr (and, when training, moved to
  ``checkpoints.unreadable/``). A checkpoint that reads but does not fit the
  config's state (another model, latent size, EMA...) is never set aside:
  ``builders.ConfigError`` says what differs.
  """

  def check(step, state):
    if int(state.step) != step:
      raise ValueError(f"it holds a state at step {int(state.step)}")
    bad = guards.nonfinite_players(state)
    if bad:
      raise ValueError(f"the {' and '.join(bad)}'s part of it holds NaN or "
                       "Inf values")

  def on_failure(step, error, moved_to):
    message = str(error).splitlines()[0][:300] if str(error) else ""
    print(f"warning: the checkpoint of step {step} cannot be used "
          f"({type(error).__name__}: {message}); "
          + (f"moved it to {moved_to}; " if moved_to else "")
          + "falling back to the previous checkpoint.", file=sys.stderr)

  try:
    state, step = ckpt.restore_newest_readable(template, check, on_failure,
                                               move_aside=move_aside)
  except checkpoint_lib.CheckpointMismatchError as e:
    changes = config_changes(workdir, config, experiment)
    raise builders.ConfigError(
        f"{workdir} holds checkpoints that do not fit this config: {e} "
        + (f"The config differs from the run's config.json in: "
           f"{'; '.join(changes)}. " if changes else "")
        + "Nothing was moved or overwritten. Use a new --workdir for this "
        "config, or the config the checkpoints were written with "
        "(--config.override_config=True resumes them only where the state "
        "keeps its shapes, e.g. another loss or learning rate).") from None
  if step is None:
    return None, None
  return state, step


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written (disk full, permissions); exit code 2."""


class CheckpointSaver:
  """Saves checked states and stops at the first write that fails.

  Attributes:
    saved_step: the step of the newest checkpoint (None before any).
  """

  def __init__(self, ckpt: checkpoint_lib.Checkpointer, saved_step):
    self.ckpt = ckpt
    self.saved_step = saved_step

  def save(self, step: int, state) -> None:
    """Saves ``state`` (one copy, on device or host) as step ``step``."""
    bad = guards.nonfinite_players(state)
    if bad:  # the guard's flags make this unreachable; never save it anyway
      raise guards.DivergenceError(
          f"the state of step {step} holds NaN or Inf values in the "
          f"{' and '.join(bad)}'s parameters or optimizer state; it was not "
          f"saved. The checkpoint of step {self.saved_step} in "
          f"{self.ckpt.directory} is the newest.")
    try:
      started = self.ckpt.save(step, state, force=True)
      self.ckpt.wait()  # a failed write stops the run at its step
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_error(step, e) from None
    self.check_writes(step)
    if started:
      self.saved_step = step

  def check_writes(self, step=None) -> None:
    """Raises ``CheckpointWriteError`` for a checkpoint write that failed."""
    try:
      self.ckpt.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_error(step if step is not None else self.saved_step,
                              e) from None

  def _write_error(self, step, e) -> CheckpointWriteError:
    directory = self.ckpt.directory
    try:  # the committed checkpoints (orbax renames a step's folder last)
      good = max((int(d) for d in os.listdir(directory) if d.isdigit()),
                 default=None)
    except OSError:
      good = None
    return CheckpointWriteError(
        f"cannot write the checkpoint of step {step} to {directory} "
        f"({type(e).__name__}: "
        f"{str(e).splitlines()[0][:300] if str(e) else ''}). The run stopped; "
        + (f"the checkpoint of step {good} is the newest one. "
           if good is not None else "no checkpoint was saved. ")
        + "Free disk space or fix the directory's permissions, then run the "
        "same command again to resume.")
