"""The runner against the bare step it runs, start-up time, and resume positioning.

    python -m benchmarks.runner [--quick] [--out benchmarks/results/runner.md]
    python -m benchmarks.runner --stops [--out benchmarks/results/runner_stops.md]

Also the ``runner`` section of ``benchmarks/benchmark.py``. Measured in one
process, candidates alternated round by round (ratios between medians):

1. ``experiments.train``'s steps/s after compilation (its own figure: steps
   after the first call over their wall time, logging, sample grids and
   checkpoints of the config included) against ``jax.jit(gan.step)`` of the
   same GAN on one batch already on the device (``block_until_ready`` at
   the end of each timed stretch). Models: the offline default
   (``dcgan_digits``, 8x8) and DCGAN 28x28 (the digits resized, latent 100),
   batch 64, float32 (and bfloat16 on accelerators).
2. Start-up: wall time of ``python -m experiments.train`` (default config)
   for 1 step, in a fresh process: imports, data, compile, the first step,
   its checkpoint and sample grid.
3. Resume: time to position the data at step 100,000 of a Fashion-MNIST
   sized split (60,000 uint8 images; exact epochs): the examples of the
   first call after the resume, on the host path (on the device path the
   position is the step itself: nothing to do).

``--stops`` (its own file) measures what a safe stop costs and takes:

4. One call in flight: steps/s of the runner's compiled call when the loop
   waits for each call's metrics before dispatching the next (as
   ``experiments.train`` does, so that a signal is acted on after one call)
   against dispatching every call and waiting once at the end.
5. The asynchronous checkpoint write: a loop of training calls with a save
   after each, the write in the background (``Checkpointer``'s default) or
   waited for, and the same loop without saves.
6. Signal to checkpoint: ``python -m experiments.train`` (default config),
   SIGTERM 3 s after its first (compiling) call; seconds until the
   checkpoint of the step it stopped at is on disk, and until it exits. At
   the defaults and with ``steps_per_call=1000`` and 20,000-step cadences.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from benchmarks.machine import cpu_name, load_average  # pylint: disable=wrong-import-position
from experiments import builders  # pylint: disable=wrong-import-position
from experiments import feeds  # pylint: disable=wrong-import-position
from experiments import guards  # pylint: disable=wrong-import-position
from experiments import resume as resume_lib  # pylint: disable=wrong-import-position
from experiments import train  # pylint: disable=wrong-import-position
from experiments.configs import dcgan_digits  # pylint: disable=wrong-import-position
from ganjax import checkpoint as checkpoint_lib  # pylint: disable=wrong-import-position
from ganjax.data import on_device  # pylint: disable=wrong-import-position
from ganjax.data import pipeline  # pylint: disable=wrong-import-position

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "runner.md")
# The least wall time of the steps each runner/bare measurement times.
TIMED_SECONDS = 5.0
STOPS_RESULTS = os.path.join(os.path.dirname(RESULTS), "runner_stops.md")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dcgan28_config():
  """DCGAN 28x28: the digits config resized to 28x28, latent 100."""
  config = dcgan_digits.get_config()
  config.image_size, config.latent_dim = 28, 100
  return config


def configs(compute_dtype: str = "float32") -> dict:
  """The benchmarked configs: the offline default and DCGAN 28x28."""
  default, dcgan28 = dcgan_digits.get_config(), dcgan28_config()
  for c in (default, dcgan28):
    c.compute_dtype = compute_dtype
    c.evaluation.every = 0
  return {f"dcgan_digits 8x8 ({compute_dtype})": default,
          f"DCGAN 28x28 ({compute_dtype})": dcgan28}


def runner_steps_per_s(config, steps: int) -> float:
  """``experiments.train``'s own steps/s after its first (compiling) call."""
  with tempfile.TemporaryDirectory() as workdir:
    config = config.copy_and_resolve_references()
    config.num_steps = steps
    return train.train_and_evaluate(config, workdir,
                                    progress=False)["steps_per_s"]


