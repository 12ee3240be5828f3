r"""Evaluates generated samples: every metric of ``ganjax.metrics``, with its protocol.

    python -m experiments.evaluate --samples=samples.npy --dataset=fashion_mnist [--num=10000]
    python -m experiments.evaluate --workdir=/tmp/run [--num=10000] [--step=N]   # samples the latest checkpoint (or step N)
    python -m experiments.evaluate --real=train --dataset=fashion_mnist   # the real data's own scores

A population's workdir (``config.population``) is scored member by member:
the JSON adds ``members`` (each member's result) and ``population`` (every
metric's mean, standard deviation and 95% confidence half-width), and a
table goes to stderr; ``--member=i`` scores one member.

With ``--workdir`` of a run on toy points (``toy_ring8``, ``toy_grid25``),
the metrics are the mode coverage of ``--num`` samples (2,500 in the usual
protocol; ``ganjax.metrics.mode_coverage``). ``--real=SPLIT`` scores the
first ``--num`` images of a real split (use one the reference statistics and
the Parzen validation set do not contain, e.g. ``train``): the ceiling a
generator is compared with.

Prints one JSON object: ``{"dataset", "num_samples", "source", "metrics":
{name: value}, "protocol": {name: how it was computed}, "seconds"}``
(``--out`` also writes it to a file). Metric names carry the protocol
(``fid10k_fashion_mnist_cnn``: FID over 10k samples with the data set's CNN
classifier features; see ``ganjax.metrics.evaluator``).

Class-conditional samples: ``--workdir`` of a conditional run draws labels
covering every class equally; a ``.npz`` with ``samples`` and ``labels``
(int ``[N]``) passes the class of each sample; ``--real`` uses the true
labels (the ceiling). Labels add ``class_accuracy``, ``min_class_accuracy``
and ``intra_fid`` (see ``ganjax.metrics.evaluator``). With LPIPS weights
(``--lpips_weights`` or ``$GANJAX_LPIPS_WEIGHTS``) the mean pairwise LPIPS of
the samples is added (``lpips_diversity``).

A samples file is a ``.npy`` (or a ``.npz`` with one array, or a
``samples`` array) of shape ``[N, H, W]`` or ``[N, H, W, C]`` matching the
data set, float in [0, 1] or uint8. Anything else (NaN, wrong shape, values
out of range, an unreadable file) is refused with one message and exit
status 2.

The first evaluation of a data set trains its CNN classifier (about a minute
on CPU for fashion_mnist) and caches it and the real data's statistics under
``--cache_dir`` (default ``$GANJAX_CACHE_DIR`` or ``~/.cache/ganjax``).
"""

import argparse
import json
import os
import pickle
import sys
import time
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402


