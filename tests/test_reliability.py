"""The runner under failure: divergence, pre-emption, broken checkpoints, bad input.

Tiny models (8x8 digits, base_features 4; the toy ring with an 8-unit MLP);
the command-line runs are real subprocesses (``python -m experiments.train``).
"""

import glob
import json
import os
import re
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
from experiments import guards
from experiments import feeds
from experiments import resume
from experiments import workdir as workdir_lib
from experiments.configs import diverge
from tests import helpers as tt
from tests.helpers import all_finite, popen, steps_on_disk


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
  err = tt.cli_error(proc, 3)
  # Step 1 is finite (and saved), step 2 overflows; the check runs before
  # step 2's checkpoint would be written.
  # D is updated first and G against the new D: D is named, G follows.
  assert err.startswith("error: training diverged at step 2: the update of "
                        "the discriminator (d) gave non-finite values "
                        "(d_grad_norm=inf, d_loss=inf"), err
  assert "The generator's values at that step follow from it" in err
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


def stop_line(err, name):
  """The step a signal stopped a run at, from its message."""
  line = [l for l in err.splitlines() if f"{name} received" in l][0]
  return int(line.split("stopped at step ")[1].split(" ")[0]), line


def test_kill9_then_sigterm_then_resume_match_an_uninterrupted_run(tmp_path):
  """At the configs' defaults (steps_per_call, preempt_grace_s); logs every 7
  steps and checkpoints every 5, so that stops fall off log steps too."""
  args = ("--config.num_steps=60", "--config.eval_every=60",
          "--config.checkpoint_every=5", "--config.log_every=7")
  workdir = tmp_path / "w"
  # 1. kill -9 after the first checkpoint.
  proc = popen(workdir, *args)
  wait_for(lambda: steps_on_disk(workdir) and logged_steps(workdir) >= 2, proc)
  proc.kill()
  proc.wait()
  killed_at = max(steps_on_disk(workdir))
  assert killed_at < 60
  # 2. The same command: resumes; SIGTERM makes it save and stop, within
  # preempt_grace_s (10 s; the slack is for a loaded machine, measured
  # times are in benchmarks/results/runner.md).
  proc = popen(workdir, *args)
  wait_for(lambda: max(steps_on_disk(workdir)) > killed_at, proc)
  signalled = time.time()
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert time.time() - signalled < 10 + 20
  assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
  assert "Resuming from the checkpoint of step" in err
  assert "Traceback" not in err
  stopped, line = stop_line(err, "SIGTERM")
  assert "and saved its checkpoint" in line, line
  assert stopped in steps_on_disk(workdir), (stopped, line)
  # 3. Again (in process, the same config): resumes from the signal's step
  # and finishes like an uninterrupted run: the same records (window means)
  # and state.
  c = tt.tiny_config(num_steps=60, eval_every=60, checkpoint_every=5,
                     log_every=7, ema_decay=0.999)
  result = tt.run(c, workdir)
  assert (result["steps"], result["steps_run"]) == (60, 60 - stopped)
  ref = tmp_path / "ref"
  tt.run(c, ref)
  assert tt.losses_by_step(workdir) == tt.losses_by_step(ref)
  chex.assert_trees_all_equal(tt.final_state(workdir, c),
                              tt.final_state(ref, c))


