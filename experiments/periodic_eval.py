"""Sample-quality metrics during training, and the best checkpoint by one of them.

Every ``config.evaluation.every`` steps the runner calls a
``PeriodicEvaluator``: it draws ``evaluation.num_samples`` samples from the
generator (its EMA weights when the run keeps them) with the same noise every
time, scores them, writes the scores to TensorBoard (``eval/<name>``) and to
``metrics.jsonl``, and, when ``evaluation.best_metric`` improved, saves the
state to ``<workdir>/checkpoints_best/<step>`` (one kept) and records it in
``<workdir>/best.json``::

    {"metric": "fid2k_fashion_mnist_cnn", "value": 41.3, "step": 6000,
     "mode": "min", "metrics": {...all scores of that step...}}

Images are scored by ``ganjax.metrics.Evaluator`` (FID / KID / IS /
precision / recall / density / coverage / class coverage with the data set's
CNN, and the Parzen log-likelihood when ``evaluation.parzen``); the metric
names carry the protocol (``fid2k_fashion_mnist_cnn``: 2,000 samples,
Fashion-MNIST CNN features). Toy mixtures are scored by
``ganjax.metrics.mode_coverage`` (``modes_captured``,
``high_quality_fraction``; 2,500 samples in the usual protocol).

Conditional runs (``config.num_classes``) draw the samples for labels that
cover every class equally (``sample.balanced_labels``)
and pass them to the evaluator, which adds the CNN's accuracy on the samples
of each requested class (``class_accuracy``, mean over classes), its worst
class (``min_class_accuracy``) and the mean per-class FID (``intra_fid``).
With LPIPS weights (``evaluation.lpips_weights`` or ``$GANJAX_LPIPS_WEIGHTS``;
docs/lpips_weights.md) the mean pairwise LPIPS of the samples is added
(``lpips_diversity``, and ``lpips_diversity_per_class`` for conditional runs).

``evaluation.best_metric`` is a short name: ``fid``, ``kid``, ``parzen_ll``,
``precision``, ``recall``, ``density``, ``coverage``, ``is``,
``modes_captured``, ``high_quality_fraction``, and for conditional runs
``class_accuracy`` and ``intra_fid``, for stacked digits ``modes`` and
``mode_kl``; empty picks
``fid`` for images, ``modes_captured`` for toy data and ``modes`` for stacked
digits; ``none`` keeps no best checkpoint.
"""

import contextlib
import json
import os
import sys
import time
from typing import Optional

import jax
import numpy as np

import ganjax as gj
from ganjax import checkpoint as checkpoint_lib
from ganjax import images as images_lib
from ganjax import summary as summary_lib
from ganjax.data import stacked
from experiments import builders
from experiments import members
from experiments import sample
from experiments import workdir as workdir_lib


# Short metric name -> whether lower is better.
LOWER_IS_BETTER = {"fid": True, "kid": True, "parzen_ll": False,
                   "precision": False, "recall": False, "density": False,
                   "coverage": False, "is": False,
                   "modes_captured": False, "high_quality_fraction": False,
                   "class_accuracy": False, "intra_fid": True,
                   "modes": False, "mode_kl": True}
_IMAGE_METRICS = ("fid", "kid", "parzen_ll", "precision", "recall",
                  "density", "coverage", "is")
_CONDITIONAL_METRICS = ("class_accuracy", "intra_fid")
_TOY_METRICS = ("modes_captured", "high_quality_fraction")
_STACKED_METRICS = ("modes", "mode_kl")  # ganjax.data.stacked data sets


def at_data_size(samples: np.ndarray, data_shape) -> np.ndarray:
  """Images of a run trained at another ``config.image_size``, resized to the
  data set's own size (bilinear, antialiased, as the data were): its metrics'
  features are defined there. Other samples are returned as they are."""
  height, width = (int(d) for d in data_shape[:2])
  if samples.ndim != 4 or samples.shape[1:3] == (height, width):
    return samples
  return np.clip(images_lib.resize(samples, (height, width)), 0.0, 1.0)


