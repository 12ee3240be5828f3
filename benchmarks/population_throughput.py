"""A population's step against its members run one after another.

``gj.Population`` with ``member_map='auto'`` (and the other map, for
reference) against N single runs stepped one after another (one jitted
``gan.step`` per member, each on its own state): member-steps per second,
for the digits DCGAN (``experiments/configs/dcgan_digits.py``) and the small
MLP (100-128-784), so that the claim "a population is never slower than its
members one after another" is measured where it is made.

  python -m benchmarks.population_throughput [--members=1,4,8,16,32]
      [--rounds=5] [--models=dcgan_digits,small_mlp] [--peak_tflops=T]
      [--steps_per_call=S] [--formulations]

``--steps_per_call=S`` (S > 1) times calls of S steps, as the runner makes
them (``config.steps_per_call``, 100 by default): each single run's call is
``ganjax.loops.fori_steps`` of ``gan.step``, the population's
``Population.run_steps``; times are per step.

On a GPU, the issue's row (DCGAN 28x28 at batch 64, up to 64 members, with
model FLOP utilisation against the chip's peak, e.g. 494.7 dense TF32
TFLOP/s for an H100 or H200 SXM, 66.9 without tensor cores):

  python -m benchmarks.population_throughput --models=dcgan28 \
      --members=1,8,16,32,64 --peak_tflops=494.7 \
      --out=benchmarks/results/population_throughput_gpu.md

Model FLOPs are XLA's count for one member's step (``cost_analysis`` of the
compiled ``gan.step``), times member-steps per second.

Writes ``benchmarks/results/population_throughput.md``.
"""

import argparse
import datetime
import os
import sys

import jax
import jax.numpy as jnp

import ganjax as gj
from benchmarks.benchmark import interleave, log, median
from benchmarks import runner
from benchmarks.machine import cpu_name, load_average
from experiments import builders
from experiments import guards
from experiments.configs import dcgan_digits

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "population_throughput.md")
BATCH = 64
# A population must be at least this fast, relative to its members one after
# another, with member_map='auto' (a target, checked when the table is made).
TARGET_VS_LOOP = 0.95


MODELS = {  # --models name: (table name, build, data shape)
    "dcgan_digits": ("dcgan_digits (8x8), B 64",
                     lambda: builders.build(dcgan_digits.get_config()).gan,
                     (8, 8, 1)),
    "small_mlp": ("small MLP (100-128-784), B 64",
                  lambda: gj.GAN(*gj.models.small_mlp((28, 28, 1)),
                                 latent_dim=100), (28, 28, 1)),
    "dcgan28": ("DCGAN 28x28, B 64",
                lambda: builders.build(runner.dcgan28_config()).gan,
                (28, 28, 1)),
}


def step_flops(gan, state, batch) -> float:
  """XLA's FLOP count of one ``gan.step`` (one member's step), 0 when the
  backend gives none."""
  cost = jax.jit(gan.step).lower(state, batch).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


def many_steps(step, batch, steps_per_call: int):
  """``state -> (state, metrics)``: ``steps_per_call`` steps of ``step`` on
  ``batch`` (``step(state, batch)`` itself for one)."""
  if steps_per_call == 1:
    return lambda state: step(state, batch)
  return lambda state: gj.loops.fori_steps(
      lambda state: step(state, batch), state, steps_per_call, steps_per_call)


def population_steps(population, batch, steps_per_call: int):
  """``pstate -> (pstate, metrics)``: ``steps_per_call`` steps of every
  member on ``batch`` (``Population.step``, or ``run_steps`` for more)."""
  if steps_per_call == 1:
    return lambda pstate: population.step(pstate, batch)
  return lambda pstate: population.run_steps(
      pstate, lambda step, member: batch, steps_per_call, steps_per_call)


def loop_runner(step, states, batch, steps_per_call: int = 1):
  """``run(n)``: n calls of ``step`` (e.g. ``gan.step``) for every member,
  one member after another."""
  step = jax.jit(many_steps(step, batch, steps_per_call), donate_argnums=0)
  holder = list(states)

  def run(n):
    for _ in range(n):
      for i, state in enumerate(holder):
        holder[i], _ = step(state)
    jax.block_until_ready(holder)

  return run