def bare_step_runner(config):
  """``run(steps) -> steps/s`` of ``jax.jit(gan.step)`` on one device batch."""
  experiment = builders.build(config)
  gan = experiment.gan
  images, _, maxval = pipeline.load_split(
      config.dataset, config.split, image_size=builders.image_size(config))
  lo, hi = experiment.value_range
  x = images[:config.batch_size * config.k].astype(np.float32) / maxval
  batch = jax.device_put((x * (hi - lo) + lo).reshape(
      (config.k, config.batch_size) + experiment.data_shape))
  state = gan.init(jax.random.key(0), batch[0])
  step = jax.jit(gan.step, donate_argnums=0)
  holder = {"state": step(state, batch)[0]}
  jax.block_until_ready(holder["state"])

  def run(steps: int) -> float:
    state = holder["state"]
    start = time.perf_counter()
    for _ in range(steps):
      state, _ = step(state, batch)
    jax.block_until_ready(state)
    holder["state"] = state
    return steps / (time.perf_counter() - start)

  return run


def timed_steps(steps: int, steps_per_s: float) -> int:
  """At least ``steps``, and enough for ``TIMED_SECONDS`` at ``steps_per_s``
  (the runner reports no steps/s for under ``train.MIN_TIMED_SECONDS``)."""
  return max(steps, math.ceil(steps_per_s * TIMED_SECONDS))


