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
"""

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

CONFIG_JSON = "config.json"
CHECKPOINT_DIR = "checkpoints"
SAMPLE_DIR = "samples"
# Streams of randomness derived from config.seed besides the GAN's own.
_INIT_STREAM, _FIXED_NOISE_STREAM, _TOY_DATA_STREAM, _REAL_POINTS_STREAM = range(4)


# -------------------------------------------------------------- workdir io


def write_config(workdir: str, config: ml_collections.ConfigDict,
                 experiment: builders.Experiment) -> None:
  """Writes ``config.json``; warns when it differs from an earlier run's."""
  path = os.path.join(workdir, CONFIG_JSON)
  record = json.loads(config.to_json_best_effort())
  record["resolved"] = experiment.resolved()
  if os.path.exists(path):
    with open(path) as f:
      try:
        old = json.load(f)
      except json.JSONDecodeError:
        old = {}
    changed = sorted(k for k in set(old) | set(record)
                     if old.get(k) != record.get(k))
    if changed:
      logging.warning("The config differs from the previous run in this "
                      "workdir in: %s", ", ".join(changed))
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def read_config(workdir: str):
  """``(config, resolved)`` from a workdir's ``config.json``."""
  path = os.path.join(workdir, CONFIG_JSON)
  if not os.path.exists(path):
    raise builders.ConfigError(
        f"{workdir} has no {CONFIG_JSON}: it is not the workdir of a "
        "training run (python -m experiments.train --workdir=...).")
  with open(path) as f:
    record = json.load(f)
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
  kwargs = dict(batch_size=config.batch_size, k=config.k, split=config.split,
                seed=config.seed, num_devices=n if n > 1 else None,
                image_size=builders.image_size(config),
                data_dir=builders.data_dir(config), download=False)
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


def real_points(config, num: int) -> np.ndarray:
  """``num`` real toy points, drawn with a fixed key (for the scatter plots)."""
  key = jax.random.fold_in(jax.random.key(config.seed), _REAL_POINTS_STREAM)
  return np.asarray(_toy_sampler(config.dataset)(key, num))


# ------------------------------------------------------------- evaluation


