"""The data of a run, as its compiled many-step calls read them.

Every batch is a pure function of the run's seed and the step, so a run split
into calls of any length, resumed at any step, or moved to another device
count sees the same data. Three feeds, chosen by ``feed``:

* ``device``: the whole split on the device once (uint8 images, labels); each
  call draws its steps' minibatches from exact epochs
  (``ganjax.data.on_device.batch_at``). ``config.data_on_device``: ``auto``
  (the default) takes this path when the split is at most
  ``DEVICE_MEMORY_FRACTION`` of one device's memory (every device holds a
  copy), ``true`` always, ``false`` never.
* ``host``: the split in host memory; each call gets the examples of the
  next ``max_steps`` steps (``on_device.take``; at most ``HOST_CHUNK_BYTES``,
  whatever ``steps_per_call``), put on the device while the previous call
  runs. The same batches as ``device``; resuming reads one chunk.
* ``toy``: toy distributions, sampled in the call from a key folded with the
  step (the global batch, of which each device takes its slice).

A run compiles one call (``train_call``) and runs any number of steps up to
``feed.max_steps`` with it. ``feed.data_for(first_step)`` is the data
argument of the call that starts at ``first_step``, and
``feed.batch_at(data, step, axis_name)`` what the call traces to draw a
step's batch.
"""

import dataclasses
import sys
from typing import Any, Callable

import jax
import numpy as np

import ganjax as gj
from experiments import builders
from experiments import grids
from experiments import members
from ganjax.data import on_device

DEVICE_MEMORY_FRACTION = 0.25
# Without memory statistics (CPU), data sets up to this size go on the device.
_DEFAULT_DEVICE_BUDGET = 2 * 1024 ** 3
DATA_ON_DEVICE = ("auto", "true", "false")
# The host path sends at most this many bytes of examples per call.
HOST_CHUNK_BYTES = 256 * 1024 ** 2


@dataclasses.dataclass
class Feed:
  """What a run's calls read (see the module docstring).

  Attributes:
    kind: ``"device"``, ``"host"`` or ``"toy"``.
    batch_at: ``(data, step, axis_name, member=None) -> batch``, traced in
      the call; for a population with its own batches ``[N, ...]``, or
      member ``member``'s batch alone when it is given.
    data: ``first_step -> data``, placed for the call (on the host path:
      the examples of ``max_steps`` steps from ``first_step``).
    max_steps: the most steps one call runs: ``config.steps_per_call``, and
      on the host path at most ``HOST_CHUNK_BYTES`` of examples.
  """
  kind: str
  batch_at: Callable[..., Any]
  data: Callable[[int], Any]
  max_steps: int
  prefetched: dict = dataclasses.field(default_factory=dict)

  def prefetch(self, first_step: int) -> None:
    """Starts putting the data of the call from ``first_step`` on the device
    (host path), while the current call runs."""
    if self.kind == "host":
      self.prefetched = {first_step: self.data(first_step)}

  def data_for(self, first_step: int):
    """The data argument of the call that starts at ``first_step``."""
    if first_step in self.prefetched:
      return self.prefetched.pop(first_step)
    return self.data(first_step)


def data_key(config, experiment=None, stream: int = gj.streams.DATA):
  """The key the order of every epoch derives from; for a population that
  draws its members' own batches, ``[N]`` keys, member i's that of the run
  with seed ``seed + i`` (``experiments.members``)."""
  population = experiment.population if experiment is not None else None
  if population is not None and not population.shared_batch:
    return members.seed_keys(config, population.size, stream)
  return gj.streams.run_key(config.seed, stream)


def _per_key(draw: Callable, key: jax.Array, x=None, member=None):
  """``draw(x)`` (default ``x``: ``key``); for ``[N]`` keys (a population
  with its own batches), ``draw`` of each member's ``x`` stacked ``[N, ...]``,
  or of member ``member``'s alone when it is given."""
  x = key if x is None else x
  if not key.shape:
    return draw(x)
  if member is None:
    return jax.vmap(draw)(x)
  return draw(jax.tree.map(lambda leaf: leaf[member], x))


def _device_budget() -> int:
  memory = gj.parallel.device_memory_bytes()
  return int(DEVICE_MEMORY_FRACTION * memory) if memory else _DEFAULT_DEVICE_BUDGET


def check_config(config) -> None:
  """Raises ``builders.ConfigError`` for a ``data_on_device`` it does not know."""
  if str(config.data_on_device).lower() not in DATA_ON_DEVICE:
    raise builders.ConfigError(
        f"config.data_on_device must be one of {', '.join(DATA_ON_DEVICE)}, "
        f"got {config.data_on_device!r}.")


def on_device_wanted(config, nbytes: int) -> bool:
  """``config.data_on_device`` resolved for a split of ``nbytes``."""
  check_config(config)
  choice = str(config.data_on_device).lower()
  if choice == "auto":
    return nbytes <= _device_budget()
  return choice == "true"