def test_two_sigints_with_long_calls_save_the_last_finished_step(tmp_path):
  """steps_per_call=1000 and every cadence at 20,000: calls are cut to half
  of preempt_grace_s, so two Ctrl-C still give a checkpoint of the last
  finished step within the bound, exit code 130, the state of an
  uninterrupted run."""
  long = ("--config.steps_per_call=1000", "--config.log_every=20000",
          "--config.eval_every=20000", "--config.checkpoint_every=20000",
          "--config.num_steps=100000")
  workdir, log = tmp_path / "w", tmp_path / "stderr.txt"
  with open(log, "w") as stderr:
    proc = popen(workdir, *long, stderr=stderr)
    # Past the first (compiling) call, as the progress bar shows.
    wait_for(lambda: re.search(r"\b([2-9]|\d\d+)/100000", log.read_text()),
             proc)
    signalled = time.time()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
  assert time.time() - signalled < 10 + 20
  err = log.read_text()
  assert proc.returncode == 130, err[-2000:]
  assert "Traceback" not in err
  stopped, line = stop_line(err, "SIGINT")
  assert "and saved its checkpoint" in line, line
  assert steps_on_disk(workdir) == [stopped] and stopped > 1
  # The progress bar counted finished steps only.
  assert f"{stopped}/100000" in err.replace("\r", "\n").splitlines()[-2]
  # The state saved is that of an uninterrupted run of `stopped` steps (a
  # resume from it continues exactly: test_train).
  c = tt.tiny_config(steps_per_call=1000, log_every=20000, eval_every=20000,
                     checkpoint_every=20000, ema_decay=0.999,
                     num_steps=stopped)
  tt.run(c, tmp_path / "ref")
  chex.assert_trees_all_equal(tt.final_state(workdir, c),
                              tt.final_state(tmp_path / "ref", c))


def test_a_signal_as_the_run_finishes_ends_it_normally(tmp_path, monkeypatch):
  from experiments import train  # pylint: disable=g-import-not-at-top
  real = guards.MetricsMonitor.check

  def check(self, first, metrics, num_steps, *args):
    real(self, first, metrics, num_steps, *args)
    if first + num_steps == 4:  # the last call: a signal arrives with it
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(guards.MetricsMonitor, "check", check)
  result = tt.run(tt.tiny_config(), tmp_path)
  assert result["signal"] == "SIGTERM" and result["steps"] == 4
  assert steps_on_disk(tmp_path) == [2, 4]
  line = train.format_summary(result)
  assert line.startswith("SIGTERM received as the run finished; Done: step 4")
  # 3 steps after the compiling call: no steps/s figure, and it says why.
  assert result["steps_per_s"] is None
  assert ("too short to measure steps/s after compilation (that takes 20 "
          "steps and 2 s)") in line


def _ended_inside(module, attribute, step, workdir, args):
  """Runs the training command with ``module.attribute`` (a method called
  with the step) replaced: at ``step`` it waits until that step's checkpoint
  is on disk (compiling, long enough for the write ...), then ends the
  process abruptly (... then the grace period ends)."""
  code = (
      "import os, sys, time\n"
      "from absl import app\n"
      "from ganjax import checkpoint\n"
      f"from experiments import {module}, train\n"
      f"real = {module}.{attribute}.__call__\n"
      "def ended(self, step, *args, **kwargs):\n"
      f"  if step == {step}:\n"
      f"    ckpt, t = {resume.checkpoint_dir(str(workdir))!r}, time.time()\n"
      f"    while checkpoint.latest_step(ckpt) != {step} and time.time() - t < 20:\n"
      "      time.sleep(0.05)\n"
      "    os._exit(137)\n"
      "  return real(self, step, *args, **kwargs)\n"
      f"{module}.{attribute}.__call__ = ended\n"
      "train.define_flags()\n"
      "app.run(train.main, flags_parser=train.parse_flags)\n")
  proc = subprocess.run(
      [sys.executable, "-c", code, f"--workdir={workdir}", *tt.TINY_ARGS,
       *args], cwd=tt.REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, "PYTHONPATH": tt.REPO})
  assert proc.returncode == 137, proc.stderr[-2000:]


def test_a_grace_period_that_ends_in_the_evaluation_loses_no_step(tmp_path):
  """At a step that saves and samples, the checkpoint is written first: the
  sampling (and scoring) may compile for minutes, while a signal waits for
  Python. Here the process ends abruptly inside the sampling of step 4, as
  when a pre-emption's grace period ends there: step 4 is on disk, and the
  run resumes from it to the state of an uninterrupted run."""
  workdir = tmp_path / "w"
  _ended_inside("grids", "GridWriter", 4, workdir,
                ("--config.num_steps=6", "--config.checkpoint_every=2",
                 "--config.eval_every=4"))
  assert steps_on_disk(workdir) == [2, 4]
  c = tt.tiny_config(num_steps=6, checkpoint_every=2, eval_every=4,
                     ema_decay=0.999)
  assert tt.run(c, workdir)["steps_run"] == 2
  tt.run(c, tmp_path / "ref")
  assert tt.losses_by_step(workdir) == tt.losses_by_step(tmp_path / "ref")
  chex.assert_trees_all_equal(tt.final_state(workdir, c),
                              tt.final_state(tmp_path / "ref", c))


