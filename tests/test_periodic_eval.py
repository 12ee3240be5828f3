"""Sample-quality metrics during training, and the best checkpoint (experiments/periodic_eval.py)."""

import json
import os

import jax
import numpy as np
import pytest

from ganjax import checkpoint
from ganjax import summary
from experiments import builders
from experiments import evaluate
from experiments import periodic_eval
from experiments import resume
from experiments import train
from experiments import workdir as workdir_lib
from experiments.configs import dcgan_digits
from experiments.configs import toy_ring8


def digits_config(num_steps, **evaluation_fields):
  c = dcgan_digits.get_config()
  c.model.base_features = 4
  c.latent_dim = 8
  c.batch_size = 8
  c.num_steps = num_steps
  c.ema_decay = 0.9
  c.log_every = c.eval_every = c.checkpoint_every = 2
  c.num_eval_samples = 4
  c.evaluation.every = 2
  c.evaluation.num_samples = 64
  c.evaluation.update(evaluation_fields)
  return c


def eval_records(workdir, name):
  return {r["step"]: r[name] for r in summary.read_jsonl(str(workdir))
          if name in r}


def restore(directory, config):
  experiment = builders.build(config)
  return experiment, checkpoint.restore(directory,
                                        resume.template(config, experiment))


def test_scores_are_logged_and_the_best_state_is_kept_across_a_resume(
    tmp_path, cache_dir, monkeypatch):
  monkeypatch.setenv("GANJAX_CACHE_DIR", cache_dir)
  fid = "fid64_digits_cnn"
  train.train_and_evaluate(digits_config(4), str(tmp_path), progress=False)
  config = digits_config(8)  # the same run, resumed from step 4 to step 8
  result = train.train_and_evaluate(config, str(tmp_path), progress=False)

  scores = eval_records(tmp_path, fid)
  assert sorted(scores) == [2, 4, 6, 8]  # once per evaluation, none repeated
  assert all(np.isfinite(v) and v > 0 for v in scores.values())
  records = [r for r in summary.read_jsonl(str(tmp_path)) if fid in r]
  for name in ("kid64_digits_cnn", "precision64_digits_cnn",
               "recall64_digits_cnn", "classes_covered64_digits_cnn"):
    assert all(name in r for r in records)
  best_step = min(scores, key=scores.get)
  with open(tmp_path / workdir_lib.BEST_JSON) as f:
    best = json.load(f)
  assert best["metric"] == fid and best["mode"] == "min"
  assert best["step"] == best_step and best["value"] == pytest.approx(
      scores[best_step])
  assert result["best"]["step"] == best_step
  assert result["evaluation"][fid] == pytest.approx(scores[8])
  assert f"best {fid}=" in train.format_summary(result)
  # One best checkpoint, holding the state that was scored at that step.
  best_dir = str(tmp_path / workdir_lib.BEST_CHECKPOINT_DIR)
  assert checkpoint.Checkpointer(best_dir).all_steps() == [best_step]
  experiment, state = restore(best_dir, config)
  assert int(state.step) == best_step
  scorer = periodic_eval.PeriodicEvaluator(config, experiment, str(tmp_path / "x"),
                                        summary.SummaryWriter(
                                            str(tmp_path / "x"), enabled=False),
                                        enabled=False)
  assert scorer.scores(state)[fid] == pytest.approx(scores[best_step], rel=1e-4)
  scorer.close()
  # The regular checkpoints are untouched by it.
  assert checkpoint.latest_step(str(tmp_path / workdir_lib.CHECKPOINT_DIR)) == 8