def toy_scores(dataset: str, points: np.ndarray) -> dict:
  """Mode coverage of toy ``points [N, d]`` (``ganjax.metrics.mode_coverage``)."""
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  sampler_name, _ = pipeline.TOY_SOURCES[dataset]
  centers, std = gj.data.toy.modes(sampler_name)
  coverage = gj.metrics.mode_coverage(points, centers, std)
  return {"modes_captured": float(coverage["modes_captured"]),
          "num_modes": float(coverage["num_modes"]),
          "high_quality_fraction": float(coverage["high_quality_fraction"])}


def short_names(metrics: dict) -> dict:
  """``{"fid": "fid2k_fashion_mnist_cnn", ...}``: the first full name per short one."""
  out = {}
  for name in metrics:
    if name.endswith(("_std", "_stderr")):
      continue
    for short in LOWER_IS_BETTER:
      if short in _IMAGE_METRICS + _CONDITIONAL_METRICS + _STACKED_METRICS \
          and name.startswith(short) \
          and name[len(short):len(short) + 1].isdigit():
        out.setdefault(short, name)
      elif name == short:
        out.setdefault(short, name)
  return out


def check_weights(path: str, kind: str) -> None:
  """Parses an evaluation weights file (``kind``: ``"inception"`` or
  ``"lpips"``), so that a wrong one is refused before anything runs.

  Raises:
    ValueError: the file is missing or does not hold those weights; the
      message names it and how to make a good one.
  """
  from ganjax.metrics import inception, lpips  # pylint: disable=g-import-not-at-top
  module, what = {"inception": (inception, "FID InceptionV3"),
                  "lpips": (lpips, "LPIPS")}[kind]
  try:
    module.weights_path(path)  # a missing file: its own message
  except FileNotFoundError as e:
    raise ValueError(str(e)) from None
  try:
    (inception.load_inception if kind == "inception" else lpips.load_lpips)(
        path)
  except Exception as e:  # pylint: disable=broad-except
    reason = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
    raise ValueError(
        f"the {what} weights file {path} cannot be used ({reason}). Convert "
        f"the weights again as docs/{kind}_weights.md says.") from None


def check_config(config, experiment: builders.Experiment,
                 parse_weights: bool = True) -> tuple:
  """Checks ``config.evaluation`` (metric, sample count, weights files,
  parsed unless not ``parse_weights``) without writing anything; returns ``(best_short, evaluator)``
  (``best_short``: None for no best checkpoint; ``evaluator``: the
  ``ganjax.metrics.Evaluator`` of image data, else None).

  Raises:
    builders.ConfigError: an unknown ``best_metric``, a metric the data
      cannot give, a missing or unreadable weights file, or RGB data with
      no InceptionV3 weights.
  """
  spec = config.evaluation
  if int(spec.num_samples) < 4:
    raise builders.ConfigError(
        f"config.evaluation.num_samples must be at least 4, got "
        f"{spec.num_samples}.")
  classes = None if experiment.is_toy else sample.num_classes(experiment)
  choices = _TOY_METRICS if experiment.is_toy else _IMAGE_METRICS + (
      _CONDITIONAL_METRICS if classes else ())
  if config.dataset in stacked.BASES:
    choices = _STACKED_METRICS
  best = spec.best_metric or choices[0]
  if best != "none" and best not in choices:
    raise builders.ConfigError(
        f"config.evaluation.best_metric={best!r} is not a metric of "
        f"{'toy' if experiment.is_toy else 'image'} data; choose from "
        f"{', '.join(choices)}, or 'none' to keep no best checkpoint.")
  pbt = config.population.pbt
  if experiment.population is not None and pbt.every:
    ranked = pbt.metric or best
    if ranked not in choices:
      raise builders.ConfigError(
          f"config.population.pbt.metric={ranked!r}: population-based "
          f"training ranks the members by a metric of the evaluation; choose "
          f"from {', '.join(choices)}.")
  if best == "parzen_ll" and not spec.parzen:
    raise builders.ConfigError(
        "config.evaluation.best_metric='parzen_ll' needs "
        "--config.evaluation.parzen=True.")
  if experiment.is_toy:
    return (None if best == "none" else best), None
  networks = tuple(n for n in spec.networks.split(",") if n) or None
  try:
    evaluator = gj.metrics.Evaluator(
        builders.data_source(config), int(spec.num_samples),
        networks=networks,
        inception_weights=spec.inception_weights or None,
        data_dir=builders.data_dir(config), parzen=bool(spec.parzen),
        seed=int(config.seed), verbose=jax.process_index() == 0,
        lpips_weights=spec.get("lpips_weights", "") or None)
  except ValueError as e:
    raise builders.ConfigError(f"config.evaluation: {e}") from None
  if "inception" in evaluator.networks and not evaluator.inception_weights:
    raise builders.ConfigError(
        f"Evaluating {config.dataset} needs the FID InceptionV3 weights "
        "(see docs/inception_weights.md): pass "
        "--config.evaluation.inception_weights=FILE or set "
        "$GANJAX_INCEPTION_WEIGHTS, or turn evaluation off with "
        "--config.evaluation.every=0.")
  try:
    if "inception" in evaluator.networks and parse_weights:
      check_weights(evaluator.inception_weights, "inception")
    if evaluator.lpips_weights and parse_weights:
      check_weights(evaluator.lpips_weights, "lpips")
  except ValueError as e:
    raise builders.ConfigError(
        f"config.evaluation: {e} Or turn evaluation off with "
        "--config.evaluation.every=0.") from None
  return (None if best == "none" else best), evaluator