def test_a_scoring_step_off_the_checkpoint_cadence_saves_first(tmp_path):
  """Scoring compiles feature networks and runs long programs, so a scoring
  step saves before it scores even when it is not a checkpoint step: the
  process ended inside the scoring of step 3 (checkpoints every 2) has step
  3 on disk, and the run resumes from it."""
  workdir = tmp_path / "w"
  _ended_inside("periodic_eval", "PeriodicEvaluator", 3, workdir,
                ("--config.num_steps=4", "--config.checkpoint_every=2",
                 "--config.eval_every=4", "--config.evaluation.every=3"))
  assert steps_on_disk(workdir) == [2, 3]
  c = tt.tiny_config(num_steps=4, checkpoint_every=2, eval_every=4,
                     ema_decay=0.999)
  assert int(tt.final_state(workdir, c, 3).step) == 3
  assert tt.run(c, workdir)["steps_run"] == 1  # resumed (without scoring)


def unwritable(path):
  """Makes the folder ``path`` refuse new entries (root too: chattr +i);
  returns a function that undoes it, or skips when neither works."""
  if os.geteuid() != 0:
    os.chmod(path, 0o555)
    return lambda: os.chmod(path, 0o755)
  if shutil.which("chattr") is None or subprocess.run(
      ["chattr", "+i", str(path)], capture_output=True).returncode:
    pytest.skip("root without chattr +i: cannot make a folder unwritable")
  return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_unwritable_checkpoints_end_the_run_within_seconds(tmp_path):
  """orbax's failed write ends at once (it waited on a barrier for 300 s):
  the process exits within 30 s of its one message, no traceback from any
  thread."""
  workdir, log = tmp_path / "w", tmp_path / "stderr.txt"
  (workdir / "checkpoints").mkdir(parents=True)
  undo = unwritable(workdir / "checkpoints")
  try:
    with open(log, "w") as stderr:
      proc = popen(workdir, "--config.num_steps=4",
                   "--config.checkpoint_every=2", stderr=stderr)
      started, failed = time.time(), None  # failed: when it said so
      while proc.poll() is None:
        assert time.time() - started < 600
        if failed is None and "error: " in log.read_text():
          failed = time.time()
        assert failed is None or time.time() - failed < 30, "hangs after it"
        time.sleep(0.05)
  finally:
    undo()
  text = log.read_text()
  assert proc.returncode == 2, text[-2000:]
  assert "Traceback" not in text
  err = text[text.index("error: "):]
  assert err.startswith("error: cannot write the checkpoint of step 2 to "
                        f"{workdir / 'checkpoints'}"), err
  assert "no checkpoint was saved" in err
  assert not os.listdir(workdir / "checkpoints")


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
  assert "the checkpoint of step 4 cannot be used" in err, err
  assert "falling back to the previous checkpoint" in err
  assert result["steps_run"] == 4
  assert os.listdir(str(workdir / "checkpoints.unreadable"))  # kept aside
  assert steps_on_disk(workdir) == [2, 4, 6]
  assert tt.losses_by_step(workdir) == tt.losses_by_step(full)
  chex.assert_trees_all_equal(tt.final_state(workdir, c),
                              tt.final_state(full, c))


# --------------------------------------------------------------- bad input


