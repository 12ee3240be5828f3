"""One R3GAN training step at the published CIFAR-10 width: time and peak memory.

    python -m benchmarks.r3gan_step [--batch_size 8] [--repeats 3] [--out benchmarks/results/r3gan_step.md]

The conditional CIFAR-10 model of ``experiments/configs/r3gan_cifar10.py``
(768 channels per stage, cardinality 96; G 20.8M / D 21.3M parameters) with
its game: RpGAN, R1 + R2 on every update (gamma on its cosine), Adam with
b1 = 0 on cosine schedules, the EMA by its half-life. The published batch is
512; a CPU takes a small one (``--batch_size``). Each grouped convolution
variant (``ganjax.models.r3gan.Conv.fast_conv_grad``) runs in its own
process, so that its peak resident memory is its own. Compile time is the
first call's wall time; step time the median of ``--repeats`` calls; XLA's
temporary buffers from the compiled step's memory analysis.
"""

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time

import jax
import numpy as np

from benchmarks.machine import cpu_name, load_average
from experiments import builders
from experiments.configs import r3gan_cifar10


def measure(batch_size: int, repeats: int, fast_conv_grad: bool) -> dict:
  config = r3gan_cifar10.get_config()
  config.batch_size = batch_size
  config.model.fast_conv_grad = fast_conv_grad
  gan = builders.build(config, data_shape=(32, 32, 3), num_devices=1,
                       dataset_classes=10).gan
  batch = {"image": jax.random.uniform(jax.random.key(1),
                                       (1, batch_size, 32, 32, 3),
                                       minval=-1.0, maxval=1.0),
           "label": jax.random.randint(jax.random.key(2), (1, batch_size), 0,
                                       10)}
  state = gan.init(jax.random.key(0), batch)
  step = jax.jit(gan.step, donate_argnums=0)
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  analysis = compiled.memory_analysis()
  step_s = float(np.median(times))
  return {"fast_conv_grad": fast_conv_grad, "compile_s": compile_s,
          "step_s": step_s, "images_per_s": batch_size / step_s,
          "temp_mib": (analysis.temp_size_in_bytes / 2 ** 20
                       if analysis else float("nan")),
          "peak_rss_mib": resource.getrusage(
              resource.RUSAGE_SELF).ru_maxrss / 1024,
          "finite": bool(np.isfinite(float(metrics["d_loss"])))}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--variants", default="false,true",
                      help="fast_conv_grad values, comma-separated")
  parser.add_argument("--out", default="benchmarks/results/r3gan_step.md")
  parser.add_argument("--one", choices=("false", "true"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:  # a child: one variant, JSON on stdout
    print(json.dumps(measure(args.batch_size, args.repeats,
                             args.one == "true")))
    return
  rows = []
  for variant in args.variants.split(","):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.r3gan_step", "--one", variant,
         "--batch_size", str(args.batch_size), "--repeats", str(args.repeats)],
        capture_output=True, text=True, check=True)
    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(rows[-1], flush=True)
  lines = [
      "# R3GAN at the published CIFAR-10 width: one training step on CPU", "",
      f"{datetime.date.today()}, jax {jax.__version__}, "
      f"{jax.default_backend()}, {os.cpu_count()} cores ({cpu_name()}), "
      f"load average {load_average()} (shared machine), conditional CIFAR-10 "
      f"model (G 20,781,952 / D 21,280,512 parameters), RpGAN + R1 + R2 on "
      f"every update, batch {args.batch_size} (published: 512), median of "
      f"{args.repeats} steps. Reproduce: `python -m benchmarks.r3gan_step "
      f"--batch_size {args.batch_size} --repeats {args.repeats} --variants "
      f"{args.variants}`.", "",
      "| grouped conv | compile + first step (s) | step (s) | images/s | "
      "XLA temp (MiB) | peak RSS (MiB) |",
      "|---|---:|---:|---:|---:|---:|"]
  names = {False: "feature_group_count (fast_conv_grad=False)",
           True: "one conv per group (fast_conv_grad=True)"}
  for r in rows:
    lines.append(f"| {names[r['fast_conv_grad']]} | {r['compile_s']:.1f} | "
                 f"{r['step_s']:.2f} | {r['images_per_s']:.2f} | "
                 f"{r['temp_mib']:.0f} | {r['peak_rss_mib']:.0f} |")
  text = "\n".join(lines) + "\n"
  print(text)
  with open(args.out, "w") as f:
    f.write(text)


if __name__ == "__main__":
  main()