def formulations(gan, size: int) -> dict:
  """``--formulations``: other single programs that step ``size`` stacked
  members (``fn(members, batch) -> (members, metrics [N])``; no
  hyper-parameters bound, no freezing), to tell the cost of the map from
  the cost of holding N steps in one program."""
  member = lambda members, i: jax.tree.map(lambda x: x[i], members)
  stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)

  def unrolled(members, batch):
    return stack([gan.step(member(members, i), batch) for i in range(size)])

  def in_place(members, batch):
    metrics = jax.eval_shape(gan.step, member(members, 0), batch)[1]
    metrics = jax.tree.map(lambda m: jnp.zeros((size,) + m.shape, m.dtype),
                           metrics)

    def body(i, carry):
      new = gan.step(jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(
          x, i, keepdims=False), carry[0]), batch)
      return jax.tree.map(lambda x, y: jax.lax.dynamic_update_index_in_dim(
          x, y, i, 0), carry, new)
    return jax.lax.fori_loop(0, size, body, (members, metrics))

  return {
      "one program: lax.map of gan.step": lambda members, batch: jax.lax.map(
          lambda s: gan.step(s, batch), members),
      "one program: N steps unrolled": unrolled,
      "one program: fori_loop, members updated in place": in_place}


def program_runner(fn, members):
  """``run(n)``: n calls of ``fn(members) -> (members, metrics)`` (a
  population's steps, or a formulation's), the members donated."""
  call = jax.jit(fn, donate_argnums=0)
  holder = [members]

  def run(n):
    for _ in range(n):
      holder[0], _ = call(holder[0])
    jax.block_until_ready(holder[0])

  return run


def synthetic_batch(gan, data_shape):
  """One ``[k, BATCH, *data_shape]`` batch in G's output range."""
  low, high = gan.generator.output_range
  return jax.random.uniform(jax.random.key(1), (gan.k, BATCH) + data_shape,
                            minval=low, maxval=high)


def measure(name, gan, batch, flops: float, members: int, rounds: int,
            min_round_s: float, with_formulations: bool = False,
            steps_per_call: int = 1) -> list[dict]:
  """The candidates at ``members`` members; ``flops``: one member's step."""
  keys = jax.random.split(jax.random.key(0), members)
  auto = gj.Population(gan, size=members)
  pstate = auto.init(keys, batch)
  chosen = auto._map(pstate.members)  # pylint: disable=protected-access
  other = "vmap" if chosen == "map" else "map"
  copy = lambda tree: jax.tree.map(jnp.copy, tree)
  steps = lambda population: program_runner(
      population_steps(population, batch, steps_per_call), copy(pstate))
  singles = lambda step: loop_runner(
      step, [gan.init(key, batch) for key in keys], batch, steps_per_call)
  candidates = {
      "members one after another": singles(gan.step),
      "members one after another, guarded as the runner's": singles(
          guards.guard_step(gan.step)),
      f"population, auto ({chosen})": steps(auto),
      f"population, {other}": steps(
          gj.Population(gan, size=members, member_map=other)),
      f"population, {chosen}, freeze_nonfinite=False": steps(
          gj.Population(gan, size=members, member_map=chosen,
                        freeze_nonfinite=False)),
  }
  if steps_per_call > 1 and chosen == "map":  # run_steps' members outer
    candidates["population, map, steps outer (a step of every member per "
               "iteration)"] = program_runner(
                   many_steps(auto.step, batch, steps_per_call), copy(pstate))
  if with_formulations:
    candidates.update({
        formulation: program_runner(lambda m, fn=fn: fn(m, batch),
                                    copy(pstate.members))
        for formulation, fn in formulations(gan, members).items()})
  log(f"{name}: N={members}, {steps_per_call} steps per call, auto chooses "
      f"{chosen}")
  times = interleave(candidates, rounds, min_round_s)
  times = {candidate: [t / steps_per_call for t in seconds]
           for candidate, seconds in times.items()}
  loop = median(times["members one after another"])
  rows = []
  for candidate, seconds in times.items():
    step_s = median(seconds)
    rows.append(dict(model=name, members=members, candidate=candidate,
                     ms=1e3 * step_s, low=1e3 * min(seconds),
                     high=1e3 * max(seconds),
                     member_steps=members / step_s, vs_loop=loop / step_s,
                     tflops=flops * members / step_s / 1e12))
    log(f"  {candidate}: {1e3 * step_s:.2f} ms per population step, "
        f"{loop / step_s:.2f}x the loop")
  return rows


