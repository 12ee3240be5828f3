r"""Trains a GAN from a config file; resumes from the workdir's latest checkpoint.

    python -m experiments.train --config=experiments/configs/dcgan_digits.py \
        --workdir=/tmp/digits [--config.k=5 --config.num_steps=2000 ...]

The workdir (experiments/workdir.py) receives:
  config.json            the config, plus what was resolved from it ("resolved":
                         data shape, pixel range, device count)
  classes.json           conditional runs: {"classes": [name of class 0, ...]}
                         (an image folder's label sub-folders, sorted)
  checkpoints/<step>/    orbax checkpoints of the whole GANState, each with
                         the config record
  events.out.tfevents.*  TensorBoard: losses, D(x), D(G(z)), gradient norms,
                         steps/s, sample grids
  metrics.jsonl          the same scalars, one JSON object per logged step
                         (means over the ``log_every`` steps before it)
  samples/step_XXXXXX.png  samples from FIXED noise every ``eval_every`` steps
                         (scatter plots over the real data for toy data)
  checkpoints_best/<step>/, best.json
                         with ``--config.evaluation.every=N``: the state
                         with the best sample-quality metric so far
                         (experiments/periodic_eval.py)

Running the same command again continues from the latest checkpoint exactly as
an uninterrupted run would: the state is restored (experiments/resume.py),
the batch of step s is a pure function of (seed, s) (experiments/feeds.py),
and a checkpoint off a log step holds the records of its unfinished log
window.

The loop. One compiled call runs up to ``config.steps_per_call`` steps, cut
at every step that logs, samples, scores or saves, and shortened so that a
call takes at most half of ``config.preempt_grace_s`` (``CallLengths``).
One call is in flight at a time: the loop waits for it, checks its metrics
(experiments/guards.py), counts its steps in the progress bar, then looks
at the stop flag, the logs and the checkpoint; meanwhile the next call's
data go to the device (host path) and the last checkpoint is written in the
background.

Failures (the README's Reliability table lists every case and its exit
code). A NaN/Inf or a label out of range stops the run with exit code 3,
naming the step; the last checkpoint stays the newest. SIGTERM / SIGINT:
the call in flight finishes, its state is saved, and the run exits with 128
+ the signal's number (143, 130) (0 when that was the last step); a second
signal still lets that save finish, a third ends it (a save that hangs). A file of the run that cannot be written
(checkpoint, metrics, events, grid, config.json, best.json, lock) stops the
run with one message naming it and the fix (exit code 2), after a
checkpoint of the current step when one can still be written. Everything a
run checks (config fields, data, weights files, the workdir's config) is
checked before the workdir is touched: a refused run changes nothing.

Several processes (TPU pod slices, multi-node GPU): the same command on every
host with ``--distributed`` (Cloud TPU, SLURM: detected), or
``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``. Every
process draws the same global batch of each step and its devices compute on
their slices, under ``jax.shard_map`` on the mesh of all devices; process 0
writes the logs, samples and config, orbax writes the checkpoints. The
processes agree after every call on whether a signal arrived.
"""

import dataclasses
import math
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import numpy as np  # noqa: E402
import tqdm  # noqa: E402

import ganjax as gj  # noqa: E402
from ganjax import checkpoint as checkpoint_lib  # noqa: E402
from ganjax import summary as summary_lib  # noqa: E402
from experiments import builders  # noqa: E402
from experiments import cli  # noqa: E402
from experiments import guards  # noqa: E402
from experiments import members  # noqa: E402
from experiments import periodic_eval  # noqa: E402
from experiments import feeds  # noqa: E402
from experiments import resume  # noqa: E402
from experiments import grids  # noqa: E402
from experiments import workdir as workdir_lib  # noqa: E402

# A steps/s figure needs at least this many steps and seconds after the first
# (compiling) call; a shorter run says it is too short to measure.
MIN_TIMED_STEPS, MIN_TIMED_SECONDS = 20, 2.0


# ------------------------------------------------------------ call lengths


def _is_due(step: int, every: int, last: int) -> bool:
  return step % every == 0 or step == last


