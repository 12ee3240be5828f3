"""How fast N members of one GAN train in one program, per formulation.

    python -m benchmarks.population_speed [--quick] [--out benchmarks/results/population_speed.md]

A population is N members of one GAN (same architecture and static settings;
their own parameters, optimizer states and noise): ``GANState`` leaves with a
leading member axis. For each model and N, measured in one process, the
candidates alternated round by round (``benchmarks.benchmark.interleave``):

* ``loop``: N jitted single steps called one after another (the baseline: the
  members run as separate runs would).
* ``vmap``: ``jax.vmap(gan.step)`` over the members, jitted. Per-member
  weights make every convolution a grouped one (members in the feature
  dimension, ``feature_group_count = N``): that *is* "members folded into the
  batch with grouped convolutions".
* ``lax.map``: ``jax.lax.map`` of the step over the members (a sequential
  loop in one program).
* ``vmap groups of g``: ``lax.map`` over N / g groups of ``vmap`` over g.
* ``unrolled``: N copies of the step in one program (small N only: its
  compile time grows with N).
* ``vmap, <convs>`` (convolutional models): ``vmap`` with the models'
  convolutions swapped while tracing (see ``CONVS``): flax's plain
  ``lax.conv_general_dilated``; im2col + matmul (a batched matmul under
  vmap); one ungrouped convolution per member (``jax.custom_batching``).
* ``devices``: members spread over the (fake) CPU devices with
  ``jax.shard_map``, ``vmap`` within a device.

Also many steps per call (``ganjax.loops.scan_steps_at`` around the
population step, as the runner runs 100 steps per call) against one step per
call, the compile time of every formulation (trace + lower + XLA compile),
and correctness: member i of each formulation after one call against member
i alone (the loop with as many steps per call): the largest absolute
difference over all state leaves. ``--quick``: a tiny DCGAN and
``QUICK_FORMULATIONS``, one round (a smoke test; its timings mean nothing).
With rbg keys (``jax_default_prng_impl``) ``vmap`` draws other noise than
each member's key alone; the default threefry keys draw the same.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import importlib
import itertools
import os
import sys
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import optax  # pylint: disable=wrong-import-position
from jax import lax  # pylint: disable=wrong-import-position
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=wrong-import-position

import ganjax as gj  # pylint: disable=wrong-import-position
from benchmarks.benchmark import interleave, log, median  # pylint: disable=wrong-import-position
from benchmarks.machine import cpu_name, load_average  # pylint: disable=wrong-import-position
from experiments import builders  # pylint: disable=wrong-import-position
from experiments.configs import dcgan_digits  # pylint: disable=wrong-import-position
from ganjax.models import layers  # pylint: disable=wrong-import-position

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "population_speed.md")
NUM_DEVICES = 8  # fake CPU devices for the `devices` candidate
MEMBER = "member"


# ------------------------------------------------------------------ models


@dataclasses.dataclass(frozen=True)
class Model:
  """A benchmarked GAN: ``build() -> GAN``, its data and the N to measure."""
  name: str
  family: str                      # "MLP" or "convolutions"
  build: Callable[[], gj.GAN]
  data_shape: tuple
  batch_size: int
  sizes: tuple                     # population sizes N
  scan_size: int                   # N of section 2, one of `sizes`
  steps_per_call: int
  max_unrolled: int = 8            # largest N compiled as N copies of the step


def _adam_gan(G, D, latent_dim, **kwargs) -> gj.GAN:
  return gj.GAN(G, D, g_optimizer=optax.adam(2e-4, b1=0.5),
                d_optimizer=optax.adam(2e-4, b1=0.5), latent_dim=latent_dim,
                **kwargs)


def _sngan(image_shape, channels: int) -> gj.GAN:
  G, D = gj.models.resnet(image_shape, 128, g_channels=channels,
                          d_channels=channels)
  adam = optax.adam(2e-4, b1=0.0, b2=0.9)
  return gj.GAN(G, D, loss="hinge", g_optimizer=adam, d_optimizer=adam,
                k=1, latent_dim=128)


def full_models() -> list[Model]:
  mlp, toy = gj.models.small_mlp((28, 28, 1)), gj.models.toy_mlp(2)
  return [
      Model("small MLP (100-128-784), B 64", "MLP",
            lambda: _adam_gan(*mlp, 100), (28, 28, 1), 64, (1, 4, 8, 16, 32),
            8, 100),
      Model("toy MLP (2-128x3-2), B 64", "MLP", lambda: _adam_gan(*toy, 2),
            (2,), 64, (1, 4, 8, 16, 32), 8, 100),
      Model("dcgan_digits (8x8, 64 features), B 64", "convolutions",
            lambda: builders.build(dcgan_digits.get_config()).gan, (8, 8, 1),
            64, (1, 4, 8, 16, 32), 8, 100),
      Model("DCGAN 28x28, B 64", "convolutions",
            lambda: _adam_gan(*gj.models.dcgan((28, 28, 1), 100), 100),
            (28, 28, 1), 64, (1, 4, 8), 4, 10, max_unrolled=4),
      Model("ResNet SN-GAN 8x8, 32 channels, k 1, B 64", "convolutions",
            lambda: _sngan((8, 8, 1), 32), (8, 8, 1), 64, (1, 4), 4, 10,
            max_unrolled=4),
  ]


def quick_models() -> list[Model]:
  """A tiny DCGAN, N = 2, 2 steps per call: the smoke test (with
  ``QUICK_FORMULATIONS``)."""
  dcgan = gj.models.dcgan((8, 8, 1), 8, base_features=4)
  return [Model("tiny DCGAN", "convolutions", lambda: _adam_gan(*dcgan, 8),
                (8, 8, 1), 4, (2,), 2, 2)]


# The smoke test's formulations: it is compile-bound (a GAN step takes
# seconds to compile), so five programs: the loop, vmap, lax.map and vmap
# with one conv per member, and the loop with 2 steps per call.
QUICK_FORMULATIONS = frozenset({
    "loop", "vmap", "lax.map", "vmap, one conv per member",
    "loop, 1 step per call", "loop, 2 steps per call", "vmap, 1 step per call",
    "lax.map, 1 step per call"})


def population(model: Model, gan: gj.GAN, n: int):
  """``(states, batch)``: n members, member i ``gan.init`` of key i (one by
  one: ``jax.vmap(gan.init)`` draws other parameters), and one batch
  ``[n, k, B, ...]`` in G's output range."""
  lo, hi = getattr(gan.generator, "output_range", None) or (-1.0, 1.0)
  batch = jax.random.uniform(
      jax.random.key(1000), (n, gan.k, model.batch_size) + model.data_shape,
      minval=lo, maxval=hi)
  states = [gan.init(jax.random.key(i), batch[i, 0]) for i in range(n)]
  return states, batch


def stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, n: int):
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


def copy(tree):
  return jax.tree.map(jnp.copy, tree)


# ---------------------------------------------------------- convolutions


def im2col_conv(lhs, rhs, window_strides, padding, lhs_dilation=None,
                rhs_dilation=None, dimension_numbers=None,
                feature_group_count=1, precision=None, **unused):
  """A 2-D NHWC / HWIO ``lax.conv_general_dilated`` as im2col and one matmul.

  Under ``vmap`` with per-member weights the matmul becomes a batched matmul
  instead of a grouped convolution.
  """
  del dimension_numbers, unused  # flax passes NHWC / HWIO
  if feature_group_count != 1 or any(d != 1 for d in rhs_dilation or ()):
    raise NotImplementedError("im2col_conv: no groups, no kernel dilation")
  ks, strides = rhs.shape[:2], tuple(window_strides)
  dilation = tuple(lhs_dilation or (1, 1))
  if isinstance(padding, str):
    dilated = [(n - 1) * d + 1 for n, d in zip(lhs.shape[1:3], dilation)]
    padding = lax.padtype_to_pads(dilated, ks, strides, padding)
  x = lax.pad(lhs, jnp.zeros((), lhs.dtype),
              [(0, 0, 0)] + [(lo, hi, d - 1) for (lo, hi), d
                             in zip(padding, dilation)] + [(0, 0, 0)])
  out = [(n - k) // s + 1 for n, k, s in zip(x.shape[1:3], ks, strides)]
  cols = [lax.slice(x, (0, i, j, 0),
                    (x.shape[0], i + strides[0] * (out[0] - 1) + 1,
                     j + strides[1] * (out[1] - 1) + 1, x.shape[3]),
                    (1,) + strides + (1,))
          for i, j in itertools.product(range(ks[0]), range(ks[1]))]
  cols = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
  return lax.dot_general(cols, rhs.reshape(-1, rhs.shape[-1]),
                         (((3,), (0,)), ((), ())), precision=precision)


def _one_call_per_member(fn):
  """``fn`` whose ``vmap`` over per-member weights calls ``fn`` once per member.

  ``fn(x, w, *rest)``; when ``w`` is not mapped (weights shared by the mapped
  examples) the plain ``vmap`` is kept: it folds the examples into the batch.
  """
  fun = jax.custom_batching.custom_vmap(fn)

  @fun.def_vmap
  def rule(axis_size, in_batched, *args):
    if not in_batched[1]:
      axes = [0 if b else None for b in in_batched]
      out = jax.vmap(fn, in_axes=axes)(*args)
    else:
      out = stack([fun(*(a[i] if b else a for a, b in zip(args, in_batched)))
                   for i in range(axis_size)])
    return out, jax.tree.map(lambda _: True, out)

  return fun


def member_conv(lhs, rhs, *args, **kwargs):
  """``ganjax.models.layers.conv_general_dilated``, one ungrouped convolution
  per member under ``vmap`` (forward and backward)."""
  conv = lambda x, w: layers.conv_general_dilated(x, w, *args, **kwargs)
  forward = _one_call_per_member(conv)
  backward = _one_call_per_member(
      lambda x, w, dy: jax.vjp(conv, x, w)[1](dy))

  @jax.custom_vjp
  def f(x, w):
    return forward(x, w)

  f.defvjp(lambda x, w: (forward(x, w), (x, w)),
           lambda res, dy: backward(*res, dy))
  return f(lhs, rhs)


# Convolutions the models can be traced with, instead of their own
# (ganjax.models.layers.conv_general_dilated), by name.
CONVS = {"plain lax convs": lax.conv_general_dilated,
         "im2col + matmul convs": im2col_conv,
         "one conv per member": member_conv}
_MODEL_MODULES = ("ganjax.models.dcgan", "ganjax.models.resnet")


@contextlib.contextmanager
def models_convolution(conv):
  """The DCGAN and ResNet models call ``conv`` while tracing (None: theirs)."""
  if conv is None:
    yield
    return
  modules = [importlib.import_module(m) for m in _MODEL_MODULES]
  saved = [m.conv_general_dilated for m in modules]
  try:
    for m in modules:
      m.conv_general_dilated = conv
    yield
  finally:
    for m, f in zip(modules, saved):
      m.conv_general_dilated = f


# ------------------------------------------------------------ formulations


def vmapped(step):
  return jax.vmap(step)


def mapped(step):
  return lambda states, batch: lax.map(lambda a: step(*a), (states, batch))


def grouped(step, group: int):
  """``lax.map`` over groups of ``group`` members, ``vmap`` within a group."""
  def run(states, batch):
    split = lambda x: x.reshape((-1, group) + x.shape[1:])
    merge = lambda x: x.reshape((-1,) + x.shape[2:])
    out = lax.map(lambda a: jax.vmap(step)(*a),
                  jax.tree.map(split, (states, batch)))
    return jax.tree.map(merge, out)
  return run


def unrolled(step, n: int):
  def run(states, batch):
    outs = [step(s, batch[i]) for i, s in enumerate(unstack(states, n))]
    return stack(outs)
  return run


def across_devices(step, mesh: Mesh):
  """Members split over ``mesh``'s devices, ``vmap`` over a device's own."""
  return jax.shard_map(jax.vmap(step), mesh=mesh,
                       in_specs=(P(MEMBER), P(MEMBER)), out_specs=P(MEMBER))


def steps_per_call(fn, num_steps: int):
  """``num_steps`` calls of ``fn(state, batch)`` in one ``lax.scan``
  (``ganjax.loops.scan_steps_at``; every step on the same batch)."""
  return lambda state, batch: gj.loops.scan_steps_at(
      fn, lambda step: batch, num_steps)(state)


def member_steps_per_call(step, num_steps: int):
  """``lax.map`` over members of each member's ``num_steps``-step scan."""
  return mapped(steps_per_call(step, num_steps))


# -------------------------------------------------------------- candidates


@dataclasses.dataclass
class Candidate:
  """A compiled formulation: ``run(calls)`` advances its own state."""
  name: str
  compile_s: float
  run: Callable[[int], None]
  first: list            # member states after its first call, for the check
  steps: int = 1         # generator steps per call


def _compile(fn, *args, conv=None, options=None):
  """``(compiled, seconds)``: trace + lower + XLA compile of ``jax.jit(fn)``
  (``options``: XLA compiler options)."""
  start = time.perf_counter()
  with models_convolution(conv):
    compiled = jax.jit(fn, donate_argnums=0).lower(*args).compile(options)
  return compiled, time.perf_counter() - start


def loop_candidate(single, states, batch, name="loop", steps=1) -> Candidate:
  """N separate calls of one compiled single-member function.

  ``single``: ``(compiled, compile seconds)`` of ``_compile``.
  """
  compiled, seconds = single
  holder = [compiled(copy(s), batch[i])[0] for i, s in enumerate(states)]
  first = [jax.device_get(s) for s in holder]

  def run(calls):
    for _ in range(calls):
      for i in range(len(holder)):
        holder[i] = compiled(holder[i], batch[i])[0]
    jax.block_until_ready(holder)

  return Candidate(name, seconds, run, first, steps)


def population_candidate(name, fn, states, batch, options, conv=None,
                         put=lambda x: x, steps=1) -> Candidate:
  """One compiled call of ``fn`` on the stacked population per call."""
  stacked, batch = put(stack([copy(s) for s in states])), put(batch)
  compiled, seconds = _compile(fn, stacked, batch, conv=conv, options=options)
  holder = [compiled(stacked, batch)[0]]
  first = unstack(jax.device_get(holder[0]), len(states))

  def run(calls):
    for _ in range(calls):
      holder[0] = compiled(holder[0], batch)[0]
    jax.block_until_ready(holder)

  return Candidate(name, seconds, run, first, steps)


def member_mesh(n: int) -> Mesh | None:
  """A 1-D ``member`` mesh of the most devices (<= 8) that divide n, or None."""
  devices = jax.devices()
  count = max((d for d in (8, 4, 2) if n % d == 0 and d <= len(devices)),
              default=0)
  return Mesh(np.array(devices[:count]), (MEMBER,)) if count else None


def _built(only, candidates) -> list[Candidate]:
  """Builds (compiles) the ``(name, build)`` pairs named in ``only`` (None:
  all), in order."""
  return [build() for name, build in candidates
          if only is None or name in only]


def one_step_candidates(model: Model, gan: gj.GAN, states, batch, single,
                        options, only=None) -> list[Candidate]:
  """The formulations of one population step for the N members ``states``
  (``batch``: theirs; ``single``: the compiled single-member step;
  ``options``: XLA compiler options; ``only``: the names to build, None:
  all)."""
  n, step = len(states), gan.step

  def add(name, fn, **kwargs):
    return name, lambda: population_candidate(name, fn, states, batch,
                                              options, **kwargs)

  out = [("loop", lambda: loop_candidate(single, states, batch)),
         add("vmap", vmapped(step)), add("lax.map", mapped(step))]
  if n == 1:
    return _built(only, out)
  out += [add(f"vmap groups of {g}", grouped(step, g))
          for g in (2, 4, 8) if g < n and n % g == 0]
  if n <= model.max_unrolled:
    out.append(add("unrolled", unrolled(step, n)))
  if model.family == "convolutions":
    out += [add(f"vmap, {name}", vmapped(step), conv=conv)
            for name, conv in CONVS.items()
            if not (conv is im2col_conv and n > 4)]
  mesh = member_mesh(n)
  if mesh is not None:
    sharding = NamedSharding(mesh, P(MEMBER))
    out.append(add(f"devices ({mesh.size}), vmap within",
                   across_devices(step, mesh),
                   put=lambda x: jax.device_put(x, sharding)))
  return _built(only, out)


def scan_candidates(model: Model, gan: gj.GAN, states, batch, one_step: dict,
                    options, only=None) -> list[Candidate]:
  """Steps per call: S steps in one call against one step per call.

  ``states``, ``batch``: the members of N = ``model.scan_size``;
  ``one_step``: section 1's candidates for them by name (the one-step rows
  reuse them: the same compiled programs); ``only``: the names to build,
  None: all.
  """
  s, step = model.steps_per_call, gan.step

  def add(name, fn, **kwargs):
    return name, lambda: population_candidate(name, fn, states, batch,
                                              options, steps=s, **kwargs)

  def loop():  # the compiled single-member S steps, called per member
    many = _compile(steps_per_call(step, s), states[0], batch[0],
                    options=options)
    return loop_candidate(many, states, batch, f"loop, {s} steps per call", s)

  def reuse(name):
    return f"{name}, 1 step per call", lambda: dataclasses.replace(
        one_step[name], name=f"{name}, 1 step per call")

  out = [reuse("loop"), (f"loop, {s} steps per call", loop),
         reuse("vmap"),
         add(f"vmap, {s} steps per call", steps_per_call(vmapped(step), s)),
         reuse("lax.map"),
         add(f"lax.map inside {s} steps per call",
             steps_per_call(mapped(step), s)),
         add(f"lax.map of {s}-step runs per call",
             member_steps_per_call(step, s))]
  if model.family == "convolutions":
    out.append(add(f"vmap, one conv per member, {s} steps per call",
                   steps_per_call(vmapped(step), s), conv=member_conv))
  return _built(only, out)


# ------------------------------------------------------------ measurement


def max_abs_difference(a, b) -> tuple[float, str]:
  """Largest |a - b| over the leaves of two states, and that leaf's path."""
  paths, leaves = zip(*jax.tree_util.tree_leaves_with_path(a))
  diffs = [float(np.max(np.abs(np.asarray(x, np.float64)
                               - np.asarray(y, np.float64)), initial=0.0))
           for x, y in zip(leaves, jax.tree.leaves(b))]
  i = int(np.argmax(diffs))
  return diffs[i], jax.tree_util.keystr(paths[i]) if diffs[i] else ""


def measure(model: Model, n: int, candidates: list[Candidate],
            cfg) -> list[dict]:
  """Rows of one comparison: per candidate seconds per population step,
  member-steps/s, the ratio to the first candidate (the loop), compile time,
  and the largest difference of its members after one call to those of the
  loop candidate with as many steps per call."""
  times = interleave({c.name: c.run for c in candidates}, cfg.rounds,
                     cfg.min_round_s)
  base_s = median(times[candidates[0].name]) / candidates[0].steps
  loops = {c.steps: c for c in candidates if c.name.startswith("loop")}
  rows = []
  for c in candidates:
    seconds = median(times[c.name]) / c.steps
    reference = loops[c.steps]
    diff, leaf = max(
        (max_abs_difference(a, b) for a, b in zip(c.first, reference.first)),
        key=lambda d: d[0])
    rows.append(dict(model=model.name, family=model.family, n=n,
                     candidate=c.name, step_s=seconds,
                     member_steps_per_s=n / seconds,
                     vs_loop=base_s / seconds, compile_s=c.compile_s,
                     max_diff=diff, leaf=leaf,
                     spread=(min(times[c.name]) / c.steps,
                             max(times[c.name]) / c.steps)))
    log(f"  {model.name} N={n} {c.name}: {1e3 * seconds:.2f} ms/step, "
        f"{n / seconds:.1f} member-steps/s, {base_s / seconds:.2f}x loop, "
        f"compile {c.compile_s:.1f} s, max|diff| {diff:.2g}")
  return rows


@dataclasses.dataclass
class Config:
  rounds: int = 5
  min_round_s: float = 0.5
  compiler_options: dict | None = None   # XLA's, for every compile
  only: frozenset | None = None          # formulations to measure (None: all)


def run_all(cfg: Config, models: list[Model]) -> dict:
  results = {"one_step": [], "steps_per_call": []}
  for model in models:
    gan = model.build()
    options = cfg.compiler_options
    single = None
    for n in model.sizes:
      log(f"{model.name}, N = {n}")
      states, batch = population(model, gan, n)
      single = single or _compile(gan.step, states[0], batch[0],
                                  options=options)
      candidates = one_step_candidates(model, gan, states, batch, single,
                                       options, cfg.only)
      results["one_step"] += measure(model, n, candidates, cfg)
      if n == model.scan_size:
        reused = {c.name: c for c in candidates}
        scan_population = states, batch
      del candidates
    log(f"{model.name}, steps per call, N = {model.scan_size}")
    candidates = scan_candidates(model, gan, *scan_population, reused,
                                 options, cfg.only)
    results["steps_per_call"] += measure(model, model.scan_size, candidates,
                                         cfg)
    del candidates, reused, scan_population
  return results


# -------------------------------------------------------------- reporting


# Formulations a library can pick from by backend and model family (the
# convolution swaps are model choices; devices depend on the hardware).
CHOICES = ("loop", "vmap", "lax.map", "unrolled", "vmap, one conv per member")


def _choice_of(candidate: str) -> str | None:
  if candidate.startswith("vmap groups of"):
    return "vmap groups of g"
  return candidate if candidate in CHOICES else None


def fastest(rows) -> dict:
  """``{(model, n): row}`` of the fastest candidate among the choices."""
  best = {}
  for r in rows:
    if _choice_of(r["candidate"]) is None:
      continue
    key = (r["model"], r["n"])
    if key not in best or r["step_s"] < best[key]["step_s"]:
      best[key] = r
  return best


def geometric_mean(xs) -> float:
  return float(np.exp(np.mean(np.log(xs))))


def scores_by_family(rows) -> dict:
  """``{family: [dict(choice, mean, worst, exact), ...]}``, fastest first.

  Over every model of the family and N >= 2: the geometric mean and the
  lowest of a choice's ratio to the loop (for ``vmap groups of g`` its best
  g per model and N), and whether its members equalled the loop's bit for
  bit everywhere. Only choices measured at every (model, N) of the family.
  """
  ratios, exact = {}, {}
  for r in rows:
    choice = _choice_of(r["candidate"])
    if choice is None or r["n"] < 2:
      continue
    by_key = ratios.setdefault(r["family"], {}).setdefault(choice, {})
    by_key.setdefault((r["model"], r["n"]), []).append(r["vs_loop"])
    exact[choice] = exact.get(choice, True) and not r["leaf"]
  out = {}
  for family, by_choice in ratios.items():
    keys = set().union(*(set(v) for v in by_choice.values()))
    scored = [dict(choice=c, exact=exact[c],
                   mean=geometric_mean([max(v[k]) for k in keys]),
                   worst=min(max(v[k]) for k in keys))
              for c, v in by_choice.items() if set(v) == keys]
    out[family] = sorted(scored, key=lambda d: -d["mean"])
  return out


def _table(rows) -> list[str]:
  lines = ["| model | N | formulation | ms per population step | min-max (ms) "
           "| member-steps/s | vs loop | compile (s) |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]
  for r in rows:
    lo, hi = r["spread"]
    lines.append(
        f"| {r['model']} | {r['n']} | {r['candidate']} | "
        f"{1e3 * r['step_s']:.2f} | {1e3 * lo:.1f}-{1e3 * hi:.1f} | "
        f"{r['member_steps_per_s']:,.1f} | {r['vs_loop']:.2f}x | "
        f"{r['compile_s']:.1f} |")
  return lines


def _correctness(rows) -> list[str]:
  lines = ["| model | N | formulation | max abs difference to the loop | "
           "bit-exact | leaf of the largest difference |",
           "|---|---:|---|---:|---|---|"]
  seen = set()
  for r in rows:
    if r["candidate"].startswith("loop") or r["n"] == 1:
      continue
    key = (r["model"], r["candidate"])
    if key in seen:  # the smallest N >= 2 of each formulation
      continue
    seen.add(key)
    lines.append(f"| {r['model']} | {r['n']} | {r['candidate']} | "
                 f"{r['max_diff']:.3g} | {'no' if r['leaf'] else 'yes'} | "
                 f"{r['leaf'].replace('|', '/')} |")
  return lines


def render(results: dict, cfg: Config, argv, started: str,
           load_start: str) -> str:
  one, scan = results["one_step"], results["steps_per_call"]
  options = (f", XLA compiler options {cfg.compiler_options}"
             if cfg.compiler_options else "")
  lines = [
      "# Population formulations: member-steps per second",
      "",
      "- command: `" + " ".join(["python -m benchmarks.population_speed"]
                                + list(argv)) + "`",
      f"- started {started}, finished "
      f"{datetime.datetime.now().isoformat(timespec='seconds')}",
      f"- device: {jax.default_backend()} ({len(jax.devices())} devices: "
      f"{NUM_DEVICES} fake CPU devices on the host's cores); host: "
      f"{os.cpu_count()} CPU cores ({cpu_name()}), Python "
      f"{sys.version.split()[0]}, jax {jax.__version__}",
      f"- load average (1, 5, 15 min) at start {load_start}, at end "
      f"{load_average()}",
      f"- method: candidates alternate round by round in one process "
      f"({cfg.rounds} rounds, each >= {cfg.min_round_s} s per candidate, "
      f"order reversed every other round); figures are medians over rounds, "
      f"ratios are ratios of medians (`vs loop` > 1: faster than the loop). "
      f"Synthetic data, one fixed batch per member ([N, k, B, ...]); states "
      f"donated; {jax.config.jax_default_prng_impl} keys; members "
      f"initialised one by one (`gan.init` of keys 0..N-1) "
      f"and stacked. Compile: trace + lower + XLA compile of the jitted "
      f"formulation (the loop compiles one single-member step){options}. "
      f"The machine is shared: compare ratios within a table.",
      "",
      "## 1. One population step per call",
      "",
      "`vmap` of a step with per-member convolution weights gives grouped "
      "convolutions (`feature_group_count = N`, members in the feature "
      "dimension): the 'members folded into the batch with grouped "
      "convolutions' formulation *is* `vmap`. The `vmap, ...` rows swap the "
      "models' convolution while tracing: flax's plain "
      "`lax.conv_general_dilated`; im2col + matmul (a batched matmul under "
      "vmap); one ungrouped convolution per member (`jax.custom_batching."
      "custom_vmap`, forward and backward). `devices`: the members split "
      "over fake CPU devices that share this host's cores: no more hardware, "
      "but the devices' programs run concurrently on those cores (and, on a "
      "shared machine, with more threads competing for them), and with one "
      "member per device its convolutions are not grouped.",
      "",
  ] + _table(one) + [
      "",
      "## 2. Many steps per call",
      "",
      "The runner runs 100 steps per call (`steps_per_call`). Here S steps "
      "in one `lax.scan` (`ganjax.loops.scan_steps_at`, every step on the "
      "same batch) against one step per call; ms per population step "
      "(= per call / S). `lax.map inside`: a scan over steps of a map over "
      "members; `lax.map of S-step runs`: a map over members of each "
      "member's S-step scan. `vs loop` is against the loop with 1 step per "
      "call.",
      "",
  ] + _table(scan) + [
      "",
      "## 3. Correctness: member i against the single step of member i",
      "",
      "After one call from the same initial states and batch: the largest "
      "absolute difference over every leaf of every member's state "
      "(parameters, optimizer states, batch statistics, EMA, rng, step) to "
      "the loop's (for section 2's rows: after S steps).",
      "",
  ] + _correctness(one + scan) + [
      "",
      "## 4. What the library should choose",
      "",
  ] + choice_lines(one, scan)
  return "\n".join(lines) + "\n"


# Slower than the loop by more than this counts as slower (this machine's
# noise between rounds is about as large).
TOLERANCE = 0.9

OTHER_BACKENDS = (
    "Accelerators (GPU, TPU): not measured in this run; run this script "
    "there. Expected: `vmap`. A step of these models leaves an accelerator "
    "mostly idle (launch-bound), so batching members into one program "
    "multiplies member-steps/s until the device is busy, while `lax.map` "
    "and the loop launch every member's kernels one after another; cuDNN "
    "and XLA:TPU run grouped convolutions (what `vmap` makes of per-member "
    "convolution weights) as native kernels, not XLA:CPU's slow path. "
    "Several devices: members spread over the devices (one member per "
    "device where N allows).")


def choice_lines(one, scan) -> list[str]:
  """Section 4: the measured rule per backend and family, then the rest."""
  backend = jax.default_backend()
  lines = [f"Per model family on {backend}: each choice's ratio to the loop "
           f"over the family's models and N >= 2 (geometric mean, and the "
           f"worst case), and whether its members equalled the loop's bit "
           f"for bit after one step. Choices: formulations of the step a "
           f"library can pick without changing the models' code "
           f"(`{'`, `'.join(CHOICES)}`, `vmap groups of g`); the last needs "
           f"a batching rule for the models' convolution.", "",
           "| backend | family | choice | vs loop (geometric mean) | "
           "vs loop (worst) | bit-exact |",
           "|---|---|---|---:|---:|---|"]
  rule = []
  for family, scored in scores_by_family(one).items():
    for d in scored:
      lines.append(f"| {backend} | {family} | {d['choice']} | "
                   f"{d['mean']:.2f}x | {d['worst']:.2f}x | "
                   f"{'yes' if d['exact'] else 'no'} |")
    safe = [d for d in scored if d["worst"] >= TOLERANCE]
    best = safe[0] if safe else scored[0]
    text = (f"- **{backend} + {family}: {best['choice']}** "
            f"({best['mean']:.2f}x the loop, never below "
            f"{best['worst']:.2f}x)")
    exact = [d for d in safe if d["exact"]]
    if exact and exact[0] is not best:
      text += (f"; bit-exact with separate runs: **{exact[0]['choice']}** "
               f"({exact[0]['mean']:.2f}x, never below "
               f"{exact[0]['worst']:.2f}x)")
    rule.append(text + ".")
  lines += ["", f"Rule (the fastest choice never below {TOLERANCE}x the "
            f"loop at any model and N >= 2):", ""] + rule
  lines += ["", "Many steps per call (section 2), fastest per model:", ""]
  for model in dict.fromkeys(r["model"] for r in scan):
    rows = [r for r in scan if r["model"] == model]
    best = min(rows, key=lambda r: r["step_s"])
    lines.append(f"- {model}, N = {best['n']}: {best['candidate']} "
                 f"({best['vs_loop']:.2f}x the loop with 1 step per call)")
  lines += ["", "Fastest choice per model and N:", "",
            "| model | N | fastest | vs loop | vmap vs loop | "
            "lax.map vs loop |", "|---|---:|---|---:|---:|---:|"]
  by_key = {(r["model"], r["n"], r["candidate"]): r for r in one}
  for (model, n), r in fastest(one).items():
    lines.append(
        f"| {model} | {n} | {r['candidate']} | {r['vs_loop']:.2f}x | "
        f"{by_key[(model, n, 'vmap')]['vs_loop']:.2f}x | "
        f"{by_key[(model, n, 'lax.map')]['vs_loop']:.2f}x |")
  if backend == "cpu":
    lines += ["", OTHER_BACKENDS]
  return lines


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="a tiny DCGAN, four formulations, one round: a "
                      "smoke test")
  parser.add_argument("--rounds", type=int, default=None)
  parser.add_argument("--models", nargs="*", default=None,
                      help="only the models whose name contains one of these")
  parser.add_argument("--out", default=RESULTS)
  args = parser.parse_args(argv)
  try:
    jax.config.update("jax_num_cpu_devices", NUM_DEVICES)
  except RuntimeError:
    pass  # the backend is up already (e.g. under pytest, with 8 devices)
  # --quick: XLA:CPU compiles faster at backend optimisation level 0; its
  # timings mean nothing anyway.
  cfg = (Config(rounds=1, min_round_s=0.0,
                compiler_options={"xla_backend_optimization_level": 0},
                only=QUICK_FORMULATIONS)
         if args.quick else Config())
  if args.rounds is not None:
    cfg.rounds = args.rounds
  started = datetime.datetime.now().isoformat(timespec="seconds")
  load_start = load_average()
  models = quick_models() if args.quick else full_models()
  if args.models:
    models = [m for m in models if any(w in m.name for w in args.models)]
  results = run_all(cfg, models)
  text = render(results, cfg, argv, started, load_start)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    f.write(text)
  print(text)
  return results


if __name__ == "__main__":
  main()
