"""Resuming a run: its config record, the compatibility check, and its checkpoints.

Every reader of a work directory (training, ``experiments.sample``,
``experiments.evaluate``) restores through ``restore`` (``load`` for the
readers), so they all build the same state template and fall back from a
broken checkpoint the same way.

The run record (``run_record``): the config plus what was resolved from it
(data shape, pixel range, classes, device count). It is written to
``config.json`` once training starts, and saved with every checkpoint, so
that a lost or corrupt ``config.json`` is rebuilt from the newest
checkpoint (``recorded_config``). A workdir whose record differs from a new
config in a field that changes what a checkpoint means
(``STRUCTURAL_FIELDS``) is refused unless ``config.override_config``.

``CheckpointSaver`` writes the checkpoints of a run: a finite state only,
in the background while training goes on, and a write that failed stops
the run with ``CheckpointWriteError`` at the next check.
"""

import dataclasses
import json
import os
import sys
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections

import ganjax as gj
from ganjax import checkpoint as checkpoint_lib
from experiments import builders
from experiments import guards
from experiments import members
from experiments import workdir as workdir_lib

# Fields whose change makes a checkpoint mean something else (or not load):
# the data, the models, the latent space, the game and the optimizers' kinds.
STRUCTURAL_FIELDS = ("dataset", "image_size", "model", "latent_dim",
                     "latent_distribution", "loss", "k", "g_optimizer.name",
                     "d_optimizer.name", "ema_decay", "weight_clip",
                     "penalty.name", "resolved.data_shape",
                     "resolved.value_range", "resolved.num_classes",
                     "resolved.ada")


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written (disk full, permissions); exit code 2."""


# ------------------------------------------------------------ the record


def run_record(config: ml_collections.ConfigDict,
               experiment: builders.Experiment) -> dict:
  """``config.json``'s record: the config and ``"resolved"`` (data shape,
  pixel range, classes, devices and processes)."""
  record = json.loads(config.to_json_best_effort())
  record["resolved"] = experiment.resolved()
  if jax.process_count() > 1:
    record["resolved"]["num_devices"] = jax.device_count()
    record["resolved"]["num_processes"] = jax.process_count()
  return record


def config_of(record: dict):
  """``(config, resolved)`` of a run record."""
  record = dict(record)
  resolved = record.pop("resolved", {})
  return builders.config_from_dict(record), resolved


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)


def _checkpointer(workdir: str, **kwargs) -> Optional[checkpoint_lib.Checkpointer]:
  """The workdir's checkpoints, or None when it has none (nothing created)."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return None
  return checkpoint_lib.Checkpointer(directory, **kwargs)


def recorded_config(workdir: str, ckpt=None, quiet: bool = False):
  """``(record, source)``: the record of ``config.json``, or, when that is
  missing or corrupt, the one saved with the newest checkpoint (``source``
  says which); ``(None, None)`` when there is neither.

  Raises:
    workdir_lib.WorkdirError: ``config.json`` is unreadable and no
      checkpoint holds a record.
  """
  try:
    record = workdir_lib.read_config_record(workdir)
    error = None
  except workdir_lib.WorkdirError as e:
    record, error = None, e
  if record is not None:
    return record, workdir_lib.CONFIG_JSON
  own = ckpt is None
  ckpt = ckpt or _checkpointer(workdir, keep=None, async_save=False)
  try:
    for step in reversed(ckpt.all_steps() if ckpt else []):
      saved = (ckpt.record(step) or {}).get("config")
      if saved is not None:
        if not quiet:
          print(f"warning: {os.path.join(workdir, workdir_lib.CONFIG_JSON)} "
                f"is {'unreadable' if error else 'missing'}; using the config "
                f"saved with the checkpoint of step {step}.", file=sys.stderr)
        return saved, f"the checkpoint of step {step}"
  finally:
    if own and ckpt is not None:
      ckpt.close()
  if error is not None:
    raise error
  return None, None