class UsageError(Exception):
  """A user error: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="python -m experiments.evaluate",
      description="Evaluate generated samples (Parzen log-likelihood, FID, "
      "KID, IS, precision/recall, class coverage).")
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--samples", help=".npy file of samples [N, H, W(, C)], "
                   "float in [0, 1] or uint8")
  src.add_argument("--workdir", help="a training run's workdir: sample its "
                   "latest checkpoint")
  src.add_argument("--real", metavar="SPLIT", help="score real images of "
                   "this split instead of samples (the ceiling), e.g. train")
  p.add_argument("--dataset", help="data set the samples imitate (default "
                 "with --workdir: the run's); an image folder or zip "
                 "(folder:PATH, zip:PATH) is scored at the samples' size")
  p.add_argument("--num", type=int, default=10_000,
                 help="number of samples evaluated (default 10000)")
  p.add_argument("--seed", type=int, default=0,
                 help="latent seed with --workdir; KID subsets' seed")
  p.add_argument("--networks", default=None,
                 help="comma-separated feature networks: cnn, inception "
                 "(default: cnn for MNIST-like data, inception otherwise)")
  p.add_argument("--inception_weights", default=None,
                 help="FID InceptionV3 weights (.npz from `python -m "
                 "ganjax.metrics.inception --convert`, or pytorch-fid's .pth); "
                 "default $GANJAX_INCEPTION_WEIGHTS")
  p.add_argument("--lpips_weights", default=None,
                 help="LPIPS weights (.npz from `python -m "
                 "ganjax.metrics.lpips`) for the diversity score; default "
                 "$GANJAX_LPIPS_WEIGHTS, none: no diversity")
  p.add_argument("--no_parzen", action="store_true",
                 help="skip the Parzen-window log-likelihood")
  p.add_argument("--cache_dir", default=None,
                 help="cache of classifiers and reference statistics "
                 "(default $GANJAX_CACHE_DIR or ~/.cache/ganjax)")
  p.add_argument("--data_dir", default=None, help="TFDS data dir")
  p.add_argument("--step", type=int, default=-1,
                 help="with --workdir: score the checkpoint of this step "
                 "(-1, the default: the newest usable one)")
  p.add_argument("--member", type=int, default=None,
                 help="with --workdir of a population: score only this "
                 "member (default: every member, then mean ± std)")
  p.add_argument("--out", default=None, help="also write the JSON here")
  return p


def load_samples(path: str) -> np.ndarray:
  """The array in a ``.npy`` / ``.npz`` file (no pickles)."""
  if not os.path.isfile(path):
    raise UsageError(f"samples file {path} does not exist.")
  try:
    data = np.load(path, allow_pickle=False)
  except (ValueError, OSError, pickle.UnpicklingError, EOFError) as e:
    raise UsageError(f"cannot read {path} as a .npy array: {e}") from None
  if isinstance(data, np.lib.npyio.NpzFile):
    with data:
      if "samples" in data.files:
        return data["samples"]
      if len(data.files) == 1:
        return data[data.files[0]]
      raise UsageError(f"{path} holds arrays {data.files}; name the samples "
                       "'samples' or save one array.")
  return data


def check_shape(samples: np.ndarray, data_shape) -> None:
  """Refuses samples that are not ``[N, *data_shape]`` (or ``[N, H, W]`` for
  one channel), naming the array's own shape."""
  shape, data_shape = tuple(np.shape(samples)), tuple(data_shape)
  forms = [data_shape] + ([data_shape[:-1]] if data_shape[-1:] == (1,) else [])
  if len(shape) < 2 or shape[1:] not in forms:
    needs = " or ".join(f"[N, {', '.join(map(str, f))}]" for f in forms)
    raise UsageError(f"the samples have shape {shape}; this data set needs "
                     f"{needs}.")


def load_labels(path: str):
  """The ``labels`` array of a ``.npz`` samples file, or None."""
  if not path.endswith(".npz"):
    return None
  with np.load(path, allow_pickle=False) as data:
    return data["labels"] if "labels" in data.files else None


def load_run(workdir: str, member: Optional[int] = None,
             step: Optional[int] = None):
  """``resume.load`` of a run's checkpoint ``step`` (None or negative: the
  latest usable one, falling back like training; of a population: member
  ``member``'s, default the best)."""
  from experiments import builders  # pylint: disable=g-import-not-at-top
  from experiments import resume  # pylint: disable=g-import-not-at-top
  from experiments import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  try:
    return resume.load(workdir, step=step, member=member)
  except (builders.ConfigError, workdir_lib.WorkdirError) as e:
    raise UsageError(str(e)) from None


def samples_from_workdir(workdir: str, num: int, seed: int,
                         member: Optional[int] = None, loaded=None,
                         step: Optional[int] = None):
  """``(samples, experiment, dataset, step, labels)`` from a run's checkpoint
  ``step`` (default: the latest; of a population: member ``member``'s,
  default the best; ``loaded``: the population's ``load_run``, not read
  again).

  Images come as ``[num, H, W, C]`` in [0, 1], toy points as ``[num, d]``;
  labels (conditional image runs: every class equally often) or None.
  """
  from experiments import builders  # pylint: disable=g-import-not-at-top
  from experiments import members  # pylint: disable=g-import-not-at-top
  from experiments import sample  # pylint: disable=g-import-not-at-top
  if loaded is None:
    run = load_run(workdir, member, step)
    state = run.state
  else:
    run = loaded
    state = members.member_state(run.experiment.population,
                                 run.population_state, member)
  experiment = run.experiment
  classes = None if experiment.is_toy else sample.num_classes(experiment)
  labels = sample.balanced_labels(num, classes) if classes else None
  samples = sample.draw(experiment, state, num, seed, labels=labels)
  return (samples, experiment, builders.data_source(run.config), run.step,
          labels)


