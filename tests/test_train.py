"""The experiment runner: a short real run, exact resume, sampling, user errors.

Tiny models on the real 8x8 digits (sklearn, offline) so that the file runs
in well under a minute on two CPU cores.
"""

import json
import os
import shutil

import chex
import jax
import numpy as np
import pytest

from ganjax import checkpoint
from ganjax import summary
from experiments import builders
from experiments import resume
from experiments import sample
from experiments import train
from experiments.configs import toy_ring8
from tests.helpers import (LOSS_KEYS, cli, final_state, losses_by_step,
                           run, tiny_config)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  """4 uninterrupted steps."""
  workdir = tmp_path_factory.mktemp("full")
  config = tiny_config()
  result = run(config, workdir)
  return config, workdir, result


# ------------------------------------------------------------------ runs


def test_run_writes_config_checkpoints_events_jsonl_and_pngs(full_run):
  config, workdir, result = full_run
  assert result["steps"] == 4 and result["steps_run"] == 4
  with open(workdir / "config.json") as f:
    written = json.load(f)
  assert written["dataset"] == "digits" and written["model"]["base_features"] == 4
  assert written["resolved"] == {"data_shape": [8, 8, 1],
                                 "value_range": [-1.0, 1.0], "num_devices": 1}
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  records = summary.read_jsonl(str(workdir))
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  for r in records:
    assert set(LOSS_KEYS) <= set(r) and all(np.isfinite(r[k]) for k in LOSS_KEYS)
    assert 0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1
  assert sorted(os.listdir(workdir / "samples")) == [
      "step_000000.png", "step_000002.png", "step_000004.png"]
  assert set(result["metrics"]) >= {"d_loss", "g_loss"}
  assert "Done: step 4" in train.format_summary(result)


def test_resume_continues_exactly_like_an_uninterrupted_run(full_run, tmp_path):
  """A run killed after step 4 whose last finished checkpoint is step 2,
  resumed by the real command line."""
  config, full_dir, _ = full_run
  workdir = tmp_path / "w"
  shutil.copytree(full_dir, workdir)
  shutil.rmtree(workdir / "checkpoints" / "4")
  assert checkpoint.latest_step(str(workdir / "checkpoints")) == 2
  # The same command again: resumes at step 2 and goes on to 4.
  proc = cli("experiments.train",
             "--config=experiments/configs/dcgan_digits.py",
             f"--workdir={workdir}", "--config.image_size=0",
             "--config.model.base_features=4", "--config.latent_dim=8",
             "--config.batch_size=8", "--config.num_steps=4",
             "--config.ema_decay=0.9", "--config.log_every=1",
             "--config.eval_every=2", "--config.checkpoint_every=2",
             "--config.num_eval_samples=4")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "Done: step 4 (2 steps run)" in proc.stdout, proc.stdout
  assert "Resuming from the checkpoint of step 2" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert [r["step"] for r in summary.read_jsonl(str(workdir))] == [1, 2, 3, 4]
  assert losses_by_step(workdir) == losses_by_step(full_dir)  # step for step, exact
  chex.assert_trees_all_equal(final_state(workdir, config),
                              final_state(full_dir, config))
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  assert os.path.exists(workdir / "samples" / "step_000004.png")
  # Nothing left to do: a third start returns at once.
  assert run(config, workdir)["steps_run"] == 0


def test_data_parallel_run_matches_one_device(full_run, tmp_path):
  config, full_dir, _ = full_run
  assert jax.local_device_count() >= 2
  run(tiny_config(num_devices=2, num_steps=2, eval_every=2), tmp_path)
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["resolved"]["num_devices"] == 2
  one, two = losses_by_step(full_dir), losses_by_step(tmp_path)
  assert sorted(two) == [1, 2]
  for step in two:
    for key in ("d_loss", "g_loss", "d_real", "d_fake"):
      np.testing.assert_allclose(two[step][key], one[step][key], rtol=2e-4,
                                 atol=1e-5)


