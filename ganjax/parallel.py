"""Device placement, owned here: one device, the local devices (pmap), or a mesh (shard_map).

The step is written once with named-axis collectives (``jax.lax.pmean`` over
``AXIS``); a ``Placement`` only chooses how it is mapped over devices, and is
the one place that lays out states and batches:

* ``SingleDevice``: ``jax.jit``; no axis.
* ``LocalDevices``: ``jax.pmap`` over this host's devices; the state is
  replicated along a leading device axis and a batch ``[k, B, ...]`` becomes
  ``[devices, k, B / devices, ...]``.
* ``MeshDevices``: ``jax.shard_map`` over a ``jax.sharding.Mesh``, which may
  span hosts; the state is one replicated global array per leaf and a batch a
  global ``[k, B, ...]`` array sharded along B.

Each wraps any ``fn(state, *batches) -> (state, metrics)`` (``gan.step``, or a
many-step ``run(state)`` that draws its batches on the device), puts states
and batches where ``fn`` wants them, and brings states and metrics back to
the host. ``make(num_devices)`` picks one. ``pmap_step`` / ``shard_map_step``
and the helpers below them are the same operations for a ``GAN``.
"""

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ganjax.gan import GAN

AXIS = "batch"


def check_divisible(batch_size: int, num_devices: int) -> None:
  """Raises a ValueError naming the fix unless ``num_devices`` divides ``batch_size``."""
  if batch_size % num_devices:
    raise ValueError(
        f"The batch size {batch_size} is not divisible by the {num_devices} "
        f"devices it is split over; use a batch size that is a multiple of "
        f"{num_devices} (e.g. {num_devices * max(1, batch_size // num_devices)}).")


def _to_host(tree):
  """Host numpy copies of (fully replicated or local) arrays."""
  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      x = x.addressable_data(0)  # replicated: every process holds all of it
    return np.asarray(jax.device_get(x))
  return jax.tree.map(get, tree)


@dataclasses.dataclass(frozen=True)
class SingleDevice:
  """One device, plain ``jax.jit``; ``axis_name`` is None."""
  device: Any = None
  axis_name = None
  num_devices = 1

  def wrap(self, fn: Callable, donate: bool = True,
           replicated_args: int = 1) -> Callable:
    """``jax.jit(fn)``, donating the state (argument 0) when ``donate``."""
    del replicated_args  # one device: nothing to split
    return jax.jit(fn, donate_argnums=(0,) if donate else ())

  def put_state(self, state):
    """A copy of ``state`` on the device (the caller's arrays stay valid)."""
    return jax.tree.map(lambda x: jax.device_put(jnp.array(x), self.device),
                        state)

  def put_batch(self, batch):
    """A global batch ``[k, B, ...]`` (or a pytree of them) on the device."""
    return jax.device_put(batch, self.device)

  def to_host(self, tree):
    """States and metrics as host numpy arrays."""
    return _to_host(tree)


