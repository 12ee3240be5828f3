"""ganjax.checkpoint (orbax round trips of the whole GANState), ganjax.summary, ganjax.images."""

import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax import checkpoint
from ganjax import images
from ganjax import summary


def _gan(**kwargs):
  g, d = gj.models.small_mlp(image_shape=(4, 4, 1), latent_dim=8, hidden=16)
  defaults = dict(generator=g, discriminator=d, g_optimizer=optax.adam(1e-3),
                  d_optimizer=optax.adam(1e-3), k=2, latent_dim=8,
                  ema_decay=0.9)
  defaults.update(kwargs)
  return gj.GAN(**defaults)


@pytest.fixture(scope="module")
def trained():
  """A GAN and its state after 3 steps: Adam moments, EMA and counters non-trivial."""
  gan = _gan()
  batch = jax.random.uniform(jax.random.key(1), (2, 6, 4, 4, 1))
  state = gan.init(jax.random.key(0), batch)
  step = jax.jit(gan.step)
  for _ in range(3):
    state, _ = step(state, batch)
  return gan, state, batch, step


def test_round_trip_of_full_state_is_bit_exact(trained, tmp_path):
  gan, state, batch, _ = trained
  assert state.ema_g_params is not None and int(state.step) == 3
  checkpoint.save(str(tmp_path), 3, state)
  template = jax.eval_shape(gan.init, jax.random.key(0), batch)
  restored = checkpoint.restore(str(tmp_path), template)
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  chex.assert_trees_all_equal(restored, state)  # exact, every leaf
  chex.assert_trees_all_equal_dtypes(restored, state)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(restored))
  # Adam's step counter and moments are there, not re-initialised.
  adam = restored.d_opt_state[0]
  assert int(adam.count) == 3 * gan.k
  assert float(optax.tree.norm(adam.mu)) > 0
  # The rng key data round-trips too (uint32).
  assert restored.rng.dtype == jnp.uint32
  np.testing.assert_array_equal(restored.rng, state.rng)


def test_restored_state_continues_identically(trained, tmp_path):
  _, state, batch, step = trained
  checkpoint.save(str(tmp_path), 3, state)
  restored = checkpoint.restore(str(tmp_path), state)  # concrete template
  a, ma = step(state, batch)
  b, mb = step(restored, batch)
  chex.assert_trees_all_equal(a, b)
  chex.assert_trees_all_equal(ma, mb)


def test_restore_into_a_mismatching_template_names_the_leaf(trained, tmp_path):
  gan, state, batch, _ = trained
  checkpoint.save(str(tmp_path), 3, state)
  wider = _gan(generator=gj.models.small_mlp((4, 4, 1), hidden=32)[0])
  template = jax.eval_shape(wider.init, jax.random.key(0), batch)
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match=r"g_params\.Dense_0\.bias: checkpoint \(16,\) "
                     r"float32, config \(32,\) float32.*Likely cause: the "
                     r"generator's architecture"):
    checkpoint.restore(str(tmp_path), template)
  no_ema = jax.eval_shape(_gan(ema_decay=None).init, jax.random.key(0), batch)
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match="ema_g_params: arrays in the checkpoint.*ema_decay"):
    checkpoint.restore(str(tmp_path), no_ema)
  as_bf16 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16)
                         if x.dtype == jnp.float32 else x,
                         jax.eval_shape(gan.init, jax.random.key(0), batch))
  with pytest.raises(checkpoint.CheckpointMismatchError, match="bfloat16"):
    checkpoint.restore(str(tmp_path), as_bf16)


def test_manager_keeps_last_and_saves_on_cadence(trained, tmp_path):
  _, state, _, _ = trained
  with checkpoint.Checkpointer(str(tmp_path), save_every=2, keep=2) as ckpt:
    assert ckpt.latest_step() is None
    assert ckpt.restore(state) is state  # nothing on disk: template back
    saved = [s for s in range(1, 8) if ckpt.save(s, state)]
    ckpt.wait()
    assert saved == [2, 4, 6]
    assert ckpt.save(7, state, force=True)
    ckpt.wait()
    assert ckpt.all_steps() == [6, 7]
    assert ckpt.latest_step() == 7
  assert checkpoint.latest_step(str(tmp_path)) == 7
  with pytest.raises(FileNotFoundError):
    checkpoint.restore(str(tmp_path / "missing"), state)


