"""The runner's populations: N members of one config trained in one workdir.

``config.population`` (experiments/configs/base.py) turns a run into a
population (``ganjax.Population``): one compiled step trains every member,
one orbax checkpoint holds the stacked state, and the run resumes exactly
like a single run. Member ``i`` is the run a user gets alone with
``--config.seed=seed+i`` and member i's hyper-parameters: its initial state
comes from ``run_key(seed + i, INIT)`` and, unless ``shared_data``, its
batches from the data stream of ``seed + i`` (``feeds.feed``). With
``member_map='map'`` (the default on CPU for convolutional models) it is the
same run bit for bit.

This module owns what the runner does differently for a population: the
sweep syntax (``parse_sweep``), the member keys, the monitor of per-member
metrics (``PopulationMonitor``: frozen members are named, the run stops with
exit code 3 when all have diverged), the per-member log records, one member
of a saved state (``member_state``), population-based training with its
lineage file (``Exploiter``) and mean ± spread summaries (``interval``).

Logs. ``metrics.jsonl`` holds, at each log step, one record per member
(``"member": i``) and one of the population (``<name>`` the mean over the
members still training, ``<name>_std`` their standard deviation,
``members_alive``); TensorBoard gets ``train/member_<i>/<name>`` and the
aggregates. Evaluation records do the same with ``eval/`` and add
``<name>_best`` and ``best_member``.
"""

import functools
import itertools
import json
import math
import os
import sys
import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

import ganjax as gj
from experiments import guards
from experiments import workdir as workdir_lib

# Short names of the sweep (the config's own) -> ganjax.population's names.
ALIASES = {"g_lr": "g_learning_rate", "d_lr": "d_learning_rate"}
LINEAGE_JSONL = "lineage.jsonl"


class ConfigError(ValueError):
  """A ``config.population`` mistake (``builders.ConfigError`` re-raises it)."""


class Spec(NamedTuple):
  """What ``config.population`` asks for: ``size`` members and, per swept
  name (``ganjax.population``'s), one value per member."""
  size: int
  hparams: dict


# ------------------------------------------------------------------ sweeps


def parse_sweep(text: str) -> list[dict]:
  """The points of a sweep, in order (the last axis varies fastest).

  ``"d_lr=1e-4,2e-4; g_lr=1e-4,3e-4"``: a grid of 4 points;
  ``"d_lr=1e-4,2e-4 & g_lr=2e-4,4e-4"``: 2 zipped points. Names are kept
  as written (``resolve_names`` maps the aliases).

  Raises:
    ConfigError: naming the part that does not parse.
  """
  axes = []
  for axis_text in (a.strip() for a in text.split(";")):
    if not axis_text:
      continue
    axis = {}
    for item in (i.strip() for i in axis_text.split("&")):
      name, sep, values = item.partition("=")
      name = name.strip()
      if not sep or not name or not values.strip():
        raise ConfigError(
            f"config.population.sweep: cannot read {item!r}; write NAME=V1,V2"
            f",... (e.g. \"d_lr=1e-4,2e-4; g_lr=2e-4\": ';' separates the "
            "axes of a grid, '&' joins names that vary together).")
      try:
        axis[name] = [float(v) for v in values.split(",")]
      except ValueError:
        raise ConfigError(f"config.population.sweep: the values of {name!r} "
                          f"must be numbers, got {values.strip()!r}.") from None
      if any(name in other for other in axes) or name in list(axis)[:-1]:
        raise ConfigError(f"config.population.sweep names {name!r} twice.")
    lengths = {len(v) for v in axis.values()}
    if len(lengths) > 1:
      raise ConfigError(
          f"config.population.sweep: names joined by '&' vary together and "
          f"need as many values each; got "
          f"{', '.join(f'{n}: {len(v)}' for n, v in axis.items())}.")
    axes.append(axis)
  points = []
  for choice in itertools.product(*[range(len(next(iter(a.values()))))
                                    for a in axes]):
    point = {}
    for axis, i in zip(axes, choice):
      point.update({name: values[i] for name, values in axis.items()})
    points.append(point)
  return points if axes else []


