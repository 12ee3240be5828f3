"""A data set kept on the device, and exact epochs drawn inside the compiled step.

The images are put on the device once (as uint8 when they are images), with
their labels. The examples of step ``s`` are a pure function of
``(seed, s)``: position ``p = s * k * B + j`` of the stream is example
``perm_e(p mod N)`` of epoch ``e = p // N``, where ``perm_e`` is a
pseudo-random permutation of ``[0, N)`` keyed by ``(seed, e)``. So:

* every example appears exactly once per epoch (sampling without replacement);
* resuming at step ``s`` needs nothing but ``s`` (O(1), no replay);
* the global batch is the same whatever the device count: under
  ``ganjax.parallel`` each device gathers its own slice of it from its copy
  of the data set (the data set is replicated: one copy per device).

The permutation is a Feistel network on ``[0, 2^(2h))`` with cycle walking
(Black & Rogaway, 2002, Ciphers with Arbitrary Finite Domains,
https://doi.org/10.1007/3-540-45760-7_9): a bijection of ``[0, N)`` evaluated
per index in O(1), so no permutation of N is sorted or stored per step.

Nothing here imports TensorFlow.
"""

import math
from typing import Optional

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np

from ganjax import parallel
from ganjax.contract import IMAGE, LABEL

_ROUNDS = 6


@flax.struct.dataclass
class DeviceDataset:
  """Examples on the device, and how to scale them to the model's range.

  Attributes:
    images: ``[N, *shape]`` uint8 (images) or float (points).
    labels: int32 ``[N]``, or None.
    scale, offset: an example is ``images[i] * scale + offset`` (float32).
  """
  images: jax.Array
  labels: Optional[jax.Array]
  scale: float = flax.struct.field(pytree_node=False, default=1.0)
  offset: float = flax.struct.field(pytree_node=False, default=0.0)

  @property
  def size(self) -> int:
    return self.images.shape[0]


def from_arrays(images: np.ndarray, labels: Optional[np.ndarray] = None,
                value_range: Optional[tuple[float, float]] = (-1.0, 1.0),
                maxval: float = 255.0, device=None) -> DeviceDataset:
  """Puts a data set on ``device`` (default: the first) once.

  ``device=False`` keeps the (converted) arrays in host memory: the host
  path, which sends ``take``-n chunks of it instead.

  Args:
    images: ``[N, *shape]``; integer images with values in ``[0, maxval]``
      are stored as uint8 (a quarter of float32's memory), float ones as
      float32, and mapped to ``value_range`` in the step; points
      (``value_range=None``) are stored as float32 and used as they are.
    labels: int ``[N]`` class labels, or None.
    value_range: the generator's output range, e.g. ``(-1, 1)``.
    maxval: the largest stored pixel value (255; 16 for sklearn's digits).
    device: a ``jax.Device``, or a ``jax.sharding.Sharding`` (e.g. replicated
      over a mesh).

  Returns:
    a ``DeviceDataset``.
  """
  images = np.asarray(images)
  if images.shape[0] == 0:
    raise ValueError("The data set is empty: nothing to put on the device.")
  if labels is not None:
    labels = np.asarray(labels).astype(np.int32)
    if labels.shape != images.shape[:1]:
      raise ValueError(f"labels must be [N] = [{images.shape[0]}], got "
                       f"{labels.shape}.")
  if value_range is None:
    stored, scale, offset = images.astype(np.float32), 1.0, 0.0
  else:
    lo, hi = value_range
    scale, offset = (hi - lo) / maxval, lo
    if np.issubdtype(images.dtype, np.floating):
      stored = images.astype(np.float32)  # float pixels in [0, maxval]
    elif maxval > 255:
      raise ValueError(f"Integer images go on the device as uint8: pixel "
                       f"values must lie in [0, 255], got maxval={maxval}.")
    else:
      stored = images.astype(np.uint8)
  if device is False:
    put = lambda x: x
  else:
    put = lambda x: None if x is None else jax.device_put(x, device)
  return DeviceDataset(put(stored), put(labels), float(scale), float(offset))


def nbytes(dataset_shape: tuple, num_examples: int, is_image: bool) -> int:
  """Device memory a data set takes: uint8 for images, float32 otherwise."""
  return num_examples * math.prod(dataset_shape) * (1 if is_image else 4)


# ----------------------------------------------------------- permutation


