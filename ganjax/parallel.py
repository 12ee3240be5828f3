"""Devices, owned here: placement of states and batches, the axis names, the layout.

The step is written once with named-axis collectives (``jax.lax.pmean`` over
``BATCH_AXIS``); a placement only chooses how it is mapped over devices, and
is the one place that lays out states and batches. Each is built on a
``jax.sharding.Mesh`` with named axes (``BATCH_AXIS``; ``MEMBER_AXIS`` for
the members of a population, see ``population_step`` below):

* ``SingleDevice``: ``jax.jit``; no axis.
* ``LocalDevices``: ``jax.pmap`` over this host's devices; the state is
  replicated along a leading device axis and a batch ``[k, B, ...]`` becomes
  ``[devices, k, B / devices, ...]`` (``device_layout``).
* ``MeshDevices``: ``jax.shard_map`` over a mesh, which may span hosts; the
  state is one replicated global array per leaf and a batch a global
  ``[k, B, ...]`` array sharded along B.

Each wraps any ``fn(state, *batches) -> (state, metrics)`` (``gan.step``, or a
many-step ``run(state)`` that draws its batches on the device), puts states
and batches where ``fn`` wants them, and gives them back (``unreplicate``: one
copy on the device; ``to_host``: numpy). ``make(num_devices)`` picks one, for
one process or several. Inside a mapped function, ``local_slice`` and
``global_index`` say which examples of the global batch this device holds,
and ``gather_batch`` collects it.
``pmap_step``, ``shard_map_step`` and the helpers below them are one-line
forms of the same operations.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

if TYPE_CHECKING:
  from ganjax.gan import GAN

BATCH_AXIS = "batch"    # the examples of a batch, split over devices
MEMBER_AXIS = "member"  # the members of a population (ganjax.population)


# ------------------------------------------------------- device arithmetic


def check_divisible(batch_size: int, num_devices: int,
                    name: str = "batch_size") -> None:
  """Raises a ValueError naming the fix unless ``num_devices`` divides ``batch_size``.

  Args:
    batch_size: the number of examples split over the devices.
    num_devices: the devices (of every process) they are split over.
    name: how the message names ``batch_size`` (e.g. ``"config.batch_size"``).
  """
  if batch_size % num_devices:
    raise ValueError(
        f"{name}={batch_size} is not divisible by the {num_devices} devices "
        f"it is split over: each device needs the same number of examples; "
        f"use a multiple of {num_devices} (e.g. "
        f"{num_devices * max(1, batch_size // num_devices)}).")


def num_local_devices(requested: int) -> int:
  """The number of local devices ``requested`` means (-1: all of them).

  Raises:
    ValueError: naming this machine's device count, for anything else than
      -1 or 1 .. that count.
  """
  available = jax.local_device_count()
  if requested == -1:
    return available
  if (not isinstance(requested, (int, np.integer)) or isinstance(requested, bool)
      or not 1 <= requested <= available):
    raise ValueError(
        f"num_devices={requested!r}, but this machine has {available} local "
        f"{jax.default_backend()} device(s): use a number from 1 to "
        f"{available}, or -1 for all of them.")
  return int(requested)


def device_memory_bytes(device: Optional[jax.Device] = None) -> Optional[int]:
  """The memory of ``device`` (default: the first local one) in bytes, or
  None when its backend does not report it (CPU)."""
  device = device or jax.local_devices()[0]
  try:
    stats = device.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except  (not every backend has them)
    stats = {}
  limit = stats.get("bytes_limit")
  return int(limit) if limit else None


def device_layout(batch, num_devices: Optional[int]):
  """``[k, B, ...] -> [devices, k, B / devices, ...]`` for every leaf.

  The one place the per-device layout is made, for host (numpy) or device
  arrays: example ``b`` of the global batch goes to device ``b // (B /
  devices)``, so labels stay with their images and each example keeps its
  global index (``global_index``). ``num_devices=None`` returns ``batch``.
  """
  if num_devices is None:
    return batch

  def split(x):
    k, batch_size = x.shape[:2]
    check_divisible(batch_size, num_devices)
    x = x.reshape((k, num_devices, batch_size // num_devices) + x.shape[2:])
    x = x.swapaxes(0, 1)
    return np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x

  return jax.tree.map(split, batch)


def local_slice(batch, axis_name: Optional[str]):
  """This device's part ``[k, B / devices, ...]`` of a global batch ``[k, B, ...]``
  (every leaf), inside a function mapped over ``axis_name``; the batch itself
  without an axis."""
  if axis_name is None:
    return batch

  def take(x):
    local = x.shape[1] // jax.lax.axis_size(axis_name)
    start = jax.lax.axis_index(axis_name) * local
    return jax.lax.dynamic_slice_in_dim(x, start, local, axis=1)

  return jax.tree.map(take, batch)


def global_index(local_batch_size: int, axis_name: Optional[str]) -> jax.Array:
  """int32 ``[B_local]``: the global batch index of each example this device
  holds (device ``d`` holds ``d * B_local ... (d + 1) * B_local - 1``)."""
  index = jnp.arange(local_batch_size, dtype=jnp.int32)
  if axis_name is None:
    return index
  return jax.lax.axis_index(axis_name) * local_batch_size + index


def gather_batch(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
  """The global batch ``[B, ...]`` of a local ``x`` ``[B_local, ...]``, in
  global index order, on every device (``all_gather``); ``x`` without an axis.

  Differentiable: the gradient a device gets for its examples sums what every
  device's use of them contributed, so a function of the whole batch computed
  alike on every device, differentiated per device and averaged over the
  axis (``pmean``, as the step does), has one device's gradient.
  """
  if axis_name is None:
    return x
  return jax.lax.all_gather(x, axis_name, axis=0, tiled=True)


def _to_host(tree):
  """Host numpy copies of (fully replicated or local) arrays."""
  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      x = x.addressable_data(0)  # replicated: every process holds all of it
    return np.asarray(jax.device_get(x))
  return jax.tree.map(get, tree)


# -------------------------------------------------------------- placements


@dataclasses.dataclass(frozen=True)
class SingleDevice:
  """One device, plain ``jax.jit``; ``axis_name`` is None."""
  device: Any = None
  axis_name = None
  num_devices = 1

  @property
  def mesh(self) -> Mesh:
    """A one-device mesh with axis ``BATCH_AXIS``."""
    return Mesh(np.asarray([self.device or jax.devices()[0]]), (BATCH_AXIS,))

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

  def unreplicate(self, tree):
    """One copy of a placed state: ``tree`` itself."""
    return tree

  def to_host(self, tree):
    """States and metrics as host numpy arrays."""
    return _to_host(tree)


@dataclasses.dataclass(frozen=True)
class LocalDevices:
  """This host's devices under ``jax.pmap`` (axis ``BATCH_AXIS``)."""
  devices: tuple = None

  def __post_init__(self):
    object.__setattr__(self, "devices",
                       tuple(self.devices or jax.local_devices()))

  axis_name = BATCH_AXIS

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def mesh(self) -> Mesh:
    """The devices as a 1-D mesh with axis ``BATCH_AXIS``."""
    return Mesh(np.asarray(self.devices), (BATCH_AXIS,))

  @property
  def sharding(self) -> NamedSharding:
    """Arrays with a leading device axis, slice ``i`` on device ``i``."""
    return NamedSharding(self.mesh, P(BATCH_AXIS))

  def wrap(self, fn: Callable, donate: bool = True,
           replicated_args: int = 1) -> Callable:
    """``jax.pmap(fn)``: the first ``replicated_args`` arguments (the state,
    a data set on the device) replicated by ``put_state``, the others split
    by ``put_batch``."""
    # All local devices: pmap maps over the arguments' leading axis (any
    # size up to the device count); a chosen subset is pinned.
    pinned = None if self.devices == tuple(jax.local_devices()) else self.devices
    mapped = jax.pmap(fn, axis_name=BATCH_AXIS, devices=pinned,
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
    return jax.tree.map(
        lambda x: jax.device_put(
            jnp.broadcast_to(x, (self.num_devices,) + jnp.shape(x)),
            self.sharding),
        state)

  def put_batch(self, batch):
    """``[k, B, ...] -> [devices, k, B / devices, ...]`` on the devices
    (``device_layout``)."""
    return jax.device_put(device_layout(batch, self.num_devices), self.sharding)

  def unreplicate(self, tree):
    """One copy of a placed state: the first device's (all are equal)."""
    return jax.tree.map(lambda x: x[0], tree)

  def to_host(self, tree):
    """The first device's copy, as host numpy arrays."""
    return _to_host(self.unreplicate(tree))


@dataclasses.dataclass(frozen=True)
class MeshDevices:
  """A mesh under ``jax.shard_map`` (axis ``BATCH_AXIS``), across hosts too."""
  mesh: Mesh = None

  def __post_init__(self):
    if self.mesh is None:
      object.__setattr__(self, "mesh", make_mesh())
    if BATCH_AXIS not in self.mesh.axis_names:
      raise ValueError(f"MeshDevices needs a mesh with the axis "
                       f"{BATCH_AXIS!r}; got axes {self.mesh.axis_names}.")

  axis_name = BATCH_AXIS

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
    and batch statistic over ``BATCH_AXIS``.
    """
    compiled = {}

    def run(*args):
      if len(args) not in compiled:
        specs = ((P(),) * replicated_args
                 + (P(None, BATCH_AXIS),) * (len(args) - replicated_args))
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
    sharding = NamedSharding(self.mesh, P(None, BATCH_AXIS))
    if jax.process_count() > 1:
      return jax.tree.map(
          lambda x: jax.make_array_from_process_local_data(sharding,
                                                           np.asarray(x)),
          batch)
    for x in jax.tree.leaves(batch):
      check_divisible(x.shape[1], self.num_devices)
    return jax.device_put(batch, sharding)

  def unreplicate(self, tree):
    """One copy of a placed state: ``tree`` itself (global replicated arrays)."""
    return tree

  def to_host(self, tree):
    """States and metrics as host numpy arrays (this process's copy)."""
    return _to_host(tree)


Placement = SingleDevice | LocalDevices | MeshDevices


def make(num_devices: int = 1, use_mesh: bool = False) -> Placement:
  """The placement for ``num_devices`` local devices (-1: all of them).

  Several processes (``jax.distributed``) always get ``MeshDevices`` over
  every device of every process (the batch is global). In one process,
  ``use_mesh`` selects ``MeshDevices`` over the first ``num_devices``;
  otherwise one device is ``SingleDevice`` and more are ``LocalDevices``.
  """
  if jax.process_count() > 1:
    return MeshDevices(make_mesh())
  devices = jax.local_devices()[:num_local_devices(num_devices)]
  if use_mesh:
    return MeshDevices(make_mesh(devices))
  if len(devices) == 1:
    return SingleDevice()
  return LocalDevices(tuple(devices))


# --------------------------------------- the same operations, one line each


def replicate(tree, devices: Sequence[jax.Device] | None = None):
  """Copies every leaf onto each local device: ``x -> [devices, *x.shape]``."""
  return LocalDevices(tuple(devices) if devices else None).put_state(tree)


def unreplicate(tree):
  """The first device's copy of a replicated pytree."""
  return LocalDevices().unreplicate(tree)


def shard(batch, num_devices: int | None = None):
  """Splits a step batch ``[k, B, ...]`` into ``[devices, k, B / devices, ...]``
  (``device_layout``; all local devices by default)."""
  return device_layout(batch, num_devices or jax.local_device_count())


def pmap_step(gan: GAN, sync_batch_norm: bool = True,
              donate: bool = True) -> Callable:
  """``gan.step`` mapped over the local devices with ``jax.pmap``.

  Args:
    gan: the GAN.
    sync_batch_norm: the models see the global batch (batch statistics,
      dropout masks, minibatch-std groups: ``GAN.parallel``), so that the
      step equals one device's; False keeps each device's layers local.
    donate: donate the state's buffers to the step.

  Returns:
    ``pstep(replicated_state, sharded_batch) -> (replicated_state, metrics)``,
    metrics replicated ``[devices]`` (already averaged over devices).
  """
  return LocalDevices().wrap(gan.parallel(BATCH_AXIS, sync_batch_norm).step,
                             donate)


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis ``BATCH_AXIS`` over ``devices`` (all devices, all hosts)."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  return Mesh(devices, (BATCH_AXIS,))


def put_replicated(tree, mesh: Mesh):
  """A copy of a pytree (the state) on every device of ``mesh``."""
  return MeshDevices(mesh).put_state(tree)


def put_batch(batch, mesh: Mesh):
  """Places a global step batch on ``mesh``, sharded along B."""
  return MeshDevices(mesh).put_batch(batch)


def shard_map_step(gan: GAN, mesh: Mesh, sync_batch_norm: bool = True,
                   donate: bool = True) -> Callable:
  """``gan.step`` under ``jax.shard_map`` on ``mesh``, jitted
  (``sync_batch_norm`` as for ``pmap_step``).

  Returns:
    ``step(state, batch) -> (state, metrics)`` on global arrays: the state
    replicated (``put_replicated``), the batch ``[k, B, ...]`` sharded along B
    (``put_batch``).
  """
  return MeshDevices(mesh).wrap(
      gan.parallel(BATCH_AXIS, sync_batch_norm).step, donate)


# ------------------------------------------------------------- populations


def population_mesh(member_shards: int,
                    devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 2-D mesh ``(MEMBER_AXIS, BATCH_AXIS)`` over ``devices`` (all by
  default): ``member_shards`` groups of members, each group's batch split
  over ``len(devices) / member_shards`` devices. With 8 devices, 8 holds one
  member group per device at full batch, 2 splits each of 2 groups' batch
  over 4 devices, 1 splits every member's batch over all 8."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  if member_shards < 1 or devices.size % member_shards:
    raise ValueError(f"population_mesh: member_shards={member_shards} must "
                     f"divide the {devices.size} devices.")
  return Mesh(devices.reshape(member_shards, -1), (MEMBER_AXIS, BATCH_AXIS))


def population_step(population, mesh: Mesh, sync_batch_norm: bool = True,
                    donate: bool = True) -> Callable:
  """``population.step`` under ``jax.shard_map`` on a ``population_mesh``,
  jitted: members split along ``MEMBER_AXIS``, each member's batch along
  ``BATCH_AXIS`` (``GAN.parallel``, so that a member computes what it
  computes on one device, whatever the layout).

  Args:
    population: a ``ganjax.Population`` whose size the member shards divide.
    mesh: from ``population_mesh``.
    sync_batch_norm, donate: as for ``pmap_step``.

  Returns:
    ``step(pstate, batch) -> (pstate, metrics)`` on global arrays: the state
    and the metrics ``[N]`` sharded along the members
    (``put_population``), the batch ``[k, B, ...]`` (``shared_batch``) or
    ``[N, k, B, ...]`` sharded along B (and N) (``put_population_batch``).
  """
  member_shards = mesh.shape[MEMBER_AXIS]
  if population.size % member_shards:
    raise ValueError(f"population_step: the {population.size} members cannot "
                     f"be split into the mesh's {member_shards} member shards;"
                     " use a number of member shards that divides the size.")
  local = dataclasses.replace(
      population, gan=population.gan.parallel(BATCH_AXIS, sync_batch_norm),
      hparams=None, size=population.size // member_shards)
  mapped = jax.shard_map(local.step, mesh=mesh,
                         in_specs=(P(MEMBER_AXIS),
                                   _population_batch_spec(
                                       population.shared_batch)),
                         out_specs=(P(MEMBER_AXIS), P(MEMBER_AXIS)),
                         check_vma=False)
  return jax.jit(mapped, donate_argnums=(0,) if donate else ())


def put_population(pstate, mesh: Mesh):
  """A ``PopulationState`` on ``mesh``, split along its members."""
  return jax.device_put(pstate, NamedSharding(mesh, P(MEMBER_AXIS)))


def put_population_batch(batch, mesh: Mesh, shared: bool = True):
  """A step batch on ``mesh``: ``[k, B, ...]`` split along B (``shared``),
  or ``[N, k, B, ...]`` along N and B."""
  return jax.device_put(batch,
                        NamedSharding(mesh, _population_batch_spec(shared)))


def _population_batch_spec(shared: bool) -> P:
  """A step batch's layout on a population mesh: ``[k, B, ...]`` split
  along B when shared by the members, else ``[N, k, B, ...]`` along N and B."""
  return P(None, BATCH_AXIS) if shared else P(MEMBER_AXIS, None, BATCH_AXIS)