def write_config(workdir: str, record: dict) -> None:
  """Writes ``config.json``; warns when it differs from an earlier run's.

  Called only once training starts (not by a run that is refused, fails
  before its first step or has nothing to do).

  Raises:
    OSError: the write failed (named in ``filename``); nothing is left.
  """
  try:
    old = workdir_lib.read_config_record(workdir) or {}
  except workdir_lib.WorkdirError:
    old = {}
  changed = sorted(k for k in set(old) | set(record)
                   if old and old.get(k) != record.get(k))
  if changed:
    print("warning: the config differs from the previous run in this "
          f"workdir in: {', '.join(changed)}", file=sys.stderr)
  workdir_lib.write_json(os.path.join(workdir, workdir_lib.CONFIG_JSON),
                         record)


def _get(record: dict, path: str):
  node = record
  for part in path.split("."):
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return node


def config_changes(old: Optional[dict], new: dict) -> list[str]:
  """``"field: old -> new"`` for the ``STRUCTURAL_FIELDS`` where run record
  ``new`` differs from ``old`` (none when there is no ``old``)."""
  if old is None:
    return []
  return [f"{f}: {_get(old, f)!r} -> {_get(new, f)!r}"
          for f in STRUCTURAL_FIELDS if _get(old, f) != _get(new, f)]


def check_config_matches(workdir: str, record: dict, override: bool) -> None:
  """Refuses a workdir whose checkpoints come from another config.

  Reads only (a refused run changes nothing). Compares the
  ``STRUCTURAL_FIELDS`` of ``record`` with the workdir's recorded config
  (``recorded_config``), unless ``override`` (the checkpoint must still fit
  the new config's state; see ``restore``).

  Raises:
    builders.ConfigError: the configs differ.
  """
  if override or not os.path.isdir(checkpoint_dir(workdir)):
    return
  ckpt = _checkpointer(workdir, keep=None, async_save=False)
  try:
    if not ckpt.all_steps():
      return
    old, source = recorded_config(workdir, ckpt, quiet=True)
  except workdir_lib.WorkdirError:
    return  # restored with a message by the run (recorded_config again)
  finally:
    ckpt.close()
  changed = config_changes(old, record)
  if changed:
    raise builders.ConfigError(
        f"{workdir} holds checkpoints of a run with a different config "
        f"({'; '.join(changed)}; recorded in {source}). Use a new --workdir "
        "for this config, or pass --config.override_config=True to resume "
        "these checkpoints anyway.")


# ------------------------------------------------------------- the state


def init_key(config) -> jax.Array:
  """The key ``GAN.init`` draws a run's initial state from."""
  return gj.streams.run_key(config.seed, gj.streams.INIT)


def example_batch(config, experiment: builders.Experiment):
  """A zero batch ``[k, 1, ...]`` of the data's shape, for ``GAN.init``."""
  return jnp.zeros((config.k, 1) + experiment.data_shape, jnp.float32)


def init_state(config, experiment: builders.Experiment):
  """The run's initial state: ``GAN.init`` of ``init_key``, or for a
  population every member's (member i from the key of seed + i)."""
  if experiment.population is not None:
    population = experiment.population
    return jax.jit(population.init)(
        members.init_keys(config, population.size),
        example_batch(config, experiment))
  return jax.jit(experiment.gan.init)(init_key(config),
                                      example_batch(config, experiment))


def template(config, experiment: builders.Experiment):
  """The shapes and dtypes of the run's state, to restore a checkpoint into."""
  return jax.eval_shape(lambda: init_state(config, experiment))


