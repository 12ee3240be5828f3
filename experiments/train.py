r"""Trains a GAN from a config file; resumes from the workdir's latest checkpoint.

    python -m experiments.train --config=experiments/configs/dcgan_digits.py \
        --workdir=/tmp/digits [--config.k=5 --config.num_steps=2000 ...]

The workdir receives:
  config.json            the config, plus what was resolved from it ("resolved":
                         data shape, pixel range, device count)
  checkpoints/<step>/    orbax checkpoints of the whole GANState
  events.out.tfevents.*  TensorBoard: losses, D(x), D(G(z)), gradient norms,
                         steps/s, sample grids
  metrics.jsonl          the same scalars, one JSON object per logged step
                         (means over the ``log_every`` steps before it)
  samples/step_XXXXXX.png  samples from FIXED noise every ``eval_every`` steps
                         (scatter plots over the real data for toy data)
  checkpoints_best/<step>/, best.json
                         with ``--config.evaluation.every=N``: the state
                         with the best sample-quality metric so far (FID,
                         mode coverage...; experiments/evaluation.py), whose
                         scores also go to TensorBoard and metrics.jsonl

Running the same command again continues from the latest checkpoint exactly as
an uninterrupted run would: the state (parameters, optimizer states, EMA, step,
rng) is restored, and the data need no replay: the batch of step s is a pure
function of (seed, s) (experiments/input_pipeline.py).

Speed. ``config.steps_per_call`` steps run in one compiled call
(``ganjax.loops.scan_steps_at``), cut at every step that logs, samples, scores
or saves; metrics are fetched once per call. The data are on the device
(``config.data_on_device``: auto when the split takes at most a quarter of a
device's memory: every data set of the configs), or sent from the host one
call's examples at a time while the previous call runs, or (toy
distributions) drawn in the call. ``ganjax.parallel`` places the state, the
data and the call on one device, the local devices (pmap) or a mesh.

Failures (experiments/guards.py, experiments/workdir.py; the README's
Reliability table lists every case and its exit code). The step also returns
per-step finiteness flags of D's and G's metrics (losses, gradient norms) and
of each player's new state (parameters, optimizer state, statistics, EMA),
checked on the host whenever the metrics are fetched anyway, before any
sample or checkpoint is written: a NaN/Inf stops the run with exit code 3,
naming the step, the player and the last finite values; the last checkpoint
stays the newest, and the state is checked again before every save
(``--config.skip_nonfinite_updates=True`` keeps the previous state for such
steps instead and logs ``skipped_steps``; ``max_consecutive_skipped`` of them
in a row stop the run). SIGTERM / SIGINT save a checkpoint of the current
step and exit with 128 + the signal's number (143, 130): the run is not
finished, so ``train && evaluate`` must not go on. Checkpoints are committed
atomically by orbax (a write killed midway leaves a
``*.orbax-checkpoint-tmp-*`` folder that is never restored) and waited for: a
failed write (disk full) stops the run at its step. One that does not read
back is moved to ``checkpoints.unreadable/`` and the previous one is used
(``experiments.sample`` and ``evaluate`` skip it the same way, moving
nothing). A workdir whose checkpoints come from a config with another model,
data, latent space, loss or optimizer kind is refused
(``--config.override_config=True`` resumes it anyway where the state keeps
its shapes; a checkpoint that does not fit is never set aside). One run at a
time: an exclusive lock on ``<workdir>/.lock`` refuses a second one (exit
code 2). ``config.json`` is written, atomically, only once training starts.
A workdir with logs but no checkpoint (``checkpoints/`` deleted) starts from
step 0 with fresh logs; the old ones go to ``previous-<time>/``.

Several processes (TPU pod slices, multi-node GPU): the same command on every
host with ``--distributed`` (Cloud TPU, SLURM: detected), or
``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``. Every
process draws the same global batch of each step (input_pipeline.py) and its
devices compute on their slices, under ``jax.shard_map`` on the mesh of all
devices; process 0 writes the logs,
samples and config, orbax writes the checkpoints. (Signals in a
multi-process run must reach every process, as they do on Cloud TPU and
SLURM; the processes do not agree on a stop step otherwise.)
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import tqdm  # noqa: E402

import ganjax as gj  # noqa: E402
from ganjax import checkpoint as checkpoint_lib  # noqa: E402
from ganjax import summary as summary_lib  # noqa: E402
from experiments import builders  # noqa: E402
from experiments import cli  # noqa: E402
from experiments import evaluation  # noqa: E402
from experiments import guards  # noqa: E402
from experiments import input_pipeline  # noqa: E402
from experiments import resume  # noqa: E402
from experiments import samples  # noqa: E402
from experiments import workdir as workdir_lib  # noqa: E402

CONFIG_JSON = workdir_lib.CONFIG_JSON
CHECKPOINT_DIR = workdir_lib.CHECKPOINT_DIR
SAMPLE_DIR = workdir_lib.SAMPLE_DIR
# What the runner's modules hold, importable from here too.
read_config, write_config = resume.read_config, resume.write_config
restore_state, check_config_matches = (resume.restore_state,
                                       resume.check_config_matches)
class_grid_samples, SampleWriter = (samples.class_grid_samples,
                                    samples.SampleWriter)
real_points = samples.real_points
warn_if_batch_exceeds_split = input_pipeline.warn_if_batch_exceeds_split


# DivergenceError, Preempted, the signal flag and the finiteness guards live
# in experiments/guards.py; these names stay importable from here.
DivergenceError = guards.DivergenceError
Preempted = guards.Preempted
_SignalFlag = guards.SignalFlag


CheckpointWriteError = resume.CheckpointWriteError
finite_flags = guards.finite_flags
guard_step = guards.guard_step


# ------------------------------------------------------------------- loop


def _is_due(step: int, every: int, last: int) -> bool:
  return step % every == 0 or step == last


def call_length(config, step: int, num_steps: int) -> int:
  """Steps in the compiled call from ``step``: ``config.steps_per_call``, cut
  at the next step that logs, samples, scores or saves (and at the end)."""
  cadences = [c for c in (config.log_every, config.eval_every,
                          config.checkpoint_every, config.evaluation.every)
              if c > 0]
  boundary = min([(step // c + 1) * c for c in cadences] + [num_steps])
  return max(0, min(int(config.steps_per_call), boundary - step))


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
    the first, compiling, call), ``metrics`` (the last logged scalars),
    ``workdir``, ``evaluation`` (the last scores, with
    ``config.evaluation.every``), ``best`` (``best.json``'s record).

  Raises:
    builders.ConfigError (and the pipeline's UnknownDatasetError,
    DatasetNotFoundError), workdir_lib.WorkdirError (the workdir is not
    usable, or another run holds it): user errors, with a message saying
    what to fix. DivergenceError: a non-finite step (exit code 3).
  """
  t_start = time.time()
  experiment = builders.build(config)  # config errors touch no workdir
  workdir = workdir_lib.prepare(workdir)
  with resume.exclusive(workdir):
    return _train(config, experiment, workdir, progress, t_start)


