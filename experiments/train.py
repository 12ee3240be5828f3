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
rng) is restored and the data stream is advanced past the batches already
used (the input pipeline is replayed from its seed and the first ``step``
batches are skipped on the host; toy data drawn on the device are keyed by the
step, so they need no skipping).

Data paths. Images (TFDS, "digits", ...) come from ``ganjax.data.pipeline``
(host iterators, prefetched to the device). Toy data on a single device are
drawn on the device inside ``ganjax.loops.scan_steps``, which fuses many steps
into one compiled call (tiny MLPs are bound by Python dispatch otherwise);
with several devices they come from the pipeline like images.

The loop does not wait for the device except every ``log_every`` steps (to
fetch the metrics), ``eval_every`` steps (samples) and ``checkpoint_every``
steps (the state is copied to the host).

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
``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``. Each
process reads its own part of every global batch; the step runs under
``jax.shard_map`` on the mesh of all devices; process 0 writes the logs,
samples and config, orbax writes the checkpoints. (Signals in a
multi-process run must reach every process, as they do on Cloud TPU and
SLURM; the processes do not agree on a stop step otherwise.)
"""

import contextlib
import json
import math
import os
import sys
import time
from typing import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import numpy as np  # noqa: E402
import tqdm  # noqa: E402

import ganjax as gj  # noqa: E402
from ganjax import checkpoint as checkpoint_lib  # noqa: E402
from ganjax import images as images_lib  # noqa: E402
from ganjax import summary as summary_lib  # noqa: E402
from experiments import builders  # noqa: E402
from experiments import cli  # noqa: E402
from experiments import evaluation  # noqa: E402
from experiments import guards  # noqa: E402
from experiments import workdir as workdir_lib  # noqa: E402

CONFIG_JSON = workdir_lib.CONFIG_JSON
CHECKPOINT_DIR = workdir_lib.CHECKPOINT_DIR
SAMPLE_DIR = workdir_lib.SAMPLE_DIR
# Streams of randomness derived from config.seed besides the GAN's own.
_INIT_STREAM, _FIXED_NOISE_STREAM, _TOY_DATA_STREAM, _REAL_POINTS_STREAM = range(4)


# -------------------------------------------------------------- workdir io


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


def sample_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, SAMPLE_DIR, f"step_{step:06d}.png")


# ------------------------------------------------------------------- data


def _toy_sampler(name: str):
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  sampler_name, _ = pipeline.TOY_SOURCES[name]
  return getattr(gj.data.toy, sampler_name)


def host_batches(config, experiment: builders.Experiment,
                 start_step: int) -> Iterator[np.ndarray]:
  """The pipeline's batches from the one of step ``start_step`` on.

  ``ganjax.data.pipeline.batches`` has no start position, so the stream is
  replayed from its seed and its first ``start_step`` batches are skipped.
  """
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  n = experiment.num_devices
  if jax.process_count() > 1:
    n = 1  # [k, B / processes, ...]: put_batch assembles the global batch
  kwargs = dict(batch_size=config.batch_size, k=config.k, split=config.split,
                seed=config.seed, num_devices=n if n > 1 else None,
                image_size=builders.image_size(config),
                data_dir=builders.data_dir(config), download=False,
                labels=experiment.num_classes is not None)
  if experiment.value_range is not None:
    kwargs["value_range"] = experiment.value_range
  try:
    it = pipeline.batches(config.dataset, **kwargs)
  except pipeline.UnknownDatasetError:
    raise
  except pipeline.DatasetNotFoundError as e:
    raise pipeline.DatasetNotFoundError(
        f"{e} From this runner: --config.data_dir=DIR points at a folder "
        "where the data set is prepared; --config.dataset=digits trains on "
        "real data with nothing to prepare.") from None
  except (ValueError, TypeError) as e:
    raise builders.ConfigError(f"Dataset {config.dataset!r}: {e}") from None
  for _ in range(start_step):
    next(it)
  return it


def split_size(config):
  """The number of examples of ``config.split`` of the data set, or None
  (toy distributions, or a size the data set's metadata do not give)."""
  if config.dataset in builders.TOY_DATASETS:
    return None
  try:
    if config.dataset == "digits":
      from ganjax.data import sources  # pylint: disable=g-import-not-at-top
      return len(sources.load_digits(config.split)[0])
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds.builder(config.dataset, data_dir=builders.data_dir(config))
    return int(builder.info.splits[config.split].num_examples) or None
  except Exception:  # pylint: disable=broad-except
    return None


def warn_if_batch_exceeds_split(config) -> None:
  """Warns when one minibatch holds more examples than the training split."""
  size = split_size(config)
  if size is not None and config.batch_size > size:
    print(f"warning: batch_size={config.batch_size} is larger than the {size} "
          f"examples of {config.dataset}:{config.split}; every minibatch "
          "repeats examples. Use a batch size of at most "
          f"{size}.", file=sys.stderr)


def real_points(config, num: int) -> np.ndarray:
  """``num`` real toy points, drawn with a fixed key (for the scatter plots)."""
  key = jax.random.fold_in(jax.random.key(config.seed), _REAL_POINTS_STREAM)
  return np.asarray(_toy_sampler(config.dataset)(key, num))


# ------------------------------------------------------------- evaluation


def class_grid_samples(gan, state, key, per_class: int,
                       use_ema: bool = True) -> jax.Array:
  """Samples for a per-class grid: ``[C * per_class, ...]``, class-major.

  Row ``c`` holds ``per_class`` samples of class ``c``; column ``j`` uses
  the same latent in every row (``gan.sample`` with the same key for each
  class), so a column shows one z across the classes. Jittable.
  """
  labels = jnp.repeat(jnp.arange(gan.num_classes, dtype=jnp.int32),
                      per_class).reshape(gan.num_classes, per_class)
  rows = jax.vmap(lambda y: gan.sample(state, key, per_class, labels=y,
                                       use_ema=use_ema))(labels)
  return rows.reshape((-1,) + rows.shape[2:])


class SampleWriter:
  """Writes samples from fixed noise as PNGs (and to TensorBoard).

  Conditional runs: one row per class, ``num_eval_samples // num_classes``
  samples each (at least one), the same noise in every row of a column.
  """

  def __init__(self, config, experiment: builders.Experiment, workdir: str,
               writer: summary_lib.SummaryWriter, enabled: bool = True):
    self.enabled = enabled
    self.experiment = experiment
    self.workdir = workdir
    self.writer = writer
    self.num = int(config.num_eval_samples)
    self.key = jax.random.fold_in(jax.random.key(config.seed),
                                  _FIXED_NOISE_STREAM)
    gan = experiment.gan
    self.per_class = None
    if experiment.num_classes is not None:
      self.per_class = max(1, self.num // experiment.num_classes)
      self._sample = jax.jit(lambda state, key: class_grid_samples(
          gan, state, key, self.per_class))
    else:
      self._sample = jax.jit(lambda state, key: gan.sample(state, key,
                                                           self.num))
    self.real = (real_points(config, self.num) if experiment.is_toy else None)

  def picture(self, state) -> np.ndarray:
    samples = np.asarray(self._sample(state, self.key))
    if not self.experiment.is_toy:
      height = samples.shape[1]
      return images_lib.make_grid(
          images_lib.to_unit_range(samples, self.experiment.value_range),
          ncols=self.per_class, scale=max(1, 32 // height))
    if samples.shape[-1] == 1:
      return images_lib.histogram(samples, self.real)
    return images_lib.scatter(samples, self.real)

  def __call__(self, step: int, state) -> str:
    picture = self.picture(state)
    if not self.enabled:  # another process of a multi-process run writes
      return ""
    path = images_lib.save_png(sample_path(self.workdir, step), picture)
    self.writer.image(step, "samples", picture)
    return path


# ------------------------------------------------------------ reliability


# DivergenceError, Preempted, the signal flag and the finiteness guards live
# in experiments/guards.py; these names stay importable from here.
DivergenceError = guards.DivergenceError
Preempted = guards.Preempted
_SignalFlag = guards.SignalFlag


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written (disk full, permissions); exit code 2."""
finite_flags = guards.finite_flags
guard_step = guards.guard_step


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


# ------------------------------------------------------------------- loop


def _is_due(step: int, every: int, last: int) -> bool:
  return step % every == 0 or step == last


def _chunk_length(config) -> int:
  """Steps per compiled call on the device-data path: divides every cadence."""
  return math.gcd(config.log_every, config.eval_every, config.checkpoint_every,
                  config.evaluation.every)


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
  with _exclusive(workdir):
    return _train(config, experiment, workdir, progress, t_start)


@contextlib.contextmanager
def _exclusive(workdir: str):
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
  init_key = jax.random.fold_in(jax.random.key(config.seed), _INIT_STREAM)
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

  # --- the data
  if is_main:
    warn_if_batch_exceeds_split(config)
  n = experiment.num_devices
  multi = jax.process_count() > 1
  if multi:
    mesh = gj.parallel.make_mesh()  # every device of every process
    if config.batch_size % mesh.size:
      raise builders.ConfigError(
          f"batch_size={config.batch_size} is not divisible by the "
          f"{mesh.size} devices of the {jax.process_count()} processes. Use "
          f"a multiple of {mesh.size}.")
    n = 1  # one global state, scalar metrics
  device_data = experiment.is_toy and n == 1 and not multi
  if multi:
    batches = (gj.parallel.put_batch(b, mesh)
               for b in host_batches(config, experiment, start_step))
  elif not device_data:
    from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
    devices = jax.local_devices()[:n]
    batches = pipeline.prefetch_to_device(
        host_batches(config, experiment, start_step), size=2,
        devices=devices if n > 1 else None)

  if state is None:
    state = jax.jit(gan.init)(init_key, example)
  if is_main:  # training starts with this config: record it (atomically)
    write_config(workdir, config, experiment)
  writer = summary_lib.SummaryWriter(
      workdir, resume_step=start_step if latest is not None else None,
      enabled=is_main)
  if multi:
    state = gj.parallel.put_replicated(state, mesh)
  sampler = SampleWriter(config, experiment, workdir, writer, enabled=is_main)
  scorer = (evaluation.PeriodicEvaluator(config, experiment, workdir, writer,
                                         enabled=is_main)
            if config.evaluation.every > 0 else None)
  last_scores = {}
  if start_step == 0:
    if is_main:
      writer.text(0, "config", "```\n" + str(config) + "\n```")
    sampler(0, state)

  # --- the step, guarded: per-step finiteness flags computed on the device
  skip = bool(config.skip_nonfinite_updates)
  if device_data:
    sample_toy = _toy_sampler(config.dataset)
    k, b = config.k, config.batch_size

    def sample_batch(key):
      if experiment.num_classes is not None:  # labels: the mode indices
        x, y = sample_toy(key, k * b, return_modes=True)
        return {"image": x.reshape((k, b) + experiment.data_shape),
                "label": y.reshape((k, b))}
      return sample_toy(key, k * b).reshape((k, b) + experiment.data_shape)

    data_key = jax.random.fold_in(jax.random.key(config.seed),
                                  _TOY_DATA_STREAM)
    chunk = _chunk_length(config)
    runners = {}
    guarded = guard_step(gan.step, skip)

    def run_chunk(state, length):
      if length not in runners:
        runners[length] = gj.loops.scan_steps(guarded, sample_batch, length)
      return runners[length](state, data_key)
  elif multi:
    pgan = gan.parallel(gj.parallel.AXIS, config.sync_batch_norm)
    P = jax.sharding.PartitionSpec
    step_fn = jax.jit(jax.shard_map(
        guard_step(pgan.step, skip), mesh=mesh,
        in_specs=(P(), P(None, gj.parallel.AXIS)), out_specs=(P(), P()),
        check_vma=False), donate_argnums=0)
  elif n == 1:
    step_fn = jax.jit(guard_step(gan.step, skip), donate_argnums=0)
  else:
    pgan = gan.parallel(gj.parallel.AXIS, config.sync_batch_norm)
    step_fn = jax.pmap(guard_step(pgan.step, skip),
                       axis_name=gj.parallel.AXIS, donate_argnums=0)
    state = gj.parallel.replicate(state, devices)

  def host_state(state):
    return gj.parallel.unreplicate(state) if n > 1 else state

  # --- the loop
  bar = tqdm.tqdm(total=num_steps, initial=start_step, disable=not progress,
                  unit="step", dynamic_ncols=True, file=sys.stderr)
  window = []          # (first step, metrics) not yet fetched, on the device
  fetched = []         # (step, {name: value}) fetched, not yet logged
  last_metrics = {}
  last_finite = ()     # (step, metrics) of the newest all-finite step
  jsonl = os.path.join(workdir, summary_lib.JSONL_NAME)
  if latest is not None and os.path.exists(jsonl):
    last_finite = next(((r["step"], r) for r in reversed(
        workdir_lib.read_records(jsonl))
        if r.get("step") == latest and "d_loss" in r), ())
  skipped_total = 0
  skipped_run = []     # steps of the skipped updates in a row so far
  max_skipped = int(config.max_consecutive_skipped)
  saved_step = latest
  t_log, step_log = time.time(), start_step
  t_compiled, step_compiled = None, start_step
  step = start_step

  def fetch():
    """Brings the window to the host and stops at a non-finite step."""
    nonlocal window, last_finite, skipped_total, skipped_run
    check_writes()  # a background checkpoint write that failed
    if not window:
      return
    host = jax.device_get([m for _, m in window])
    for (first, _), m in zip(window, host):
      per_step = {name: (np.reshape(v, (-1,)) if n == 1
                         else np.asarray(v)[:1]) for name, v in m.items()}
      for i in range(len(per_step["finite_d"])):
        record = {name: float(v[i]) for name, v in per_step.items()}
        s = first + i + 1
        flags = {name: bool(record.pop(name)) for name in guards.FLAG_NAMES}
        if flags["finite_d"] and flags["finite_g"]:
          last_finite = (s, record)
          skipped_run = []
        elif skip and len(skipped_run) + 1 < max_skipped:
          skipped_total += 1
          skipped_run.append(s)
          record["skipped"] = 1.0
        else:
          window = []
          if fetched:  # the finite steps before it
            log(s - 1)
          if skip:
            raise DivergenceError(guards.too_many_skipped_message(
                (skipped_run or [s])[0], s, flags, saved_step,
                ckpt.directory))
          raise DivergenceError(guards.divergence_message(
              s, flags, record, last_finite, saved_step, ckpt.directory))
        fetched.append((s, record))
    window = []

  def log(step):
    nonlocal fetched, t_log, step_log, last_metrics
    records = [r for _, r in fetched]
    fetched = []
    if not records:
      return
    good = [r for r in records if not r.get("skipped")]  # skipped: not logged
    names = [name for name in records[0] if name != "skipped"]
    scalars = ({name: float(np.mean([r[name] for r in good])) for name in names}
               if good else {})
    if skip:
      scalars["skipped_steps"] = float(sum(1 for r in records
                                           if r.get("skipped")))
      scalars["skipped_steps_total"] = float(skipped_total)
    now = time.time()
    scalars["steps_per_s"] = (step - step_log) / max(now - t_log, 1e-9)
    t_log, step_log = now, step
    last_metrics = writer.scalars(step, scalars)
    if good:
      bar.set_postfix(d_loss=f"{scalars['d_loss']:.3f}",
                      g_loss=f"{scalars['g_loss']:.3f}", refresh=False)

  def save(step):
    nonlocal saved_step
    current = host_state(state)
    bad = guards.nonfinite_players(current)
    if bad:  # the guard's flags make this unreachable; never save it anyway
      raise DivergenceError(
          f"the state of step {step} holds NaN or Inf values in the "
          f"{' and '.join(bad)}'s parameters or optimizer state; it was not "
          f"saved. The checkpoint of step {saved_step} in {ckpt.directory} "
          "is the newest.")
    try:
      started = ckpt.save(step, current, force=True)
      ckpt.wait()  # a failed write stops the run at its step
    except Exception as e:  # pylint: disable=broad-except
      raise write_error(step, e) from None
    check_writes(step)
    if started:
      saved_step = step

  def write_error(step, e):
    try:  # the committed checkpoints (orbax renames a step's folder last)
      good = max((int(d) for d in os.listdir(ckpt.directory) if d.isdigit()),
                 default=None)
    except OSError:
      good = None
    return CheckpointWriteError(
        f"cannot write the checkpoint of step {step} to {ckpt.directory} "
        f"({type(e).__name__}: "
        f"{str(e).splitlines()[0][:300] if str(e) else ''}). The run stopped; "
        + (f"the checkpoint of step {good} is the newest one. "
           if good is not None else "no checkpoint was saved. ")
        + "Free disk space or fix the directory's permissions, then run the "
        "same command again to resume.")

  def check_writes(step=None):
    """Raises ``CheckpointWriteError`` for a checkpoint write that failed."""
    try:
      ckpt.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except
      raise write_error(step if step is not None else saved_step, e) from None

  stop = _SignalFlag()
  try:
    with stop:
      while step < num_steps:
        if device_data:
          length = min(chunk - step % chunk, num_steps - step)
          state, metrics = run_chunk(state, length)
        else:
          length = 1
          state, metrics = step_fn(state, next(batches))
        window.append((step, metrics))
        if t_compiled is None:  # the first call compiles (synchronously)
          t_compiled, step_compiled = time.time(), step + length
        step += length
        bar.update(length)

        log_due = _is_due(step, config.log_every, num_steps)
        eval_due = _is_due(step, config.eval_every, num_steps)
        ckpt_due = _is_due(step, config.checkpoint_every, num_steps)
        score_due = scorer is not None and scorer.is_due(step, num_steps)
        if log_due or eval_due or ckpt_due or score_due or stop.signum:
          fetch()  # checks finiteness before anything is written
        if log_due:
          log(step)
        if eval_due:
          sampler(step, host_state(state))
        if score_due:
          last_scores = scorer(step, host_state(state))
          t_log += last_scores["eval_seconds"]  # steps/s counts training only
        if ckpt_due or stop.signum:
          save(step)
        if stop.signum:
          ckpt.wait()
          raise Preempted(stop.signum, step, saved_step)
  finally:
    bar.close()
    ckpt.close()
    if scorer is not None:
      scorer.close()
    writer.close()

  wall = time.time() - t_start
  steps_run = max(0, num_steps - start_step)
  timed = step - step_compiled  # steps after the first (compiling) call
  steps_per_s = (timed / max(time.time() - t_compiled, 1e-9)
                 if t_compiled is not None and timed > 0 else 0.0)
  return {"steps": max(num_steps, start_step), "steps_run": steps_run,
          "wall_s": wall, "steps_per_s": steps_per_s,
          "metrics": last_metrics, "workdir": workdir,
          "skipped_steps": skipped_total, "evaluation": last_scores,
          "best": scorer.best if scorer is not None else None}


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