def test_toy_runs_score_mode_coverage(tmp_path):
  c = toy_ring8.get_config()
  c.batch_size = 64
  c.num_steps = 20
  c.log_every = c.eval_every = c.checkpoint_every = 10
  c.num_eval_samples = 64
  c.evaluation.every = 10
  c.evaluation.num_samples = 500
  result = train.train_and_evaluate(c, str(tmp_path), progress=False)
  modes = eval_records(tmp_path, "modes_captured")
  assert sorted(modes) == [10, 20]
  assert all(0 <= m <= 8 and m == int(m) for m in modes.values())
  assert result["best"]["metric"] == "modes_captured"
  assert 0 <= result["evaluation"]["high_quality_fraction"] <= 1
  # The evaluation command scores a toy run's samples the same way, also
  # for a workdir written before config.evaluation existed.
  with open(tmp_path / workdir_lib.CONFIG_JSON) as f:
    record = json.load(f)
  del record["evaluation"]
  with open(tmp_path / workdir_lib.CONFIG_JSON, "w") as f:
    json.dump(record, f)
  printed = evaluate.run(evaluate._parser().parse_args(
      [f"--workdir={tmp_path}", "--num=500"]))
  assert printed["source"]["step"] == 20
  assert set(printed["metrics"]) == {"modes_captured", "num_modes",
                                     "high_quality_fraction"}
  assert printed["metrics"]["num_modes"] == 8
  assert "3 standard deviations" in printed["protocol"]["modes_captured"]
  # --step scores an earlier checkpoint; a step without one is refused.
  parse = lambda *argv: evaluate._parser().parse_args(
      [f"--workdir={tmp_path}", "--num=500", *argv])
  assert evaluate.run(parse("--step=10"))["source"]["step"] == 10
  assert evaluate.run(parse("--step=-1"))["source"]["step"] == 20
  with pytest.raises(evaluate.UsageError, match="15"):
    evaluate.run(parse("--step=15"))
  with pytest.raises(evaluate.UsageError, match="--step picks a checkpoint"):
    evaluate.run(evaluate._parser().parse_args(
        ["--real=train", "--dataset=digits", "--step=10"]))


def test_toy_scores_of_the_data_itself_capture_every_mode():
  from ganjax.data import toy
  points = np.asarray(toy.grid(jax.random.key(0), 2500))
  scores = periodic_eval.toy_scores("toy_grid25", points)
  assert scores["modes_captured"] == 25 and scores["num_modes"] == 25
  # within 3 std of a 2-D Gaussian: 1 - exp(-9 / 2) = 0.989
  assert scores["high_quality_fraction"] == pytest.approx(0.989, abs=0.006)
  centers, _ = toy.modes("grid")
  collapsed = np.repeat(np.asarray(centers[:1]), 2500, axis=0)
  assert periodic_eval.toy_scores("toy_grid25", collapsed)["modes_captured"] == 1


@pytest.mark.parametrize("fields, message", [
    (dict(best_metric="modes_captured"), "not a metric of image data"),
    (dict(best_metric="parzen_ll"), "--config.evaluation.parzen=True"),
    (dict(num_samples=2), "at least 4"),
    (dict(every=-1), "evaluation.every must be an integer >= 0"),
])
def test_bad_evaluation_configs_fail_before_training(tmp_path, fields,
                                                     message):
  with pytest.raises(builders.ConfigError, match=message):
    train.train_and_evaluate(digits_config(2, **fields), str(tmp_path),
                             progress=False)
  assert not os.path.exists(tmp_path / workdir_lib.CHECKPOINT_DIR) or not os.listdir(
      tmp_path / workdir_lib.CHECKPOINT_DIR)


def test_a_run_at_another_image_size_is_scored_at_the_data_size(
    tmp_path, cache_dir, monkeypatch):
  """Trained on the digits resized to 16x16, scored with the 8x8 digits
  CNN: its samples are resized back, as the data were (during training and
  by experiments.evaluate)."""
  monkeypatch.setenv("GANJAX_CACHE_DIR", cache_dir)
  config = digits_config(2)
  config.image_size = 16
  train.train_and_evaluate(config, str(tmp_path), progress=False)
  assert np.isfinite(eval_records(tmp_path, "fid64_digits_cnn")[2])
  result = evaluate.run(evaluate._parser().parse_args(  # pylint: disable=protected-access
      ["--workdir", str(tmp_path), "--num", "64", "--no_parzen",
       "--cache_dir", cache_dir]))
  assert np.isfinite(result["metrics"]["fid64_digits_cnn"])