def spec(config) -> Optional[Spec]:
  """``config.population`` as a ``Spec``, or None for a single run.

  Raises:
    ConfigError: a size that is not a non-negative integer or not a multiple
      of the sweep's points, a sweep that does not parse.
  """
  block = config.population
  size = block.size
  if not isinstance(size, int) or isinstance(size, bool) or size < 0:
    raise ConfigError(f"config.population.size must be an integer >= 0 (0: a "
                      f"single run), got {size!r}.")
  points = parse_sweep(str(block.sweep))
  if not points:
    if size == 0:
      return None
    return Spec(size, {})
  if size == 0:
    size = len(points)
  if size % len(points):
    raise ConfigError(
        f"config.population.size={size} is not a multiple of the sweep's "
        f"{len(points)} points: give size=0 (one member per point) or a "
        f"multiple of {len(points)} (each point with size/{len(points)} "
        "seeds).")
  repeat = size // len(points)
  hparams = {}
  for name in points[0]:
    hparams[ALIASES.get(name, name)] = [p[name] for p in points
                                        for _ in range(repeat)]
  return Spec(size, hparams)


def swept_optimizer_hparams(population_spec: Optional[Spec], player: str
                            ) -> tuple:
  """The names of ``player``'s (``"g"``/``"d"``) optimizer hyper-parameters
  the population sweeps: its optimizer injects just these
  (``optax.inject_hyperparams``), the others stay Python constants, so
  that member i computes what its single run computes, bit for bit."""
  if population_spec is None:
    return ()
  return tuple(sorted(name[len(player) + 1:] for name in population_spec.hparams
                      if name.startswith(player + "_")))


def build(config, gan: gj.GAN, population_spec: Spec,
          data_shape: tuple) -> gj.Population:
  """The ``ganjax.Population`` of ``config``; ``ConfigError`` for a name it
  cannot sweep (with the names it can) or a PBT setting that cannot work."""
  try:
    population = gj.Population(
        gan, hparams=population_spec.hparams or None,
        size=population_spec.size, member_map=config.population.member_map,
        shared_batch=bool(config.population.shared_data))
    # the optimizers' names are checked by init: trace it
    jax.eval_shape(population.init, init_keys(config, population.size),
                   jnp.zeros((int(config.k), 1) + tuple(data_shape)))
  except ValueError as e:
    names = ", ".join(sorted(set(gj.population.sweepable(gan)) |
                             {"g_lr", "d_lr", "g_b1", "d_b1", "g_b2", "d_b2"}))
    raise ConfigError(f"config.population: {e} Names this config can sweep: "
                      f"{names}.") from None
  pbt = config.population.pbt
  if not isinstance(pbt.every, int) or pbt.every < 0:
    raise ConfigError("config.population.pbt.every must be an integer >= 0 "
                      f"(0: off), got {pbt.every!r}.")
  if pbt.every:
    every = config.evaluation.every
    if every <= 0 or pbt.every % every:
      raise ConfigError(
          f"config.population.pbt.every={pbt.every} ranks the members by their "
          "scores at that step: set --config.evaluation.every to a divisor of "
          f"it (now {every}).")
    if not 0 < pbt.fraction <= 0.5:
      raise ConfigError("config.population.pbt.fraction must be in (0, 0.5] "
                        f"(the share of members replaced), got {pbt.fraction}.")
    if int(pbt.fraction * population.size) == 0:
      raise ConfigError(
          f"config.population.pbt.fraction={pbt.fraction} of "
          f"{population.size} members replaces none; use at least "
          f"{math.ceil(1 / pbt.fraction)} members or a larger fraction.")
  return population


# -------------------------------------------------------------------- keys


def seed_keys(config, size: int, stream: int) -> jax.Array:
  """``[size]`` keys: ``run_key(seed + i, stream)`` of member i, the key
  the single run with seed ``seed + i`` uses."""
  seeds = int(config.seed) + jnp.arange(size)
  return jax.vmap(lambda s: gj.streams.run_key(s, stream))(seeds)


def init_keys(config, size: int) -> jax.Array:
  """The members' ``GAN.init`` keys."""
  return seed_keys(config, size, gj.streams.INIT)


def member_state(population: gj.Population, state, member: int):
  """Member ``member``'s ``GANState`` of a population's saved state."""
  if not 0 <= member < population.size:
    raise ValueError(f"member {member} does not exist: the population has "
                     f"members 0-{population.size - 1}.")
  return population.member(state, member)


# ---------------------------------------------------------------- monitor


def diverged_message(step: int, frozen: dict, saved_step,
                     checkpoint_dir: str) -> str:
  """The error of a population whose every member has diverged."""
  kept = (f"The checkpoint of step {saved_step} in {checkpoint_dir} is "
          "intact; nothing after it was saved." if saved_step is not None
          else "No checkpoint was saved.")
  return (f"training stopped at step {step}: every member of the population "
          "has diverged (" + ", ".join(f"member {m} at step {s}" for m, s in
                                     sorted(frozen.items())) +
          f"). {kept} Lower the learning rates (--config.population.sweep, "
          "--config.d_optimizer.learning_rate) or add a gradient penalty "
          "(--config.penalty.name=r1 --config.penalty.weight=...).")