def compare(name: str, config, steps: int, rounds: int) -> dict:
  """Runner against bare step; each timed for at least ``steps`` steps and
  ``TIMED_SECONDS`` (from a first estimate of the bare step: about 1 ms on
  an accelerator, where 1,000 steps would be too short to time). A run
  makes one more call first: the runner times the steps after it."""
  bare = bare_step_runner(config)
  timed = timed_steps(steps, bare(max(10, steps // 10)))
  run_steps = int(config.steps_per_call) + timed
  runner, stepped = [], []
  for _ in range(rounds):  # alternated, so that load hits both alike
    runner.append(runner_steps_per_s(config, run_steps))
    stepped.append(bare(timed))
  if None in runner:
    raise RuntimeError(f"{name}: experiments.train timed too few steps after "
                       f"its first call in {run_steps} steps (it needs "
                       f"{train.MIN_TIMED_STEPS} steps and "
                       f"{train.MIN_TIMED_SECONDS} s).")
  r, b = statistics.median(runner), statistics.median(stepped)
  return {"name": name, "runner": r, "bare": b, "ratio": r / b,
          "runner_all": runner, "bare_all": stepped, "steps": run_steps}


def startup_seconds() -> float:
  """Wall time of the default command for 1 step, in a fresh process."""
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "experiments.train",
         "--config=experiments/configs/dcgan_digits.py",
         f"--workdir={workdir}", "--config.num_steps=1"],
        cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def resume_positioning_seconds(step: int = 100_000) -> dict:
  """Seconds to gather the first call's examples after a resume at ``step``."""
  images = np.zeros((60_000, 28, 28, 1), np.uint8)  # Fashion-MNIST's size
  host = on_device.from_arrays(images, np.zeros(60_000, np.int32),
                               device=False)
  key = jax.random.key(0)
  on_device.take(host, key, 0, 100, 64)  # compile once
  times = {}
  for at in (0, step):
    start = time.perf_counter()
    on_device.take(host, key, at, 100, 64)
    times[at] = time.perf_counter() - start
  return times


def compiled_call(config, steps: int):
  """``(state, run)``: the runner's compiled call of ``steps`` steps on
  ``config``'s feed; ``run(state, first_step) -> (state, metrics)``."""
  config = config.copy_and_resolve_references()
  config.steps_per_call = steps
  experiment = builders.build(config)
  placement = train.check(config, experiment)
  feed = feeds.feed(config, experiment, placement)
  call = feeds.train_call(guards.guard_step(experiment.gan.step), feed,
                          placement)
  state = placement.put_state(jax.jit(experiment.gan.init)(
      resume_lib.init_key(config),
      resume_lib.example_batch(config, experiment)))
  n = placement.put_state(np.int32(steps))

  def run(state, first):
    return call(state, feed.data_for(first), n)

  state, metrics = run(state, 0)  # compiles
  jax.block_until_ready(metrics)
  return state, run


def in_flight_steps_per_s(config, steps: int, calls: int,
                          rounds: int) -> dict:
  """steps/s with one call in flight vs every call queued (alternated)."""
  state, run = compiled_call(config, steps)
  out = {"one": [], "queued": []}
  for _ in range(rounds):
    for mode in out:
      start = time.perf_counter()
      for i in range(calls):
        state, metrics = run(state, i * steps)
        if mode == "one":
          jax.block_until_ready(metrics)
      jax.block_until_ready(state)
      out[mode].append(calls * steps / (time.perf_counter() - start))
  return out


def checkpoint_overlap_seconds(config, steps: int, saves: int,
                               rounds: int) -> dict:
  """Seconds of ``saves`` calls of ``steps`` steps, each followed by a save:
  written in the background, waited for, or no save (alternated)."""
  state, run = compiled_call(config, steps)
  out = {"none": [], "background": [], "waited": []}
  for _ in range(rounds):
    for mode in out:
      with tempfile.TemporaryDirectory() as directory:
        ckpt = checkpoint_lib.Checkpointer(
            directory, keep=2, async_save=mode == "background")
        start = time.perf_counter()
        for i in range(saves):
          state, metrics = run(state, i * steps)
          jax.block_until_ready(metrics)
          if mode != "none":
            ckpt.save(i + 1, state, force=True)
        ckpt.close()  # waits for the last write
        out[mode].append(time.perf_counter() - start)
  return out


def signal_to_checkpoint_seconds(extra=(), after_s: float = 3.0) -> dict:
  """SIGTERM to ``experiments.train`` ``after_s`` seconds after its progress
  bar passed the first (compiling) call: seconds until the checkpoint of its
  stop is on disk, and to exit."""
  with tempfile.TemporaryDirectory() as workdir:
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.train",
         "--config=experiments/configs/dcgan_digits.py", f"--workdir={workdir}",
         "--config.num_steps=10000000", *extra],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = []
    reader = threading.Thread(target=lambda: err.extend(iter(
        lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    ckpts = os.path.join(workdir, "checkpoints")
    while not re.search(r"\b([2-9]|\d\d+)/10000000", "".join(err[-200:])):
      assert proc.poll() is None, "".join(err)[-2000:]
      time.sleep(0.02)
    time.sleep(after_s)
    before = set(os.listdir(ckpts)) if os.path.isdir(ckpts) else set()
    start = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    saved = None
    while proc.poll() is None or saved is None:
      new = {d for d in (os.listdir(ckpts) if os.path.isdir(ckpts) else ())
             if d.isdigit()} - before
      if new and saved is None:
        saved = time.perf_counter() - start
      if proc.poll() is not None and saved is None:
        break
      time.sleep(0.01)
    exited = time.perf_counter() - start
    reader.join()
  line = next((l for l in "".join(err).splitlines()
               if "SIGTERM received" in l), "")
  return {"saved_s": saved, "exit_s": exited, "code": proc.returncode,
          "line": line}


def render_stops(in_flight, overlap, signals, argv, started) -> str:
  """The ``--stops`` measurements as markdown."""
  med = statistics.median
  lines = [
      "# Runner: the cost and time of a safe stop",
      "",
      f"`python -m benchmarks.runner {' '.join(argv)}`, started {started}.",
      f"Machine: {cpu_name()}, {os.cpu_count()} cores, JAX "
      f"{jax.__version__} on {jax.default_backend()}; load average at the "
      f"end: {load_average()} (a shared machine: compare within a table, "
      "candidates alternated).",
      "",
      "## One call in flight (dcgan_digits 8x8, batch 64)",
      "",
      "| steps a call | one in flight, steps/s | all queued, steps/s | "
      "one / queued | rounds (one; queued) |",
      "|---:|---:|---:|---:|---|",
  ]
  for steps, r in in_flight.items():
    one, queued = med(r["one"]), med(r["queued"])
    lines.append(f"| {steps} | {one:.1f} | {queued:.1f} | {one / queued:.2f} "
                 f"| {', '.join(f'{x:.0f}' for x in r['one'])}; "
                 f"{', '.join(f'{x:.0f}' for x in r['queued'])} |")
  o = overlap["result"]
  none, bg, waited = med(o["none"]), med(o["background"]), med(o["waited"])
  lines += [
      "",
      f"## Checkpoint writes ({overlap['name']}, a save after each call of "
      f"{overlap['steps']} steps, {overlap['saves']} saves)",
      "",
      "| writes | seconds | over no saves |",
      "|---|---:|---:|",
      f"| none | {none:.2f} | |",
      f"| in the background (Checkpointer default) | {bg:.2f} | "
      f"{bg - none:+.2f} s |",
      f"| waited for | {waited:.2f} | {waited - none:+.2f} s |",
      "",
      f"Background writes take {bg - waited:+.2f} s against waited ones "
      "(negative: the overlap saved that much); rounds: "
      + "; ".join(f"{k} {', '.join(f'{x:.2f}' for x in v)}"
                  for k, v in o.items()) + ".",
      "",
      "## SIGTERM to a checkpoint (dcgan_digits, `python -m experiments.train`)",
      "",
      "| run | signal to checkpoint on disk, s | signal to exit, s | exit code "
      "| message |",
      "|---|---:|---:|---:|---|",
  ]
  for name, results in signals.items():
    for r in results:
      saved = f"{r['saved_s']:.2f}" if r["saved_s"] is not None else "none"
      lines.append(f"| {name} | {saved} | {r['exit_s']:.2f} | {r['code']} | "
                   f"{r['line'][:110]} |")
  lines.append("")
  return "\n".join(lines)


def stops(argv, out: str, quick: bool) -> str:
  started = datetime.datetime.now().isoformat(timespec="seconds")
  default = configs()["dcgan_digits 8x8 (float32)"]
  rounds = 2 if quick else 3
  in_flight = {steps: in_flight_steps_per_s(default, steps, calls, rounds)
               for steps, calls in ((1, 300), (10, 60), (100, 10))}
  print(in_flight, flush=True)
  overlap = {"name": "dcgan_digits 8x8", "steps": 100, "saves": 10,
             "result": checkpoint_overlap_seconds(default, 100, 10, rounds)}
  print(overlap, flush=True)
  long = ("--config.steps_per_call=1000", "--config.log_every=20000",
          "--config.eval_every=20000", "--config.checkpoint_every=20000")
  signals = {"defaults": [signal_to_checkpoint_seconds()
                          for _ in range(rounds)],
             "steps_per_call=1000, cadences 20,000": [
                 signal_to_checkpoint_seconds(long) for _ in range(rounds)]}
  text = render_stops(in_flight, overlap, signals, argv, started)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    f.write(text)
  return text


def render(rows, startup, resume, argv, started) -> str:
  lines = [
      "# Runner vs bare step",
      "",
      f"`python -m benchmarks.runner {' '.join(argv)}`, started {started}.",
      f"Machine: {cpu_name()}, {os.cpu_count()} cores, JAX "
      f"{jax.__version__} on {jax.default_backend()}; load average at the "
      f"end: {load_average()} (a shared machine: compare ratios, measured "
      "in one run, candidates alternated).",
      "",
      "| model, batch 64 | steps a run | runner steps/s | bare jitted step "
      "steps/s | runner / step | rounds (runner; step) |",
      "|---|---:|---:|---:|---:|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r['name']} | {r['steps']} | {r['runner']:.1f} | {r['bare']:.1f} | "
        f"{r['ratio']:.2f} | {', '.join(f'{x:.1f}' for x in r['runner_all'])};"
        f" {', '.join(f'{x:.1f}' for x in r['bare_all'])} |")
  lines += [
      "",
      "Runner: `experiments.train` with the config's own logging (every "
      "100), sample grids and checkpoints, "
      "steps_per_call=100, data on the device; its steps/s counts the steps "
      "after the first (compiling) call.",
      "",
      f"Start-up, the default command for 1 step in a fresh process "
      f"(imports, data, compile, step, checkpoint, grid): {startup:.1f} s.",
      "",
      f"Resume: the examples of the first call (100 steps x 64) at step 0: "
      f"{resume[0] * 1e3:.1f} ms; at step {max(resume):,}: "
      f"{resume[max(resume)] * 1e3:.1f} ms (exact epochs of 60,000 images, "
      "no replay).",
      "",
  ]
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--stops", action="store_true",
                      help="measure what a safe stop costs and takes")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  argv = sys.argv[1:] if argv is None else argv
  if args.stops:
    print(stops(argv, args.out or STOPS_RESULTS, args.quick))
    return
  args.out = args.out or RESULTS
  started = datetime.datetime.now().isoformat(timespec="seconds")
  steps, rounds = (300, 2) if args.quick else (1000, 3)
  dtypes = ["float32"] + (["bfloat16"] if jax.default_backend() != "cpu"
                          else [])
  rows = []
  for dtype in dtypes:
    for name, config in configs(dtype).items():
      if "28x28" in name and args.quick:
        steps_here = 100
      else:
        steps_here = steps if "8x8" in name else steps // 5
      rows.append(compare(name, config, steps_here, rounds))
      print(rows[-1], flush=True)
  startup = startup_seconds()
  resume = resume_positioning_seconds()
  text = render(rows, startup, resume, argv, started)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
