"""Per-op time of a training step from a ``jax.profiler`` trace.

    python -m benchmarks.profile_step --model dcgan --k 1 [--variant fused|naive|scan|unroll|lax_convs]

Runs a few warm steps under ``jax.profiler.trace`` (Perfetto JSON), then sums
the duration of every XLA op (thunk) by name and prints the top ones with
the HLO op name (``metadata op_name``: which layer, forward or backward) from
the compiled module. Use it to see what bounds a step on a backend.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import shutil
import tempfile

import jax

from benchmarks import benchmark as bm
from benchmarks import naive as naive_lib


def _op_names(hlo_texts):
  """HLO instruction name -> (op type, metadata op_name), from compiled text."""
  names = {}
  pattern = re.compile(r"%?([\w.\-]+) = \S+ (\w[\w\-]*)\(")
  for text in hlo_texts:
    for line in text.splitlines():
      m = pattern.search(line)
      if not m:
        continue
      meta = re.search(r'op_name="([^"]+)"', line)
      names[m.group(1)] = (m.group(2), meta.group(1) if meta else "")
  return names


def profile(run, hlo_texts, steps: int = 3, top: int = 25):
  """Traces ``run()`` ``steps`` times; returns [(ms per step, count, op, info)]."""
  run()
  run()
  logdir = tempfile.mkdtemp(prefix="ganjax_profile_")
  try:
    jax.profiler.start_trace(logdir, create_perfetto_trace=True)
    for _ in range(steps):
      run()
    jax.profiler.stop_trace()
    path = sorted(glob.glob(f"{logdir}/**/*.trace.json.gz", recursive=True))[-1]
    with gzip.open(path) as f:
      trace = json.load(f)
  finally:
    shutil.rmtree(logdir, ignore_errors=True)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  total, count = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") == "X":
      total[e["name"]] += e.get("dur", 0)
      count[e["name"]] += 1
  names = _op_names(hlo_texts)
  out = []
  for name, dur in total.most_common():
    if name not in names:
      continue  # host-side events (Python, executor waits)
    op, meta = names[name]
    out.append((dur / 1e3 / steps, count[name] / steps, name, f"{op} {meta}"))
  return out[:top], sum(d for d, *_ in out), dict(total)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="dcgan", choices=sorted(bm.MODELS))
  parser.add_argument("--k", type=int, default=1)
  parser.add_argument("--variant", default="fused",
                      choices=["fused", "naive", "scan", "unroll", "lax_convs"],
                      help="fused: the default step; lax_convs: DCGAN in a "
                      "scan with flax's default convs (fast_conv_grad=False)")
  parser.add_argument("--top", type=int, default=25)
  args = parser.parse_args()
  batch_size = bm.MODELS[args.model][1]
  batch = bm.synthetic_batch(args.model, args.k, batch_size)
  if args.variant == "naive":
    naive = naive_lib.NaiveGAN(bm.make_gan(args.model, args.k))
    holder = [naive.init(jax.random.key(0), batch[0])]

    def run():
      holder[0], m = naive.step(holder[0], batch)
      jax.block_until_ready(m)

    hlo = [naive.d_step.lower(holder[0], batch[0]).compile().as_text(),
           naive.g_step.lower(holder[0], batch[0]).compile().as_text()]
  else:
    kw = {"scan": {"d_loop": "scan"}, "unroll": {"d_loop": "unroll"},
          "lax_convs": {"d_loop": "scan", "fast_conv_grad": False}
          }.get(args.variant, {})
    gan = bm.make_gan(args.model, args.k, **kw)
    state = gan.init(jax.random.key(0), batch[0])
    compiled = jax.jit(gan.step, donate_argnums=0).lower(state, batch).compile()
    holder = [state]

    def run():
      holder[0], m = compiled(holder[0], batch)
      jax.block_until_ready(m)

    hlo = [compiled.as_text()]
  rows, ops_ms, _ = profile(run, hlo, top=args.top)
  print(f"{args.model} k={args.k} {args.variant}: {ops_ms:.1f} ms of XLA ops "
        "per step (sum over ops; ops on different threads may overlap)")
  for ms, n, name, info in rows:
    print(f"{ms:9.2f} ms  x{n:4.1f}  {name:28s} {info[:110]}")


if __name__ == "__main__":
  main()
