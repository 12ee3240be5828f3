"""What keeps a run from writing a broken state: finiteness guards and signals.

Finiteness. ``guard_step`` wraps the GAN step so that it also returns, per
step and on the device, whether each player's metrics (losses, gradient
norms) AND each player's new state (parameters, optimizer state, batch
statistics, G's EMA) are finite (``players_finite``). The runner checks
these flags whenever it fetches the metrics, before any sample or
checkpoint is written, and ``nonfinite_players`` checks the very state a
checkpoint is about to hold. A learning rate of NaN gives finite losses at
the step that applies it but NaN parameters after it: the state flags
catch that step, the metric flags alone would not. A step that reports
labels out of range (the step's ``label_out_of_range`` metric) is stopped
the same way, naming the label range.

Blame. The step updates D first (k times) and then G against the new D, so
a non-finite discriminator (metrics or state) is named as the cause even
when G's values went non-finite with it; G is named only when D is finite.

Signals. ``Signals`` turns SIGTERM/SIGINT into a flag the loop checks
between compiled calls: it then saves a checkpoint of the last finished
step and stops (``Preempted``, exit code 128 + the signal's number). Inside
``Signals.interruptible`` (sample grids and scoring, which write nothing)
the signal also ends that work at once. A second signal (Ctrl-C twice) still
lets the final checkpoint write finish; a third ends it (exit code 130: the
save itself hangs).
"""

import contextlib
import math
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from ganjax.population import PopulationState

# State fields (``ganjax.GANState``) of each player; the others (step, rng,
# augment_p) belong to neither. Metrics: ``g_*`` are G's, the others D's.
_D_FIELDS = ("d_",)
_G_FIELDS = ("g_", "ema_g")
FLAG_NAMES = ("finite_d", "finite_g", "finite_d_state", "finite_g_state")
LABEL_FLAG = "label_out_of_range"


class DivergenceError(RuntimeError):
  """A step's losses, gradient norms or new state are NaN or Inf, or its labels
  are out of range; the message says which."""


class Preempted(Exception):
  """SIGTERM or SIGINT stopped the run; the message says what was saved."""

  def __init__(self, signum: int, step: int, saved_step, finished=False):
    self.signum, self.step, self.saved_step = signum, step, saved_step
    name = signal.Signals(signum).name
    if saved_step == step:
      what = f"stopped at step {step} and saved its checkpoint"
    elif saved_step is None:
      what = f"stopped at step {step}; no checkpoint was saved"
    else:
      what = (f"stopped at step {step}; the latest checkpoint is of step "
              f"{saved_step}")
    super().__init__(f"{name} received: {what}; run the same command again "
                     "to resume from it.")


def signal_name(signum: int):
  """``"SIGTERM"`` for 15, ...; None for 0 (no signal)."""
  return signal.Signals(signum).name if signum else None


class Interrupted(BaseException):
  """Raised by ``Signals`` inside an interruptible section."""