def render(rows, argv, started: str, load_start: str,
           peak_tflops: float = 0.0, steps_per_call: int = 1) -> str:
  lines = [
      "# Populations: a population's step against its members one after another",
      "",
      "- command: `" + " ".join(["python -m benchmarks.population_throughput"]
                                + list(argv)) + "`",
      f"- started {started}, finished "
      f"{datetime.datetime.now().isoformat(timespec='seconds')}",
      f"- device: {jax.default_backend()}; host: {os.cpu_count()} CPU cores "
      f"({cpu_name()}), Python {sys.version.split()[0]}, jax {jax.__version__}",
      f"- load average (1, 5, 15 min) at start {load_start}, at end "
      f"{load_average()}",
      "- method: the candidates alternate round by round in one process "
      "(`benchmarks.benchmark.interleave`); medians over rounds, ratios of "
      "medians. " + ("One step per call" if steps_per_call == 1 else
                     f"{steps_per_call} steps per call, as the runner makes "
                     "them (times per step)") +
      ", states donated, one synthetic batch shared by every member. "
      "`members one after another`: N states, each stepped by the one "
      "jitted " + ("`gan.step`" if steps_per_call == 1 else
                   "`ganjax.loops.fori_steps` of `gan.step`") +
      " (compiled once); the population: `Population." +
      ("step`" if steps_per_call == 1 else "run_steps`") + ". "
      "`guarded as the runner's`: the step with the finiteness flags the "
      "runner's single runs compute (`experiments.guards.guard_step`). "
      "`freeze_nonfinite=False`: without the check for non-finite members "
      "and the selection of the frozen ones' old state (an extra pass over "
      "the state). The machine is shared: compare ratios within a table.",
      f"- target: `population, auto` >= {TARGET_VS_LOOP}x the loop.",
      "- model TFLOP/s: XLA's FLOP count of one member's step times "
      "member-steps/s" + (f"; MFU against a peak of {peak_tflops:g} TFLOP/s."
                          if peak_tflops else "."),
      "",
      "| model | N | candidate | ms per population step | min-max (ms) | "
      "member-steps/s | vs one after another | model TFLOP/s |"
      + (" MFU |" if peak_tflops else ""),
      "|---|---:|---|---:|---:|---:|---:|---:|" + ("---:|" if peak_tflops
                                                  else ""),
  ]
  for r in rows:
    lines.append(f"| {r['model']} | {r['members']} | {r['candidate']} | "
                 f"{r['ms']:.2f} | {r['low']:.1f}-{r['high']:.1f} | "
                 f"{r['member_steps']:,.1f} | {r['vs_loop']:.2f}x | "
                 f"{r['tflops']:.3g} |" + (
                     f" {100 * r['tflops'] / peak_tflops:.2f}% |"
                     if peak_tflops else ""))
  misses = [r for r in rows if r["candidate"].startswith("population, auto")
            and r["vs_loop"] < TARGET_VS_LOOP]
  lines += ["", "Target met." if not misses else
            "Target missed: " + "; ".join(
                f"{r['model']} {r['vs_loop']:.2f}x" for r in misses) + "."]
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--members", default="1,4,8,16,32",
                      help="population sizes, comma-separated")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--min_round_s", type=float, default=0.5)
  parser.add_argument("--models", default="dcgan_digits,small_mlp",
                      help=f"comma-separated, of {', '.join(MODELS)}")
  parser.add_argument("--peak_tflops", type=float, default=0.0,
                      help="the device's peak TFLOP/s, for an MFU column")
  parser.add_argument("--steps_per_call", type=int, default=1,
                      help="steps per call (the runner's calls: 100)")
  parser.add_argument("--formulations", action="store_true",
                      help="also time other single programs of N member "
                      "steps (formulations())")
  parser.add_argument("--out", default=RESULTS)
  args = parser.parse_args(argv)
  if args.steps_per_call < 1:
    parser.error("--steps_per_call must be at least 1")
  if args.formulations and args.steps_per_call != 1:
    parser.error("--formulations times single steps: leave out "
                 "--steps_per_call")
  unknown = set(args.models.split(",")) - set(MODELS)
  if unknown:
    parser.error(f"unknown --models {', '.join(sorted(unknown))}; "
                 f"choose from {', '.join(MODELS)}")
  started = datetime.datetime.now().isoformat(timespec="seconds")
  load_start = load_average()
  rows = []
  for model in args.models.split(","):
    name, build, shape = MODELS[model]
    gan = build()
    batch = synthetic_batch(gan, shape)
    flops = step_flops(gan, gan.init(jax.random.key(0), batch), batch)
    for members in map(int, args.members.split(",")):
      rows += measure(name, gan, batch, flops, members, args.rounds,
                      args.min_round_s, args.formulations,
                      args.steps_per_call)
  text = render(rows, sys.argv[1:] if argv is None else argv, started,
                load_start, args.peak_tflops, args.steps_per_call)
  with open(args.out, "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
