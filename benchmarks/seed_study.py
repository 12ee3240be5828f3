"""A seed study with a population: N seeds of a runner config in one program.

  python -m benchmarks.seed_study --config=experiments/configs/dcgan_digits.py \
      --seeds=5 --config.num_steps=2000 [--config.num_classes=-1]
  python -m benchmarks.seed_study --config=experiments/configs/dcgan_digits.py \
      --config.population.sweep="d_lr=1e-4,4e-4; g_lr=2e-4,8e-4"

Builds the GAN of the config (``experiments.builders.build``, the runner's
models, optimizers, schedules and EMA), starts member i from
``gan.init(jax.random.key(seed + i), ...)`` (``gj.Population``), trains every
member for ``config.num_steps`` steps on its own batches of the in-memory
training split (drawn with replacement, uniformly, per member and step, from
its seed alone: a study of seeds 2-4 trains members 2-4 of a study of seeds
0-4, bit for bit where the population maps its members), then
scores each member's EMA generator with ``ganjax.metrics.Evaluator`` and
prints every metric as mean ± std over the members (std with ddof 1), with
the members' values, as a Markdown table (``--out`` appends it to a file).
A config with a population (``config.population.size`` or ``.sweep``, the
runner's syntax) trains that population instead of ``--seeds`` members, and
the table gives each member's hyper-parameters.

Data sets: those ``ganjax.metrics.real_data.load_split`` reads into memory
(``digits``, ``stacked_digits``, ``fashion_mnist`` once prepared). This is the
library's population, not yet the runner's: no checkpoints, no resume, and
member i is not the runner's run with seed s + i (the runner draws its data
in epochs and its keys from ``experiments.streams``).
"""

import dataclasses
import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

import ganjax as gj
from ganjax.metrics import real_data
from experiments import builders

config_flags.DEFINE_config_file("config", None, "A runner config file.",
                                lock_config=True)
flags.DEFINE_integer("seeds", 5, "Members: seeds seed, seed + 1, ...")
flags.DEFINE_integer("seed", 0, "The first member's seed.")
flags.DEFINE_integer("num_samples", 1500, "Samples scored per member.")
flags.DEFINE_integer("steps_per_call", 100, "Steps fused into one call.")
flags.DEFINE_string("out", None, "Markdown file the table is appended to.")
flags.DEFINE_string("samples_out", None, "A folder for each member's scored "
                    "samples (member_<i>.npz: uint8 images, labels), for "
                    "analyses after the run.")
flags.DEFINE_string("name", None, "The study's name in the table "
                    "(default: the config's dataset and overrides).")
FLAGS = flags.FLAGS


def in_value_range(images: np.ndarray, value_range) -> jnp.ndarray:
  """[0, 1] images -> the generator's range."""
  low, high = value_range
  return jnp.asarray(images * (high - low) + low, jnp.float32)


def member_batches(images, labels, seeds, k: int, batch_size: int):
  """``batch_at(step, member=None)``: member i's ``[k, B, ...]`` batch of
  ``step`` drawn from ``fold_in(fold_in(key(DATA_KEY), step), seeds[i])``,
  or every member's stacked ``[N, k, B, ...]`` when ``member`` is None
  (``Population.run_steps``). A member's batches depend on its seed alone,
  not on the population's size or first seed (``--seed=2 --seeds=3`` trains
  members 2-4 of ``--seed=0 --seeds=5``)."""

  def one(key):
    index = jax.random.randint(key, (k, batch_size), 0, images.shape[0])
    if labels is None:
      return images[index]
    return {"image": images[index], "label": labels[index]}

  seeds = jnp.asarray(seeds)

  def batch_at(step, member=None):
    key = jax.random.fold_in(jax.random.key(DATA_KEY), step)
    if member is None:
      return jax.vmap(lambda s: one(jax.random.fold_in(key, s)))(seeds)
    return one(jax.random.fold_in(key, seeds[member]))

  return batch_at


def load_data(config, experiment):
  """The training split in G's range, ``(images, labels or None)``."""
  images, labels = real_data.load_split(config.dataset, "train")
  images = in_value_range(images, experiment.value_range)
  if experiment.num_classes is None:
    return images, None
  return images, jnp.asarray(labels, jnp.int32)


def example_batch(images, labels, batch_size: int):
  """What every member is initialised from (shapes and value range)."""
  if labels is None:
    return images[:batch_size]
  return {"image": images[:batch_size], "label": labels[:batch_size]}


