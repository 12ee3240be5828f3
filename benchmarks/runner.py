"""The runner against the bare step it runs, start-up time, and resume positioning.

    python -m benchmarks.runner [--quick] [--out benchmarks/results/runner.md]

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
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from benchmarks.machine import cpu_name, load_average  # pylint: disable=wrong-import-position
from experiments import builders  # pylint: disable=wrong-import-position
from experiments import train  # pylint: disable=wrong-import-position
from experiments.configs import dcgan_digits  # pylint: disable=wrong-import-position
from ganjax.data import on_device  # pylint: disable=wrong-import-position
from ganjax.data import pipeline  # pylint: disable=wrong-import-position

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "runner.md")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def configs(compute_dtype: str = "float32") -> dict:
  """The benchmarked configs: the offline default and DCGAN 28x28."""
  default = dcgan_digits.get_config()
  dcgan28 = dcgan_digits.get_config()
  dcgan28.image_size = 28
  dcgan28.latent_dim = 100
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


def compare(name: str, config, steps: int, rounds: int) -> dict:
  bare = bare_step_runner(config)
  runner, stepped = [], []
  for _ in range(rounds):  # alternated, so that load hits both alike
    runner.append(runner_steps_per_s(config, steps))
    stepped.append(bare(steps))
  r, b = statistics.median(runner), statistics.median(stepped)
  return {"name": name, "runner": r, "bare": b, "ratio": r / b,
          "runner_all": runner, "bare_all": stepped, "steps": steps}


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
  parser.add_argument("--out", default=RESULTS)
  args = parser.parse_args(argv)
  argv = sys.argv[1:] if argv is None else argv
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