def test_workdir_of_a_different_config_is_refused_unless_overridden(tmp_path):
  """In process: a ConfigError is the command line's one ``error:`` line
  (test_train.test_cli_user_errors_are_one_clear_message)."""
  tt.run(tt.tiny_config(num_steps=2, eval_every=2, checkpoint_every=2,
                        ema_decay=0.999), tmp_path)
  with pytest.raises(builders.ConfigError) as info:
    tt.run(tt.tiny_config(num_steps=4, eval_every=2, checkpoint_every=2,
                          ema_decay=0.999, loss="hinge", latent_dim=16),
           tmp_path)
  message = str(info.value)
  assert "holds checkpoints of a run with a different config" in message
  assert "latent_dim: 8 -> 16" in message
  assert "loss: 'non_saturating' -> 'hinge'" in message
  assert "--config.override_config=True" in message
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["loss"] == "non_saturating"  # not overwritten
  # A change that keeps the state's meaning (learning rate) is allowed, and
  # the override resumes anyway (here: same shapes, another loss).
  c = tt.tiny_config(num_steps=3, eval_every=2, checkpoint_every=2,
                     ema_decay=0.999, loss="hinge", override_config=True)
  c.d_optimizer.learning_rate = 1e-4
  assert tt.run(c, tmp_path)["steps_run"] == 1


# ------------------------------------------------- data loss (issue 13)


def test_override_that_changes_the_state_refuses_and_moves_nothing(
    six_steps, tmp_path):
  """Checkpoints that do not fit a new config are not corrupt: refused, kept."""
  c, full = six_steps
  workdir = tmp_path / "w"
  shutil.copytree(full, workdir)
  config_json = (workdir / "config.json").read_bytes()
  for change, differs in [
      (dict(ema_decay=0.9), "ema_g_params: None in the checkpoint, arrays in "
       "this config"),
      (dict(latent_dim=16), "g_params.Dense_0.kernel: checkpoint (8, 64) "
       "float32, config (16, 64) float32")]:
    new = tt.tiny_config(**{"num_steps": 8, "ema_decay": 0.0,
                            "override_config": True, **change})
    with pytest.raises(builders.ConfigError) as info:
      tt.run(new, workdir)
    message = str(info.value)
    assert "holds checkpoints that do not fit this config" in message
    assert differs in message, message
    field, value = next(iter(change.items()))
    assert f"{field}: {c[field]!r} -> {value!r}" in message, message
    assert "Nothing was moved" in message
  assert steps_on_disk(workdir) == [2, 4, 6]
  assert not os.path.exists(workdir / "checkpoints.unreadable")
  assert (workdir / "config.json").read_bytes() == config_json


@pytest.fixture
def nan_sgd(monkeypatch):
  """An optimizer whose learning rate is NaN (the config refuses a NaN one)."""
  import optax  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(builders.OPTIMIZERS, "nan_sgd",
                      lambda learning_rate: optax.sgd(float("nan")))
  return builders.Config({"name": "nan_sgd", "learning_rate": 1.0})


def test_nonfinite_state_is_never_saved_and_the_right_player_is_named(
    tmp_path, nan_sgd):
  """G's NaN learning rate: finite losses at step 1, NaN parameters after it."""
  c = tt.tiny_config(num_steps=4, checkpoint_every=1, eval_every=4)
  c.g_optimizer = nan_sgd
  with pytest.raises(guards.DivergenceError) as info:
    tt.run(c, tmp_path / "g")
  message = str(info.value)
  assert message.startswith("training diverged at step 1: the update of the "
                            "generator (g) gave non-finite values (NaN/Inf in "
                            "its new parameters or optimizer state)"), message
  assert "--config.g_optimizer.learning_rate" in message
  assert steps_on_disk(tmp_path / "g") == []
  # D's NaN learning rate, skipping: every update is skipped, the run stops
  # after max_consecutive_skipped of them, D is named, what was saved is the
  # last finite state.
  c = tt.tiny_config(num_steps=6, checkpoint_every=1, eval_every=6,
                     skip_nonfinite_updates=True, max_consecutive_skipped=3,
                     ema_decay=0.0)
  c.d_optimizer = nan_sgd
  with pytest.raises(guards.DivergenceError) as info:
    tt.run(c, tmp_path / "d")
  message = str(info.value)
  assert message.startswith("training stopped at step 3: the 3 updates of "
                            "steps 1-3 were all non-finite and skipped (the "
                            "discriminator first)"), message
  assert steps_on_disk(tmp_path / "d") == [1, 2]
  state = tt.final_state(tmp_path / "d", c)
  assert int(state.step) == 2 and all_finite(state)


