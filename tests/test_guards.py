"""The guards (experiments/guards.py): which player is finite, the metrics
monitor (non-finite steps, labels out of range, skipped updates, log windows),
and the signal flag."""

import os
import signal

import jax.numpy as jnp
import numpy as np
import pytest

import ganjax as gj
from experiments import guards


def _state(d=1.0, g=1.0, rng=1.0):
  """A ``GANState`` with one value per player, and an rng (neither's)."""
  return gj.GANState(
      step=jnp.int32(3), g_params={"w": jnp.float32(g)},
      d_params={"w": jnp.float32(d)}, g_batch_stats={}, d_batch_stats={},
      g_opt_state=(), d_opt_state=(), rng=jnp.float32(rng))


def test_players_finite_splits_states_and_metrics_by_player():
  assert guards.nonfinite_players(_state()) == []
  assert guards.nonfinite_players(_state(d=np.nan)) == ["discriminator"]
  assert guards.nonfinite_players(_state(g=np.inf)) == ["generator"]
  assert guards.nonfinite_players(_state(rng=np.nan)) == []  # neither's
  d, g = guards.players_finite({"d_loss": jnp.float32(1.0),
                                "g_loss": jnp.float32(np.nan),
                                "d_grad_norm": jnp.float32(2.0)})
  assert bool(d) and not bool(g)


def _metrics(values, **flags):
  """Stacked metrics of a call: ``values`` per step, every flag true."""
  n = len(values)
  out = {"d_loss": np.asarray(values, np.float32),
         "g_loss": np.ones(n, np.float32)}
  for name in guards.FLAG_NAMES:
    out[name] = np.asarray(flags.get(name, [True] * n))
  if "label" in flags:
    out[guards.LABEL_FLAG] = np.asarray(flags["label"], np.float32)
  return out


def _monitor(**kwargs):
  return guards.MetricsMonitor(lambda tree: tree, skip=False, max_skipped=3,
                               **kwargs)


def test_monitor_checks_only_the_steps_a_call_ran_and_averages_windows():
  monitor = _monitor()
  # A call compiled for 4 steps that ran 2: the zeros after them are ignored.
  monitor.check(0, _metrics([1.0, 3.0, 0.0, 0.0], finite_d=[1, 1, 0, 0]), 2,
                None, "ckpt")
  assert monitor.checked_until == 2 and len(monitor.pending()) == 2
  assert monitor.scalars(2)["d_loss"] == 2.0
  assert monitor.pending() == [] and monitor.scalars(2) == {}


def test_monitor_resumes_a_log_window_from_its_pending_records():
  """A checkpoint off a log step holds the window's records: the resumed
  run's next record averages the same steps as an uninterrupted one."""
  whole = _monitor()
  whole.check(0, _metrics([1.0, 2.0, 3.0, 4.0]), 4, None, "ckpt")
  split = _monitor()
  split.check(0, _metrics([1.0, 2.0]), 2, None, "ckpt")
  resumed = _monitor(step=2, pending=split.pending())
  resumed.check(2, _metrics([3.0, 4.0]), 2, 2, "ckpt")
  assert resumed.scalars(4)["d_loss"] == whole.scalars(4)["d_loss"] == 2.5


def test_monitor_names_the_first_nonfinite_step_and_labels_out_of_range():
  monitor = _monitor(num_classes=10)
  with pytest.raises(guards.DivergenceError, match="diverged at step 6"):
    monitor.check(4, _metrics([1.0, np.inf], finite_d=[True, False]), 2, 4,
                  "ckpt")
  with pytest.raises(guards.DivergenceError) as info:
    _monitor(num_classes=10).check(
        0, _metrics([1.0, 1.0], label=[0.0, 1.0]), 2, None, "ckpt")
  message = str(info.value)
  assert message.startswith("training stopped at step 2: its batch holds "
                            "class labels outside [0, 10)"), message
  assert "No checkpoint was saved" in message


def test_monitor_skips_up_to_max_skipped_updates_in_a_row():
  monitor = guards.MetricsMonitor(lambda tree: tree, skip=True, max_skipped=3)
  bad = dict(finite_d=[False, False])
  monitor.check(0, _metrics([np.nan, np.nan], **bad), 2, None, "ckpt")
  assert monitor.skipped_total == 2
  with pytest.raises(guards.DivergenceError, match="steps 1-3 were all"):
    monitor.check(2, _metrics([np.nan], finite_d=[False]), 1, None, "ckpt")


def test_signals_set_a_flag_and_end_only_interruptible_work():
  with guards.Signals() as stop:
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.signum == signal.SIGTERM and stop.count == 1
    with pytest.raises(guards.Interrupted):  # the first signal came already
      with stop.interruptible():
        pass
    with stop.interruptible(after=stop.count):  # the final write: a new one
      pass
    with pytest.raises(guards.Interrupted):
      with stop.interruptible(after=stop.count):
        os.kill(os.getpid(), signal.SIGINT)
    assert stop.signum == signal.SIGTERM and stop.count == 2
  assert signal.getsignal(signal.SIGTERM) is not stop._handle  # pylint: disable=protected-access
  assert guards.signal_name(signal.SIGTERM) == "SIGTERM"
  assert guards.signal_name(0) is None