class SampleWriter:
  """Writes samples from fixed noise as PNGs (and to TensorBoard)."""

  def __init__(self, config, experiment: builders.Experiment, workdir: str,
               writer: summary_lib.SummaryWriter):
    self.experiment = experiment
    self.workdir = workdir
    self.writer = writer
    self.num = int(config.num_eval_samples)
    self.key = jax.random.fold_in(jax.random.key(config.seed),
                                  _FIXED_NOISE_STREAM)
    gan = experiment.gan
    self._sample = jax.jit(lambda state, key: gan.sample(state, key, self.num))
    self.real = (real_points(config, self.num) if experiment.is_toy else None)

  def picture(self, state) -> np.ndarray:
    samples = np.asarray(self._sample(state, self.key))
    if not self.experiment.is_toy:
      height = samples.shape[1]
      return images_lib.make_grid(
          images_lib.to_unit_range(samples, self.experiment.value_range),
          scale=max(1, 32 // height))
    if samples.shape[-1] == 1:
      return images_lib.histogram(samples, self.real)
    return images_lib.scatter(samples, self.real)

  def __call__(self, step: int, state) -> str:
    picture = self.picture(state)
    path = images_lib.save_png(sample_path(self.workdir, step), picture)
    self.writer.image(step, "samples", picture)
    return path


# ------------------------------------------------------------------- loop


def _is_due(step: int, every: int, last: int) -> bool:
  return step % every == 0 or step == last


def _chunk_length(config) -> int:
  """Steps per compiled call on the device-data path: divides every cadence."""
  return math.gcd(config.log_every, config.eval_every, config.checkpoint_every)


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
    ``workdir``.

  Raises:
    builders.ConfigError (and the pipeline's UnknownDatasetError,
    DatasetNotFoundError): user errors, with a message saying what to fix.
  """
  t_start = time.time()
  workdir = os.path.abspath(workdir)
  experiment = builders.build(config)
  gan = experiment.gan
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if is_main:
    write_config(workdir, config, experiment)

  num_steps = int(config.num_steps)
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, CHECKPOINT_DIR),
      save_every=config.checkpoint_every, keep=config.keep_checkpoints)
  latest = ckpt.latest_step()
  start_step = latest or 0
  if start_step >= num_steps:
    ckpt.close()
    records = (summary_lib.read_jsonl(workdir) if os.path.exists(
        os.path.join(workdir, summary_lib.JSONL_NAME)) else [])
    metrics = {k: v for k, v in (records[-1] if records else {}).items()
               if k != "step"}
    return {"steps": start_step, "steps_run": 0,
            "wall_s": time.time() - t_start, "steps_per_s": 0.0,
            "metrics": metrics, "workdir": workdir}

  # --- the data (first: a missing dataset fails before anything compiles)
  n = experiment.num_devices
  device_data = experiment.is_toy and n == 1
  if not device_data:
    from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
    devices = jax.local_devices()[:n]
    batches = pipeline.prefetch_to_device(
        host_batches(config, experiment, start_step), size=2,
        devices=devices if n > 1 else None)

  # --- the state: restored, or initialised
  init_key = jax.random.fold_in(jax.random.key(config.seed), _INIT_STREAM)
  example = jnp.zeros((config.k, 1) + experiment.data_shape, jnp.float32)
  if latest is not None:
    template = jax.eval_shape(gan.init, init_key, example)
    state = ckpt.restore(template, latest)
    if int(state.step) != latest:
      raise RuntimeError(f"Checkpoint {latest} holds a state at step "
                         f"{int(state.step)}.")
    if progress:
      print(f"Resuming from the checkpoint of step {start_step} in "
            f"{ckpt.directory}.", file=sys.stderr)
  else:
    state = jax.jit(gan.init)(init_key, example)

  writer = summary_lib.SummaryWriter(
      workdir, resume_step=start_step if latest is not None else None,
      enabled=is_main)
  sampler = SampleWriter(config, experiment, workdir, writer)
  if start_step == 0 and is_main:
    writer.text(0, "config", "```\n" + str(config) + "\n```")
    sampler(0, state)

  # --- the step
  if device_data:
    sample_toy = _toy_sampler(config.dataset)
    k, b = config.k, config.batch_size

    def sample_batch(key):
      return sample_toy(key, k * b).reshape((k, b) + experiment.data_shape)

    data_key = jax.random.fold_in(jax.random.key(config.seed),
                                  _TOY_DATA_STREAM)
    chunk = _chunk_length(config)
    runners = {}

    def run_chunk(state, length):
      if length not in runners:
        runners[length] = gj.loops.scan_steps(gan.step, sample_batch, length)
      return runners[length](state, data_key)
  elif n == 1:
    step_fn = jax.jit(gan.step, donate_argnums=0)
  else:
    step_fn = gj.parallel.pmap_step(gan, sync_batch_norm=config.sync_batch_norm)
    state = gj.parallel.replicate(state, devices)

  def host_state(state):
    return gj.parallel.unreplicate(state) if n > 1 else state

  # --- the loop
  bar = tqdm.tqdm(total=num_steps, initial=start_step, disable=not progress,
                  unit="step", dynamic_ncols=True, file=sys.stderr)
  window = []          # the metrics since the last log, still on the device
  last_metrics = {}
  t_log, step_log = time.time(), start_step
  t_compiled, step_compiled = None, start_step
  step = start_step
  try:
    while step < num_steps:
      if device_data:
        length = min(chunk - step % chunk, num_steps - step)
        state, metrics = run_chunk(state, length)
      else:
        length = 1
        state, metrics = step_fn(state, next(batches))
      window.append(metrics)
      if t_compiled is None:  # the first call compiles (synchronously)
        t_compiled, step_compiled = time.time(), step + length
      step += length
      bar.update(length)

      if _is_due(step, config.log_every, num_steps):
        host = jax.device_get(window)  # the only regular host sync
        window = []
        stacked = {name: np.concatenate([np.reshape(m[name], (-1,))
                                         if n == 1 else np.asarray(m[name])[:1]
                                         for m in host])
                   for name in host[0]}
        scalars = {name: float(np.mean(v)) for name, v in stacked.items()}
        now = time.time()
        scalars["steps_per_s"] = (step - step_log) / max(now - t_log, 1e-9)
        t_log, step_log = now, step
        last_metrics = writer.scalars(step, scalars)
        bar.set_postfix(d_loss=f"{scalars['d_loss']:.3f}",
                        g_loss=f"{scalars['g_loss']:.3f}", refresh=False)
      if _is_due(step, config.eval_every, num_steps) and is_main:
        sampler(step, host_state(state))
      if _is_due(step, config.checkpoint_every, num_steps):
        ckpt.save(step, host_state(state), force=True)
  finally:
    bar.close()
    ckpt.close()
    writer.close()

  wall = time.time() - t_start
  steps_run = max(0, num_steps - start_step)
  timed = step - step_compiled  # steps after the first (compiling) call
  steps_per_s = (timed / max(time.time() - t_compiled, 1e-9)
                 if t_compiled is not None and timed > 0 else 0.0)
  return {"steps": max(num_steps, start_step), "steps_run": steps_run,
          "wall_s": wall, "steps_per_s": steps_per_s,
          "metrics": last_metrics, "workdir": workdir}


def format_summary(summary: dict) -> str:
  m = summary["metrics"]
  losses = ", ".join(f"{name}={m[name]:.4f}" for name in
                     ("d_loss", "g_loss", "d_real", "d_fake") if name in m)
  if not summary["steps_run"]:
    return (f"Nothing to do: the run in {summary['workdir']} is already at step "
            f"{summary['steps']} (raise --config.num_steps to go on).")
  return (f"Done: step {summary['steps']} ({summary['steps_run']} steps run) "
          f"in {summary['wall_s']:.1f}s wall, {summary['steps_per_s']:.1f} "
          f"steps/s after compilation; final {losses}; workdir "
          f"{summary['workdir']}")


# --------------------------------------------------------------------- CLI

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries, "
                      "samples; a run in it is resumed.")
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file (experiments/configs/*.py).",
      lock_config=True)
  flags.mark_flags_as_required(["config", "workdir"])


def fail(message: str, code: int = 2):
  """Prints a one-paragraph error and exits without a traceback."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def _load_config_file(argv):
  """The config file named in ``argv`` (``--config=PATH``), or None."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path = None
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      path = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
  if not path or not os.path.exists(path.split(":")[0]):
    return None
  try:
    spec = importlib.util.spec_from_file_location("_user_config",
                                                  path.split(":")[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
  except Exception:  # pylint: disable=broad-except
    return None


def _field_exists(config, path: str) -> bool:
  node = config
  for part in path.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


def _override_error(argv, error: Exception) -> str:
  """A message for a ``--config.x=...`` override that could not be applied."""
  config = _load_config_file(argv)
  overrides = [a[len("--config."):].split("=", 1)[0]
               for a in argv if a.startswith("--config.")]
  if config is not None:
    unknown = [o for o in overrides if not _field_exists(config, o)]
    if unknown:
      path = unknown[0]
      parent_path, _, leaf = path.rpartition(".")
      parent = config
      for part in parent_path.split(".") if parent_path else []:
        parent = parent[part] if part in parent else parent
      known = sorted(parent.keys()) if isinstance(
          parent, ml_collections.ConfigDict) else []
      hint = builders._close(leaf, known)  # pylint: disable=protected-access
      where = f"config.{parent_path}" if parent_path else "the config"
      return (f"unknown config field '{path}' in --config.{path}=...{hint} "
              f"Fields of {where}: {', '.join(known)}. New fields cannot be "
              "added from the command line; see experiments/configs/base.py.")
  return f"cannot apply the command-line config overrides: {error}"


def parse_flags(argv):
  """absl flag parsing, with clear messages for bad config files and overrides."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    fail(f"{str(e).rstrip('.')}. Usage: python -m experiments.train "
         "--config=experiments/configs/NAME.py --workdir=DIR "
         "[--config.FIELD=VALUE ...]")
  except Exception as e:  # pylint: disable=broad-except
    fail(_override_error(argv, e))


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
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  user_errors = (builders.ConfigError, pipeline.UnknownDatasetError,
                 pipeline.DatasetNotFoundError)
  try:
    summary = train_and_evaluate(config, FLAGS.workdir)
  except user_errors as e:
    fail(str(e))
  except KeyboardInterrupt:
    fail("interrupted; run the same command again to resume from the latest "
         "checkpoint.", code=130)
  print(format_summary(summary))


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=parse_flags)