def test_toy_run_on_device_data_resumes_exactly(tmp_path):
  c = toy_ring8.get_config()
  c.model.hidden, c.model.depth = 8, 1
  c.batch_size, c.num_steps = 16, 6
  c.log_every, c.eval_every, c.checkpoint_every = 3, 3, 3
  c.num_eval_samples = 50
  run(c, tmp_path / "full")
  shutil.copytree(tmp_path / "full", tmp_path / "split")
  shutil.rmtree(tmp_path / "split" / "checkpoints" / "6")  # killed after 6
  assert run(c, tmp_path / "split")["steps_run"] == 3
  chex.assert_trees_all_equal(final_state(tmp_path / "split", c),
                              final_state(tmp_path / "full", c))
  assert losses_by_step(tmp_path / "split") == losses_by_step(tmp_path / "full")
  assert sorted(losses_by_step(tmp_path / "full")) == [3, 6]
  assert os.path.exists(tmp_path / "full" / "samples" / "step_000006.png")


# ----------------------------------------------------------- sampling


def test_sample_cli_writes_npy_in_unit_range(full_run, tmp_path):
  _, workdir, _ = full_run
  out = tmp_path / "s" / "samples.npy"
  proc = cli("experiments.sample", f"--workdir={workdir}", "--num=37",
             "--batch_size=16", f"--out={out}", "--grid=0")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.startswith("Wrote 37 samples (8, 8, 1) (float32, step 4")
  x = np.load(out)
  assert x.shape == (37, 8, 8, 1) and x.dtype == np.float32
  assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0
  assert os.listdir(tmp_path / "s") == ["samples.npy"]  # --grid=0: no PNG
  # In-process: the same seed gives the same samples, EMA weights by default.
  loaded = resume.load(str(workdir))
  assert loaded.state.ema_g_params is not None and loaded.step == 4
  np.testing.assert_allclose(
      sample.draw(loaded.experiment, loaded.state, 37, batch_size=16), x,
      atol=1e-6)


def test_samples_stream_to_the_file_whole_or_not_at_all(tmp_path):
  path = str(tmp_path / "s.npy")
  chunks = (np.full((3, 2, 2, 1), i, np.float32) for i in range(4))
  first = sample.write_samples(path, chunks, 12)
  np.testing.assert_array_equal(np.load(path)[:, 0, 0, 0],
                                np.repeat(np.arange(4.0), 3))
  assert first.shape == (3, 2, 2, 1)

  def failing():
    yield np.zeros((3, 2, 2, 1), np.float32)
    raise OSError(28, "No space left on device")

  with pytest.raises(OSError) as info:
    sample.write_samples(str(tmp_path / "t.npy"), failing(), 12)
  assert info.value.filename == str(tmp_path / "t.npy")
  assert os.listdir(tmp_path) == ["s.npy"]  # no temporary file left


# --------------------------------------------------------------- the CLI


@pytest.mark.parametrize("args, env, message", [
    (["--config.bogus=1"], {}, "unknown config field 'bogus'"),
    (["--config.dataset=no_such_data"], {}, "Unknown dataset 'no_such_data'"),
    (["--config.dataset=mnist", "--config.data_dir=/nonexistent/tfds"], {},
     "TFDS dataset 'mnist' is not prepared in /nonexistent/tfds"),
    (["--config.num_devices=8", "--config.batch_size=12"],
     {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
     "batch_size=12 is not divisible by the 8 devices"),
])
def test_cli_user_errors_are_one_clear_message(tmp_path, args, env, message):
  proc = cli("experiments.train",
             "--config=experiments/configs/dcgan_digits.py",
             f"--workdir={tmp_path}", *args, env=env)
  assert proc.returncode == 2
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr
  assert proc.stderr.startswith("error: ")


def test_in_process_user_errors(tmp_path):
  c = tiny_config()
  with c.unlocked():
    c.learning_rate = 1e-3  # a typo'd field in a config file
  with pytest.raises(builders.ConfigError, match="'learning_rate'"):
    run(c, tmp_path)
  with pytest.raises(builders.ConfigError, match="Unknown model 'gan'"):
    run(tiny_config(model=builders.Config({"name": "gan"})), tmp_path)
  with pytest.raises(builders.ConfigError, match="does not take 'b1'"):
    c = tiny_config()
    c.g_optimizer.name = "sgd"
    run(c, tmp_path)
  with pytest.raises(builders.ConfigError, match="toy data"):
    run(tiny_config(model=builders.Config({"name": "toy_mlp"})), tmp_path)
  with pytest.raises(builders.ConfigError, match="not divisible by the 8"):
    run(tiny_config(num_devices=-1, batch_size=12), tmp_path)