def aggregate(per_member: list, best_of: dict = None) -> dict:
  """The population's record from its members' records (None: a member with
  nothing to report): ``<name>`` the mean, ``<name>_std`` the standard
  deviation (ddof 1) over the members that report it; with ``best_of``
  (``{name: lower_is_better}``) also ``<name>_best`` and ``best_member``
  of the first name."""
  reported = [(i, r) for i, r in enumerate(per_member) if r is not None]
  if not reported:
    return {}
  out = {}
  for name in reported[0][1]:
    values = [r[name] for _, r in reported if name in r]
    out[name], out[f"{name}_std"] = gj.population.spread(values)
  for n, (name, lower) in enumerate((best_of or {}).items()):
    finite = [(r[name], i) for i, r in reported
              if name in r and math.isfinite(r[name])]
    if finite:
      value, member = (min(finite) if lower else
                       max(finite, key=lambda f: (f[0], -f[1])))
      out[f"{name}_best"] = value
      if n == 0:
        out["best_member"] = member
  return out


class PopulationMonitor:
  """``guards.MetricsMonitor`` for a population: checks each finished call's
  per-member metrics and averages them for the logs.

  ``ganjax.Population.step`` freezes a member whose step turned non-finite;
  ``check`` names each newly frozen member once (on stderr) and raises
  ``guards.DivergenceError`` when no member is left training, or at a step
  whose labels are out of range. Records hold each metric as a list over
  the members, so that ``pending`` can go into a checkpoint.
  """

  def __init__(self, to_host, size: int, alive, num_classes=None,
               step: int = 0, pending=()):
    self.to_host, self.size, self.num_classes = to_host, size, num_classes
    self.alive = np.asarray(alive, bool).copy()
    self.frozen = {}  # member -> the step it was frozen at (this process)
    self.fetched = list(pending)
    self.checked_until = step
    self.skipped_total = 0  # the summary's count: members freeze, none skip
    self.member_scalars = [None] * size
    self.t_log, self.step_log = time.time(), step

  def check(self, first: int, metrics, num_steps: int, saved_step,
            checkpoint_dir: str) -> None:
    per_step = {name: np.reshape(v, (-1, self.size))[:num_steps]
                for name, v in self.to_host(metrics).items()}
    for i in range(num_steps):
      step = first + i + 1
      record = {name: [float(x) for x in v[i]] for name, v in per_step.items()}
      alive = np.asarray(record["alive"]) > 0
      if any(record.pop(guards.LABEL_FLAG, [0.0])):
        raise guards.DivergenceError(guards.label_message(
            step, self.num_classes, saved_step, checkpoint_dir))
      for member in np.flatnonzero(self.alive & ~alive):
        self.frozen[int(member)] = step
        bad = ", ".join(f"{name}={values[member]}" for name, values in
                        sorted(record.items())
                        if not math.isfinite(values[member]))
        print(f"warning: member {member} diverged at step {step} "
              f"({bad or 'non-finite parameters'}) and is frozen at its "
              f"state of step {step - 1}; the other members go on.",
              file=sys.stderr)
      self.alive = alive
      if not alive.any():
        raise guards.DivergenceError(diverged_message(
            step, self.frozen, saved_step, checkpoint_dir))
      self.fetched.append(record)
      self.checked_until = step

  def pending(self) -> list[dict]:
    return list(self.fetched)

  def scalars(self, step: int) -> dict:
    """The population's record of the steps checked since the last one
    (``aggregate``) and, in ``member_scalars``, each member's window means
    over its training steps (None for a member frozen all window)."""
    records, self.fetched = self.fetched, []
    if not records:
      self.member_scalars = [None] * self.size
      return {}
    names = [n for n in records[0] if n != "alive"]
    per_member = []
    for m in range(self.size):
      steps = [r for r in records if r["alive"][m] > 0]
      per_member.append({n: float(np.mean([r[n][m] for r in steps]))
                         for n in names} if steps else None)
    self.member_scalars = per_member
    out = aggregate(per_member)
    out["members_alive"] = float(np.sum(records[-1]["alive"]))
    now = time.time()
    out["steps_per_s"] = (step - self.step_log) / max(now - self.t_log, 1e-9)
    self.t_log, self.step_log = now, step
    return out

  def pause(self, seconds: float) -> None:
    self.t_log += seconds