@dataclasses.dataclass(frozen=True)
class LocalDevices:
  """This host's devices under ``jax.pmap`` (axis ``AXIS``)."""
  devices: tuple = None

  def __post_init__(self):
    object.__setattr__(self, "devices",
                       tuple(self.devices or jax.local_devices()))

  axis_name = AXIS

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def wrap(self, fn: Callable, donate: bool = True,
           replicated_args: int = 1) -> Callable:
    """``jax.pmap(fn)``: the first ``replicated_args`` arguments (the state,
    a data set on the device) replicated by ``put_state``, the others split
    by ``put_batch``."""
    # All local devices: pmap maps over the arguments' leading axis (any
    # size up to the device count); a chosen subset is pinned.
    pinned = None if self.devices == tuple(jax.local_devices()) else self.devices
    mapped = jax.pmap(fn, axis_name=AXIS, devices=pinned,
                      donate_argnums=(0,) if donate else ())

    def run(*args):
      self._check_replicated(args[:replicated_args])
      return mapped(*args)

    return run

  def _check_replicated(self, state) -> None:
    """Every leaf has the same leading (device) axis, at most the devices'."""
    shapes = [jnp.shape(leaf) for leaf in jax.tree.leaves(state)]
    sizes = {shape[0] if shape else None for shape in shapes}
    if None in sizes or len(sizes) > 1 or max(sizes) > self.num_devices:
      shape = next((s for s in shapes if not s), shapes[0])
      raise ValueError(
          f"The pmapped step needs the state replicated over the local "
          f"devices (the same leading device axis, at most "
          f"{self.num_devices}, on every leaf); got leaves of shapes such as "
          f"{shape}. Pass ganjax.parallel.replicate(state) (or "
          f"placement.put_state(state)).")

  def put_state(self, state):
    """Every leaf copied onto each device: ``x -> [devices, *x.shape]``."""
    sharding = NamedSharding(Mesh(np.asarray(self.devices), (AXIS,)), P(AXIS))
    return jax.tree.map(
        lambda x: jax.device_put(
            jnp.broadcast_to(x, (self.num_devices,) + jnp.shape(x)), sharding),
        state)

  def put_batch(self, batch):
    """``[k, B, ...] -> [devices, k, B / devices, ...]`` on the devices.

    Example ``b`` of the global batch goes to device ``b // (B / devices)``,
    so the global example index the step derives its noise from is preserved,
    and labels stay with their images.
    """
    sharding = NamedSharding(Mesh(np.asarray(self.devices), (AXIS,)), P(AXIS))
    return jax.device_put(device_layout(batch, self.num_devices), sharding)

  def to_host(self, tree):
    """The first device's copy (all are equal), as host numpy arrays."""
    return _to_host(jax.tree.map(lambda x: x[0], tree))


@dataclasses.dataclass(frozen=True)
class MeshDevices:
  """A mesh under ``jax.shard_map`` (axis ``AXIS``), across hosts too."""
  mesh: Mesh = None

  def __post_init__(self):
    if self.mesh is None:
      object.__setattr__(self, "mesh", make_mesh())

  axis_name = AXIS

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  def wrap(self, fn: Callable, donate: bool = True,
           replicated_args: int = 1) -> Callable:
    """``fn`` under ``jax.shard_map``, jitted: the first ``replicated_args``
    arguments (the state, a data set on the device) replicated, the others
    sharded along their axis 1 (``[k, B, ...]``).

    ``check_vma=False`` gives the collectives pmap's semantics, which the step
    is written for: gradients are taken per device and then averaged
    explicitly (with replication checking on, differentiating with respect
    to the replicated parameters would already sum over devices). The
    outputs are replicated because the step averages every gradient, metric
    and batch statistic over ``AXIS``.
    """
    compiled = {}

    def run(*args):
      if len(args) not in compiled:
        specs = ((P(),) * replicated_args
                 + (P(None, AXIS),) * (len(args) - replicated_args))
        mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=specs,
                               out_specs=(P(), P()), check_vma=False)
        compiled[len(args)] = jax.jit(
            mapped, donate_argnums=(0,) if donate else ())
      return compiled[len(args)](*args)

    return run

  def put_state(self, state):
    """The state replicated on every device of the mesh (a copy).

    On several hosts every process passes the same values (the same seed).
    """
    sharding = NamedSharding(self.mesh, P())
    if jax.process_count() > 1:
      def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding,
                                            lambda index: x[index])
      return jax.tree.map(put, state)
    return jax.tree.map(lambda x: jax.device_put(jnp.array(x), sharding),
                        state)

  def put_batch(self, batch):
    """A global step batch ``[k, B, ...]`` (or a pytree) sharded along B.

    On several hosts, pass each host's own part ``[k, B / hosts, ...]``: the
    global array is assembled with ``jax.make_array_from_process_local_data``.
    """
    sharding = NamedSharding(self.mesh, P(None, AXIS))
    if jax.process_count() > 1:
      return jax.tree.map(
          lambda x: jax.make_array_from_process_local_data(sharding,
                                                           np.asarray(x)),
          batch)
    for x in jax.tree.leaves(batch):
      check_divisible(x.shape[1], self.num_devices)
    return jax.device_put(batch, sharding)

  def to_host(self, tree):
    return _to_host(tree)