def _mix(x: jax.Array, key: jax.Array) -> jax.Array:
  """A uint32 hash of ``x`` under ``key`` (murmur3's finaliser)."""
  x = x ^ key
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def permute(index: jax.Array, n: int, key: jax.Array) -> jax.Array:
  """``perm(index)`` for a pseudo-random permutation ``perm`` of ``[0, n)``.

  Args:
    index: int ``[...]`` in ``[0, n)``.
    n: the domain size (static).
    key: a key; different keys give independent permutations.

  Returns:
    int32 ``[...]``: a bijection of ``[0, n)`` applied elementwise.
  """
  half = max(1, math.ceil(math.log2(max(n, 2)) / 2))
  mask = jnp.uint32((1 << half) - 1)
  round_keys = jax.random.bits(key, (_ROUNDS,), jnp.uint32)

  def encrypt(x):
    left, right = x >> half, x & mask
    for i in range(_ROUNDS):
      left, right = right, left ^ (_mix(right, round_keys[i]) & mask)
    return (left << half) | right

  def walk(x):  # cycle walking: stays a bijection of [0, n)
    return jax.lax.while_loop(lambda x: x >= n, encrypt, encrypt(x))

  flat = jnp.asarray(index, jnp.uint32).reshape(-1)
  return jax.vmap(walk)(flat).reshape(jnp.shape(index)).astype(jnp.int32)


def stream_indices(key: jax.Array, n: int, step: jax.Array,
                   per_step: int) -> jax.Array:
  """Data-set indices ``[per_step]`` of step ``step`` of the epoch stream.

  Position ``p = step * per_step + j`` is ``perm_e(p mod n)`` with
  ``e = p // n`` and ``perm_e`` keyed by ``fold_in(key, e)``; computed
  without overflow for any int32 ``step``.
  """
  step = jnp.asarray(step, jnp.int32)
  # step * per_step + j = (q * n + r) * per_step + j, with r < n
  q, r = jnp.divmod(step, n)
  within = r * per_step + jnp.arange(per_step, dtype=jnp.int32)
  epoch = q * per_step + within // n
  index = within % n
  return jax.vmap(
      lambda e, i: permute(i, n, jax.random.fold_in(key, e)))(epoch, index)


_host_indices = jax.jit(lambda key, n, steps, per_step: jax.vmap(
    lambda s: stream_indices(key, n, s, per_step))(steps),
                        static_argnums=(1, 3))


def take(dataset: DeviceDataset, key: jax.Array, first_step: int,
         num_steps: int, per_step: int) -> DeviceDataset:
  """The examples of steps ``[first_step, first_step + num_steps)``, in order.

  For the host path: ``dataset`` holds host (numpy) arrays; the result, put
  on the device, is read by ``sequential_batch_at``, and gives exactly the
  batches ``batch_at`` draws from the whole data set on the device.
  Resuming at any step reads only that chunk.
  """
  with jax.default_device(jax.devices("cpu")[0]):
    steps = jnp.arange(first_step, first_step + num_steps, dtype=jnp.int32)
    indices = np.asarray(_host_indices(key, dataset.size, steps, per_step))
  indices = indices.reshape(-1)
  labels = None if dataset.labels is None else dataset.labels[indices]
  return dataset.replace(images=dataset.images[indices], labels=labels)


def _gather(dataset: DeviceDataset, indices: jax.Array, axis_name):
  """``dataset`` at ``indices [k, B]`` (this device's columns under ``axis_name``)."""
  indices = parallel.local_slice(indices, axis_name)
  images = (dataset.images[indices].astype(jnp.float32) * dataset.scale
            + dataset.offset)
  if dataset.labels is None:
    return images
  return {IMAGE: images, LABEL: dataset.labels[indices]}


def sequential_batch_at(chunk: DeviceDataset, step_in_chunk: jax.Array,
                        k: int, batch_size: int,
                        axis_name: Optional[str] = None):
  """Step ``step_in_chunk`` of a ``take``-n chunk: its next ``k * B`` examples."""
  start = jnp.asarray(step_in_chunk, jnp.int32) * (k * batch_size)
  indices = (start + jnp.arange(k * batch_size, dtype=jnp.int32)).reshape(
      k, batch_size)
  return _gather(chunk, indices, axis_name)


def batch_at(dataset: DeviceDataset, key: jax.Array, step: jax.Array, k: int,
             batch_size: int, axis_name: Optional[str] = None):
  """The step batch of generator step ``step``, gathered on the device.

  Args:
    dataset: a ``DeviceDataset``.
    key: the data key of the run (the order of every epoch derives from it).
    step: int32 scalar, the generator step (``state.step``).
    k: discriminator updates per step (minibatches per step batch).
    batch_size: the global minibatch size B.
    axis_name: under ``ganjax.parallel``, the mapped axis: each device
      returns its own slice ``[k, B / devices, ...]`` of the global batch.

  Returns:
    ``[k, B, *shape]`` float32, or ``{"image": that, "label": int32 [k, B]}``
    when the data set has labels.
  """
  chex.assert_rank(step, 0)
  indices = stream_indices(key, dataset.size, step, k * batch_size)
  return _gather(dataset, indices.reshape(k, batch_size), axis_name)
