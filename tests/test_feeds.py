"""The feeds (experiments/feeds.py): one compiled call for any number of steps,
data on the device or sent in chunks, the same run whatever the chunking,
resume without replay."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chex
import ganjax as gj
from experiments import builders
from experiments import guards
from experiments import feeds
from experiments import train
from experiments import workdir as workdir_lib
from experiments.configs import toy_ring8
from ganjax import checkpoint
from tests import helpers as tt


def _chunked(**overrides):
  """20 steps, logged and saved every 10: calls of up to 10 steps."""
  defaults = dict(num_steps=20, log_every=10, eval_every=20,
                  checkpoint_every=10, steps_per_call=10)
  defaults.update(overrides)
  return tt.tiny_config(**defaults)


@pytest.mark.xla_default_emitters
def test_steps_per_call_and_the_data_path_do_not_change_the_run(tmp_path):
  """One step per call, 10 per call, and the split sent in chunks from the
  host: bit-identical parameters on CPU."""
  states = {}
  for name, overrides in {
      "one_per_call": dict(steps_per_call=1, data_on_device="true"),
      "ten_per_call": dict(data_on_device="true"),
      "host_chunks": dict(data_on_device="false")}.items():
    config = _chunked(**overrides)
    tt.run(config, tmp_path / name)
    states[name] = tt.final_state(str(tmp_path / name), config)
  assert int(states["one_per_call"].step) == 20
  for name in ("ten_per_call", "host_chunks"):
    chex.assert_trees_all_equal(states[name], states["one_per_call"])


def test_a_nonfinite_step_inside_a_call_is_named_and_the_last_save_kept(
    tmp_path, monkeypatch):
  guard = guards.guard_step

  def poisoned(step_fn, skip=False):  # D's loss turns NaN in step 17 only
    def step(state, batch):
      new_state, metrics = step_fn(state, batch)
      bad = state.step == 16
      return new_state, dict(metrics, d_loss=jnp.where(bad, jnp.nan,
                                                       metrics["d_loss"]))
    return guard(step, skip)

  monkeypatch.setattr(guards, "guard_step", poisoned)
  with pytest.raises(guards.DivergenceError, match="step 17"):
    tt.run(_chunked(), tmp_path)
  assert checkpoint.latest_step(str(tmp_path / workdir_lib.CHECKPOINT_DIR)) == 10


def test_resume_on_the_host_path_reads_one_chunk(tmp_path, monkeypatch):
  config = _chunked(data_on_device="false")
  tt.run(_chunked(data_on_device="false", num_steps=10), tmp_path)
  taken = []
  take = feeds.on_device.take

  def spy(dataset, key, first, num, per_step):
    taken.append((first, num))
    return take(dataset, key, first, num, per_step)

  monkeypatch.setattr(feeds.on_device, "take", spy)
  tt.run(config, tmp_path)
  # Resumed at step 10: the examples of steps 10..19, nothing before them.
  assert taken[0] == (10, 10) and all(first >= 10 for first, _ in taken)


def test_host_chunks_are_bounded_in_bytes_whatever_the_call_length(
    monkeypatch):
  """data_on_device=false: a call's examples on the host are at most
  HOST_CHUNK_BYTES, so host memory does not grow with steps_per_call."""
  config = _chunked(data_on_device="false", steps_per_call=100_000)
  experiment = builders.build(config)
  placement = train.check(config, experiment)
  one_step = config.k * config.batch_size * 8 * 8  # uint8 digits
  monkeypatch.setattr(feeds, "HOST_CHUNK_BYTES", 3 * one_step)
  feed = feeds.feed(config, experiment, placement)
  assert feed.max_steps == 3
  taken, first = feed.data_for(0)
  assert int(first) == 0 and taken.images.nbytes == 3 * one_step
  lengths = train.CallLengths(config, 100_000, feed.max_steps)
  assert lengths.next(0) == 1  # compiles
  lengths.observe(1, 1.0, compiled=True)
  assert lengths.next(1) == 1
  lengths.observe(1, 1e-6, compiled=False)  # fast steps: long calls wanted
  assert [lengths.next(s) for s in (2, 5)] == [3, 3]


def test_a_member_draws_its_own_batch_alone_on_either_path():
  """A population with its own batches: ``batch_at(..., member=i)`` (what
  ``Population.run_steps`` draws) is row i of every member's batches, and
  the same on the device and the host path."""
  drawn = []
  for data_on_device in ("true", "false"):
    config = _chunked(data_on_device=data_on_device, steps_per_call=3)
    config.population.size = 3
    experiment = builders.build(config)
    feed = feeds.feed(config, experiment, train.check(config, experiment))
    data = feed.data_for(0)
    every = jax.jit(lambda d, s, feed=feed: feed.batch_at(d, s, None))
    alone = jax.jit(lambda d, s, i, feed=feed: feed.batch_at(d, s, None, i))
    stacked = every(data, np.int32(2))
    assert stacked.shape[:3] == (3, config.k, config.batch_size)
    for member in range(3):
      np.testing.assert_array_equal(
          alone(data, np.int32(2), np.int32(member)), stacked[member])
    assert not np.array_equal(stacked[0], stacked[1])
    drawn.append(np.asarray(stacked))
  np.testing.assert_array_equal(*drawn)


def test_call_lengths_stop_at_every_cadence():
  config = tt.tiny_config(log_every=30, eval_every=50, checkpoint_every=100,
                          steps_per_call=40, num_steps=95)
  lengths, step = [], 0
  while step < 95:
    lengths.append(train.call_length(config, step, 95))
    step += lengths[-1]
  # 30 (log), 20 (sample at 50), 10 (log at 60), 30 (log at 90), 5 (end)
  assert lengths == [30, 20, 10, 30, 5]


def test_bad_data_on_device_values_are_refused():
  config = tt.tiny_config(data_on_device="maybe")
  with pytest.raises(Exception, match="data_on_device must be one of"):
    feeds.on_device_wanted(config, 10)


def _ring(seed):
  config = toy_ring8.get_config()
  config.seed = seed
  return config


@pytest.mark.parametrize("config_of_seed", [
    lambda seed: tt.tiny_config(seed=seed), _ring], ids=["device", "toy"])
def test_the_seed_is_an_argument_of_the_call_not_compiled_in(config_of_seed):
  """Runs that differ only in their seed draw other batches from one
  program (a seed sweep of separate runs compiles once)."""
  programs, batches = set(), []
  for seed in (0, 1):
    config = config_of_seed(seed)
    experiment = builders.build(config)
    placement = gj.parallel.make(experiment.num_devices)
    feed = feeds.feed(config, experiment, placement)
    draw = jax.jit(lambda data, step: feed.batch_at(data, step, None))
    data = feed.data_for(0)
    programs.add(draw.lower(data, jnp.int32(3)).as_text())
    batches.append(jax.tree.leaves(draw(data, jnp.int32(3)))[0])
  assert len(programs) == 1
  assert not np.array_equal(*batches)