# The key every member's batches are drawn from, folded with the step and
# then with the member's seed.
DATA_KEY = 10_000


def train(config, num_members: int, seed: int, steps_per_call: int):
  """Returns ``(population, state, experiment, seconds)`` after training
  ``num_members`` seeds from ``seed``, or the config's population (its
  size and sweep) when it has one."""
  experiment = builders.build(config)
  images, labels = load_data(config, experiment)
  if experiment.population is not None:  # the config's sweep
    population = dataclasses.replace(experiment.population, shared_batch=False)
    num_members = population.size
  else:
    population = gj.Population(experiment.gan, size=num_members,
                               shared_batch=False)
  seeds = seed + jnp.arange(num_members)
  state = population.init(jax.vmap(jax.random.key)(seeds),
                          example_batch(images, labels, config.batch_size))
  batch_at = member_batches(images, labels, seeds, config.k,
                            config.batch_size)
  run = jax.jit(lambda state, n: population.run_steps(
      state, batch_at, n, steps_per_call), donate_argnums=0)
  calls, rest = divmod(config.num_steps, steps_per_call)
  start = time.time()
  for n in [steps_per_call] * calls + ([rest] if rest else []):
    state, metrics = run(state, np.int32(n))
    print(f"step {int(state.step)}: d_loss "
          f"{gj.population.mean_std(metrics['d_loss'][n - 1])}, alive "
          f"{int(np.sum(state.alive))}/{num_members}", file=sys.stderr,
          flush=True)
  jax.block_until_ready(state)
  return population, state, experiment, time.time() - start


def score(population, state, experiment, dataset: str, num: int,
          samples_out: str | None = None) -> list:
  """Every metric of each member's EMA samples, a list of dicts; with
  ``samples_out``, the samples are also written there."""
  evaluator = gj.metrics.Evaluator(dataset, num=num, parzen=False,
                                   verbose=False).prepare()
  labels = (jnp.arange(num) % experiment.num_classes
            if experiment.num_classes is not None else None)
  sample = jax.jit(lambda s, i: population.sample(
      s, jax.random.key(0), num, labels=labels, member=i))
  host_labels = None if labels is None else np.asarray(labels)
  if samples_out:
    os.makedirs(samples_out, exist_ok=True)
  scores = []
  for i in range(population.size):
    images = gj.images.to_unit_range(sample(state, i), experiment.value_range)
    if samples_out:
      np.savez_compressed(
          os.path.join(samples_out, f"member_{i}.npz"),
          images=np.round(np.asarray(images) * 255).astype(np.uint8),
          labels=host_labels if host_labels is not None else np.zeros(0))
    scores.append(evaluator(images, host_labels))
  return scores


def table(name: str, scores: list, seconds: float, config, seed: int,
          hparams=None) -> str:
  """Markdown: one row per metric, mean ± std and each member's value;
  first one row per swept hyper-parameter (``{name: values}``)."""
  n = len(scores)
  lines = [f"### {name}", "",
           f"{n} members (seeds {seed}-{seed + n - 1}), {config.num_steps} "
           f"steps each at batch {config.batch_size}, trained together in "
           f"{seconds:.0f} s with compilation ({n * config.num_steps / seconds:.1f}"
           " member-steps/s); EMA generators.", "",
           "| metric | mean ± std | members |", "|---|---:|---|"]
  for hparam, values in (hparams or {}).items():
    lines.append(f"| {hparam} | | " + ", ".join(f"{v:.4g}" for v in values)
                 + " |")
  for metric in scores[0]:
    values = np.array([s[metric] for s in scores])
    lines.append(f"| {metric} | {gj.population.mean_std(values)} | "
                 + ", ".join(f"{v:.4g}" for v in values) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  config = FLAGS.config
  population, state, experiment, seconds = train(
      config, FLAGS.seeds, FLAGS.seed, FLAGS.steps_per_call)
  if not bool(np.all(state.alive)):
    print(f"members diverged (frozen): {np.flatnonzero(~state.alive)}",
          file=sys.stderr)
  scores = score(population, state, experiment, config.dataset,
                 FLAGS.num_samples, FLAGS.samples_out)
  name = FLAGS.name or " ".join([config.dataset] + [
      a for a in sys.argv[1:] if a.startswith("--config.")])
  text = table(name, scores, seconds, config, FLAGS.seed,
               population.hparams)
  print(text)
  if FLAGS.out:
    with open(FLAGS.out, "a") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
