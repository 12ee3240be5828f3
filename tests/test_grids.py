"""Pictures of samples (experiments/grids.py): per-class grids that share the
noise down each column, toy scatter plots, and grids written whole."""

import errno
import io
import os

import jax
import numpy as np
import pytest
from PIL import Image

from experiments import builders
from experiments import grids
from experiments import resume
from ganjax import summary
from tests import helpers as tt


@pytest.fixture(scope="module")
def conditional():
  """A conditional tiny DCGAN on the digits, its initial state perturbed so
  that the classes differ (every class's scale and shift start equal)."""
  config = tt.tiny_config(num_classes=-1, num_eval_samples=20, ema_decay=0.0)
  experiment = builders.build(config)
  state = jax.jit(experiment.gan.init)(resume.init_key(config),
                                       resume.example_batch(config, experiment))
  leaves, tree = jax.tree.flatten(state.g_params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  noisy = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return config, experiment, state.replace(
      g_params=jax.tree.unflatten(tree, noisy))


def test_class_grid_samples_share_noise_down_each_column(conditional):
  _, experiment, state = conditional
  gan, key = experiment.gan, jax.random.key(3)
  rows = np.asarray(grids.class_grid_samples(gan, state, key, 3))
  assert rows.shape == (30, 8, 8, 1)
  for c in (0, 7):  # row c: class c, the latents of sample(key, 3)
    np.testing.assert_allclose(
        rows[3 * c:3 * c + 3],
        gan.sample(state, key, 3, labels=np.full(3, c, np.int32)), atol=1e-6)
  assert not np.allclose(rows[:3], rows[21:24])  # the class matters


def test_grid_writer_writes_one_row_per_class_and_nothing_when_it_fails(
    conditional, tmp_path, monkeypatch):
  config, experiment, state = conditional
  writer = summary.SummaryWriter(str(tmp_path), tensorboard=False)
  grid_writer = grids.GridWriter(config, experiment, str(tmp_path), writer)
  path = grid_writer(4, state)
  picture = np.asarray(Image.open(path))
  # 10 rows of 20 // 10 = 2 samples, 8x8 digits scaled 4x, 1-pixel padding.
  assert picture.shape[:2] == (10 * 33 + 1, 2 * 33 + 1)

  def full(fd):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "fsync", full)
  with pytest.raises(OSError) as info:
    grid_writer(6, state)
  assert info.value.filename == grids.sample_path(str(tmp_path), 6)
  assert os.listdir(tmp_path / "samples") == ["step_000004.png"]
  writer.close()


def test_pictures_of_toy_points_and_images():
  config = tt.tiny_config()
  image = builders.build(config)
  grid = grids.picture(image, config, np.full((5, 8, 8, 1), 0.5), 4)
  assert grid.dtype == np.uint8 and grid.shape == (2 * 33 + 1, 2 * 33 + 1, 1)
  png = Image.open(io.BytesIO(grids.png_bytes(grid)))
  assert png.size == (67, 67)
  ring = tt.tiny_config(dataset="toy_ring8",
                        model=builders.Config({"name": "toy_mlp"}))
  toy = builders.build(ring, data_shape=(2,), num_devices=1)
  scatter = grids.picture(toy, ring, np.zeros((3000, 2), np.float32), 10)
  assert scatter.ndim == 3 and scatter.dtype == np.uint8