def _train(config, experiment: builders.Experiment, workdir: str,
           progress: bool, t_start: float) -> dict:
  """``train_and_evaluate`` in its locked workdir."""
  gan = experiment.gan
  is_main = jax.process_index() == 0

  num_steps = int(config.num_steps)
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, CHECKPOINT_DIR),
      save_every=config.checkpoint_every, keep=config.keep_checkpoints)

  # --- the state: restored (the newest readable checkpoint), or initialised
  init_key = gj.streams.run_key(config.seed, gj.streams.INIT)
  example = jnp.zeros((config.k, 1) + experiment.data_shape, jnp.float32)
  state = latest = None
  if ckpt.all_steps():
    check_config_matches(workdir, config, experiment)
    template = jax.eval_shape(gan.init, init_key, example)
    try:
      state, latest = restore_state(ckpt, template, workdir, config,
                                    experiment)
    except builders.ConfigError:
      ckpt.close()
      raise
    if latest is None:
      print("warning: no checkpoint could be read; starting from step 0.",
            file=sys.stderr)
  if latest is None and is_main and workdir_lib.has_logs(workdir):
    moved = workdir_lib.set_aside_logs(workdir)
    print(f"warning: {workdir} holds the logs of an earlier run but no "
          "usable checkpoint: starting from step 0 with fresh logs; the "
          f"earlier logs and config.json are in {moved}.", file=sys.stderr)
  start_step = latest or 0
  if start_step >= num_steps:
    ckpt.close()
    records = workdir_lib.read_records(
        os.path.join(workdir, summary_lib.JSONL_NAME))
    metrics = {k: v for k, v in (records[-1] if records else {}).items()
               if k != "step"}
    return {"steps": start_step, "steps_run": 0,
            "wall_s": time.time() - t_start, "steps_per_s": 0.0,
            "metrics": metrics, "workdir": workdir}
  if progress and latest is not None:
    print(f"Resuming from the checkpoint of step {start_step} in "
          f"{ckpt.directory}.", file=sys.stderr)

  # --- the data and the step: chunks of steps in one compiled call each
  if is_main:
    warn_if_batch_exceeds_split(config)
  placement = gj.parallel.make(experiment.num_devices)
  try:
    gj.parallel.check_divisible(config.batch_size, placement.num_devices,
                                "config.batch_size")
  except ValueError as e:
    raise builders.ConfigError(str(e)) from None
  feed = input_pipeline.feed(config, experiment, placement)
  if state is None:
    state = jax.jit(gan.init)(init_key, example)
  if is_main:  # training starts with this config: record it (atomically)
    write_config(workdir, config, experiment)
  writer = summary_lib.SummaryWriter(
      workdir, resume_step=start_step if latest is not None else None,
      enabled=is_main)
  sampler = SampleWriter(config, experiment, workdir, writer, enabled=is_main)
  scorer = (evaluation.PeriodicEvaluator(config, experiment, workdir, writer,
                                         enabled=is_main)
            if config.evaluation.every > 0 else None)
  last_scores = {}
  if start_step == 0:
    if is_main:
      writer.text(0, "config", "```\n" + str(config) + "\n```")
    sampler(0, state)

  skip = bool(config.skip_nonfinite_updates)
  pgan = (gan.parallel(placement.axis_name, config.sync_batch_norm)
          if placement.axis_name else gan)
  guarded = guard_step(pgan.step, skip)
  calls = {}  # one compiled call per chunk length

  def run_chunk(state, first, length):
    if length not in calls:
      calls[length] = input_pipeline.train_call(guarded, feed, placement,
                                                length)
    out = calls[length](state, feed.data_for(first, length))
    nxt = first + length
    feed.prefetch(nxt, call_length(config, nxt, num_steps))
    return out

  state = placement.put_state(state)

  # --- the loop
  bar = tqdm.tqdm(total=num_steps, initial=start_step, disable=not progress,
                  unit="step", dynamic_ncols=True, file=sys.stderr)
  monitor = guards.MetricsMonitor(
      placement.to_host, skip, int(config.max_consecutive_skipped),
      last_finite_record(workdir, latest), start_step)
  saver = resume.CheckpointSaver(ckpt, latest)
  last_metrics = {}
  t_compiled, step_compiled = None, start_step
  step = start_step

  def log(step):
    scalars = monitor.scalars(step)
    if scalars:
      last_metrics.clear()
      last_metrics.update(writer.scalars(step, scalars))
    if "d_loss" in scalars:
      bar.set_postfix(d_loss=f"{scalars['d_loss']:.3f}",
                      g_loss=f"{scalars['g_loss']:.3f}", refresh=False)

  stop = _SignalFlag()
  try:
    with stop:
      while step < num_steps:
        length = call_length(config, step, num_steps)
        state, metrics = run_chunk(state, step, length)
        monitor.add(step, metrics)
        if t_compiled is None:  # the first call compiles: time from its end
          jax.block_until_ready(state)
          t_compiled, step_compiled = time.time(), step + length
        step += length
        bar.update(length)

        log_due = _is_due(step, config.log_every, num_steps)
        eval_due = _is_due(step, config.eval_every, num_steps)
        ckpt_due = _is_due(step, config.checkpoint_every, num_steps)
        score_due = scorer is not None and scorer.is_due(step, num_steps)
        if log_due or eval_due or ckpt_due or score_due or stop.signum:
          saver.check_writes()  # a background checkpoint write that failed
          try:  # finiteness is checked before anything is written
            monitor.fetch(saver.saved_step, ckpt.directory)
          except guards.DivergenceError:
            log(monitor.fetched_until)  # the finite steps before it
            raise
        if log_due:
          log(step)
        if eval_due:
          sampler(step, placement.unreplicate(state))
        if score_due:
          last_scores = scorer(step, placement.unreplicate(state))
          monitor.pause(last_scores["eval_seconds"])  # steps/s: training only
        if ckpt_due or stop.signum:
          saver.save(step, placement.unreplicate(state))
        if stop.signum:
          ckpt.wait()
          raise Preempted(stop.signum, step, saver.saved_step)
  finally:
    bar.close()
    ckpt.close()
    if scorer is not None:
      scorer.close()
    writer.close()

  timed = step - step_compiled  # steps after the first (compiling) call
  steps_per_s = (timed / max(time.time() - t_compiled, 1e-9)
                 if t_compiled is not None and timed > 0 else 0.0)
  return {"steps": max(num_steps, start_step),
          "steps_run": max(0, num_steps - start_step),
          "wall_s": time.time() - t_start, "steps_per_s": steps_per_s,
          "metrics": last_metrics, "workdir": workdir,
          "skipped_steps": monitor.skipped_total, "evaluation": last_scores,
          "best": scorer.best if scorer is not None else None}


