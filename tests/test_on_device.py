"""Data on the device: exact epochs, O(1) resume, the same batch on 1 or 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from ganjax import parallel
from ganjax.data import on_device


@pytest.mark.parametrize("n", [1, 2, 5, 64, 1797])
def test_permute_is_a_bijection(n):
  perm = np.asarray(on_device.permute(jnp.arange(n), n, jax.random.key(n)))
  np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_every_example_once_per_epoch_and_epochs_differ():
  n, per_step = 10, 4  # epochs straddle steps
  indices = jax.jit(on_device.stream_indices, static_argnums=(1, 3))
  stream = np.concatenate([
      np.asarray(indices(jax.random.key(0), n, s, per_step))
      for s in range(10)])  # 40 positions: 4 epochs
  epochs = stream.reshape(4, n)
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
  assert len({tuple(e) for e in epochs}) == 4
  # Far into a run (step 10^9 with 320 examples a step): no overflow, still
  # a slice of an exact epoch.
  late = indices(jax.random.key(0), 60_000, 10 ** 9, 320)
  assert int(late.min()) >= 0 and int(late.max()) < 60_000
  assert len(np.unique(np.asarray(late))) == 320


def _digits():
  digits = load_digits()
  return on_device.from_arrays(digits.images[..., None].astype(np.uint8),
                               digits.target, value_range=(-1.0, 1.0),
                               maxval=16)


def test_batches_are_scaled_and_labels_stay_with_their_images():
  digits = load_digits()
  data = _digits()
  assert data.images.dtype == jnp.uint8
  batch = on_device.batch_at(data, jax.random.key(0), jnp.int32(3), 2, 16)
  assert batch["image"].shape == (2, 16, 8, 8, 1)
  images = np.asarray(batch["image"]).reshape(32, 64)
  assert images.min() >= -1.0 and images.max() <= 1.0
  # Find each image among the digits: its label is the digit's target.
  pixels = digits.images.reshape(-1, 64) / 8.0 - 1.0
  for image, label in zip(images, np.asarray(batch["label"]).reshape(-1)):
    match = np.flatnonzero(np.all(np.isclose(pixels, image, atol=1e-6), -1))
    assert label in digits.target[match]


def test_the_batch_of_a_step_is_the_same_resumed_and_on_eight_devices():
  data, key = _digits(), jax.random.key(7)
  batch_at = jax.jit(lambda step: on_device.batch_at(data, key, step, 2, 16))
  # A pure function of the step: resuming at step 5 sees what a long run saw.
  run = [batch_at(jnp.int32(s)) for s in range(6)]
  resumed = batch_at(jnp.int32(5))
  jax.tree.map(np.testing.assert_array_equal, run[5], resumed)
  # On 8 devices (pmap), each device holds its slice of the same global batch.
  local = jax.pmap(
      lambda step: on_device.batch_at(data, key, step, 2, 16,
                                      axis_name=parallel.BATCH_AXIS),
      axis_name=parallel.BATCH_AXIS)(jnp.full((8,), 5, jnp.int32))
  jax.tree.map(np.testing.assert_array_equal,
               parallel.shard(resumed), local)


def test_bad_arrays_are_refused():
  with pytest.raises(ValueError, match="empty"):
    on_device.from_arrays(np.zeros((0, 4, 4, 1), np.uint8))
  with pytest.raises(ValueError, match=r"labels must be \[N\] = \[3\]"):
    on_device.from_arrays(np.zeros((3, 4, 4, 1), np.uint8), np.zeros(2))
  with pytest.raises(ValueError, match="as uint8"):
    on_device.from_arrays(np.zeros((3, 4, 4, 1), np.int32), maxval=1000)


def test_host_chunks_give_the_batches_drawn_on_the_device():
  digits = load_digits()
  host = on_device.from_arrays(digits.images[..., None].astype(np.uint8),
                               digits.target, value_range=(-1.0, 1.0),
                               maxval=16, device=False)
  assert isinstance(host.images, np.ndarray)
  device, key = _digits(), jax.random.key(7)
  chunk = jax.device_put(on_device.take(host, key, 1000, 3, 2 * 16))
  for i in range(3):
    want = on_device.batch_at(device, key, jnp.int32(1000 + i), 2, 16)
    got = on_device.sequential_batch_at(chunk, jnp.int32(i), 2, 16)
    jax.tree.map(np.testing.assert_array_equal, got, want)