def feed(config, experiment: builders.Experiment, placement) -> Feed:
  """The feed of ``config``'s data for ``placement`` (see the module docstring)."""
  k, batch_size = int(config.k), int(config.batch_size)
  max_steps = int(config.steps_per_call)
  labelled = experiment.num_classes is not None
  if experiment.is_toy:
    return _toy_feed(config, experiment, k, batch_size, labelled, max_steps,
                     placement)
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  size = builders.image_size(config)
  images, labels, maxval = pipeline.load_split(
      builders.data_source(config), config.split, image_size=size,
      data_dir=builders.data_dir(config), labels=labelled)
  key = data_key(config, experiment)
  host = on_device.from_arrays(images, labels, experiment.value_range,
                               maxval, device=False)
  if on_device_wanted(config, images.nbytes):
    # The key is an argument of the call, not a constant compiled into it
    # (runs that differ only in their seed share one executable), as uint32
    # key data (a multi-process placement goes through numpy).
    data = placement.put_state((host, jax.random.key_data(key)))

    def batch_at(data, step, axis, member=None):
      dataset, key_data = data
      draw = lambda key: on_device.batch_at(dataset, key, step, k, batch_size,
                                            axis)
      return _per_key(draw, gj.streams.as_key(key_data), member=member)

    return Feed("device", batch_at, lambda first: data, max_steps)

  per_step = k * batch_size
  draws = key.shape[0] if key.shape else 1  # one per member
  max_steps = max(1, min(max_steps, HOST_CHUNK_BYTES //
                         (draws * per_step * host.images[0].nbytes)))

  def chunk(first):
    """The examples of steps [first, first + max_steps) ([N, ...] per
    member of a population with its own batches)."""
    take = lambda key: on_device.take(host, key, first, max_steps, per_step)
    taken = (take(key) if not key.shape else
             jax.tree.map(lambda *xs: np.stack(xs), *map(take, key)))
    return placement.put_state((taken, np.int32(first)))

  def batch_at(data, step, axis, member=None):
    taken, first = data
    sequential = lambda taken: on_device.sequential_batch_at(
        taken, step - first, k, batch_size, axis)
    return _per_key(sequential, key, taken, member)

  return Feed("host", batch_at, chunk, max_steps)


def _toy_feed(config, experiment, k, batch_size, labelled, max_steps,
              placement) -> Feed:
  sampler = grids.toy_sampler(config.dataset)
  key_data = placement.put_state(jax.random.key_data(  # as on the device path
      data_key(config, experiment, gj.streams.TOY_DATA)))
  shape = (k, batch_size) + experiment.data_shape

  def global_batch(key, step):
    draw = jax.random.fold_in(key, step)
    if labelled:
      x, y = sampler(draw, k * batch_size, return_modes=True)
      return {gj.contract.IMAGE: x.reshape(shape),
              gj.contract.LABEL: y.reshape(shape[:2])}
    return sampler(draw, k * batch_size).reshape(shape)

  def batch_at(key_data, step, axis, member=None):
    """The global batch of ``step`` (the same on every device), sliced."""
    return _per_key(lambda key: gj.parallel.local_slice(
        global_batch(key, step), axis), gj.streams.as_key(key_data),
                    member=member)

  return Feed("toy", batch_at, lambda first: key_data, max_steps)


def train_call(steps, feed_: Feed, placement):
  """``call(state, data, num_steps) -> (state, metrics [max_steps])``: the
  next ``num_steps`` (at most ``feed_.max_steps``) steps in one call,
  compiled once for every ``num_steps`` and placed by ``placement``;
  metrics beyond ``num_steps`` are zeros.

  ``steps`` is a step function ``(state, batch) -> (state, metrics)``, or a
  ``ganjax.Population``, whose ``run_steps`` orders its members' steps.
  ``num_steps`` is an argument (``placement.put_state(np.int32(n))``), so
  that calls cut at a log step or shortened to bound their time need no
  other compilation.
  """
  axis = placement.axis_name

  def run(state, data, num_steps):
    batch_at = lambda step, member=None: feed_.batch_at(data, step, axis,
                                                        member)
    if isinstance(steps, gj.Population):
      return steps.run_steps(state, batch_at, num_steps, feed_.max_steps)
    return gj.loops.fori_steps(lambda state: steps(state, batch_at(state.step)),
                               state, num_steps, feed_.max_steps)

  return placement.wrap(run, replicated_args=3)


def split_size(config):
  """The number of examples of ``config.split`` of the data set, or None
  (toy distributions, or a size the data set's metadata do not give)."""
  if config.dataset in builders.TOY_DATASETS:
    return None
  try:
    source = builders.data_source(config)
    if not isinstance(source, str):  # an image folder: its decoded split
      return len(source.decoded(config.split).images)
    if config.dataset == "digits":
      from ganjax.data import sources  # pylint: disable=g-import-not-at-top
      return len(sources.load_digits(config.split)[0])
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds.builder(config.dataset, data_dir=builders.data_dir(config))
    return int(builder.info.splits[config.split].num_examples) or None
  except Exception:  # pylint: disable=broad-except
    return None


def warn_if_batch_exceeds_split(config) -> None:
  """Warns when one minibatch holds more examples than the training split."""
  size = split_size(config)
  if size is not None and config.batch_size > size:
    print(f"warning: batch_size={config.batch_size} is larger than the {size} "
          f"examples of {config.dataset}:{config.split}; every minibatch "
          "repeats examples. Use a batch size of at most "
          f"{size}.", file=sys.stderr)
