"""Compile and step time of the fused GAN step (DCGAN 28x28, batch 64, Adam).

    python -m benchmarks.step_time [--repeats 20] [--out benchmarks/results/step_time.md]

For k = 1 and 5, with the models' fast transposed convolution and with
``flax.linen.ConvTranspose``, interleaved in one run (the machines are shared:
compare the ratios). Compile time is the first call's wall time (trace,
lower, compile, run once); step time is the median of ``--repeats`` calls.
"""

import argparse
import datetime
import os
import time

import jax
import numpy as np
import optax

import ganjax as gj
from benchmarks.machine import cpu_name


def _gan(k: int, fast: bool):
  G, D = gj.models.dcgan(image_shape=(28, 28, 1), latent_dim=100)
  G = G.clone(fast_conv_transpose=fast)
  return gj.GAN(G, D, loss="non_saturating", g_optimizer=optax.adam(2e-4, b1=0.5),
                d_optimizer=optax.adam(2e-4, b1=0.5), k=k, latent_dim=100)


def measure(k: int, fast: bool, batch_size: int, repeats: int) -> dict:
  gan = _gan(k, fast)
  batch = jax.random.uniform(jax.random.key(1), (k, batch_size, 28, 28, 1),
                             minval=-1.0, maxval=1.0)
  state = gan.init(jax.random.key(0), batch[0])
  step = jax.jit(gan.step, donate_argnums=0)
  start = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  step_s = float(np.median(times))
  return {"k": k, "fast": fast, "compile_s": compile_s, "step_ms": 1e3 * step_s,
          "steps_per_s": 1.0 / step_s,
          "images_per_s": k * batch_size / step_s}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--out", default="benchmarks/results/step_time.md")
  args = parser.parse_args()
  rows = []
  for k in (1, 5):
    for fast in (True, False):
      row = measure(k, fast, args.batch_size, args.repeats)
      print(row, flush=True)
      rows.append(row)
  lines = [
      "# DCGAN 28x28 fused step: compile and step time",
      "",
      f"{datetime.date.today()}, jax {jax.__version__}, {jax.devices()[0].platform}, "
      f"{os.cpu_count()} cores ({cpu_name()}), batch {args.batch_size}, Adam, "
      f"median of {args.repeats} steps. Reproduce: `python -m benchmarks.step_time`.",
      "",
      "| k | transposed conv | compile (s) | step (ms) | steps/s | real images/s |",
      "|---|---|---:|---:|---:|---:|",
  ]
  for r in rows:
    name = "ganjax sub-pixel (default)" if r["fast"] else "flax.linen.ConvTranspose"
    lines.append(f"| {r['k']} | {name} | {r['compile_s']:.2f} | {r['step_ms']:.1f} | "
                 f"{r['steps_per_s']:.2f} | {r['images_per_s']:.0f} |")
  for k in (1, 5):
    fast = next(r for r in rows if r["k"] == k and r["fast"])
    slow = next(r for r in rows if r["k"] == k and not r["fast"])
    lines.append("")
    lines.append(f"k = {k}: the default step is {slow['step_ms'] / fast['step_ms']:.1f}x "
                 f"faster than with flax.linen.ConvTranspose.")
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