def write_scalars(writer, step: int, aggregated: dict, per_member: list,
                  prefix: str) -> dict:
  """Writes each member's record (``"member": i``) and the population's;
  returns the population's as written."""
  for member, values in enumerate(per_member):
    if values is not None:
      writer.scalars(step, values, prefix=f"{prefix}member_{member}/",
                     fields={"member": member})
  return writer.scalars(step, aggregated, prefix=prefix)


# ------------------------------------------------------------------- PBT


class Exploiter:
  """Population-based training in the runner (``ganjax.pbt``).

  At every ``config.population.pbt.every`` steps, after the evaluation of
  that step, ``__call__`` replaces the worst members by perturbed copies of
  the best on the evaluation's metric (jitted, from the key
  ``fold_in(run_key(seed, PBT), step)``: a resumed run draws the same) and
  writes one more line to ``lineage.jsonl``: the step, each member's score
  and parent (the member it continues; itself when kept) and every
  member's hyper-parameters after the step. A resumed run keeps the lines
  up to its checkpoint's step and writes the later ones again. The
  checkpoint of a PBT step holds the members as they were scored, before
  the exploit: a run resumed there replays that step's line (``replay``).
  """

  def __init__(self, config, workdir: str, resumed_step, metric: str,
               higher_is_better: bool, enabled: bool = True):
    pbt = config.population.pbt
    self.every, self.metric = int(pbt.every), metric
    self.key = gj.streams.run_key(int(config.seed), gj.streams.PBT)
    self.path = os.path.join(workdir, LINEAGE_JSONL)
    self.enabled = enabled
    self._exploit = jax.jit(functools.partial(
        gj.pbt.exploit_explore, fraction=float(pbt.fraction),
        higher_is_better=higher_is_better))
    self.lineage = [r for r in workdir_lib.read_records(self.path)
                    if resumed_step is not None and r["step"] <= resumed_step]

  def is_due(self, step: int) -> bool:
    return step % self.every == 0

  def _apply(self, step: int, state, scores):
    key = jax.random.fold_in(self.key, step)
    new, parents = self._exploit(key, state, jnp.asarray(scores, jnp.float32))
    return new, [int(p) for p in np.asarray(parents)]

  def recorded(self, step: int) -> Optional[dict]:
    """The lineage record of ``step``, None when there is none."""
    return next((r for r in self.lineage if r["step"] == step), None)

  def replay(self, step: int, state, record: dict):
    """``state`` (the members scored at ``step``) after the exploit that
    ``record`` (the lineage's line of ``step``) describes, recomputed from
    its scores: a checkpoint of a PBT step holds the members before it."""
    new, parents = self._apply(step, state, record["scores"])
    if parents != record["parents"]:
      raise RuntimeError(
          f"step {step}: replaying population-based training from "
          f"{self.path} chose parents {parents}, not the recorded "
          f"{record['parents']}: the checkpoint is not the state that was "
          "scored.")
    return new

  def __call__(self, step: int, state, scores: list):
    """``state`` after exploit/explore on ``scores`` (``metric``'s value per
    member)."""
    new, parents = self._apply(step, state, scores)
    self.lineage.append({
        "step": int(step), "metric": self.metric,
        "scores": [float(x) for x in scores],
        "parents": parents, "hparams": {n: [float(v) for v in np.asarray(x)]
                                        for n, x in new.hparams.items()}})
    if self.enabled:  # the whole file, atomically: no line cut short
      workdir_lib.write_bytes(self.path, "".join(
          json.dumps(r) + "\n" for r in self.lineage).encode())
    copied = [f"{m}<-{p}" for m, p in enumerate(parents) if m != p]
    print(f"[pbt] step {step}: " + (", ".join(copied) if copied else
                                    "no member replaced"),
          file=sys.stderr, flush=True)
    return new


# ------------------------------------------------------------- summaries

# t_{0.975, df} for df = 1..30 (beyond: the normal 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
         2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093,
         2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045,
         2.042)


def interval(values) -> tuple[float, float, float]:
  """``(mean, std, half_width)`` of per-member values: std with ddof 1 and
  the half-width of the 95% confidence interval of the mean (Student's t
  with n - 1 degrees of freedom); std and half-width are NaN for one value."""
  n = np.size(values)
  mean, std = gj.population.spread(values)
  if n < 2:
    return mean, math.nan, math.nan
  t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
  return mean, std, t * std / math.sqrt(n)
