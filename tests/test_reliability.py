"""The runner under failure: divergence, pre-emption, broken checkpoints, bad input.

Tiny models (8x8 digits, base_features 4; the toy ring with an 8-unit MLP);
the command-line runs are real subprocesses (``python -m experiments.train``).
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from ganjax import checkpoint
from ganjax import summary
from experiments import builders
from experiments import train
from experiments.configs import diverge
from tests import test_train as tt

REPO = tt.REPO
TINY_ARGS = ("--config=experiments/configs/dcgan_digits.py",
             "--config.image_size=0", "--config.model.base_features=4",
             "--config.latent_dim=8", "--config.batch_size=8",
             "--config.log_every=1", "--config.num_eval_samples=4")


def popen(workdir, *args):
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.train", f"--workdir={workdir}",
       *TINY_ARGS, *args], cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      env={**os.environ, "PYTHONPATH": REPO})


def steps_on_disk(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(
      d) else []


def logged_steps(workdir):
  path = os.path.join(workdir, summary.JSONL_NAME)
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum(1 for line in f if line.strip())


def wait_for(predicate, proc, timeout=120):
  t0 = time.time()
  while not predicate():
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    assert time.time() - t0 < timeout
    time.sleep(0.05)


# --------------------------------------------------------------- divergence


def test_divergence_stops_with_a_clear_message_and_keeps_the_checkpoint(
    tmp_path):
  c = diverge.get_config()
  proc = tt.cli("experiments.train", "--config=experiments/configs/diverge.py",
                f"--workdir={tmp_path}", "--config.checkpoint_every=1",
                "--config.log_every=1")
  assert proc.returncode == 3, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  err = proc.stderr[proc.stderr.index("error: "):]
  # Step 1 is finite (and saved), step 2 overflows; the check runs before
  # step 2's checkpoint would be written.
  assert err.startswith("error: training diverged at step 2: the update of "
                        "the discriminator (d) and the generator (g) gave "
                        "non-finite values (d_grad_norm=inf, d_loss=inf"), err
  assert "Last finite values (step 1): d_loss=" in err
  assert "The checkpoint of step 1" in err and "is intact" in err
  assert "skip_nonfinite_updates" in err
  assert steps_on_disk(tmp_path) == [1]  # nothing of the non-finite state
  restored = tt.final_state(tmp_path, c)
  assert int(restored.step) == 1
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored)
             if np.issubdtype(x.dtype, np.floating))


def test_skip_nonfinite_updates_keeps_the_state_and_counts(tmp_path):
  c = diverge.get_config()
  c.num_steps, c.skip_nonfinite_updates = 8, True
  result = tt.run(c, tmp_path)
  assert result["steps"] == 8 and result["skipped_steps"] >= 7
  records = [r for r in summary.read_jsonl(str(tmp_path))
             if "skipped_steps_total" in r]  # not the mode-coverage records
  assert records[-1]["skipped_steps_total"] == result["skipped_steps"]
  state = tt.final_state(tmp_path, c)
  assert int(state.step) == 8
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state)
             if np.issubdtype(x.dtype, np.floating))


def test_skip_nonfinite_updates_on_the_jit_path(tmp_path):
  c = tt.tiny_config(num_steps=2, skip_nonfinite_updates=True)
  c.d_optimizer.learning_rate = 1e30
  result = tt.run(c, tmp_path)
  assert result["steps"] == 2 and result["skipped_steps"] >= 1
  state = tt.final_state(tmp_path, c)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state)
             if np.issubdtype(x.dtype, np.floating))


# --------------------------------------------------------------- pre-emption


def test_kill9_then_sigterm_then_resume_match_an_uninterrupted_run(tmp_path):
  args = ("--config.num_steps=60", "--config.eval_every=60",
          "--config.checkpoint_every=5")
  workdir = tmp_path / "w"
  # 1. kill -9 after the first checkpoint.
  proc = popen(workdir, *args)
  wait_for(lambda: steps_on_disk(workdir) and logged_steps(workdir) >= 7, proc)
  proc.kill()
  proc.wait()
  killed_at = logged_steps(workdir)
  assert killed_at < 60
  # 2. The same command: resumes; SIGTERM makes it save and stop.
  proc = popen(workdir, *args)
  wait_for(lambda: logged_steps(workdir) >= killed_at + 10, proc)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
  assert "Resuming from the checkpoint of step" in err
  assert "Traceback" not in err
  line = [l for l in err.splitlines() if "SIGTERM received" in l][0]
  stopped = int(line.split("stopped at step ")[1].split(" ")[0])
  assert "and saved its checkpoint" in line, line
  assert stopped in steps_on_disk(workdir), (stopped, line)
  # 3. Again: resumes from the signal's step and finishes.
  proc = popen(workdir, *args)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-2000:]
  assert f"Resuming from the checkpoint of step {stopped} in" in err
  assert "Done: step 60" in out
  # An uninterrupted run, in process.
  ref = tmp_path / "ref"
  c = tt.tiny_config(num_steps=60, eval_every=60, checkpoint_every=5,
                     ema_decay=0.999)
  tt.run(c, ref)
  assert tt.losses_by_step(workdir) == tt.losses_by_step(ref)
  chex.assert_trees_all_equal(tt.final_state(workdir, c),
                              tt.final_state(ref, c))


@pytest.fixture(scope="module")
def six_steps(tmp_path_factory):
  """An uninterrupted 6-step run, checkpoints 2, 4, 6."""
  c = tt.tiny_config(num_steps=6, ema_decay=0.0)
  full = tmp_path_factory.mktemp("six")
  tt.run(c, full)
  return c, full


def killed_copy(full, tmp_path):
  """``full`` as a run killed after step 6 left it (6 not committed)."""
  workdir = tmp_path / "w"
  shutil.copytree(full, workdir)
  shutil.rmtree(workdir / "checkpoints" / "6")
  return workdir


def test_uncommitted_checkpoint_is_ignored(six_steps, tmp_path):
  """A step directory orbax did not commit (killed mid-write) is not restored."""
  c, full = six_steps
  workdir = killed_copy(full, tmp_path)
  ckpts = workdir / "checkpoints"
  shutil.copytree(full / "checkpoints" / "6",
                  ckpts / "6.orbax-checkpoint-tmp-1700000000")
  shutil.rmtree(ckpts / "6.orbax-checkpoint-tmp-1700000000" / "default" / "d")
  assert checkpoint.latest_step(str(ckpts)) == 4
  assert tt.run(c, workdir)["steps_run"] == 2
  assert steps_on_disk(workdir) == [2, 4, 6]
  chex.assert_trees_all_equal(tt.final_state(workdir, c),
                              tt.final_state(full, c))


# ------------------------------------------------------ broken checkpoints


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(
    six_steps, tmp_path, capsys, damage):
  c, full = six_steps
  workdir = killed_copy(full, tmp_path)
  files = [f for f in glob.glob(str(workdir / "checkpoints/4/**/*"),
                                recursive=True) if os.path.isfile(f)]
  if damage == "truncate":
    victim = max(files, key=os.path.getsize)
    with open(victim, "r+b") as f:
      f.truncate(os.path.getsize(victim) // 2)
  else:
    victim = [f for f in files if f.endswith("default/_METADATA")][0]
    os.remove(victim)
  capsys.readouterr()
  result = tt.run(c, workdir)
  err = capsys.readouterr().err
  assert "the checkpoint of step 4 cannot be read" in err, err
  assert "falling back to the previous checkpoint" in err
  assert result["steps_run"] == 4
  assert os.listdir(str(workdir / "checkpoints.unreadable"))  # kept aside
  assert steps_on_disk(workdir) == [2, 4, 6]
  assert tt.losses_by_step(workdir) == tt.losses_by_step(full)
  chex.assert_trees_all_equal(tt.final_state(workdir, c),
                              tt.final_state(full, c))


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize("change, message", [
    (dict(model=builders.Config({"name": "gann"})),
     "Unknown model 'gann'. Did you mean 'dcgan'?"),
    (dict(loss="hinje"), "Unknown loss 'hinje'. Did you mean 'hinge'?"),
    (dict(dataset="mnsit"), "Unknown dataset 'mnsit'"),
    (dict(k=0), "config.k must be a positive integer, got 0"),
    (dict(batch_size=0), "config.batch_size must be a positive integer"),
    (dict(batch_size=-8), "config.batch_size must be a positive integer"),
    (dict(num_devices=3, batch_size=8), "batch_size=8 is not divisible by the 3"),
    (dict(image_size=7), "Cannot build model 'dcgan' for data of shape"),
    (dict(dataset="mnist", data_dir="/nonexistent/tfds"),
     "is not prepared in /nonexistent/tfds"),
])
def test_bad_config_is_one_clear_error(tmp_path, change, message):
  c = tt.tiny_config()
  for key, value in change.items():
    c[key] = value
  with pytest.raises(ValueError) as info:
    tt.run(c, tmp_path)
  assert message in str(info.value), str(info.value)


def test_unknown_field_is_one_clear_error(tmp_path):
  c = tt.tiny_config()
  with c.unlocked():
    c.skip_nonfinite_update = True
  with pytest.raises(builders.ConfigError,
                     match="Did you mean 'skip_nonfinite_updates'"):
    tt.run(c, tmp_path)


def test_workdir_of_a_different_config_is_refused_unless_overridden(tmp_path):
  base_args = (*TINY_ARGS, f"--workdir={tmp_path}", "--config.num_steps=2",
               "--config.eval_every=2", "--config.checkpoint_every=2")
  tt.run(tt.tiny_config(num_steps=2, eval_every=2, checkpoint_every=2,
                        ema_decay=0.999), tmp_path)
  proc = tt.cli("experiments.train", *base_args, "--config.loss=hinge",
                "--config.latent_dim=16", "--config.num_steps=4")
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert proc.stderr.startswith("error: "), proc.stderr[-2000:]
  assert "holds checkpoints of a run with a different config" in proc.stderr
  assert "latent_dim: 8 -> 16" in proc.stderr
  assert "loss: 'non_saturating' -> 'hinge'" in proc.stderr
  assert "--config.override_config=True" in proc.stderr
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["loss"] == "non_saturating"  # not overwritten
  # A change that keeps the state's meaning (learning rate) is allowed, and
  # the override resumes anyway (here: same shapes, another loss).
  c = tt.tiny_config(num_steps=3, eval_every=2, checkpoint_every=2,
                     ema_decay=0.999, loss="hinge", override_config=True)
  c.d_optimizer.learning_rate = 1e-4
  assert tt.run(c, tmp_path)["steps_run"] == 1
