"""N seeds as N runs of the runner one after another, or as one population.

What a user pays for N seeds of a config, whole processes included
(start-up, data, compilation, training, checkpoints): ``python -m
experiments.train`` once per seed, one after another, against one run with
``--config.population.size=N``. Also the runner's steady-state rate after
compilation (its ``steps/s`` line): steps/s of one run against the
population's member-steps/s (N x its steps/s).

  python -m benchmarks.population_runs [--members=1,4,8,16,32] [--steps=500]
      [--separate=4]

The separate runs are seeds 0 .. ``separate``-1; for N above that, their
wall time is N x the mean measured one (runs of one config differ only in
their seed), and the table says so. Processes alternate (a population run,
then a separate run, ...) so that a change of load hits both sides, after
one untimed run that reads the libraries from disk.
Writes ``benchmarks/results/population_runs.md``.
"""

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.machine import cpu_name, load_average

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "population_runs.md")
CONFIGS = {
    "dcgan_digits": ["--config=experiments/configs/dcgan_digits.py"],
    "small MLP on the digits": [
        "--config=experiments/configs/small_mlp_mnist.py",
        "--config.dataset=digits"],
}
DONE = re.compile(r"Done: step \d+ .* in ([\d.]+)s wall, ([\d.]+) steps/s")
TOO_SHORT = "too short to measure steps/s"


def train_args(config: list, steps: int, workdir: str, seed: int = 0,
               members: int | None = None) -> list:
  """The command line of one run: no evaluation, one sample grid and one
  checkpoint (at the last step)."""
  return ([sys.executable, "-m", "experiments.train"] + config + [
      f"--config.num_steps={steps}", f"--config.eval_every={steps}",
      f"--config.checkpoint_every={steps}", "--config.evaluation.every=0",
      f"--config.seed={seed}", f"--workdir={workdir}"] +
          ([f"--config.population.size={members}"] if members else []))


def timed_run(args: list) -> dict:
  """Runs one training process: its whole wall time and its own rate."""
  start = time.monotonic()
  done = subprocess.run(args, capture_output=True, text=True, check=False)
  wall = time.monotonic() - start
  output = done.stdout + done.stderr
  found = DONE.search(output)
  if done.returncode or not (found or TOO_SHORT in output):
    raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n"
                       f"{done.stderr[-2000:]}")
  return dict(wall=wall, steps_per_s=float(found.group(2)) if found else None)


def measure(name: str, config: list, sizes: list, steps: int, separate: int,
            root: str) -> list:
  singles, populations = [], {}
  slug = re.sub(r"\W+", "_", name)
  # Untimed: the first process also reads the libraries from disk.
  timed_run(train_args(config, 1, os.path.join(root, f"{slug}_warm_up")))
  order = max(len(sizes), separate)
  for i in range(order):
    if i < len(sizes):
      n = sizes[i]
      populations[n] = timed_run(train_args(
          config, steps, os.path.join(root, f"{slug}_pop{n}"), members=n))
      print(f"{name}: population of {n}: {populations[n]}", flush=True)
    if i < separate:
      singles.append(timed_run(train_args(
          config, steps, os.path.join(root, f"{slug}_seed{i}"), seed=i)))
      print(f"{name}: seed {i} alone: {singles[-1]}", flush=True)
  mean_wall = statistics.mean(r["wall"] for r in singles)
  rates = [r["steps_per_s"] for r in singles if r["steps_per_s"]]
  rate = statistics.median(rates) if rates else None
  rows = []
  for n in sizes:
    measured = n <= len(singles)
    one_by_one = (sum(r["wall"] for r in singles[:n]) if measured
                  else n * mean_wall)
    pop = populations[n]
    member_rate = (n * pop["steps_per_s"] if pop["steps_per_s"] and rate
                   else None)
    rows.append(dict(
        model=name, members=n, one_by_one=one_by_one, measured=measured,
        population=pop["wall"], speedup=one_by_one / pop["wall"],
        single_rate=rate, member_rate=member_rate,
        rate_ratio=member_rate / rate if member_rate else None))
  return rows


def _or_dash(value, spec: str) -> str:
  """``value`` formatted by ``spec``, or "-" for a rate too short to measure."""
  return "-" if value is None else format(value, spec)


def render(rows: list, argv: list, started: str, load_start: str,
           steps: int) -> str:
  lines = [
      "# Populations: N seeds as one population or as N runs one after "
      "another (whole processes)",
      "",
      "- command: `" + " ".join(["python -m benchmarks.population_runs"]
                                + argv) + "`",
      f"- started {started}, finished "
      f"{datetime.datetime.now().isoformat(timespec='seconds')}",
      f"- host: {os.cpu_count()} CPU cores ({cpu_name()}), Python "
      f"{sys.version.split()[0]}",
      f"- load average (1, 5, 15 min) at start {load_start}, at end "
      f"{load_average()}",
      f"- each run: `python -m experiments.train` for {steps} steps, no "
      "evaluation, one checkpoint and one sample grid at the last step. "
      "Wall: the whole process as a user runs it (start-up, data, "
      "compilation, training, checkpoint). Rate: the runner's own steps/s "
      "after its first (compiling) call; for a population, member-steps/s "
      "= N x its steps/s. `*`: N x the mean wall time of the separate runs "
      "measured (runs of one config differ only in their seed).",
      "",
      "| model | N | N runs one after another (s) | one population (s) | "
      "population speed-up | one run's steps/s | population member-steps/s "
      "| steady-state ratio |",
      "|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    star = "" if r["measured"] else "*"
    lines.append(
        f"| {r['model']} | {r['members']} | {r['one_by_one']:.1f}{star} | "
        f"{r['population']:.1f} | {r['speedup']:.2f}x | "
        f"{_or_dash(r['single_rate'], '.1f')} | "
        f"{_or_dash(r['member_rate'], '.1f')} | "
        f"{_or_dash(r['rate_ratio'], '.2f')}{'x' if r['rate_ratio'] else ''} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--members", default="1,4,8,16,32",
                      help="population sizes, comma-separated")
  parser.add_argument("--steps", type=int, default=500)
  parser.add_argument("--separate", type=int, default=4,
                      help="separate runs measured (seeds 0 .. n-1)")
  parser.add_argument("--models", default=",".join(CONFIGS),
                      help=f"comma-separated, of {list(CONFIGS)}")
  parser.add_argument("--out", default=RESULTS)
  args = parser.parse_args(argv)
  sizes = [int(n) for n in args.members.split(",")]
  started = datetime.datetime.now().isoformat(timespec="seconds")
  load_start = load_average()
  rows = []
  with tempfile.TemporaryDirectory(prefix="population_runs_") as root:
    for name in args.models.split(","):
      rows += measure(name, CONFIGS[name], sizes, args.steps, args.separate,
                      root)
  text = render(rows, sys.argv[1:] if argv is None else argv, started,
                load_start, args.steps)
  with open(args.out, "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
