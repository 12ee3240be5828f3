"""Per-layer timings of the DCGAN 28x28 layers: flax ConvTranspose vs ganjax's.

Run from the repository root::

    python -m benchmarks.conv_transpose_layers [--repeats 30] [--batch 64]

Every candidate is jitted and warmed up, then timed in rounds that visit all
candidates of a layer in turn (order reversed every other round), so load
from other processes hits them alike. Reports median and min over rounds.
Writes ``benchmarks/results/conv_transpose_layers.md``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from ganjax.models.layers import ConvTranspose

RESULTS = Path(__file__).parent / 'results' / 'conv_transpose_layers.md'


def cpu_model() -> str:
  try:
    for line in open('/proc/cpuinfo'):
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def nproc() -> str:
  try:
    return subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()
  except OSError:
    return str(os.cpu_count())


def make_fns(module, x):
  """Jitted forward and forward+backward (grads w.r.t. params and input)."""
  params = module.init(jax.random.key(1), x)
  fwd = jax.jit(module.apply)
  loss = lambda p, x: jnp.sum(module.apply(p, x) ** 2)
  fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1)))
  return (lambda: fwd(params, x)), (lambda: fwd_bwd(params, x))


def time_round_robin(fns: dict, repeats: int) -> dict:
  """{name: [seconds, ...]} with the candidates alternated every round."""
  for f in fns.values():  # compile + warm up
    jax.block_until_ready(f())
    jax.block_until_ready(f())
  times = {name: [] for name in fns}
  names = list(fns)
  for r in range(repeats):
    for name in (names if r % 2 == 0 else names[::-1]):
      t0 = time.perf_counter()
      jax.block_until_ready(fns[name]())
      times[name].append(time.perf_counter() - t0)
  return times


def layers(batch: int):
  """(label, input shape, {impl name: module}) for the DCGAN 28x28x1 nets."""
  ct = dict(kernel_size=(4, 4), strides=(2, 2), padding='SAME')
  cv = dict(kernel_size=(4, 4), strides=(2, 2), padding='SAME')
  out = []
  for (h, c, f) in [(7, 128, 64), (14, 64, 1)]:
    out.append((
        f'G ConvTranspose {h}x{h}x{c} -> {2 * h}x{2 * h}x{f}',
        (batch, h, h, c),
        {'flax': nn.ConvTranspose(f, **ct),
         'fast': ConvTranspose(f, **ct),
         'fast[conv]': ConvTranspose(f, impl='conv', **ct),
         'fast[matmul]': ConvTranspose(f, impl='matmul', **ct)}))
  for (h, c, f) in [(28, 1, 64), (14, 64, 128)]:
    out.append((f'D Conv {h}x{h}x{c} -> {h // 2}x{h // 2}x{f}',
                (batch, h, h, c), {'flax': nn.Conv(f, **cv)}))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=30)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--out', type=Path, default=RESULTS)
  args = parser.parse_args()

  rows = []
  for label, shape, impls in layers(args.batch):
    x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
    fns = {}
    for name, module in impls.items():
      fwd, fwd_bwd = make_fns(module, x)
      fns[(name, 'fwd')] = fwd
      fns[(name, 'fwd+bwd')] = fwd_bwd
    times = time_round_robin(fns, args.repeats)
    for name in impls:
      f, fb = times[(name, 'fwd')], times[(name, 'fwd+bwd')]
      rows.append((label, name, statistics.median(f) * 1e3, min(f) * 1e3,
                   statistics.median(fb) * 1e3, min(fb) * 1e3))
      print(f'{label:45s} {name:13s} fwd {rows[-1][2]:8.2f} ms  '
            f'fwd+bwd {rows[-1][4]:8.2f} ms', flush=True)

  load = os.getloadavg()
  lines = [
      '# ConvTranspose per-layer timings (DCGAN 28x28x1 layers)',
      '',
      f'- date: {datetime.datetime.now().isoformat(timespec="seconds")}',
      f'- jax {jax.__version__}, flax {flax.__version__}, backend '
      f'{jax.default_backend()}',
      f'- machine: nproc {nproc()}, CPU {cpu_model()}',
      f'- batch {args.batch}, float32, jitted, warm; {args.repeats} rounds, '
      'candidates alternated within each round; load average at end '
      f'{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared machine)',
      '- fwd+bwd: gradient of sum(y**2) w.r.t. params and input',
      '- `fast` is `ganjax.models.layers.ConvTranspose` (default impl="auto");'
      ' `fast[conv]` / `fast[matmul]` force one phase-convolution backend',
      '- command: `python -m benchmarks.conv_transpose_layers`',
      '',
      '| layer | impl | fwd median (ms) | fwd min (ms) | fwd+bwd median (ms) '
      '| fwd+bwd min (ms) |',
      '|---|---|---:|---:|---:|---:|',
  ]
  for label, name, fm, fmin, bm, bmin in rows:
    lines.append(f'| {label} | {name} | {fm:.2f} | {fmin:.2f} | {bm:.2f} | '
                 f'{bmin:.2f} |')
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text('\n'.join(lines) + '\n')
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