def real_source(dataset: str, samples=None):
  """``dataset``, or for an image folder or zip its ``ImageFolder`` at the
  size and channels of ``samples [N, H, W(, C)]`` (its own without them)."""
  from ganjax.data import folder  # pylint: disable=g-import-not-at-top
  if not folder.is_path(dataset):
    return dataset
  shape = np.shape(samples) if samples is not None else ()
  try:
    return folder.ImageFolder(
        dataset, image_size=shape[1:3] if len(shape) >= 3 else None,
        channels=shape[3] if len(shape) == 4 and shape[3] in (1, 3) else 0)
  except ValueError as e:
    raise UsageError(f"--dataset={dataset}: {e}") from None


def toy_result(samples, dataset: str, source: dict, start: float) -> dict:
  """Mode coverage of toy points, in ``run``'s JSON layout."""
  from experiments import periodic_eval  # pylint: disable=g-import-not-at-top
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  sampler_name, _ = pipeline.TOY_SOURCES[dataset]
  return {"dataset": dataset, "num_samples": len(samples), "source": source,
          "metrics": periodic_eval.toy_scores(dataset, samples),
          "protocol": {
              "modes_captured": (
                  f"modes of {dataset} ({sampler_name} mixture) receiving >= "
                  "20 samples within 3 standard deviations of their centre, "
                  f"of {len(samples)} samples (Metz et al. 2016; "
                  "Srivastava et al. 2017)."),
              "high_quality_fraction": (
                  "fraction of the samples within 3 standard deviations of "
                  "the nearest mode's centre.")},
          "seconds": round(time.time() - start, 1)}


def population_size(workdir: str) -> Optional[int]:
  """The members of the population in ``workdir``, or None (a single run,
  or no readable config: ``run`` then says what is wrong)."""
  from experiments import builders  # pylint: disable=g-import-not-at-top
  from experiments import members  # pylint: disable=g-import-not-at-top
  from experiments import resume  # pylint: disable=g-import-not-at-top
  try:
    record, _ = resume.recorded_config(workdir, quiet=True)
    if record is None:
      return None
    config, _ = resume.config_of(record)
    spec = members.spec(config)
  except (builders.ConfigError, members.ConfigError, ValueError, OSError):
    return None
  return spec.size if spec is not None else None


def run_population(args: argparse.Namespace, size: int) -> dict:
  """Every member of a population scored as ``run`` scores one run; the
  result adds ``members`` (each member's result) and ``population``
  (``{name: {mean, std, ci95}}``: std with ddof 1, the 95% confidence
  interval's half-width from Student's t). Prints the table on stderr."""
  from experiments import members  # pylint: disable=g-import-not-at-top
  start = time.time()
  loaded, shared = load_run(args.workdir, member=0, step=args.step), {}
  results = [run(argparse.Namespace(**{**vars(args), "member": i}), loaded,
                 shared) for i in range(size)]
  names = [n for n in results[0]["metrics"]
           if all(n in r["metrics"] for r in results)]
  population = {}
  for name in names:
    mean, std, half = members.interval([r["metrics"][name] for r in results])
    population[name] = {"mean": mean, "std": std, "ci95": half}
  lines = ["| member | " + " | ".join(names) + " |",
           "|---" * (len(names) + 1) + "|"]
  lines += [f"| {i} | " + " | ".join(f"{r['metrics'][n]:.4g}" for n in names)
            + " |" for i, r in enumerate(results)]
  lines.append("| mean ± std (95% CI) | " + " | ".join(
      f"{p['mean']:.4g} ± {p['std']:.2g} (± {p['ci95']:.2g})"
      for p in population.values()) + " |")
  print("\n".join(lines), file=sys.stderr)
  return {"dataset": results[0]["dataset"],
          "num_samples": results[0]["num_samples"],
          "source": {**results[0]["source"], "member": None},
          "members": results, "population": population,
          "protocol": results[0]["protocol"],
          "seconds": round(time.time() - start, 1)}


