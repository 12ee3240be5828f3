"""Data parallelism: the GAN step under ``jax.pmap`` and under ``jax.shard_map``.

The step is written once with named-axis collectives (``jax.lax.pmean`` over
``AXIS``); these wrappers only choose how it is mapped over devices.

* ``pmap_step`` maps over the local devices; the state is replicated along a
  leading device axis (``replicate``) and the batch split into
  ``[devices, k, B / devices, ...]`` (``shard``).
* ``shard_map_step`` maps over a ``jax.sharding.Mesh``, which may span hosts;
  the state is one replicated global array per leaf and the batch a global
  ``[k, B, ...]`` array sharded along B (``put_batch`` / ``put_replicated``).
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ganjax.gan import GAN

AXIS = "batch"


def _check_divisible(batch_size: int, num_devices: int) -> None:
  if batch_size % num_devices:
    raise ValueError(
        f"The batch size {batch_size} is not divisible by the {num_devices} "
        f"devices it is split over; use a batch size that is a multiple of "
        f"{num_devices} (e.g. {num_devices * max(1, batch_size // num_devices)}).")


# ------------------------------------------------------------------ pmap


def replicate(tree, devices: Sequence[jax.Device] | None = None):
  """Copies every leaf onto each local device: ``x -> [devices, *x.shape]``."""
  devices = list(devices or jax.local_devices())
  sharding = NamedSharding(Mesh(np.asarray(devices), (AXIS,)), P(AXIS))
  return jax.tree.map(
      lambda x: jax.device_put(jnp.broadcast_to(x, (len(devices),) + x.shape),
                               sharding), tree)


def unreplicate(tree):
  """The first device's copy of a replicated pytree."""
  return jax.tree.map(lambda x: x[0], tree)


def shard(batch, num_devices: int | None = None):
  """Splits a step batch ``[k, B, ...]`` into ``[devices, k, B / devices, ...]``.

  ``batch`` is an array or a pytree of them (``{"image", "label"}``), each
  leaf ``[k, B, ...]``. Example ``b`` of the global batch goes to device
  ``b // (B / devices)``, so the global example index the step derives its
  noise from is preserved, and labels stay with their images.
  """
  num_devices = num_devices or jax.local_device_count()

  def split(x):
    k, batch_size = x.shape[:2]
    _check_divisible(batch_size, num_devices)
    x = x.reshape((k, num_devices, batch_size // num_devices) + x.shape[2:])
    return x.swapaxes(0, 1)

  return jax.tree.map(split, batch)


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
  pgan = gan.parallel(AXIS, sync_batch_norm)
  return jax.pmap(pgan.step, axis_name=AXIS,
                  donate_argnums=(0,) if donate else ())


# ------------------------------------------------------------ shard_map


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis ``AXIS`` over ``devices`` (all devices, all hosts)."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  return Mesh(devices, (AXIS,))


def put_replicated(tree, mesh: Mesh):
  """Places a pytree (the state) on every device of ``mesh``."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def put_batch(batch, mesh: Mesh):
  """Places a global step batch ``[k, B, ...]`` (or a pytree of them) on ``mesh``, sharded along B.

  On several hosts, pass each host's own part ``[k, B / hosts, ...]``: the
  global array is assembled with ``jax.make_array_from_process_local_data``.
  """
  sharding = NamedSharding(mesh, P(None, AXIS))
  if jax.process_count() > 1:
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding,
                                                         np.asarray(x)), batch)
  for x in jax.tree.leaves(batch):
    _check_divisible(x.shape[1], mesh.size)
  return jax.device_put(batch, sharding)


def shard_map_step(gan: GAN, mesh: Mesh, sync_batch_norm: bool = False,
                   donate: bool = True) -> Callable:
  """``gan.step`` under ``jax.shard_map`` on ``mesh``, jitted.

  Args:
    gan: the GAN.
    mesh: a mesh with an axis named ``AXIS`` (``make_mesh``).
    sync_batch_norm: normalise with the global batch's statistics.
    donate: donate the state's buffers to the step.

  Returns:
    ``step(state, batch) -> (state, metrics)`` on global arrays: the state
    replicated (``put_replicated``), the batch ``[k, B, ...]`` sharded along B
    (``put_batch``).
  """
  pgan = gan.parallel(AXIS, sync_batch_norm)
  # check_vma=False gives the collectives pmap's semantics, which the step is
  # written for: gradients are taken per device and then averaged explicitly.
  # (With replication checking on, differentiating with respect to the
  # replicated parameters would already sum over devices.) The outputs are
  # replicated because the step averages every gradient, metric and batch
  # statistic over AXIS.
  mapped = jax.shard_map(pgan.step, mesh=mesh, in_specs=(P(), P(None, AXIS)),
                         out_specs=(P(), P()), check_vma=False)
  return jax.jit(mapped, donate_argnums=(0,) if donate else ())