class Signals:
  """Within ``with``: SIGTERM/SIGINT set ``signum`` instead of killing.

  The loop checks ``signum`` between calls. Inside ``interruptible(n)``, the
  signal that brings the count above ``n`` raises ``Interrupted`` there
  (``n=0``: the first signal ends sample grids and scoring; ``n=2``: a third
  one ends the final checkpoint write). Handlers are installed only in the
  main thread (elsewhere it is a no-op).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = 0
    self.count = 0
    self._after = None  # raise once count > _after (None: never)
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    self.count += 1
    self.signum = self.signum or signum
    if self._after is not None and self.count > self._after:
      raise Interrupted

  @contextlib.contextmanager
  def interruptible(self, after: int = 0):
    """Signals beyond the ``after``-th raise ``Interrupted`` in this block."""
    previous, self._after = self._after, after
    try:
      if self.count > after:
        raise Interrupted
      yield
    finally:
      self._after = previous

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


# ------------------------------------------------------------ finiteness


def _all_finite(leaves) -> jax.Array:
  flags = [jnp.all(jnp.isfinite(x)) for x in leaves
           if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.stack(flags).all() if flags else jnp.bool_(True)


def players_finite(tree):
  """``(finite_d, finite_g)``: every float leaf of D's / G's part of ``tree``
  is finite. Jittable; scalars on the device.

  ``tree``: a ``GANState`` or a population's ``PopulationState`` (its
  members' states; D's fields ``d_*``; G's ``g_*`` and the EMA
  ``ema_g*``; the others belong to neither) or a metrics dict (G's metrics
  are ``g_*``: ``g_loss``, ``g_grad_norm``; every other one is D's).
  """
  if isinstance(tree, PopulationState):  # every member's parts together
    tree = tree.members
  if hasattr(tree, "__dataclass_fields__"):
    parts = {name: getattr(tree, name) for name in tree.__dataclass_fields__}
    d = [v for n, v in parts.items() if n.startswith(_D_FIELDS)]
    g = [v for n, v in parts.items() if n.startswith(_G_FIELDS)]
  elif isinstance(tree, dict):
    d = [v for n, v in tree.items() if not n.startswith("g_")]
    g = [v for n, v in tree.items() if n.startswith("g_")]
  else:  # any other pytree: every leaf counts for both
    d = g = [tree]
  return _all_finite(jax.tree.leaves(d)), _all_finite(jax.tree.leaves(g))


_players_finite_jit = jax.jit(players_finite)


def nonfinite_players(state) -> list[str]:
  """The players (``"discriminator"``, ``"generator"``) whose part of
  ``state`` holds a NaN or Inf; empty when the state may be saved."""
  finite_d, finite_g = jax.device_get(_players_finite_jit(state))
  return [name for name, ok in (("discriminator", finite_d),
                                ("generator", finite_g)) if not ok]


def guard_step(step_fn, skip_nonfinite: bool = False):
  """``step_fn`` that also returns per-step finiteness flags in its metrics.

  The flags (``FLAG_NAMES``: ``finite_d`` / ``finite_g`` for each player's
  metrics and new state together, ``finite_*_state`` for the state alone)
  stay on the device with the other metrics and are checked on the host
  when the metrics are fetched anyway (log, eval and checkpoint steps), so
  the check costs no host sync per step. With ``skip_nonfinite``, a step
  whose metrics or new state are not all finite keeps the previous state
  (parameters, optimizer states, statistics, EMA) but advances the step
  counter, so the next step draws fresh noise; inside one jitted call, so
  donating the old state stays safe.
  """

  def guarded(state, batch):
    new_state, metrics = step_fn(state, batch)
    metrics_d, metrics_g = players_finite(
        {k: v for k, v in metrics.items() if k != LABEL_FLAG})
    state_d, state_g = players_finite(new_state)
    finite_d, finite_g = metrics_d & state_d, metrics_g & state_g
    if skip_nonfinite:
      ok = finite_d & finite_g
      kept = jax.tree.map(lambda new, old: jnp.where(ok, new, old),
                          new_state, state)
      new_state = kept.replace(step=new_state.step)
    return new_state, dict(metrics, finite_d=finite_d, finite_g=finite_g,
                           finite_d_state=state_d, finite_g_state=state_g)

  return guarded


def blamed(flags: dict) -> str:
  """The player a non-finite step is blamed on, from its popped flags."""
  if not flags["finite_d"]:
    return "discriminator"
  return "generator"


def divergence_message(step, flags, record, last_finite, saved_step,
                       checkpoint_dir) -> str:
  """The error of a run stopped at a non-finite ``step``.

  Args:
    step: the step whose update went non-finite.
    flags: its ``FLAG_NAMES`` values (bools).
    record: its metrics (floats).
    last_finite: ``(step, metrics)`` of the newest finite step, or ``()``.
    saved_step: the newest checkpoint's step, or None.
    checkpoint_dir: where the checkpoints are.
  """
  player = blamed(flags)
  short = player[0]
  own_state = flags[f"finite_{short}_state"]
  bad = ", ".join(f"{name}={value}" for name, value in sorted(record.items())
                  if not math.isfinite(value))
  what = ", ".join(part for part in (
      bad, "" if own_state else
      "NaN/Inf in its new parameters or optimizer state") if part)
  follows = (" The generator's values at that step follow from it (G is "
             "updated against the new D)." if player == "discriminator" and
             not flags["finite_g"] else "")
  if last_finite:
    last_step, values = last_finite
    keys = [k for k in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm",
                        "d_real", "d_fake") if k in values]
    last = (f"Last finite values (step {last_step}): " +
            ", ".join(f"{k}={values[k]:.4g}" for k in keys) + ".")
  else:
    last = "No finite step since the start of this run."
  kept = (f"The checkpoint of step {saved_step} in {checkpoint_dir} is "
          "intact; nothing after it was saved." if saved_step is not None
          else "No checkpoint was saved.")
  return (f"training diverged at step {step}: the update of the {player} "
          f"({short}) gave non-finite values ({what}).{follows} {last} "
          f"{kept} Lower the {player}'s learning rate "
          f"(--config.{short}_optimizer.learning_rate), add a gradient penalty "
          "(--config.penalty.name=gradient_penalty --config.penalty.weight=10), "
          "or set --config.skip_nonfinite_updates=True to skip such updates.")


def too_many_skipped_message(first, last, flags, saved_step,
                             checkpoint_dir) -> str:
  """The error of a run that skipped ``last - first + 1`` updates in a row."""
  player = blamed(flags)
  kept = (f"The checkpoint of step {saved_step} in {checkpoint_dir} holds "
          "the last finite state." if saved_step is not None
          else "No checkpoint was saved.")
  return (f"training stopped at step {last}: the {last - first + 1} updates "
          f"of steps {first}-{last} were all non-finite and skipped (the "
          f"{player} first), so the state no longer changes; skipping cannot "
          f"recover from this. {kept} Lower the {player}'s learning rate "
          f"(--config.{player[0]}_optimizer.learning_rate) or add a gradient "
          "penalty; --config.max_consecutive_skipped sets how many skipped "
          "updates in a row stop a run.")


def label_message(step, num_classes, saved_step, checkpoint_dir) -> str:
  """The error of a run stopped at a step whose labels are out of range."""
  kept = (f"The checkpoint of step {saved_step} in {checkpoint_dir} is "
          "intact; nothing after it was saved." if saved_step is not None
          else "No checkpoint was saved.")
  return (f"training stopped at step {step}: its batch holds class labels "
          f"outside [0, {num_classes}) (num_classes={num_classes}); the "
          f"losses of such a step are meaningless. {kept} Check the data "
          "set's labels, or set --config.num_classes to the data set's "
          "number of classes (-1: read from the data set).")


class MetricsMonitor:
  """The host side of the guard: per-step metrics of each call, checked for
  non-finite steps (or labels out of range), and averaged for the logs.

  ``check`` brings a finished call's metrics to the host and raises
  ``DivergenceError`` at the first bad step (or after ``max_skipped``
  skipped updates in a row); ``scalars`` averages the steps checked since
  the last log record. ``pending`` are those steps' records, stored with a
  checkpoint off a log step so that a resumed run logs the same window
  means (``pending=`` of the resumed monitor).
  """

  def __init__(self, to_host, skip: bool, max_skipped: int,
               num_classes=None, last_finite=(), step: int = 0,
               pending=()):
    self.to_host = to_host
    self.skip = skip
    self.max_skipped = max_skipped
    self.num_classes = num_classes
    self.fetched = list(pending)  # {name: value} per step, not yet logged
    self.last_finite = last_finite  # (step, metrics) of the newest finite step
    self.skipped_total = 0
    self.skipped_run = []  # steps of the skipped updates in a row so far
    self.checked_until = step  # the step of the newest checked record
    self.t_log, self.step_log = time.time(), step

  def check(self, first: int, metrics, num_steps: int, saved_step,
            checkpoint_dir: str) -> None:
    """Checks steps ``first + 1 .. first + num_steps`` of a finished call
    (its metrics stacked to at least ``num_steps``); keeps their records."""
    per_step = {name: np.reshape(v, (-1,))[:num_steps]
                for name, v in self.to_host(metrics).items()}
    for i in range(num_steps):
      record = {name: float(v[i]) for name, v in per_step.items()}
      step = first + i + 1
      flags = {name: bool(record.pop(name)) for name in FLAG_NAMES}
      if record.pop(LABEL_FLAG, 0.0):
        raise DivergenceError(label_message(step, self.num_classes,
                                            saved_step, checkpoint_dir))
      if flags["finite_d"] and flags["finite_g"]:
        self.last_finite = (step, record)
        self.skipped_run = []
      elif self.skip and len(self.skipped_run) + 1 < self.max_skipped:
        self.skipped_total += 1
        self.skipped_run.append(step)
        record["skipped"] = 1.0
      elif self.skip:
        raise DivergenceError(too_many_skipped_message(
            (self.skipped_run or [step])[0], step, flags, saved_step,
            checkpoint_dir))
      else:
        raise DivergenceError(divergence_message(
            step, flags, record, self.last_finite, saved_step,
            checkpoint_dir))
      self.fetched.append(record)
      self.checked_until = step

  def pending(self) -> list[dict]:
    """The records checked since the last log record."""
    return list(self.fetched)

  def scalars(self, step: int) -> dict:
    """Means of the checked steps up to ``step`` (skipped ones left out),
    skip counts and steps/s since the last record; {} when none."""
    records, self.fetched = self.fetched, []
    if not records:
      return {}
    good = [r for r in records if not r.get("skipped")]
    names = [name for name in records[0] if name != "skipped"]
    scalars = ({name: float(np.mean([r[name] for r in good])) for name in names}
               if good else {})
    if self.skip:
      scalars["skipped_steps"] = float(len(records) - len(good))
      scalars["skipped_steps_total"] = float(self.skipped_total)
    now = time.time()
    scalars["steps_per_s"] = (step - self.step_log) / max(now - self.t_log,
                                                          1e-9)
    self.t_log, self.step_log = now, step
    return scalars

  def pause(self, seconds: float) -> None:
    """Leaves ``seconds`` (an evaluation) out of steps/s."""
    self.t_log += seconds