def run(args: argparse.Namespace, loaded=None, shared=None) -> dict:
  """The evaluation the parsed command line asks for, as a JSON-ready dict.

  ``loaded``, ``shared``: a population's run (``run_population``) and a dict
  keeping the prepared evaluator for its next member.
  """
  if args.num < 4:
    raise UsageError(f"--num must be at least 4, got {args.num}.")
  start = time.time()
  labels = None
  if args.workdir and args.member is None:
    size = population_size(args.workdir)
    if size is not None:
      return run_population(args, size)
  if args.member is not None and not args.workdir:
    raise UsageError("--member picks a member of a population's --workdir.")
  if args.step >= 0 and not args.workdir:
    raise UsageError("--step picks a checkpoint of a --workdir.")
  if args.workdir:
    samples, experiment, run_dataset, step, labels = samples_from_workdir(
        args.workdir, args.num, args.seed, args.member, loaded, args.step)
    dataset = real_source(args.dataset, samples) if args.dataset else run_dataset
    source = {"workdir": args.workdir, "step": step, "seed": args.seed}
    if args.member is not None:
      source["member"] = args.member
    if experiment.is_toy:
      return toy_result(samples, run_dataset, source, start)
  elif args.real:
    if not args.dataset:
      raise UsageError("--dataset is required with --real (e.g. "
                       "--dataset=fashion_mnist --real=train).")
    dataset = real_source(args.dataset)
    source = {"real": f"{args.dataset}:{args.real}"}
    from ganjax.metrics import real_data  # pylint: disable=g-import-not-at-top
    try:
      samples, labels = (a[:args.num] for a in real_data.load_split(
          dataset, f"{args.real}", args.data_dir))
    except (ValueError, FileNotFoundError) as e:
      raise UsageError(f"cannot load {args.dataset}:{args.real}: {e}") from None
  else:
    if not args.dataset:
      raise UsageError("--dataset is required with --samples (e.g. "
                       "--dataset=fashion_mnist).")
    samples = load_samples(args.samples)
    dataset = real_source(args.dataset, samples)
    labels = load_labels(args.samples)
    source = {"samples": args.samples}

  from ganjax import metrics  # pylint: disable=g-import-not-at-top
  from ganjax.data.errors import DatasetNotFoundError  # pylint: disable=g-import-not-at-top
  shared = {} if shared is None else shared
  try:
    from experiments import periodic_eval  # pylint: disable=g-import-not-at-top
    evaluator = shared.get("evaluator") or metrics.Evaluator(
        dataset, args.num,
        networks=args.networks.split(",") if args.networks else None,
        inception_weights=args.inception_weights, cache_dir=args.cache_dir,
        data_dir=args.data_dir, parzen=not args.no_parzen, seed=args.seed,
        verbose=True, lpips_weights=args.lpips_weights)
    if "workdir" in source:  # a run trained at another image_size
      samples = periodic_eval.at_data_size(samples, evaluator.data_shape)
    # Refuse bad samples and weights before any expensive preparation.
    check_shape(samples, evaluator.data_shape)
    prepared = "evaluator" in shared
    if "inception" in evaluator.networks and evaluator.inception_weights \
        and not prepared:
      periodic_eval.check_weights(evaluator.inception_weights, "inception")
    if evaluator.lpips_weights and not prepared:
      periodic_eval.check_weights(evaluator.lpips_weights, "lpips")
    checked = metrics.check_samples(samples, evaluator.data_shape,
                                    min_count=evaluator.k + 1)
    shared["evaluator"] = evaluator if prepared else evaluator.prepare()
  except (metrics.InvalidSamplesError, DatasetNotFoundError,
          FileNotFoundError) as e:
    raise UsageError(str(e)) from None
  except ValueError as e:  # unknown data set or network, bad split
    raise UsageError(str(e)) from None
  try:
    values = evaluator(checked, labels=labels)
  except metrics.InvalidSamplesError as e:  # labels of the wrong shape/range
    raise UsageError(str(e)) from None
  n = min(len(checked), args.num)
  return {"dataset": evaluator.dataset, "num_samples": n, "source": source,
          "metrics": values,
          "protocol": evaluator.protocol(n, labelled=labels is not None),
          "seconds": round(time.time() - start, 1)}


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  try:
    result = run(args)
  except UsageError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  text = json.dumps(result, indent=2)
  print(text)
  if args.out:
    if os.path.dirname(args.out):
      os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
      f.write(text + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
