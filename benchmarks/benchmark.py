"""Throughput and compile-time benchmarks of ganjax's training step, in one run.

    python -m benchmarks.benchmark [--quick] [--out benchmarks/results/benchmark.md]

Sections (each comparison is measured in one process, its candidates
alternated round by round so that load from other processes hits them alike;
every figure is the median over rounds, and ratios are taken between medians):

1. ``throughput``: real images per second (k x B per step) of the fused k:1
   step (``jax.jit(gan.step, donate_argnums=0)``) vs a naive loop of separate
   jitted D and G steps (``benchmarks/naive.py``, k + 1 dispatches per step)
   vs the same models in eager PyTorch (``benchmarks/torch_reference.py``),
   for the small MLP (B 64), the paper's MLP (B 100) and DCGAN 28x28 (B 64),
   k = 1 and 5, Adam, non-saturating loss.
2. ``compile``: trace + lower + compile time of the step for k = 1, 5, 25.
3. ``scan_steps``: ``ganjax.loops.scan_steps`` with 100 steps per call vs one
   step per call, for small models whose data is sampled on the device.
4. ``pipeline``: the step fed by tf.data (TFDS Fashion-MNIST through
   ``ganjax.data.pipeline.batches`` + ``prefetch_to_device``) vs synthetic
   batches already on the device. Skipped without TensorFlow or the data.
5. ``scaling``: images/s and achieved FLOP/s (XLA's cost analysis of the
   compiled step / step time) for batch sizes 64..4096, float32 and
   bfloat16; run on accelerators (``--sections scaling`` forces it on CPU).
6. ``runner``: ``experiments.train`` against the bare jitted step, start-up
   and resume times (``benchmarks/runner.py``, written to
   ``benchmarks/results/runner.md``).

Every row runs on the machine the script runs on; GPU rows are filled in only
when JAX's default backend is a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import flax  # pylint: disable=wrong-import-position
import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import optax  # pylint: disable=wrong-import-position

import ganjax as gj  # pylint: disable=wrong-import-position
from benchmarks import naive as naive_lib  # pylint: disable=wrong-import-position
from benchmarks.machine import cpu_name, load_average

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "benchmark.md")
SECTIONS = ("throughput", "compile", "scan_steps", "pipeline", "scaling",
            "runner")

# name -> (builder, batch size, data shape, value range of G's output)
MODELS = {
    "small_mlp": (lambda: gj.models.small_mlp((28, 28, 1), 100), 64,
                  (28, 28, 1), (0.0, 1.0)),
    "goodfellow_mlp": (lambda: gj.models.goodfellow_mlp((28, 28, 1), 100), 100,
                       (28, 28, 1), (0.0, 1.0)),
    "dcgan": (lambda: gj.models.dcgan((28, 28, 1), 100), 64, (28, 28, 1),
              (-1.0, 1.0)),
}
LABELS = {"small_mlp": "small MLP (100-128-784)",
          "goodfellow_mlp": "paper MLP (1200-1200 / maxout 240x5)",
          "dcgan": "DCGAN 28x28"}
HAS_D_LOOP = "d_loop" in {f.name for f in dataclasses.fields(gj.GAN)}


# ----------------------------------------------------------------- helpers


@dataclasses.dataclass
class Config:
  rounds: int = 7            # interleaved rounds per comparison
  min_round_s: float = 0.5   # each candidate runs >= this long per round
  compile_rounds: int = 3
  scan_steps: int = 100
  quick: bool = False


def make_gan(model: str, k: int, compute_dtype=None, d_loop: str | None = None,
             fast_conv_grad: bool = True) -> gj.GAN:
  """The benchmark's GAN: Adam(2e-4, b1=0.5) for both players, non-saturating.

  ``fast_conv_grad=False`` (DCGAN only): G and D with flax's default
  convolutions (``lax.conv_general_dilated``'s gradients) instead of
  ``ganjax.models.layers.conv_general_dilated``.
  """
  G, D = MODELS[model][0]()
  if not fast_conv_grad:
    G, D = G.clone(fast_conv_grad=False), D.clone(fast_conv_grad=False)
  kwargs = {}
  if d_loop is not None and HAS_D_LOOP:
    kwargs["d_loop"] = d_loop
  if compute_dtype is not None:
    kwargs["compute_dtype"] = compute_dtype
  return gj.GAN(G, D, loss="non_saturating",
                g_optimizer=optax.adam(2e-4, b1=0.5),
                d_optimizer=optax.adam(2e-4, b1=0.5), k=k, latent_dim=100,
                **kwargs)


def resolved_d_loop(gan: gj.GAN, state, batch) -> str:
  """What ``gan.d_loop`` compiles to here: ``'scan'`` or ``'unroll'``."""
  if not HAS_D_LOOP:
    return "scan"
  return gan._d_loop(state.d_params, state.d_batch_stats,  # pylint: disable=protected-access
                     (batch[0],))


def synthetic_batch(model: str, k: int, batch_size: int, seed: int = 1):
  _, _, shape, (lo, hi) = MODELS[model]
  return jax.random.uniform(jax.random.key(seed), (k, batch_size) + shape,
                            minval=lo, maxval=hi)


def interleave(candidates: dict[str, Callable[[int], None]], rounds: int,
               min_round_s: float) -> dict[str, list[float]]:
  """Seconds per step of each candidate, alternated round by round.

  ``candidates[name](n)`` runs n steps and blocks on the last one. After a
  warm-up, each candidate gets n = ceil(min_round_s / t_step) steps per round;
  the order is reversed every other round.
  """
  steps = {}
  for name, run in candidates.items():
    run(1)  # warm-up (compiled before)
    t = time.perf_counter()
    run(1)
    steps[name] = max(1, math.ceil(min_round_s / (time.perf_counter() - t)))
  times = {name: [] for name in candidates}
  names = list(candidates)
  for r in range(rounds):
    for name in names if r % 2 == 0 else names[::-1]:
      t = time.perf_counter()
      candidates[name](steps[name])
      times[name].append((time.perf_counter() - t) / steps[name])
  return times


def median(xs):
  return float(statistics.median(xs))


def flops_of(compiled) -> float | None:
  """FLOPs of one call from XLA's cost analysis (None if unavailable).

  XLA counts a while loop's body once: exact for k = 1, an undercount for the
  k > 1 steps whose D updates are a ``lax.scan``.
  """
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def jax_runner(step, state, batch):
  """``run(n)``: n calls of a donated jitted step on a fixed device batch."""
  holder = [state]

  def run(n):
    s = holder[0]
    for _ in range(n):
      s, metrics = step(s, batch)
    jax.block_until_ready(metrics)
    holder[0] = s

  return run


def torch_available() -> bool:
  try:
    import torch  # pylint: disable=import-outside-toplevel,unused-import
    return True
  except ImportError:
    return False


def torch_runner(model: str, k: int, batch_size: int, threads: int):
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  gan = torch_reference.TorchGAN(model, k=k)
  batch = torch_reference.synthetic_batch(model, k, batch_size)

  def run(n):
    torch.set_num_threads(threads)
    for _ in range(n):
      gan.step(batch)

  return run


def log(*args):
  print(*args, flush=True)


# --------------------------------------------------------------- sections


def throughput(cfg: Config, models=("small_mlp", "goodfellow_mlp", "dcgan"),
               ks=(1, 5), torch_threads=(1, 2), variants: bool = True
               ) -> list[dict]:
  """Fused step vs naive loop vs PyTorch, interleaved per (model, k).

  ``variants``: also time the fused step with the other ``d_loop`` than the
  default's and, for DCGAN, the scan with flax's default convolutions.
  """
  rows = []
  with_torch = (bool(torch_threads) and jax.default_backend() == "cpu"
                and torch_available())
  for model in models:
    batch_size = MODELS[model][1]
    for k in ks:
      batch = synthetic_batch(model, k, batch_size)
      cands, flops, compile_s = {}, {}, {}
      fused = [("ganjax fused", {})]
      if variants and HAS_D_LOOP:
        gan = make_gan(model, k)
        default = resolved_d_loop(gan, gan.init(jax.random.key(0), batch[0]),
                                  batch)
        other = "unroll" if default == "scan" else "scan"
        fused = [(f"ganjax fused (default, d_loop=auto: {default})", {}),
                 (f"ganjax fused (d_loop={other})", {"d_loop": other})]
        if model == "dcgan":
          fused.append(("ganjax fused (d_loop=scan), flax's default convs "
                        "(fast_conv_grad=False)",
                        {"d_loop": "scan", "fast_conv_grad": False}))
      for name, kw in fused:
        gan = make_gan(model, k, **kw)
        state = gan.init(jax.random.key(0), batch[0])
        t = time.perf_counter()
        compiled = jax.jit(gan.step, donate_argnums=0).lower(state,
                                                             batch).compile()
        compile_s[name] = time.perf_counter() - t
        flops[name] = flops_of(compiled) if k == 1 else None
        cands[name] = jax_runner(compiled, state, batch)
      naive = naive_lib.NaiveGAN(make_gan(model, k))
      nstate = naive.init(jax.random.key(0), batch[0])
      nrun = jax_runner(naive.step, nstate, batch)
      cands["ganjax naive (k+1 jitted calls)"] = nrun
      if with_torch:
        for threads in torch_threads:
          cands[f"PyTorch eager ({threads} thread{'s' * (threads > 1)})"] = (
              torch_runner(model, k, batch_size, threads))
      log(f"[throughput] {model} k={k}: {list(cands)}")
      times = interleave(cands, cfg.rounds, cfg.min_round_s)
      for name, ts in times.items():
        t = median(ts)
        row = dict(model=model, k=k, batch=batch_size, candidate=name,
                   step_ms=1e3 * t, images_per_s=k * batch_size / t,
                   spread=(1e3 * min(ts), 1e3 * max(ts)),
                   compile_s=compile_s.get(name),
                   gflops=(flops[name] / t / 1e9 if flops.get(name) else None))
        rows.append(row)
        log(f"  {name:55s} {row['step_ms']:9.2f} ms  {row['images_per_s']:9.0f} img/s")
  return rows


def compile_times(cfg: Config, models=("small_mlp", "dcgan"),
                  ks=(1, 5, 25), loops=("scan", "unroll")) -> list[dict]:
  """Trace + lower + compile time of the jitted step, caches cleared."""
  loops = list(loops) if HAS_D_LOOP else [None]
  rows = []
  for model in models:
    batch_size = MODELS[model][1]
    setups = {}
    for loop in loops:
      for k in ks:
        gan = make_gan(model, k, d_loop=loop)
        batch = synthetic_batch(model, k, batch_size)
        setups[(loop, k)] = (gan, gan.init(jax.random.key(0), batch[0]), batch)
    times = {key: [] for key in setups}
    order = list(setups)
    for r in range(cfg.compile_rounds):
      for key in order if r % 2 == 0 else order[::-1]:
        gan, state, batch = setups[key]
        jax.clear_caches()
        t = time.perf_counter()
        jax.jit(gan.step, donate_argnums=0).lower(state, batch).compile()
        times[key].append(time.perf_counter() - t)
        log(f"[compile] {model} d_loop={key[0]} k={key[1]}: {times[key][-1]:.2f} s")
    for (loop, k), ts in times.items():
      rows.append(dict(model=model, d_loop=loop or "scan", k=k,
                       compile_s=median(ts), runs=len(ts)))
  return rows


def _scan_models():
  """(label, GAN, sampler, example[, steps per call]) for scan_steps."""
  out = []
  G, D = gj.models.toy_mlp(2, hidden=128, depth=3)
  toy = gj.GAN(G, D, g_optimizer=optax.adam(1e-4, b1=0.5),
               d_optimizer=optax.adam(1e-4, b1=0.5), k=1, latent_dim=16)
  for b in (512, 16):  # the ring-of-8 config's batch, and a tiny one
    out.append((f"toy MLP 128x3, ring of 8, B {b}", toy,
                lambda key, b=b: gj.data.toy.ring(key, b).reshape(1, b, 2),
                jnp.zeros((b, 2))))
  # small MLP on an in-memory data set on the device (random "images").
  data = jax.random.uniform(jax.random.key(5), (10_000, 28, 28, 1))
  small = make_gan("small_mlp", 1)

  def sample(key):
    return data[jax.random.randint(key, (64,), 0, data.shape[0])][None]

  out.append(("small MLP, B 64, data on device", small, sample, data[:64]))
  # DCGAN: every conv gradient inside the scan over steps; 10 steps per call
  # (a call of 100 would take ~10 s).
  images = data * 2.0 - 1.0
  dcgan = make_gan("dcgan", 1)

  def sample_images(key):
    return images[jax.random.randint(key, (64,), 0, images.shape[0])][None]

  out.append(("DCGAN 28x28, B 64, data on device", dcgan, sample_images,
              images[:64], 10))
  return out


def scan_steps(cfg: Config) -> list[dict]:
  """scan_steps(num_steps=N) per call vs one step per call (N calls)."""
  rows = []
  for label, gan, sample, example, *steps in _scan_models():
    n = min(steps[0], cfg.scan_steps) if steps else cfg.scan_steps
    fused = gj.loops.scan_steps(gan.step, sample, n)
    single = fused if n == 1 else gj.loops.scan_steps(gan.step, sample, 1)
    data_key = jax.random.key(11)
    state = gan.init(jax.random.key(0), example)
    holders = {"fused": [state], "single": [jax.tree.map(jnp.copy, state)]}

    def run_fused(calls, h=holders["fused"], f=fused):
      s = h[0]
      for _ in range(calls):
        s, m = f(s, data_key)
      jax.block_until_ready(m)
      h[0] = s

    def run_single(calls, h=holders["single"], f=single):
      s = h[0]
      for _ in range(calls * n):
        s, m = f(s, data_key)
      jax.block_until_ready(m)
      h[0] = s

    cands = {f"scan_steps({n}): one call per {n} steps": run_fused,
             f"scan_steps(1): one call per step": run_single}
    log(f"[scan_steps] {label}")
    times = interleave(cands, cfg.rounds, cfg.min_round_s)
    batch = gan.k * jax.eval_shape(sample, data_key).shape[1]
    for name, ts in times.items():
      t = median(ts) / n
      rows.append(dict(model=label, candidate=name, step_ms=1e3 * t,
                       steps_per_s=1 / t, images_per_s=batch / t))
      log(f"  {name:40s} {1e3 * t:8.3f} ms/step")
  return rows


def pipeline_rows(cfg: Config, models=("dcgan", "small_mlp"), k: int = 1
                  ) -> tuple[list[dict], str | None]:
  """The step fed by tf.data Fashion-MNIST vs a synthetic on-device batch."""
  try:
    import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return [], "skipped: TensorFlow is not installed"
  from ganjax.data import pipeline, tfds_source  # pylint: disable=import-outside-toplevel
  rows = []
  for model in models:
    batch_size = MODELS[model][1]
    value_range = MODELS[model][3]
    try:
      it = pipeline.prefetch_to_device(pipeline.batches(
          "fashion_mnist", batch_size=batch_size, k=k, value_range=value_range,
          data_dir=tfds_source.default_data_dir()), size=2)
      first = next(it)
    except pipeline.DatasetNotFoundError as e:
      return rows, f"skipped: {e}"
    gan = make_gan(model, k)
    step = jax.jit(gan.step, donate_argnums=0)
    synthetic = synthetic_batch(model, k, batch_size)
    states = {"real": [gan.init(jax.random.key(0), first[0])],
              "synthetic": [gan.init(jax.random.key(0), first[0])]}

    def run_real(n, h=states["real"]):
      s = h[0]
      for _ in range(n):
        s, m = step(s, next(it))
      jax.block_until_ready(m)
      h[0] = s

    def run_synthetic(n, h=states["synthetic"]):
      s = h[0]
      for _ in range(n):
        s, m = step(s, synthetic)
      jax.block_until_ready(m)
      h[0] = s

    cands = {"tf.data Fashion-MNIST + prefetch_to_device": run_real,
             "synthetic batch on device": run_synthetic}
    log(f"[pipeline] {model} k={k}")
    times = interleave(cands, cfg.rounds, cfg.min_round_s)
    for name, ts in times.items():
      t = median(ts)
      rows.append(dict(model=model, k=k, batch=batch_size, candidate=name,
                       step_ms=1e3 * t, images_per_s=k * batch_size / t))
      log(f"  {name:45s} {1e3 * t:8.2f} ms/step")
  return rows, None


def scaling(cfg: Config, models=("dcgan", "goodfellow_mlp"),
            batch_sizes=(64, 256, 1024, 4096),
            dtypes=(None, jnp.bfloat16)) -> list[dict]:
  """Images/s and FLOP/s of the k = 1 fused step vs batch size and dtype."""
  rows = []
  for model in models:
    for dtype in dtypes:
      for batch_size in batch_sizes:
        gan = make_gan(model, 1, compute_dtype=dtype)
        batch = synthetic_batch(model, 1, batch_size)
        state = gan.init(jax.random.key(0), batch[0])
        try:
          compiled = jax.jit(gan.step, donate_argnums=0).lower(
              state, batch).compile()
        except Exception as e:  # pylint: disable=broad-except
          log(f"[scaling] {model} B={batch_size}: {type(e).__name__}: {e}")
          continue
        flops = flops_of(compiled)
        run = jax_runner(compiled, state, batch)
        times = interleave({"step": run}, cfg.rounds, cfg.min_round_s)["step"]
        t = median(times)
        rows.append(dict(model=model, dtype=jnp.dtype(dtype or jnp.float32).name,
                         batch=batch_size, step_ms=1e3 * t,
                         images_per_s=batch_size / t,
                         tflops=(flops / t / 1e12 if flops else None)))
        log(f"[scaling] {model} {rows[-1]['dtype']} B={batch_size}: "
            f"{1e3 * t:.2f} ms, {batch_size / t:.0f} img/s")
  return rows


# ----------------------------------------------------------------- report


def _ratio(rows, model, k, num, den):
  a = next((r for r in rows if r["model"] == model and r["k"] == k
            and r["candidate"].startswith(num)), None)
  b = [r for r in rows if r["model"] == model and r["k"] == k
       and r["candidate"].startswith(den)]
  if a is None or not b:
    return None
  return a["images_per_s"] / max(r["images_per_s"] for r in b)


def _fmt(x, spec: str) -> str:
  return "" if x is None else format(x, spec)


def render(results: dict, cfg: Config, argv: list[str], started: str,
           load_start: str) -> str:
  import importlib.metadata as md  # pylint: disable=import-outside-toplevel
  versions = [f"jax {jax.__version__}", f"flax {flax.__version__}",
              f"optax {optax.__version__}"]
  if torch_available():
    import torch  # pylint: disable=import-outside-toplevel
    versions.append(f"torch {torch.__version__} (run on CPU, eager)")
  try:
    versions.append(f"tensorflow {md.version('tensorflow-cpu')}")
  except md.PackageNotFoundError:
    pass
  device = jax.devices()[0]
  backend = jax.default_backend()
  out = [
      "# ganjax performance benchmark",
      "",
      "- command: `" + " ".join(["python -m benchmarks.benchmark"] + argv)
      + "`",
      f"- started {started}, finished "
      f"{datetime.datetime.now().isoformat(timespec='seconds')}",
      f"- device: {backend} ({device.device_kind}); host {platform.node()}: "
      f"{os.cpu_count()} CPU cores ({cpu_name()}), Python "
      f"{platform.python_version()}",
      f"- {', '.join(versions)}",
      f"- load average (1, 5, 15 min) at start {load_start}, at end "
      f"{load_average()}",
      f"- method: candidates of a comparison alternate round by round in one "
      f"process ({cfg.rounds} rounds, each >= {cfg.min_round_s} s per "
      "candidate, order reversed every other round); figures are medians "
      "over rounds, ratios are ratios of medians. Steps are dispatched "
      "back to back and synchronised once per round (no host sync per "
      "step). Images/s counts the k x B real images a step consumes.",
  ]
  if backend == "cpu":
    out += [
        "- **This machine is shared** with other jobs (see the load "
        "averages above), so absolute times may be inflated and noisy; "
        "compare the ratios within a table. No GPU was available: the GPU "
        "rows are not measured.",
    ]
  out.append("")

  rows = results.get("throughput")
  if rows:
    out += ["## 1. Fused step vs naive loop vs PyTorch", "",
            "Adam(2e-4, b1=0.5) for both players, non-saturating loss, "
            "synthetic data. `fused`: `jax.jit(gan.step, donate_argnums=0)`, "
            "one call per k:1 step. `naive`: `benchmarks/naive.py`, a jitted "
            "D step and a jitted G step called k + 1 times per step (same "
            "models, losses, optimizers, initial parameters). PyTorch: "
            "`benchmarks/torch_reference.py`, eager, with 1 and 2 intra-op "
            "threads (its default is 2 here; its OpenMP threads suffer "
            "most from the oversubscribed cores). GFLOP/s: XLA cost "
            "analysis / step time (k = 1 only: XLA counts a loop body once). "
            "`d_loop`: the k D updates in one `lax.scan` or unrolled (the "
            "default, `auto`, scans unless the discriminator has plain `lax` "
            "convolutions on CPU). DCGAN's convs use "
            "`ganjax.models.layers.conv_general_dilated`, whose gradients "
            "XLA:CPU runs fast inside loops; the `flax's default convs` row "
            "shows the scan without it (`benchmarks/conv_vjp.py`).",
            "",
            "| model | k | B | candidate | step (ms) | min-max over rounds (ms) "
            "| real images/s | compile (s) | GFLOP/s |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
      out.append(
          f"| {LABELS[r['model']]} | {r['k']} | {r['batch']} | {r['candidate']} "
          f"| {r['step_ms']:.2f} | {r['spread'][0]:.1f}-{r['spread'][1]:.1f} "
          f"| {r['images_per_s']:,.0f} | {_fmt(r['compile_s'], '.1f')} | "
          f"{_fmt(r['gflops'], '.1f')} |")
    out.append("")
  rows = results.get("compile")
  if rows:
    ks = sorted({r["k"] for r in rows})
    out += ["## 2. Compile time of the step vs k", "",
            "Trace + lower + XLA compile of `jax.jit(gan.step)`, caches "
            "cleared before each; median of "
            f"{rows[0]['runs']} interleaved runs. `scan`: the k D updates in "
            "one `lax.scan` (what `GAN(d_loop='auto')` compiles for these "
            "models); `unroll`: k copies.", "",
            "| model | d_loop | " + " | ".join(f"k={k} (s)" for k in ks)
            + f" | k={ks[-1]} / k={ks[0]} |",
            "|---|---|" + "---:|" * (len(ks) + 1)]
    for model in dict.fromkeys(r["model"] for r in rows):
      for loop in dict.fromkeys(r["d_loop"] for r in rows):
        c = {r["k"]: r["compile_s"] for r in rows
             if r["model"] == model and r["d_loop"] == loop}
        if c:
          out.append(f"| {LABELS[model]} | {loop} | "
                     + " | ".join(f"{c[k]:.2f}" for k in ks)
                     + f" | {c[ks[-1]] / c[ks[0]]:.2f}x |")
    out.append("")
  rows = results.get("scan_steps")
  if rows:
    out += ["## 3. Many steps per call: `ganjax.loops.scan_steps`", "",
            "Both candidates run the same jitted `scan_steps` body (batch "
            "sampled on the device, then `gan.step`); one call per "
            f"{cfg.scan_steps} steps (DCGAN: 10) vs one call per step.", "",
            "| model | candidate | ms/step | steps/s | real images/s |",
            "|---|---|---:|---:|---:|"]
    for r in rows:
      out.append(f"| {r['model']} | {r['candidate']} | {r['step_ms']:.3f} | "
                 f"{r['steps_per_s']:,.0f} | {r['images_per_s']:,.0f} |")
    out.append("")
  rows, note = results.get("pipeline", ([], None))
  out += ["## 4. Input pipeline vs synthetic batches", ""]
  if note:
    out += [note, ""]
  if rows:
    out += ["The default fused step, k = 1, fed by `pipeline.batches("
            "'fashion_mnist', ...)` (TFDS, cached, shuffled) through "
            "`prefetch_to_device(size=2)`, vs one synthetic batch already "
            "on the device. TensorFlow's threads share the CPU with XLA.", "",
            "| model | B | feed | step (ms) | real images/s |",
            "|---|---:|---|---:|---:|"]
    for r in rows:
      out.append(f"| {LABELS[r['model']]} | {r['batch']} | {r['candidate']} | "
                 f"{r['step_ms']:.2f} | {r['images_per_s']:,.0f} |")
    out.append("")
  out += ["## 5. Batch-size scaling and achieved FLOP/s (accelerators)", ""]
  rows = results.get("scaling")
  if rows:
    out += [f"k = 1 fused step on {backend} ({device.device_kind}); TFLOP/s = "
            "XLA cost-analysis FLOPs / step time.", "",
            "| model | compute dtype | B | step (ms) | images/s | TFLOP/s |",
            "|---|---|---:|---:|---:|---:|"]
    for r in rows:
      tf = "" if r["tflops"] is None else f"{r['tflops']:.3f}"
      out.append(f"| {LABELS[r['model']]} | {r['dtype']} | {r['batch']} | "
                 f"{r['step_ms']:.2f} | {r['images_per_s']:,.0f} | {tf} |")
    out.append("")
  else:
    out += ["Not measured: no GPU in this run. On a GPU machine run "
            "`python -m benchmarks.benchmark --sections scaling throughput "
            "compile scan_steps` (TensorFlow is not needed; the pipeline "
            "section skips itself without it).", "",
            "| model | compute dtype | B | step (ms) | images/s | TFLOP/s |",
            "|---|---|---:|---:|---:|---:|"]
    for model in ("dcgan", "goodfellow_mlp"):
      for dtype in ("float32", "bfloat16"):
        for b in (64, 256, 1024, 4096):
          out.append(f"| {LABELS[model]} | {dtype} | {b} | not measured | "
                     "not measured | not measured |")
    out.append("")
  out += summary(results, cfg)
  return "\n".join(out) + "\n"


def summary(results: dict, cfg: Config) -> list[str]:
  """The targets of the performance issue, with the measured ratios."""
  out = ["## Targets (ratios within one run)", "",
         "| target | measured | met |", "|---|---:|---|"]

  def line(target, value, ok):
    if value is None:
      out.append(f"| {target} | not measured | |")
    else:
      out.append(f"| {target} | {value} | {'yes' if ok else '**no**'} |")

  rows = results.get("throughput") or []
  for model, k in (("small_mlp", 5), ("dcgan", 5), ("small_mlp", 1),
                   ("dcgan", 1)):
    r = _ratio(rows, model, k, "ganjax fused", "ganjax naive")
    line(f"fused >= 1.3x naive, {LABELS[model]}, k = {k}"
         + (" (default fused)" if HAS_D_LOOP else ""),
         None if r is None else f"{r:.2f}x", r is not None and r >= 1.3)
  for model, k, want in (("goodfellow_mlp", 1, 2.0), ("dcgan", 1, 1.0)):
    r = _ratio(rows, model, k, "ganjax fused", "PyTorch")
    line(f">= {want}x PyTorch (best of its thread settings), {LABELS[model]}, "
         f"B {MODELS[model][1]}, k = {k}", None if r is None else f"{r:.2f}x",
         r is not None and r >= want)
  for model in MODELS:
    for k in (1, 5):
      r = _ratio(rows, model, k, "ganjax fused (default, d_loop=auto: scan)",
                 "ganjax fused (d_loop=unroll)")
      if r is not None:
        line(f"scan default as fast as unrolled (>= 0.95x), {LABELS[model]}, "
             f"k = {k}", f"{r:.2f}x", r >= 0.95)
  rows = results.get("scan_steps") or []
  fused = [r for r in rows if r["candidate"].startswith("scan_steps(")
           and not r["candidate"].startswith("scan_steps(1)")]
  for f in fused:
    s = next(r for r in rows if r["model"] == f["model"]
             and r["candidate"].startswith("scan_steps(1)"))
    ratio = s["step_ms"] / f["step_ms"]
    line(f"{f['candidate'].split(':')[0]} >= 3x single steps, {f['model']}",
         f"{ratio:.2f}x", ratio >= 3)
  rows = results.get("compile") or []
  for model in dict.fromkeys(r["model"] for r in rows):
    for loop in dict.fromkeys(r["d_loop"] for r in rows):
      c = {r["k"]: r["compile_s"] for r in rows
           if r["model"] == model and r["d_loop"] == loop}
      if 1 in c and 25 in c:
        ratio = c[25] / c[1]
        line(f"compile time k = 25 within 1.5x of k = 1, {LABELS[model]}, "
             f"d_loop={loop}", f"{ratio:.2f}x", ratio <= 1.5)
  rows, _ = results.get("pipeline", ([], None))
  for model in dict.fromkeys(r["model"] for r in rows):
    real = next(r for r in rows if r["model"] == model
                and r["candidate"].startswith("tf.data"))
    syn = next(r for r in rows if r["model"] == model
               and r["candidate"].startswith("synthetic"))
    slow = real["step_ms"] / syn["step_ms"] - 1
    line(f"step fed by tf.data within 5% of synthetic, {LABELS[model]}",
         f"{100 * slow:+.1f}%", slow <= 0.05)
  out.append("")
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="fewer rounds and shorter rounds (a few minutes)")
  parser.add_argument("--sections", nargs="+", default=None, choices=SECTIONS,
                      help="default: all but 'scaling' on CPU, all on GPU")
  parser.add_argument("--rounds", type=int, default=None)
  parser.add_argument("--out", default=RESULTS)
  args = parser.parse_args(argv)
  argv = list(sys.argv[1:] if argv is None else argv)
  cfg = Config()
  if args.quick:
    cfg = Config(rounds=3, min_round_s=0.2, compile_rounds=1, quick=True)
  if args.rounds:
    cfg.rounds = args.rounds
  sections = args.sections or [s for s in SECTIONS if s != "scaling"
                               or jax.default_backend() != "cpu"]
  started = datetime.datetime.now().isoformat(timespec="seconds")
  load_start = load_average()
  log(f"backend {jax.default_backend()}, sections {sections}, {cfg}")
  results = {}
  if "throughput" in sections:
    results["throughput"] = throughput(cfg)
  if "compile" in sections:
    results["compile"] = compile_times(
        cfg, models=("small_mlp",) if cfg.quick else ("small_mlp", "dcgan"))
  if "scan_steps" in sections:
    results["scan_steps"] = scan_steps(cfg)
  if "pipeline" in sections:
    results["pipeline"] = pipeline_rows(cfg)
  if "scaling" in sections:
    results["scaling"] = scaling(cfg)
  if "runner" in sections:  # its own file: benchmarks/results/runner.md
    from benchmarks import runner  # pylint: disable=g-import-not-at-top
    runner.main(["--quick"] if cfg.quick else [])
  if set(sections) == {"runner"}:
    return
  text = render(results, cfg, argv, started, load_start)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    f.write(text)
  log(text)
  log(f"wrote {args.out}")


if __name__ == "__main__":
  main()
