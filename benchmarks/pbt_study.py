"""Population-based training against fixed hyper-parameters: two runner populations side by side.

  python -m benchmarks.pbt_study --fixed=runs/fixed --pbt=runs/pbt [--metric=fid]

The two workdirs are populations of one config with the same sweep, trained
to the same step, the second with ``--config.population.pbt.every``
(commands: ``benchmarks/results/pbt_digits.md``). Prints Markdown from their
per-member evaluation records (``metrics.jsonl``) and the PBT run's
``lineage.jsonl``: at every evaluated step, the metric's mean ± std over the
members and the best member of each arm; the final members; every exploit
(which member continued from which, and the hyper-parameters it took).
"""

import argparse
import json
import os

import numpy as np

from experiments import members
from experiments import periodic_eval
from ganjax import summary


def member_scores(workdir: str, metric: str) -> dict[int, list[float]]:
  """``{step: [value of member 0, 1, ...]}`` of ``metric`` (short name, e.g.
  ``fid``: the record key ``fid<n>_<data>_<net>``) in a population's
  ``metrics.jsonl``."""
  out: dict[int, dict[int, float]] = {}
  for record in summary.read_jsonl(workdir):
    name = periodic_eval.short_names(record).get(metric)
    if "member" in record and name is not None:
      out.setdefault(record["step"], {})[record["member"]] = record[name]
  return {step: [by_member[m] for m in sorted(by_member)]
          for step, by_member in sorted(out.items())}


def lineage(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, members.LINEAGE_JSONL)) as f:
    return [json.loads(line) for line in f if line.strip()]


def _row(values, lower_is_better: bool) -> tuple[str, str]:
  mean, std, _ = members.interval(values)
  best = np.nanmin(values) if lower_is_better else np.nanmax(values)
  return f"{mean:.2f} ± {std:.2f}", f"{best:.2f}"


def render(fixed: str, pbt: str, metric: str = "fid") -> str:
  """The Markdown tables of the module docstring."""
  lower = periodic_eval.LOWER_IS_BETTER[metric]
  a, b = member_scores(fixed, metric), member_scores(pbt, metric)
  steps = sorted(set(a) & set(b))
  if not steps:
    raise ValueError(f"no step with per-member {metric!r} records in both "
                     f"{fixed} and {pbt}.")
  lines = [f"| step | fixed: mean ± std | fixed: best | PBT: mean ± std | "
           f"PBT: best |", "|---:|---:|---:|---:|---:|"]
  for step in steps:
    lines.append(f"| {step:,} | " + " | ".join(
        _row(a[step], lower) + _row(b[step], lower)) + " |")
  last = steps[-1]
  fmt = lambda values: ", ".join(f"{v:.2f}" for v in values)
  lines += ["", f"Final members ({metric}, step {last:,}): fixed "
            f"{fmt(a[last])}; PBT {fmt(b[last])}.", "",
            "| PBT step | member <- parent | its hyper-parameters after |",
            "|---:|---|---|"]
  for record in lineage(pbt):
    copies = [(m, p) for m, p in enumerate(record["parents"]) if m != p]
    taken = "; ".join(
        f"{m}: " + ", ".join(f"{name} {values[m]:.3g}"
                             for name, values in record["hparams"].items())
        for m, _ in copies)
    lines.append(f"| {record['step']:,} | " + (", ".join(
        f"{m} <- {p}" for m, p in copies) or "none") + f" | {taken} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--fixed", required=True, help="the population "
                      "without PBT")
  parser.add_argument("--pbt", required=True, help="the same population "
                      "with --config.population.pbt.every")
  parser.add_argument("--metric", default="fid", help="short metric name "
                      "(the one PBT ranked by)")
  args = parser.parse_args(argv)
  print(render(args.fixed, args.pbt, args.metric), end="")


if __name__ == "__main__":
  main()
