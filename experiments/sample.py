r"""Draws samples from a training run's latest checkpoint.

    python -m experiments.sample --workdir=/tmp/digits --num=10000 --out=samples.npy

Writes ``--out`` (``.npy``, float32) and a PNG grid of the first samples next
to it (``samples.png``). Images are ``[N, H, W, C]`` in [0, 1], whatever the
generator's own range; toy data are points ``[N, d]`` in data units, and the
PNG is a scatter plot (histogram for 1-D) over real data. The generator's EMA
weights are used when the run kept them (``--noema`` for the raw weights);
batch norm uses its running averages. The same ``--seed`` gives the same
samples. Conditional runs: the samples' classes are drawn uniformly, and the
PNG shows one row per class (``--grid // num_classes`` samples each, the same
noise down each column).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ganjax import images as images_lib  # noqa: E402
from experiments import builders  # noqa: E402
from experiments import cli  # noqa: E402
from experiments import evaluation  # noqa: E402
from experiments import resume  # noqa: E402
from experiments import samples as samples_lib  # noqa: E402
from experiments import workdir as workdir_lib  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string("workdir", None, "Workdir of a training run.")
  flags.DEFINE_integer("num", 10_000, "Number of samples.")
  flags.DEFINE_string("out", "samples.npy", "Output .npy file; the PNG grid "
                      "goes next to it.")
  flags.DEFINE_integer("batch_size", 1000, "Samples per generator call.")
  flags.DEFINE_integer("seed", 0, "Seed of the latent noise.")
  flags.DEFINE_integer("step", -1, "Checkpoint step; -1 for the latest.")
  flags.DEFINE_bool("ema", True, "Use the EMA weights when the run has them.")
  flags.DEFINE_integer("grid", 100, "Samples shown in the PNG grid.")
  flags.mark_flags_as_required(["workdir"])


def picture(experiment, config, samples: np.ndarray, num: int) -> np.ndarray:
  """A PNG-ready picture of the first ``num`` samples."""
  if not experiment.is_toy:
    return images_lib.make_grid(samples[:num],
                                scale=max(1, 32 // samples.shape[1]))
  real = samples_lib.real_points(config, min(len(samples), 2000))
  if samples.shape[-1] == 1:
    return images_lib.histogram(samples, real)
  return images_lib.scatter(samples[:2000], real)


def main(argv):
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}.")
  if FLAGS.num < 1 or FLAGS.batch_size < 1:
    cli.fail("--num and --batch_size must be positive.")
  out = FLAGS.out if FLAGS.out.endswith(".npy") else FLAGS.out + ".npy"
  try:  # before the (slower) sampling
    if os.path.dirname(out):
      os.makedirs(os.path.dirname(out), exist_ok=True)
  except OSError as e:
    cli.fail(f"cannot write --out={FLAGS.out}: cannot create the folder "
               f"{os.path.dirname(out)} ({e.strerror or e}; is a part of the "
               "path a file?).")
  try:
    run = resume.load(FLAGS.workdir, None if FLAGS.step < 0 else FLAGS.step)
  except (builders.ConfigError, workdir_lib.WorkdirError) as e:
    cli.fail(str(e))
  experiment, state, config = run.experiment, run.state, run.config
  samples = evaluation.draw(experiment, state, FLAGS.num, FLAGS.seed, FLAGS.batch_size,
                 FLAGS.ema)
  try:
    np.save(out, samples)
  except OSError as e:
    cli.fail(f"cannot write {out}: {e.strerror or e}.")
  png = out[:-len(".npy")] + ".png"
  if experiment.num_classes is not None and not experiment.is_toy:
    per_class = max(1, FLAGS.grid // experiment.num_classes)
    rows = np.asarray(jax.jit(lambda s, k: samples_lib.class_grid_samples(
        experiment.gan, s, k, per_class, FLAGS.ema))(
            state, jax.random.key(FLAGS.seed)))
    grid = images_lib.make_class_grid(
        images_lib.to_unit_range(rows, experiment.value_range),
        experiment.num_classes, scale=max(1, 32 // rows.shape[1]))
  else:
    grid = picture(experiment, config, samples, FLAGS.grid)
  images_lib.save_png(png, grid)
  print(f"Wrote {samples.shape[0]} samples {samples.shape[1:]} "
        f"({samples.dtype}, step {int(state.step)}"
        f"{', EMA weights' if FLAGS.ema and state.ema_g_params is not None else ''})"
        f" to {out} and a grid to {png}.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