def corrupt(step_dir):
  """Cuts every array file of a checkpoint short (its metadata stay valid)."""
  for f in glob.glob(str(step_dir / "default" / "**" / "d" / "*"),
                     recursive=True):
    with open(f, "r+b") as fh:
      fh.truncate(8)


def test_finished_run_with_a_corrupt_latest_checkpoint_falls_back_everywhere(
    six_steps, tmp_path, capsys):
  c, full = six_steps
  workdir = tmp_path / "w"
  shutil.copytree(full, workdir)
  corrupt(workdir / "checkpoints" / "6")
  with open(workdir / "metrics.jsonl", "a") as f:
    f.write('{"step": 7, "d_lo')  # a line cut short by a kill
  capsys.readouterr()
  # Readers fall back and move nothing.
  assert resume.load(str(workdir)).step == 4
  err = capsys.readouterr().err
  assert err.count("warning: the checkpoint of step 6 cannot be used") == 1
  assert "Event loop is closed" not in err and "Traceback" not in err
  assert steps_on_disk(workdir) == [2, 4, 6]
  # Training falls back too (not "Nothing to do"): it redoes steps 5 and 6.
  result = tt.run(c, workdir)
  assert result["steps_run"] == 2
  assert "moved it to" in capsys.readouterr().err
  assert steps_on_disk(workdir) == [2, 4, 6]
  chex.assert_trees_all_equal(tt.final_state(workdir, c),
                              tt.final_state(full, c))


def test_config_json_is_written_only_by_a_run_that_trains(six_steps,
                                                          tmp_path):
  c, full = six_steps
  workdir = tmp_path / "w"
  shutil.copytree(full, workdir)
  config_json = (workdir / "config.json").read_bytes()
  with pytest.raises(builders.ConfigError):  # a failed override
    tt.run(tt.tiny_config(num_steps=6, ema_decay=0.0, latent_dim=32,
                          override_config=True), workdir)
  changed = tt.tiny_config(num_steps=6, ema_decay=0.0)
  changed.g_optimizer.learning_rate = 1e-3
  assert tt.run(changed, workdir)["steps_run"] == 0  # "Nothing to do"
  assert (workdir / "config.json").read_bytes() == config_json
  assert tt.run(c, workdir)["steps_run"] == 0  # the original command works
  assert resume.load(str(workdir)).step == 6


def test_deleted_checkpoints_restart_with_fresh_logs(six_steps, tmp_path,
                                                     capsys):
  c, full = six_steps
  workdir = tmp_path / "w"
  shutil.copytree(full, workdir)
  shutil.rmtree(workdir / "checkpoints")
  capsys.readouterr()
  tt.run(tt.tiny_config(num_steps=2, ema_decay=0.0), workdir)
  err = capsys.readouterr().err
  assert "holds the logs of an earlier run but no usable checkpoint" in err
  previous = [d for d in os.listdir(workdir) if d.startswith("previous-")]
  assert len(previous) == 1 and previous[0] in err
  old = workdir / previous[0]
  assert [r["step"] for r in summary.read_jsonl(str(old))] == [1, 2, 3, 4, 5, 6]
  assert os.path.exists(old / "config.json")
  assert [r["step"] for r in summary.read_jsonl(str(workdir))] == [1, 2]
  assert steps_on_disk(workdir) == [2]