def test_the_writer_removes_unfinished_writes_readers_leave_them(trained,
                                                                 tmp_path):
  """A kill -9 mid-write leaves ``<step>.orbax-checkpoint-tmp``: the writer
  deletes it before anything else runs (no clean-up thread left to race with
  a save), readers leave it (it may be a live run's write)."""
  _, state, _, _ = trained
  checkpoint.save(str(tmp_path), 2, state)
  partial = tmp_path / "4.orbax-checkpoint-tmp" / "default" / "ocdbt.process_0"
  partial.mkdir(parents=True)
  (partial / "manifest.ocdbt").write_bytes(b"cut")
  with checkpoint.Checkpointer(str(tmp_path), keep=None) as reader:
    assert reader.removed_partial == [] and reader.all_steps() == [2]
  assert partial.exists()
  with checkpoint.Checkpointer(str(tmp_path), save_every=2,
                               remove_partial=True) as writer:
    assert writer.removed_partial == ["4.orbax-checkpoint-tmp"]
    assert sorted(os.listdir(tmp_path)) == ["2"]
    assert writer.save(4, state)
  assert sorted(os.listdir(tmp_path)) == ["2", "4"]


def test_async_save_is_safe_with_donated_buffers(trained, tmp_path):
  gan, state, batch, _ = trained
  step = jax.jit(gan.step, donate_argnums=0)
  state = jax.tree.map(jnp.copy, state)
  expected = jax.device_get(state)
  with checkpoint.Checkpointer(str(tmp_path), keep=None) as ckpt:
    ckpt.save(3, state, force=True)
    for _ in range(2):  # donate (and overwrite) the saved buffers
      state, _ = step(state, batch)
  restored = checkpoint.restore(str(tmp_path), expected)
  chex.assert_trees_all_equal(restored, expected)


def test_summary_writes_jsonl_and_events_and_truncates_on_resume(tmp_path):
  with summary.SummaryWriter(str(tmp_path)) as w:
    for s in (1, 2, 3):
      w.scalars(s, {"d_loss": jnp.float32(s), "g_loss": np.float32(-s)})
    w.image(3, "samples", np.zeros((6, 6, 1), np.uint8))
  records = summary.read_jsonl(str(tmp_path))
  assert [r["step"] for r in records] == [1, 2, 3]
  assert records[1] == {"step": 2, "d_loss": 2.0, "g_loss": -2.0}
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))
  # A run resumed from step 1 drops what the interrupted run logged after it.
  with summary.SummaryWriter(str(tmp_path), resume_step=1) as w:
    w.scalars(2, {"d_loss": 5.0})
  assert [(r["step"], r["d_loss"]) for r in summary.read_jsonl(str(tmp_path))
          ] == [(1, 1.0), (2, 5.0)]


def test_images_grid_and_png(tmp_path):
  x = np.linspace(-1, 1, 5 * 3 * 2 * 1).reshape(5, 3, 2, 1)
  grid = images.make_grid(images.to_unit_range(x, (-1, 1)), ncols=3,
                          padding=1)
  assert grid.dtype == np.uint8 and grid.shape == (2 * 4 + 1, 3 * 3 + 1, 1)
  assert grid[1, 1, 0] == 0 and grid[0, 0, 0] == 255  # x=-1 -> black; padding white
  path = images.save_png(str(tmp_path / "g.png"), grid)
  from PIL import Image
  assert Image.open(path).size == (10, 9)
  pts = images.scatter(np.random.default_rng(0).normal(size=(50, 2)),
                       real=np.zeros((5, 2)), size=64)
  assert pts.shape == (64, 64, 3) and pts.dtype == np.uint8
  hist = images.histogram(np.random.default_rng(0).normal(size=100),
                          real=np.ones(10), size=(80, 40))
  assert hist.shape == (40, 80, 3)


def test_library_modules_do_not_import_tensorflow():
  code = ("import sys; import ganjax.checkpoint, ganjax.summary, ganjax.images;"
          "assert 'tensorflow' not in sys.modules, sorted(m for m in sys.modules"
          " if 'tensorflow' in m)[:5]")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, "-c", code], check=True, cwd=repo,
                 env={**os.environ, "PYTHONPATH": repo})