def last_finite_record(workdir: str, latest):
  """``(step, metrics)`` logged at the resumed checkpoint's step, or ()."""
  jsonl = os.path.join(workdir, summary_lib.JSONL_NAME)
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
  return (f"Done: step {summary['steps']} ({summary['steps_run']} steps run) "
          f"in {summary['wall_s']:.1f}s wall, {summary['steps_per_s']:.1f} "
          f"steps/s after compilation; "
          + (f"final {losses}; " if losses else "")
          + (f"{summary['skipped_steps']} non-finite updates skipped; "
             if summary.get("skipped_steps") else "")
          + (f"best {best['metric']}={best['value']:.4g} at step "
             f"{best['step']} ({evaluation.BEST_CHECKPOINT_DIR}/); "
             if (best := summary.get("best")) else "")
          + f"workdir {summary['workdir']}")


# --------------------------------------------------------------------- CLI

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries, "
                      "samples; a run in it is resumed.")
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file (experiments/configs/*.py).",
      lock_config=True)
  flags.DEFINE_bool(
      "distributed", False, "Call jax.distributed.initialize() (multi-host: "
      "Cloud TPU pod slices and SLURM are detected from the environment).")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0, "
                      "for jax.distributed.initialize (implies --distributed).")
  flags.DEFINE_integer("num_processes", None, "Processes of a multi-process "
                       "run (implies --distributed).")
  flags.DEFINE_integer("process_id", None, "This process's index in "
                       "[0, num_processes) (implies --distributed).")
  flags.mark_flags_as_required(["config", "workdir"])


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
    fail(f"jax.distributed.initialize({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) "
         f"failed: {e}. Pass --coordinator_address=HOST:PORT (process 0's), "
         "--num_processes and --process_id, or run where JAX detects them "
         "(Cloud TPU, SLURM).")


fail = cli.fail


def parse_flags(argv):
  """absl flag parsing, with clear messages for bad config files and overrides."""
  problem = cli.config_file_problem(argv)
  if problem:
    fail(problem)
  try:
    return FLAGS(argv)
  except flags.Error as e:
    fail(f"{str(e).rstrip('.')}. Usage: python -m experiments.train "
         "--config=experiments/configs/NAME.py --workdir=DIR "
         "[--config.FIELD=VALUE ...]")
  except Exception as e:  # pylint: disable=broad-except
    fail(cli.override_error(argv, e, builders._close))  # pylint: disable=protected-access


def main(argv):
  if not FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}; every option is a flag "
         "(--config=..., --workdir=..., --config.FIELD=VALUE).")
  try:
    config = FLAGS.config
    config.keys()  # a config file that failed to load raises here
  except Exception as e:  # pylint: disable=broad-except
    path = FLAGS["config"].config_filename
    if not os.path.exists(path.split(":")[0]):
      fail(f"the config file {path!r} does not exist (configs are in "
           "experiments/configs/).")
    fail(f"cannot load the config file {path!r}: {e}")
  initialize_distributed()
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  user_errors = (builders.ConfigError, pipeline.UnknownDatasetError,
                 pipeline.DatasetNotFoundError, workdir_lib.WorkdirError,
                 CheckpointWriteError)
  try:
    summary = train_and_evaluate(config, FLAGS.workdir)
  except user_errors as e:
    fail(str(e))
  except DivergenceError as e:
    fail(str(e), code=3)
  except Preempted as e:
    # 128 + the signal's number, as a shell reports a process the signal
    # killed: schedulers and retry loops see an unfinished run (0 would let
    # `train && evaluate` go on), and the checkpoint is already saved.
    print(str(e), file=sys.stderr)
    sys.exit(128 + e.signum)
  except KeyboardInterrupt:
    fail("interrupted; run the same command again to resume from the latest "
         "checkpoint.", code=130)
  print(format_summary(summary))


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=parse_flags)