class PeriodicEvaluator:
  """Scores the generator every ``config.evaluation.every`` steps; keeps the best.

  Args:
    config: the experiment config (its ``evaluation`` block, ``dataset``,
      ``seed``, ``data_dir``, ``keep_checkpoints``), checked by
      ``check_config``.
    experiment: what ``builders.build`` made of it.
    workdir: the run's workdir.
    writer: the run's summary writer (TensorBoard + JSONL).
    enabled: whether this process writes logs (process 0); every process
      scores (the same samples and networks give the same numbers) and takes
      part in saving the best checkpoint.
  """

  def __init__(self, config, experiment: builders.Experiment, workdir: str,
               writer: summary_lib.SummaryWriter, enabled: bool = True):
    self.best_short, self.evaluator = check_config(config, experiment,
                                                   parse_weights=False)
    self.every = int(config.evaluation.every)
    self.experiment, self.writer, self.enabled = experiment, writer, enabled
    self.dataset = config.dataset
    self.num = int(config.evaluation.num_samples)
    self.key = gj.streams.run_key(config.seed, gj.streams.EVAL_NOISE)
    self.num_classes = (None if experiment.is_toy
                        else sample.num_classes(experiment))
    self.population = experiment.population
    if self.population is not None:
      self.member_keys = members.seed_keys(config, self.population.size,
                                           gj.streams.EVAL_NOISE)
    self.member_metrics = (None, [])  # (step, each member's metrics or None)
    self.best_path = os.path.join(workdir, workdir_lib.BEST_JSON)
    self.best = self._read_best()
    self._best_ckpt = None
    if self.best_short is not None:
      self._best_ckpt = checkpoint_lib.Checkpointer(
          os.path.join(workdir, workdir_lib.BEST_CHECKPOINT_DIR), keep=1,
          async_save=False)

  def is_due(self, step: int, last: int) -> bool:
    return self.every > 0 and (step % self.every == 0 or step == last)

  def _read_best(self) -> Optional[dict]:
    if not os.path.exists(self.best_path):
      return None
    try:
      with open(self.best_path) as f:
        return json.load(f)
    except (OSError, json.JSONDecodeError):
      return None

  def scores(self, state, key=None) -> dict:
    """Every metric of ``num_samples`` samples of ``state``'s generator
    (drawn from ``key``, default the run's)."""
    labels = (sample.balanced_labels(self.num, self.num_classes)
              if self.num_classes else None)
    samples = sample.draw(self.experiment, state, self.num,
                          key=self.key if key is None else key, labels=labels)
    if self.experiment.is_toy:
      return toy_scores(self.dataset, samples)
    samples = at_data_size(samples, self.evaluator.data_shape)
    return self.evaluator(samples, labels=labels)

  def _population_scores(self, state) -> list:
    """Each member's ``scores`` (None for a frozen member, or one whose
    samples cannot be scored, e.g. NaN)."""
    per_member = []
    for i, alive in enumerate(np.asarray(state.alive)):
      try:  # member i's samples are those of its single run (seed + i)
        per_member.append(self.scores(members.member_state(
            self.population, state, i), self.member_keys[i]) if alive
                          else None)
      except gj.metrics.InvalidSamplesError as e:
        print(f"[eval] member {i}: not scored: {e}", file=sys.stderr)
        per_member.append(None)
    return per_member

  def member_scores(self, step: int, short: str) -> Optional[list]:
    """Each member's value of metric ``short`` (``fid``, ...) scored at
    ``step`` (NaN for a member not scored), or None when ``step`` was not."""
    scored_step, per_member = self.member_metrics
    if scored_step != step:
      return None
    full = short_names(next((m for m in per_member if m), {})).get(short)
    return [float(m[full]) if m and full in m else float("nan")
            for m in per_member]

  def _improved(self, name: str, metrics: dict) -> bool:
    """Whether ``metrics`` beat the best so far (ties in ``modes_captured``
    go to the higher ``high_quality_fraction``)."""
    def rank(m):
      sign = -1.0 if LOWER_IS_BETTER[self.best_short] else 1.0
      return (sign * m[name], m.get("high_quality_fraction", 0.0)
              if self.best_short == "modes_captured" else 0.0)

    if not np.isfinite(metrics[name]):
      return False
    if self.best is None or self.best.get("metric") != name:
      return True
    return rank(metrics) > rank(self.best["metrics"])

  def __call__(self, step: int, state, interruptible=contextlib.nullcontext
               ) -> dict:
    """Scores ``state`` (one copy, not replicated) at ``step``, logs the
    scores, and saves it as the best checkpoint when it is.

    ``interruptible()``: the context the scoring (which writes nothing)
    runs in (``guards.Signals.interruptible``).

    Raises:
      OSError: a write failed (``filename`` names the file).
    """
    start = time.time()
    per_member = None
    try:
      with interruptible():
        if self.population is None:
          metrics = self.scores(state)
        else:
          per_member = self._population_scores(state)
    except gj.metrics.InvalidSamplesError as e:  # e.g. NaN samples from G
      print(f"[eval] step {step}: not scored: {e}", file=sys.stderr)
      return {"eval_seconds": time.time() - start}
    member = None
    if per_member is not None:  # the population's record, and its best
      self.member_metrics = (step, per_member)
      ranked = short_names(next((m for m in per_member if m), {})).get(
          self.best_short)
      metrics = members.aggregate(per_member, {
          ranked: LOWER_IS_BETTER[self.best_short]} if ranked else {})
      member = metrics.get("best_member")
      metrics["eval_seconds"] = time.time() - start
      members.write_scalars(self.writer, step, metrics, per_member, "eval/")
    else:
      metrics["eval_seconds"] = time.time() - start
      self.writer.scalars(step, metrics, prefix="eval/")
    if self.best_short is not None:
      name = short_names(metrics).get(self.best_short)
      candidate = metrics if member is None else dict(
          per_member[int(member)], member=int(member))
      if name is not None and self._improved(name, candidate):
        try:
          self._best_ckpt.save(step, state, force=True)
        except OSError as e:
          raise OSError(e.errno, e.strerror, e.filename or
                        self._best_ckpt.directory) from None
        self.best = {"metric": name, "value": candidate[name],
                     "step": int(step),
                     "mode": "min" if LOWER_IS_BETTER[self.best_short]
                     else "max", "metrics": candidate}
        if member is not None:  # the checkpoint holds every member
          self.best["member"] = int(member)
        if self.enabled:
          workdir_lib.write_json(self.best_path, self.best)
    if self.enabled:
      shown = {k: v for k, v in metrics.items()
               if k in short_names(metrics).values()}
      print(f"[eval] step {step}: " + ", ".join(
          f"{k}={v:.4g}" for k, v in shown.items()) +
            f" ({metrics['eval_seconds']:.1f}s)", file=sys.stderr, flush=True)
    return metrics

  def close(self) -> None:
    if self._best_ckpt is not None:
      self._best_ckpt.close()