def call_length(config, step: int, num_steps: int) -> int:
  """Steps in the call from ``step``: ``config.steps_per_call``, cut at the
  next step that logs, samples, scores or saves (and at the end)."""
  cadences = [c for c in (config.log_every, config.eval_every,
                          config.checkpoint_every, config.evaluation.every)
              if c > 0]
  boundary = min([(step // c + 1) * c for c in cadences] + [num_steps])
  return max(0, min(int(config.steps_per_call), boundary - step))


class CallLengths:
  """How many steps each call runs: ``call_length``, at most ``max_steps``,
  and at most half of ``preempt_grace_s`` of training at the measured speed.

  The first calls run one step (the first compiles); then each call may run
  four times the steps of the last, up to the time bound, so that a call's
  length follows the measured seconds per step.
  """

  def __init__(self, config, num_steps: int, max_steps: int):
    self.config, self.num_steps, self.max_steps = config, num_steps, max_steps
    self.seconds = float(config.preempt_grace_s) / 2
    self.per_step = None  # seconds per step of the last timed call
    self.last = 0

  def next(self, step: int) -> int:
    n = min(call_length(self.config, step, self.num_steps), self.max_steps)
    if self.per_step is None:
      limit = 1
    else:
      limit = min(max(1, int(self.seconds / self.per_step)), 4 * self.last)
    self.last = min(n, limit)
    return self.last

  def observe(self, num_steps: int, seconds: float, compiled: bool) -> None:
    """Records a finished call (``compiled``: it included compilation)."""
    if not compiled:
      self.per_step = seconds / num_steps


# ------------------------------------------------------------------ the run


def check(config, experiment: builders.Experiment):
  """Everything a run checks before it touches its workdir: the feed's
  fields, the device layout, the evaluation's fields and weights files.

  Returns:
    the run's ``ganjax.parallel`` placement.

  Raises:
    builders.ConfigError: with the fix.
  """
  feeds.check_config(config)
  value = config.preempt_grace_s
  if (not isinstance(value, (int, float)) or isinstance(value, bool)
      or not math.isfinite(value) or value <= 0):
    raise builders.ConfigError(
        f"config.preempt_grace_s must be a number of seconds > 0, got "
        f"{value!r} (a signal is answered with a checkpoint within about "
        "that time).")
  placement = gj.parallel.make(experiment.num_devices)
  try:
    gj.parallel.check_divisible(config.batch_size, placement.num_devices,
                                "config.batch_size")
  except ValueError as e:
    raise builders.ConfigError(str(e)) from None
  if config.evaluation.every > 0:
    periodic_eval.check_config(config, experiment)
  return placement


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       progress: bool = True) -> dict:
  """Trains (or resumes) the run of ``config`` in ``workdir``.

  Args:
    config: an experiment config (``experiments/configs/base.py`` lists the
      fields).
    workdir: where config, checkpoints, summaries and samples go.
    progress: show a tqdm progress bar.

  Returns:
    a summary dict: ``steps`` (the final step), ``steps_run`` (in this call),
    ``wall_s`` (everything, compilation included), ``steps_per_s`` (after
    the first, compiling, call; None when too short to measure),
    ``metrics`` (the last logged scalars), ``workdir``, ``evaluation`` (the
    last scores, with ``config.evaluation.every``), ``best``
    (``best.json``'s record), ``signal`` (the name of a signal that came
    as the run finished, else None).

  Raises:
    builders.ConfigError (and the pipeline's UnknownDatasetError,
    DatasetNotFoundError), workdir_lib.WorkdirError (the workdir is not
    usable, or another run holds it): user errors, with a message saying
    what to fix, raised before the workdir is touched.
    resume.CheckpointWriteError, workdir_lib.RunWriteError: a file could
    not be written (exit code 2). guards.DivergenceError: a non-finite step
    or labels out of range (exit code 3). guards.Preempted: a signal
    (128 + its number).
  """
  t_start = time.time()
  experiment = builders.build(config)
  placement = check(config, experiment)
  workdir = workdir_lib.check_path(workdir)
  record = resume.run_record(config, experiment)
  resume.check_config_matches(workdir, record, config.override_config)
  workdir = workdir_lib.prepare(workdir)
  with workdir_lib.locked(workdir) as lock:
    return _Run(config, experiment, placement, workdir, record, lock,
                progress, t_start).train()


class _Run:
  """``train_and_evaluate`` in its locked workdir."""

  def __init__(self, config, experiment, placement, workdir, record, lock,
               progress, t_start):
    self.config, self.experiment, self.placement = config, experiment, placement
    self.workdir, self.record, self.lock = workdir, record, lock
    self.progress, self.t_start = progress, t_start
    self.is_main = jax.process_index() == 0
    self.num_steps = int(config.num_steps)
    self.stop = guards.Signals()
    self.saver = None

  def restore(self):
    """``(state, step, pending)`` of the newest usable checkpoint, or
    ``(None, None, ())``; rebuilds a lost or corrupt ``config.json``."""
    if not os.path.isdir(resume.checkpoint_dir(self.workdir)):
      return None, None, ()
    with checkpoint_lib.Checkpointer(resume.checkpoint_dir(self.workdir),
                                     keep=None, async_save=False) as ckpt:
      if not ckpt.all_steps():
        return None, None, ()
      old, source = resume.recorded_config(self.workdir, ckpt)
      if source not in (None, workdir_lib.CONFIG_JSON) and self.is_main:
        self.write(resume.write_config, self.workdir, old)
        print(f"Rebuilt {workdir_lib.CONFIG_JSON} from {source}.",
              file=sys.stderr)
      state, step = resume.restore(ckpt, self.config, self.experiment, old)
      saved = ckpt.record(step) if step is not None else None
    if step is None:
      print("warning: no checkpoint could be read; starting from step 0.",
            file=sys.stderr)
      return None, None, ()
    return state, step, (saved or {}).get("pending", ())

  def write(self, fn, *args):
    """``fn(*args)``, a write of the run; a failure stops the run (exit
    code 2) with one message naming the file."""
    try:
      return fn(*args)
    except OSError as e:
      raise workdir_lib.RunWriteError(workdir_lib.write_error(e)) from None

  def train(self) -> dict:
    with self.stop:
      return self._train()

  def _train(self) -> dict:
    config, experiment, placement = self.config, self.experiment, self.placement
    gan = experiment.gan
    state, latest, pending = self.restore()
    if self.lock is not None:  # the run goes ahead: say who holds the lock
      self.write(self.lock.announce)
    if latest is None and self.is_main and workdir_lib.has_logs(self.workdir):
      moved = workdir_lib.set_aside_logs(self.workdir)
      print(f"warning: {self.workdir} holds the logs of an earlier run but no "
            "usable checkpoint: starting from step 0 with fresh logs; the "
            f"earlier logs and config.json are in {moved}.", file=sys.stderr)
    start_step = latest or 0
    if start_step >= self.num_steps:
      return self.nothing_to_do(start_step)
    if self.progress and latest is not None:
      print(f"Resuming from the checkpoint of step {start_step} in "
            f"{resume.checkpoint_dir(self.workdir)}.", file=sys.stderr)

    # --- the data, the state, the writers
    if self.is_main:
      feeds.warn_if_batch_exceeds_split(config)
    feed = feeds.feed(config, experiment, placement)
    if state is None:
      state = resume.init_state(config, experiment)
    if self.is_main:  # training starts with this config: record it
      self.write(resume.write_config, self.workdir, self.record)
      names = builders.class_names(config) if experiment.num_classes else None
      if names:  # class c of the labels, samples and metrics is names[c]
        self.write(workdir_lib.write_json, os.path.join(
            self.workdir, workdir_lib.CLASSES_JSON), {"classes": names})
    writer = self.write(summary_lib.SummaryWriter, self.workdir,
                        start_step if latest is not None else None, True,
                        self.is_main)
    ckpt = checkpoint_lib.Checkpointer(
        resume.checkpoint_dir(self.workdir),
        save_every=config.checkpoint_every, keep=config.keep_checkpoints,
        remove_partial=self.is_main)
    if ckpt.removed_partial:
      print(f"Removed the unfinished checkpoint write(s) "
            f"{', '.join(ckpt.removed_partial)} of an interrupted run from "
            f"{ckpt.directory}.", file=sys.stderr)
    self.saver = resume.CheckpointSaver(ckpt, latest, self.record)
    sampler = grids.GridWriter(config, experiment, self.workdir, writer,
                                   enabled=self.is_main)
    scorer = (periodic_eval.PeriodicEvaluator(config, experiment, self.workdir,
                                           writer, enabled=self.is_main)
              if config.evaluation.every > 0 else None)
    exploiter = None
    if experiment.population is not None and config.population.pbt.every:
      metric = config.population.pbt.metric or scorer.best_short  # checked
      exploiter = members.Exploiter(
          config, self.workdir, latest, metric,
          not periodic_eval.LOWER_IS_BETTER[metric], self.is_main)
    try:
      return self.loop(state, start_step, latest, pending, feed, writer,
                       sampler, scorer, exploiter)
    finally:
      self.close(ckpt, scorer, writer)

  def loop(self, state, start_step, latest, pending, feed, writer, sampler,
           scorer, exploiter) -> dict:
    config, placement = self.config, self.placement
    num_steps, stop, saver = self.num_steps, self.stop, self.saver
    skip = bool(config.skip_nonfinite_updates)
    population = self.experiment.population
    pgan = (self.experiment.gan.parallel(placement.axis_name,
                                         config.sync_batch_norm)
            if placement.axis_name else self.experiment.gan)
    if population is not None:  # it freezes a member that diverges
      steps = dataclasses.replace(population, gan=pgan)
      monitor = members.PopulationMonitor(
          placement.to_host, population.size, np.asarray(state.alive),
          self.experiment.num_classes, start_step, pending)
    else:
      steps = guards.guard_step(pgan.step, skip)
      monitor = guards.MetricsMonitor(
          placement.to_host, skip, int(config.max_consecutive_skipped),
          self.experiment.num_classes,
          last_finite_record(self.workdir, latest), start_step, pending)
    call = feeds.train_call(steps, feed, placement)
    lengths = CallLengths(config, num_steps, feed.max_steps)
    bar = tqdm.tqdm(total=num_steps, initial=start_step,
                    disable=not self.progress, unit="step", dynamic_ncols=True,
                    file=sys.stderr)
    last_metrics, last_scores = {}, {}
    t_compiled = step_compiled = None
    eval_seconds = 0.0  # scoring time, left out of steps/s

    def log(step):
      scalars = monitor.scalars(step)
      if scalars:
        last_metrics.clear()
        last_metrics.update(
            members.write_scalars(writer, step, scalars,
                                  monitor.member_scalars, "train/")
            if population is not None else writer.scalars(step, scalars))
      if "d_loss" in scalars:
        bar.set_postfix(d_loss=f"{scalars['d_loss']:.3f}",
                        g_loss=f"{scalars['g_loss']:.3f}", refresh=False)

    if start_step == 0:
      if self.is_main:
        self.write(writer.text, 0, "config", "```\n" + str(config) + "\n```")
      try:
        self.write(sampler, 0, state, stop.interruptible)
      except guards.Interrupted:
        pass
    if (exploiter is not None and latest is not None and
        exploiter.is_due(start_step)):
      state = self.finish_pbt_step(exploiter, scorer, start_step, state)
    state = placement.put_state(state)
    step = start_step
    try:
      while step < num_steps and not stop.signum:
        n = lengths.next(step)
        started = time.time()
        state, metrics = call(state, feed.data_for(step),
                              placement.put_state(np.int32(n)))
        if step + n < num_steps:
          feed.prefetch(step + n)
        jax.block_until_ready(metrics)  # one call in flight
        lengths.observe(n, time.time() - started, t_compiled is None)
        monitor.check(step, metrics, n, saver.saved_step, saver.ckpt.directory)
        step += n
        bar.update(n)
        if t_compiled is None:  # the first call compiles: time from its end
          t_compiled, step_compiled = time.time(), step
        self.agree_on_stop()
        sampling = _is_due(step, config.eval_every, num_steps)
        scoring = scorer is not None and scorer.is_due(step, num_steps)
        exploiting = (scoring and exploiter is not None and
                      exploiter.is_due(step))
        checkpointing = _is_due(step, config.checkpoint_every, num_steps)
        try:
          if _is_due(step, config.log_every, num_steps):
            self.write(log, step)
          if ((scoring or checkpointing and sampling) and not stop.signum
              and saver.saved_step != step):
            # Saved before the sampling and scoring, which may compile for
            # minutes while a signal waits: a pre-emption whose grace period
            # ends then loses nothing. A scoring step saves first even off
            # the checkpoint cadence (scoring compiles feature networks and
            # runs long programs). At a PBT step this is the state that is
            # scored; a run resumed from it redoes the exploit
            # (``finish_pbt_step``).
            saver.save(step, placement.unreplicate(state), monitor.pending())
          if sampling and not stop.signum:
            self.write(sampler, step, placement.unreplicate(state), stop.interruptible)
          if scoring and not stop.signum:
            last_scores = self.write(scorer, step, placement.unreplicate(state),
                                     stop.interruptible)
            monitor.pause(last_scores["eval_seconds"])  # steps/s: training
            eval_seconds += last_scores["eval_seconds"]
            if exploiting:
              state = placement.put_state(self.write(
                  self.exploit, exploiter, scorer, step,
                  placement.unreplicate(state)))
        except guards.Interrupted:
          pass
        except workdir_lib.RunWriteError as e:
          self.save_then_raise(e, step, placement.unreplicate(state), monitor)
        if (checkpointing or stop.signum) and saver.saved_step != step:
          saver.save(step, placement.unreplicate(state), monitor.pending())
        else:  # nothing due, or saved before the evaluation above
          saver.check()
        if self.lock is not None:
          self.write(self.lock.check)
    except guards.DivergenceError:
      self.write(log, monitor.checked_until)  # the finite steps before it
      raise
    finally:
      bar.close()
    if stop.signum:
      if saver.saved_step != step:  # never written: nothing finished after
        saver.save(step, placement.unreplicate(state), monitor.pending())
      # A second signal (Ctrl-C twice) still saves what is finished; only a
      # third ends the write (a save that hangs).
      with stop.interruptible(after=max(stop.count, 2)):
        saver.finish()
      if step < num_steps:
        raise guards.Preempted(stop.signum, step, saver.saved_step)
    timed = step - (step_compiled or step)
    seconds = (time.time() - t_compiled - eval_seconds
               if t_compiled is not None else 0.0)
    return {"steps": max(num_steps, start_step),
            "steps_run": max(0, num_steps - start_step),
            "wall_s": time.time() - self.t_start,
            "steps_per_s": (timed / seconds if timed >= MIN_TIMED_STEPS and
                            seconds >= MIN_TIMED_SECONDS else None),
            "metrics": last_metrics, "workdir": self.workdir,
            "skipped_steps": monitor.skipped_total, "evaluation": last_scores,
            "best": scorer.best if scorer is not None else None,
            "signal": guards.signal_name(stop.signum)}

  def exploit(self, exploiter, scorer, step, state):
    """``state`` after population-based training on the scores of ``step``
    (unchanged, with a warning, when they are missing: scoring was
    interrupted or the samples could not be scored)."""
    scores = scorer.member_scores(step, exploiter.metric)
    if scores is None:
      print(f"warning: step {step}: no scores of {exploiter.metric!r} for "
            "population-based training; the members go on unchanged.",
            file=sys.stderr)
      return state
    return exploiter(step, state, scores)

  def finish_pbt_step(self, exploiter, scorer, step, state):
    """The state a run resumed at PBT step ``step`` continues from: its
    checkpoint holds the members before the exploit, so the exploit is
    replayed from the lineage's line of that step, or, when the run ended
    before writing it (a signal or the end of a grace period in the
    scoring), the step is scored and exploited as the uninterrupted run
    does (deterministic: the same scores; their records are written twice
    when the run ended between writing them and the lineage's line)."""
    record = exploiter.recorded(step)
    if record is not None:
      return exploiter.replay(step, state, record)
    try:
      self.write(scorer, step, state, self.stop.interruptible)
    except guards.Interrupted:  # the checkpoint of `step` stays the newest
      return state
    return self.write(self.exploit, exploiter, scorer, step, state)

  def agree_on_stop(self) -> None:
    """Every process of a multi-process run stops after the same call."""
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      signums = multihost_utils.process_allgather(np.int32(self.stop.signum))
      self.stop.signum = self.stop.signum or int(np.max(signums))

  def save_then_raise(self, error, step, state, monitor):
    """Saves the checkpoint of ``step`` when it can still be written, then
    raises ``error`` (a failed write of the logs), saying what was saved."""
    try:
      if self.saver.saved_step != step:
        self.saver.save(step, state, monitor.pending())
      self.saver.finish()
      saved = f"The checkpoint of step {self.saver.saved_step} was saved."
    except resume.CheckpointWriteError as e:
      saved = f"The checkpoint of step {step} could not be saved either: {e}"
    raise workdir_lib.RunWriteError(f"{error} {saved}") from None

  def close(self, ckpt, scorer, writer) -> None:
    """Waits for the last checkpoint write and closes the writers; errors
    here are raised only when nothing else is."""
    errors = []
    for close in (ckpt.close,
                  scorer.close if scorer is not None else None,
                  writer.close):
      if close is None:
        continue
      try:
        close()
      except Exception as e:  # pylint: disable=broad-except
        errors.append(e)
    if errors and sys.exc_info()[0] is None:
      error = errors[0]
      if isinstance(error, OSError):
        raise workdir_lib.RunWriteError(workdir_lib.write_error(error))
      raise self.saver._write_error(self.saver.saved_step, error)  # pylint: disable=protected-access

  def nothing_to_do(self, step: int) -> dict:
    """The summary of a run already at ``num_steps``; with
    ``override_config``, ``config.json`` takes this config."""
    if self.config.override_config and self.is_main:
      self.write(resume.write_config, self.workdir, self.record)
      print(f"Wrote this config to {workdir_lib.CONFIG_JSON} "
            "(--config.override_config=True).", file=sys.stderr)
    records = workdir_lib.read_records(
        os.path.join(self.workdir, workdir_lib.METRICS_JSONL))
    metrics = {k: v for k, v in (records[-1] if records else {}).items()
               if k != "step"}
    return {"steps": step, "steps_run": 0,
            "wall_s": time.time() - self.t_start, "steps_per_s": None,
            "metrics": metrics, "workdir": self.workdir, "signal": None}


def last_finite_record(workdir: str, latest):
  """``(step, metrics)`` logged at the resumed checkpoint's step, or ()."""
  jsonl = os.path.join(workdir, workdir_lib.METRICS_JSONL)
  if latest is None or not os.path.exists(jsonl):
    return ()
  return next(((r["step"], r) for r in reversed(workdir_lib.read_records(jsonl))
               if r.get("step") == latest and "d_loss" in r), ())


def format_summary(summary: dict) -> str:
  m = summary["metrics"]
  losses = ", ".join(f"{name}={m[name]:.4f}" for name in
                     ("d_loss", "g_loss", "d_real", "d_fake") if name in m)
  if not summary["steps_run"]:
    return (f"Nothing to do: the run in {summary['workdir']} is already at step "
            f"{summary['steps']} (raise --config.num_steps to go on).")
  speed = (f"{summary['steps_per_s']:.1f} steps/s after compilation"
           if summary["steps_per_s"] is not None else
           "too short to measure steps/s after compilation (that takes "
           f"{MIN_TIMED_STEPS} steps and {MIN_TIMED_SECONDS:g} s)")
  return ((f"{summary['signal']} received as the run finished; "
           if summary.get("signal") else "")
          + f"Done: step {summary['steps']} ({summary['steps_run']} steps "
          f"run) in {summary['wall_s']:.1f}s wall, {speed}; "
          + (f"final {losses}; " if losses else "")
          + (f"{summary['skipped_steps']} non-finite updates skipped; "
             if summary.get("skipped_steps") else "")
          + (f"best {best['metric']}={best['value']:.4g} at step "
             f"{best['step']} ({workdir_lib.BEST_CHECKPOINT_DIR}/); "
             if (best := summary.get("best")) else "")
          + f"workdir {summary['workdir']}")


# --------------------------------------------------------------------- CLI

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS, argv=None) -> None:
  """The command line's flags (defined only when run as a program; ``argv``:
  the command line the overrides ``--config.FIELD=VALUE`` are read from,
  default ``sys.argv``)."""
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries, "
                      "samples; a run in it is resumed.",
                      flag_values=flag_values)
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file (experiments/configs/*.py).",
      flag_values=flag_values, lock_config=True, sys_argv=argv)
  flags.DEFINE_bool(
      "distributed", False, "Call jax.distributed.initialize() (multi-host: "
      "Cloud TPU pod slices and SLURM are detected from the environment).",
      flag_values=flag_values)
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0, "
                      "for jax.distributed.initialize (implies --distributed).",
                      flag_values=flag_values)
  flags.DEFINE_integer("num_processes", None, "Processes of a multi-process "
                       "run (implies --distributed).", flag_values=flag_values)
  flags.DEFINE_integer("process_id", None, "This process's index in "
                       "[0, num_processes) (implies --distributed).",
                       flag_values=flag_values)
  flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)


def initialize_distributed() -> None:
  """``jax.distributed.initialize`` from the flags (or the environment)."""
  kwargs = {name: FLAGS[name].value for name in
            ("coordinator_address", "num_processes", "process_id")
            if FLAGS[name].value is not None}
  if not (FLAGS.distributed or kwargs):
    return
  try:
    jax.distributed.initialize(**kwargs)
  except (RuntimeError, ValueError) as e:
    cli.fail(f"jax.distributed.initialize({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) "
             f"failed: {e}. Pass --coordinator_address=HOST:PORT (process 0's), "
             "--num_processes and --process_id, or run where JAX detects them "
             "(Cloud TPU, SLURM).")


def parse_flags(argv):
  """absl flag parsing, with clear messages for bad config files and overrides."""
  problem = cli.config_file_problem(argv)
  if problem:
    cli.fail(problem)
  try:
    return FLAGS(argv)
  except flags.Error as e:
    cli.fail(f"{str(e).rstrip('.')}. Usage: python -m experiments.train "
             "--config=experiments/configs/NAME.py --workdir=DIR "
             "[--config.FIELD=VALUE ...]")
  except Exception as e:  # pylint: disable=broad-except
    cli.fail(cli.override_error(argv, e))


def main(argv):
  if not FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}; every option is a flag "
             "(--config=..., --workdir=..., --config.FIELD=VALUE).")
  try:
    config = FLAGS.config
    config.keys()  # a config file that failed to load raises here
  except Exception as e:  # pylint: disable=broad-except
    path = FLAGS["config"].config_filename
    if not os.path.exists(path.split(":")[0]):
      cli.fail(f"the config file {path!r} does not exist (configs are in "
               "experiments/configs/).")
    cli.fail(f"cannot load the config file {path!r}: {e}")
  initialize_distributed()
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  user_errors = (builders.ConfigError, pipeline.UnknownDatasetError,
                 pipeline.DatasetNotFoundError, pipeline.DataError,
                 workdir_lib.WorkdirError,
                 workdir_lib.RunWriteError, resume.CheckpointWriteError)
  try:
    summary = train_and_evaluate(config, FLAGS.workdir)
  except user_errors as e:
    cli.fail(str(e))
  except guards.DivergenceError as e:
    cli.fail(str(e), code=3)
  except guards.Preempted as e:
    # 128 + the signal's number, as a shell reports a process the signal
    # killed: schedulers and retry loops see an unfinished run (0 would let
    # `train && evaluate` go on), and the checkpoint is already saved.
    print(str(e), file=sys.stderr)
    for signum in guards.Signals.SIGNALS:  # saved: no traceback on the way out
      signal.signal(signum, signal.SIG_IGN)
    sys.exit(128 + e.signum)
  except (guards.Interrupted, KeyboardInterrupt):
    cli.fail("interrupted again while the checkpoint was written: it may be "
             "incomplete (it is then skipped); run the same command again to "
             "resume from the newest complete checkpoint.", code=130)
  print(format_summary(summary))


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=parse_flags)