Placement = SingleDevice | LocalDevices | MeshDevices


def make(num_devices: int = 1, use_mesh: bool = False) -> Placement:
  """The placement for ``num_devices`` local devices (-1: all of them).

  ``use_mesh`` (or several processes) selects ``MeshDevices`` over every
  device of every process; otherwise more than one device is ``LocalDevices``.
  """
  if jax.process_count() > 1 or use_mesh:
    return MeshDevices(make_mesh())
  available = jax.local_device_count()
  if num_devices == -1:
    num_devices = available
  if not isinstance(num_devices, int) or not 1 <= num_devices <= available:
    raise ValueError(f"num_devices must be between 1 and the {available} "
                     f"local devices (or -1 for all), got {num_devices!r}.")
  if num_devices == 1:
    return SingleDevice()
  return LocalDevices(tuple(jax.local_devices()[:num_devices]))


def device_layout(batch, num_devices: int):
  """``[k, B, ...] -> [devices, k, B / devices, ...]`` for every leaf.

  The one place the per-device layout is made (host numpy or device arrays).
  """
  def split(x):
    k, batch_size = x.shape[:2]
    check_divisible(batch_size, num_devices)
    x = x.reshape((k, num_devices, batch_size // num_devices) + x.shape[2:])
    return x.swapaxes(0, 1)

  return jax.tree.map(split, batch)


# ------------------------------------------------- the same, for a GAN


def replicate(tree, devices: Sequence[jax.Device] | None = None):
  """Copies every leaf onto each local device: ``x -> [devices, *x.shape]``."""
  return LocalDevices(tuple(devices) if devices else None).put_state(tree)


def unreplicate(tree):
  """The first device's copy of a replicated pytree."""
  return jax.tree.map(lambda x: x[0], tree)


def shard(batch, num_devices: int | None = None):
  """Splits a step batch ``[k, B, ...]`` into ``[devices, k, B / devices, ...]``
  (see ``device_layout``)."""
  return device_layout(batch, num_devices or jax.local_device_count())


def pmap_step(gan: GAN, sync_batch_norm: bool = False,
              donate: bool = True) -> Callable:
  """``gan.step`` mapped over the local devices with ``jax.pmap``.

  Args:
    gan: the GAN.
    sync_batch_norm: normalise with the global batch's statistics.
    donate: donate the state's buffers to the step.

  Returns:
    ``pstep(replicated_state, sharded_batch) -> (replicated_state, metrics)``,
    metrics replicated ``[devices]`` (already averaged over devices).
  """
  return LocalDevices().wrap(gan.parallel(AXIS, sync_batch_norm).step, donate)


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis ``AXIS`` over ``devices`` (all devices, all hosts)."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  return Mesh(devices, (AXIS,))


def put_replicated(tree, mesh: Mesh):
  """A copy of a pytree (the state) on every device of ``mesh``."""
  return MeshDevices(mesh).put_state(tree)


def put_batch(batch, mesh: Mesh):
  """Places a global step batch on ``mesh``, sharded along B (``MeshDevices.put_batch``)."""
  return MeshDevices(mesh).put_batch(batch)


def shard_map_step(gan: GAN, mesh: Mesh, sync_batch_norm: bool = False,
                   donate: bool = True) -> Callable:
  """``gan.step`` under ``jax.shard_map`` on ``mesh``, jitted.

  Returns:
    ``step(state, batch) -> (state, metrics)`` on global arrays: the state
    replicated (``put_replicated``), the batch ``[k, B, ...]`` sharded along B
    (``put_batch``).
  """
  return MeshDevices(mesh).wrap(gan.parallel(AXIS, sync_batch_norm).step,
                                donate)