def test_refused_runs_leave_the_workdir_byte_identical(six_steps, tmp_path):
  """Checked before the workdir is touched: no lock, no folder, no move,
  config.json as it was; weights files are parsed, not only looked for."""
  _, full = six_steps
  finished = tmp_path / "finished"
  shutil.copytree(full, finished)
  logs_only = tmp_path / "logs_only"  # logs and no checkpoints
  shutil.copytree(full, logs_only, ignore=shutil.ignore_patterns("checkpoints"))
  corrupt = tmp_path / "lpips.pth"
  corrupt.write_text("not weights")
  refusals = [
      ({"data_on_device": "maybe"}, "config.data_on_device must be one of"),
      ({"evaluation.best_metric": "bogus"},
       "config.evaluation.best_metric='bogus' is not a metric"),
      ({"evaluation.lpips_weights": str(tmp_path / "missing.pth")},
       "missing.pth"),
      ({"evaluation.lpips_weights": str(corrupt)},
       f"the LPIPS weights file {corrupt} cannot be used"),
  ]
  for workdir in (finished, logs_only):
    before = tt.tree_bytes(workdir)
    for change, message in refusals:
      c = tt.tiny_config(num_steps=8, ema_decay=0.0)
      c.evaluation.every = 2
      for field, value in change.items():
        parent, _, name = field.rpartition(".")
        (c[parent] if parent else c)[name] = value
      with pytest.raises(builders.ConfigError, match=re.escape(message)):
        tt.run(c, workdir)
      assert tt.tree_bytes(workdir) == before, (workdir, change)


def test_a_lost_or_corrupt_config_json_is_rebuilt(six_steps, tmp_path, capsys):
  c, full = six_steps
  workdir = tmp_path / "w"
  shutil.copytree(full, workdir)
  original = json.loads((workdir / "config.json").read_text())
  os.remove(workdir / "config.json")
  capsys.readouterr()
  assert tt.run(c, workdir)["steps_run"] == 0  # a finished run
  err = capsys.readouterr().err
  assert "config.json is missing; using the config saved with the " \
      "checkpoint of step 6" in err
  assert "Rebuilt config.json from the checkpoint of step 6." in err
  assert json.loads((workdir / "config.json").read_text()) == original
  # Corrupt, and the override the README advises: this config is written.
  (workdir / "config.json").write_text('{"dataset": "dig')
  changed = tt.tiny_config(num_steps=6, ema_decay=0.0, override_config=True)
  changed.g_optimizer.learning_rate = 1e-3
  assert tt.run(changed, workdir)["steps_run"] == 0
  assert "Wrote this config to config.json" in capsys.readouterr().err
  record = json.loads((workdir / "config.json").read_text())
  assert record["g_optimizer"]["learning_rate"] == 1e-3


