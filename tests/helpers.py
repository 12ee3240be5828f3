"""Shared helpers of the runner's tests: a tiny config, a run, its state and logs.

Tiny models on the real 8x8 digits (sklearn, offline), so that a run takes
seconds on two CPU cores.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from ganjax import checkpoint
from ganjax import summary
from experiments import builders
from experiments import resume
from experiments import train
from experiments import workdir as workdir_lib
from experiments.configs import dcgan_digits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOSS_KEYS = ("d_loss", "g_loss", "d_real", "d_fake", "real_logit",
             "fake_logit", "d_grad_norm", "g_grad_norm")
# The command-line form of ``tiny_config()`` (without num_steps and cadences).
TINY_ARGS = ("--config=experiments/configs/dcgan_digits.py",
             "--config.image_size=0", "--config.model.base_features=4",
             "--config.latent_dim=8", "--config.batch_size=8",
             "--config.log_every=1", "--config.num_eval_samples=4")


def tiny_config(**overrides):
  """DCGAN on the 8x8 digits, base_features 4, 4 steps, everything every 1-2 steps."""
  c = dcgan_digits.get_config()
  c.image_size = 0
  c.model.base_features = 4
  c.latent_dim = 8
  c.batch_size = 8
  c.num_steps = 4
  c.ema_decay = 0.9
  c.log_every = 1
  c.eval_every = 2
  c.checkpoint_every = 2
  c.num_eval_samples = 4
  for key, value in overrides.items():
    c[key] = value
  return c


def run(config, workdir):
  """``train.train_and_evaluate`` in process, without a progress bar."""
  return train.train_and_evaluate(config, str(workdir), progress=False)


def final_state(workdir, config, step=None):
  """The state of the newest checkpoint (or ``step``) of a run of ``config``."""
  experiment = builders.build(config)
  return checkpoint.restore(
      os.path.join(str(workdir), workdir_lib.CHECKPOINT_DIR),
      resume.template(config, experiment), step)


def losses_by_step(workdir):
  """``{step: {loss name: value}}`` of a run's ``metrics.jsonl``."""
  return {r["step"]: {k: r[k] for k in LOSS_KEYS if k in r}
          for r in summary.read_jsonl(str(workdir))}


def steps_on_disk(workdir):
  """The steps of the committed checkpoints of a run."""
  d = os.path.join(str(workdir), workdir_lib.CHECKPOINT_DIR)
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(
      d) else []


def all_finite(state):
  return all(np.isfinite(x).all() for x in jax.tree.leaves(state)
             if np.issubdtype(x.dtype, np.floating))


def cli(module, *args, env=None, timeout=120):
  """``python -m module args`` from the repository root, its output captured."""
  return subprocess.run(
      [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
      text=True, timeout=timeout,
      env={**os.environ, "PYTHONPATH": REPO, **(env or {})})


def popen(workdir, *args, stderr=subprocess.PIPE):
  """``python -m experiments.train`` of ``TINY_ARGS`` in the background
  (``stderr``: a pipe, or a file to watch while it runs)."""
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.train", f"--workdir={workdir}",
       *TINY_ARGS, *args], cwd=REPO, stdout=subprocess.PIPE,
      stderr=stderr, text=True, env={**os.environ, "PYTHONPATH": REPO})


def tree_bytes(path):
  """``{relative path: bytes}`` of every file under ``path`` and ``None`` of
  every folder (a workdir's exact contents)."""
  out = {}
  for root, folders, files in os.walk(str(path)):
    out.update({os.path.relpath(os.path.join(root, name), str(path)): None
                for name in folders})
    for name in files:
      full = os.path.join(root, name)
      with open(full, "rb") as f:
        out[os.path.relpath(full, str(path))] = f.read()
  return out


def evaluate_in_process(args, capsys):
  """``python -m experiments.evaluate args`` run in this process (its
  imports and compiled functions shared): ``(the printed JSON, stderr)``."""
  from experiments import evaluate  # pylint: disable=import-outside-toplevel
  capsys.readouterr()
  assert evaluate.main(list(args)) == 0, args
  out = capsys.readouterr()
  return json.loads(out.out), out.err


def cli_error(proc, code: int) -> str:
  """The ``error: ...`` text of a command that failed with exit ``code``
  and no traceback."""
  assert proc.returncode == code, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  return proc.stderr[proc.stderr.index("error: "):]


def optimised(jitted, *args):
  """``jitted`` (a ``jax.jit`` function) compiled for ``args`` with XLA's CPU
  optimisation on (level 2), for the few tests that run one program for
  hundreds of steps: conftest.py turns it off for the whole run (quicker
  compiles), which makes a long run several times slower (a DCGAN step:
  32 ms at level 0, 5 ms at level 2, for 2 s more compilation).
  Returns the compiled function; call it with arguments like ``args``."""
  return jitted.lower(*args).compile(
      compiler_options={"xla_backend_optimization_level": 2})