def restore(ckpt: checkpoint_lib.Checkpointer, config,
            experiment: builders.Experiment, old_record: Optional[dict],
            move_aside: bool = True):
  """``(state, step)`` of the newest usable checkpoint, or ``(None, None)``.

  Every reader of a workdir (training, sampling, evaluation) falls back the
  same way: a checkpoint that does not read back, or holds another step or a
  NaN/Inf, is skipped with one line on stderr (and, when training, moved to
  ``checkpoints.unreadable/``). A checkpoint that reads but does not fit the
  config's state (another model, latent size, EMA...) is never set aside:
  ``builders.ConfigError`` says what differs from ``old_record`` (the
  recorded config).
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
    state, step = ckpt.restore_newest_readable(
        template(config, experiment), check, on_failure,
        move_aside=move_aside)
  except checkpoint_lib.CheckpointMismatchError as e:
    changes = config_changes(old_record, run_record(config, experiment))
    raise builders.ConfigError(
        f"{os.path.dirname(ckpt.directory)} holds checkpoints that do not "
        f"fit this config: {e} "
        + (f"The config differs from the run's recorded config in: "
           f"{'; '.join(changes)}. " if changes else "")
        + "Nothing was moved or overwritten. Use a new --workdir for this "
        "config, or the config the checkpoints were written with "
        "(--config.override_config=True resumes them only where the state "
        "keeps its shapes, e.g. another loss or learning rate).") from None
  if step is None:
    return None, None
  return state, step


@dataclasses.dataclass
class Run:
  """A run's generator as the readers use it: ``load``'s result.

  For a population, ``state`` is member ``member``'s and ``population_state``
  holds every member's (``experiments.members.member_state``).
  """
  experiment: builders.Experiment
  state: gj.GANState
  config: ml_collections.ConfigDict
  step: int
  member: Optional[int] = None
  population_state: Optional[gj.PopulationState] = None


def best_member(workdir: str) -> Optional[int]:
  """The member ``best.json`` names (a population's periodic evaluation), or
  None."""
  path = os.path.join(workdir, workdir_lib.BEST_JSON)
  try:
    with open(path) as f:
      member = json.load(f).get("member")
  except (OSError, ValueError, AttributeError):
    return None
  return member if isinstance(member, int) else None


def _member_run(workdir, experiment, state, config, step, member) -> Run:
  """The ``Run`` of ``state``: of member ``member`` (None: the best member,
  else member 0, said on stderr) for a population."""
  population = experiment.population
  if population is None:
    if member is not None:
      raise builders.ConfigError(
          f"--member={member}: {workdir} holds a single run, not a "
          "population; leave --member out.")
    return Run(experiment, state, config, step)
  if member is None:
    member = best_member(workdir)
    if member is None:
      member = 0
      print(f"note: {workdir} holds a population of {population.size} "
            "members and no best.json (no evaluation during training): using "
            "member 0; pass --member=i for another.", file=sys.stderr)
  try:
    one = members.member_state(population, state, member)
  except ValueError as e:
    raise builders.ConfigError(f"--member={member}: {e}") from None
  return Run(experiment, one, config, step, member, state)


def load(workdir: str, step: Optional[int] = None,
         member: Optional[int] = None) -> Run:
  """The checkpoint ``step`` of a run (None or negative, the default: its
  newest usable one).

  Without ``step``, falls back from checkpoints that cannot be used (broken,
  NaN) to the previous one like training does, with one warning line each,
  but moves nothing. A lost or corrupt ``config.json`` is replaced by the
  config saved with the checkpoints (with a warning). A population's
  ``Run`` is of member ``member`` (default: the best, ``best_member``).

  Raises:
    builders.ConfigError: when the workdir has no run, no usable checkpoint
      or no checkpoint ``step``; workdir_lib.WorkdirError: an unreadable
      ``config.json`` and no checkpoint holding the config.
  """
  ckpt = _checkpointer(workdir, keep=None, async_save=False)
  try:
    record, _ = recorded_config(workdir, ckpt)
    if record is None:
      raise builders.ConfigError(
          f"{workdir} has no {workdir_lib.CONFIG_JSON}: it is not the workdir "
          "of a training run (python -m experiments.train --workdir=...).")
    config, resolved = config_of(record)
    experiment = builders.build(
        config, data_shape=resolved.get("data_shape"), num_devices=1,
        dataset_classes=resolved.get("num_classes", -1))
    steps = ckpt.all_steps() if ckpt is not None else []
    if not steps:
      raise builders.ConfigError(
          f"{workdir} has no checkpoint yet; train first (python -m "
          f"experiments.train --workdir={workdir} --config=...).")
    if step is None or step < 0:
      state, step = restore(ckpt, config, experiment, record,
                            move_aside=False)
      if step is None:
        raise builders.ConfigError(
            f"none of the checkpoints of {ckpt.directory} (steps "
            f"{', '.join(map(str, steps))}) can be used; see the warnings "
            "above.")
      return _member_run(workdir, experiment, state, config, step, member)
    if step not in steps:
      raise builders.ConfigError(
          f"--step={step}: {ckpt.directory} has no checkpoint of that step; "
          f"it has steps {', '.join(map(str, steps))} (or --step=-1 for the "
          "newest usable one).")
    try:
      ckpt.check_fits(template(config, experiment), step)
      state = ckpt.restore(template(config, experiment), step,
                           missing_ok=False)
    except checkpoint_lib.CheckpointMismatchError as e:
      raise builders.ConfigError(f"{e} Its recorded config does not describe "
                                 "it.") from None
    except Exception as e:  # pylint: disable=broad-except
      raise builders.ConfigError(
          f"the checkpoint of step {step} in {ckpt.directory} cannot be read "
          f"({type(e).__name__}: {str(e).splitlines()[0][:300]}); the other "
          f"steps: {', '.join(str(s) for s in steps if s != step) or 'none'}."
      ) from None
    bad = guards.nonfinite_players(state)
    if bad:
      raise builders.ConfigError(
          f"the checkpoint of step {step} in {ckpt.directory} holds NaN or Inf "
          f"values (the {' and '.join(bad)}); its samples would be NaN.")
    return _member_run(workdir, experiment, state, config, step, member)
  finally:
    if ckpt is not None:
      ckpt.close()


# -------------------------------------------------------------- the saver


class CheckpointSaver:
  """Saves checked states in the background; a failed write stops the run.

  ``save`` starts a write and returns while it goes on (the state is on the
  host by then); the next ``save``, ``check`` and ``finish`` raise
  ``CheckpointWriteError`` for a write that failed.

  Attributes:
    saved_step: the step of the newest checkpoint started (None before any).
  """

  def __init__(self, ckpt: checkpoint_lib.Checkpointer, saved_step,
               record: dict):
    self.ckpt = ckpt
    self.saved_step = saved_step
    self.record = record

  def save(self, step: int, state, pending=()) -> None:
    """Starts writing ``state`` (one copy, on device or host) as step
    ``step``, with the run record and the log records ``pending`` since the
    last log step."""
    bad = guards.nonfinite_players(state)
    if bad:  # the guard's flags make this unreachable; never save it anyway
      raise guards.DivergenceError(
          f"the state of step {step} holds NaN or Inf values in the "
          f"{' and '.join(bad)}'s parameters or optimizer state; it was not "
          f"saved. The checkpoint of step {self.saved_step} in "
          f"{self.ckpt.directory} is the newest.")
    self.finish()  # the previous write; its error names its own step
    try:
      if self.ckpt.save(step, state, force=True,
                        record={"config": self.record, "step": int(step),
                                "pending": list(pending)}):
        self.saved_step = step
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_error(step, e) from None

  def check(self) -> None:
    """Raises ``CheckpointWriteError`` for a finished write that failed."""
    try:
      self.ckpt.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_error(self.saved_step, e) from None

  def finish(self) -> None:
    """Waits for the write in progress; raises ``CheckpointWriteError`` when
    it failed."""
    try:
      self.ckpt.wait()
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_error(self.saved_step, e) from None

  def _write_error(self, step, e) -> CheckpointWriteError:
    directory = self.ckpt.directory
    try:  # an earlier write still in progress decides what is the newest
      self.ckpt.wait()
    except Exception:  # pylint: disable=broad-except
      pass
    try:  # the committed checkpoints (orbax renames a step's folder last)
      good = max((int(d) for d in os.listdir(directory) if d.isdigit()),
                 default=None)
    except OSError:
      good = None
    reason = str(e).splitlines()[0][:300] if str(e) else ""
    return CheckpointWriteError(
        f"cannot write the checkpoint of step {step} to {directory} "
        f"({type(e).__name__}: {reason}). The run stopped; "
        + (f"the checkpoint of step {good} is the newest one. "
           if good is not None else "no checkpoint was saved. ")
        + "Free disk space or fix the directory's permissions, then run the "
        "same command again to resume.")