def test_a_full_disk_at_a_log_write_saves_the_checkpoint_and_cuts_no_line(
    tmp_path, monkeypatch):
  """metrics.jsonl fails at step 3 after half a line: one message naming it
  and the fix, the checkpoint of step 3 saved first, no temporary file."""
  import errno  # pylint: disable=g-import-not-at-top
  real = summary.SummaryWriter.scalars

  class FullDisk:
    def __init__(self, f):
      self.f = f

    def write(self, text):
      self.f.write(text[:len(text) // 2])
      self.f.flush()
      raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
      return getattr(self.f, name)

  def scalars(self, step, values, *args, **kwargs):
    if step == 3 and not isinstance(self._jsonl, FullDisk):  # pylint: disable=protected-access
      self._jsonl = FullDisk(self._jsonl)  # pylint: disable=protected-access
    return real(self, step, values, *args, **kwargs)

  monkeypatch.setattr(summary.SummaryWriter, "scalars", scalars)
  with pytest.raises(workdir_lib.RunWriteError) as info:
    tt.run(tt.tiny_config(eval_every=4), tmp_path)
  jsonl = tmp_path / "metrics.jsonl"
  assert str(info.value) == (
      f"cannot write {jsonl} (No space left on device). Free disk space, then "
      "run the same command again to resume. The checkpoint of step 3 was "
      "saved.")
  assert steps_on_disk(tmp_path) == [2, 3]
  assert [r["step"] for r in summary.read_jsonl(str(tmp_path))] == [1, 2]
  assert jsonl.read_text().endswith("}\n")  # no line cut short
  assert not [p for p in glob.glob(str(tmp_path / "**" / "*"), recursive=True)
              if ".tmp" in os.path.basename(p)]


# ------------------------------------------------------- the environment


def test_a_failed_checkpoint_write_stops_the_run_there(six_steps, tmp_path,
                                                       monkeypatch):
  """A full disk at step 4: stop there, step 2 stays the newest checkpoint."""
  import errno  # pylint: disable=g-import-not-at-top
  real_save = checkpoint.Checkpointer.save

  def save(self, step, state, **kwargs):
    if step == 4:
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(self, step, state, **kwargs)

  monkeypatch.setattr(checkpoint.Checkpointer, "save", save)
  c = tt.tiny_config(num_steps=8, ema_decay=0.0, eval_every=8)
  with pytest.raises(resume.CheckpointWriteError) as info:
    tt.run(c, tmp_path)
  assert "cannot write the checkpoint of step 4" in str(info.value)
  assert "No space left on device" in str(info.value)
  assert "the checkpoint of step 2 is the newest one" in str(info.value)
  assert steps_on_disk(tmp_path) == [2]
  assert max(r["step"] for r in summary.read_jsonl(str(tmp_path))) == 4


def test_a_background_write_that_fails_late_is_named_by_its_own_step(
    tmp_path, monkeypatch):
  """Step 2's write fails while step 4's save begins: the message names
  step 2 (CI once saw "step 4" when the error surfaced inside the next save)."""
  import errno  # pylint: disable=g-import-not-at-top
  real_write = checkpoint.Checkpointer._write  # pylint: disable=protected-access

  def write(self, step, items):
    if step == 2:
      time.sleep(0.5)  # still running when step 4 is saved
      self._error = OSError(errno.ENOSPC, "No space left on device")
      return
    real_write(self, step, items)

  monkeypatch.setattr(checkpoint.Checkpointer, "_write", write)
  c = tt.tiny_config(num_steps=8, ema_decay=0.0, eval_every=8)
  with pytest.raises(resume.CheckpointWriteError) as info:
    tt.run(c, tmp_path)
  assert "cannot write the checkpoint of step 2" in str(info.value)
  assert "no checkpoint was saved" in str(info.value)
  assert steps_on_disk(tmp_path) == []


# ----------------------------------------------------- one clear message


@pytest.mark.parametrize("source, message", [
    ("def get_config(:\n  pass\n", "has a syntax error at line 1"),
    ("from experiments.configs import base\ndef get_config():\n"
     "  c = base.get_config()\n  c.k = 1.5\n  return c\n",
     "cannot load the config file"),
    ("x = 1\n", "it defines no get_config()"),
])
def test_broken_config_file_is_named_before_absl_loads_it(tmp_path, source,
                                                          message):
  from experiments import cli  # pylint: disable=g-import-not-at-top
  path = tmp_path / "config.py"
  path.write_text(source)
  problem = cli.config_file_problem(["train", f"--config={path}",
                                     "--config.k=2"])
  assert problem is not None and message in problem, problem
  assert str(path) in problem
  assert "does not exist" in cli.config_file_problem(
      ["train", f"--config={tmp_path / 'nope.py'}"])
  assert cli.config_file_problem(
      ["train", "--config=experiments/configs/dcgan_digits.py"]) is None


def test_batch_larger_than_the_split_warns(capsys):
  feeds.warn_if_batch_exceeds_split(tt.tiny_config(batch_size=2000))
  assert ("batch_size=2000 is larger than the 1500 examples of digits:train"
          in capsys.readouterr().err)
  feeds.warn_if_batch_exceeds_split(tt.tiny_config())
  assert not capsys.readouterr().err


def test_sample_names_a_missing_step_and_a_corrupt_config_json(six_steps,
                                                               tmp_path,
                                                               capsys):
  _, full = six_steps
  workdir = tmp_path / "w"
  shutil.copytree(full, workdir)
  with pytest.raises(builders.ConfigError,
                     match="--step=5: .* has steps 2, 4, 6"):
    resume.load(str(workdir), step=5)
  assert resume.load(str(workdir), step=4).step == 4
  # A corrupt config.json: the config saved with the checkpoints is used.
  (workdir / "config.json").write_text('{"dataset": "dig')
  assert resume.load(str(workdir)).step == 6
  assert "config.json is unreadable; using the config saved with the " \
      "checkpoint of step 6" in capsys.readouterr().err
