"""The runner on labelled data: conditional runs, per-class grids, augmentation, config errors.

Tiny models on the real 8x8 digits (sklearn, offline) and the ring of 8
Gaussians (each mode its own class), a few steps each.
"""

import json
import os
import shutil

import chex
import numpy as np
import pytest
from PIL import Image

from ganjax import summary
from experiments.configs import toy_ring8
from tests import helpers as tt
from tests.helpers import final_state, run


def tiny_config(**overrides):
  """test_train's tiny config, conditional on the digits' 10 classes."""
  c = tt.tiny_config(num_eval_samples=20, num_classes=-1)
  for key, value in overrides.items():
    c[key] = value
  return c


def records(workdir):
  return {r["step"]: {k: v for k, v in r.items() if k != "steps_per_s"}
          for r in summary.read_jsonl(str(workdir))}


# ------------------------------------------------------------- config errors


# ------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
  """4 uninterrupted steps of a conditional DCGAN with DiffAugment and ADA."""
  workdir = tmp_path_factory.mktemp("conditional")
  config = tiny_config()
  config.augment.policy = "translation,cutout"
  config.augment.ada_target = 0.6
  config.augment.ada_speed_images = 1000
  return config, workdir, run(config, workdir)


def test_conditional_run_writes_per_class_grids_and_resumes(conditional_run,
                                                            tmp_path):
  config, full_dir, result = conditional_run
  assert result["steps"] == 4
  with open(full_dir / "config.json") as f:
    resolved = json.load(f)["resolved"]
  assert resolved["num_classes"] == 10 and resolved["ada"] is True
  for step in (1, 2, 3, 4):
    assert all(np.isfinite(v) for v in records(full_dir)[step].values())
  # One row per class (10), num_eval_samples // 10 = 2 columns, 8x8 digits
  # scaled 4x with 1-pixel padding.
  grid = np.asarray(Image.open(full_dir / "samples" / "step_000004.png"))
  assert grid.shape[:2] == (10 * 33 + 1, 2 * 33 + 1)
  state = final_state(full_dir, config)
  # ADA's probability is in the state and logged with its r_t.
  assert {"augment_p", "ada_r_t"} <= set(records(full_dir)[4])
  assert float(state.augment_p) == records(full_dir)[4]["augment_p"]
  # Killed after step 4 with step 2 its last checkpoint: resumes exactly,
  # labels, augmentation and ADA's probability included.
  workdir = tmp_path / "w"
  shutil.copytree(full_dir, workdir)
  shutil.rmtree(workdir / "checkpoints" / "4")
  assert run(config, workdir)["steps_run"] == 2
  assert records(workdir) == records(full_dir)
  chex.assert_trees_all_equal(final_state(workdir, config), state)


def test_conditional_toy_run_draws_labelled_data_on_the_device(tmp_path):
  """The ring of 8 with each mode its own class, on the device-data path
  (toy batches drawn inside the compiled loop, with their mode labels)."""
  c = toy_ring8.get_config()
  c.num_classes = -1
  c.fake_labels = "real"
  c.model.hidden, c.model.depth = 8, 1
  c.batch_size, c.num_steps = 16, 3
  c.log_every, c.eval_every, c.checkpoint_every = 3, 3, 3
  c.evaluation.every = 0
  c.num_eval_samples = 16
  result = run(c, tmp_path)
  assert result["steps"] == 3
  assert all(np.isfinite(v) for v in records(tmp_path)[3].values())
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["resolved"]["num_classes"] == 8
  assert os.path.exists(tmp_path / "samples" / "step_000003.png")
