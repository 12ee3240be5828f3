"""The batch-aware layers: Dropout by global example index, StyleGAN's minibatch std.

Both must compute on 8 devices (``axis_name`` set) what they compute on one
device on the whole batch, gradients included.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax import parallel
from ganjax.models import layers

AXIS = parallel.BATCH_AXIS
DEVICES = 8


def _per_device(fn, *args):
  """``fn`` on 8 devices, each with its slice of every ``[B, ...]`` argument;
  the results put back in global order."""
  split = lambda x: x.reshape((DEVICES, -1) + x.shape[1:])
  out = jax.pmap(fn, axis_name=AXIS)(*map(split, args))
  return jax.tree.map(lambda y: y.reshape((-1,) + y.shape[2:]), out)


def _minibatch_std_reference(x, group_size, num_features, epsilon=1e-8):
  """StyleGAN2's epilogue layer in numpy, channels last."""
  n, c = x.shape[0], x.shape[-1]
  g, m = group_size, x.shape[0] // group_size
  y = x.reshape((g, m) + x.shape[1:-1] + (num_features, c // num_features))
  y = y - y.mean(axis=0)
  std = np.sqrt(np.square(y).mean(axis=0) + epsilon)
  std = std.mean(axis=tuple(range(1, std.ndim - 2)) + (std.ndim - 1,))
  feature = std[np.arange(n) % m]  # example n is in group n mod (N / G)
  feature = np.broadcast_to(feature[:, None, None, :], x.shape[:-1]
                            + (num_features,))
  return np.concatenate([x, feature], axis=-1)


def test_minibatch_std_matches_stylegan2_and_is_the_same_on_8_devices():
  x = np.asarray(jax.random.normal(jax.random.key(0), (16, 3, 3, 4)))
  layer = layers.MinibatchStd(group_size=4, num_features=2)
  out = layer.apply({}, x)
  np.testing.assert_allclose(out, _minibatch_std_reference(x, 4, 2),
                             rtol=1e-5, atol=1e-6)
  # Gathered over devices: the groups of the global batch, and the gradient
  # of a function of the global output.
  weights = jax.random.normal(jax.random.key(1), out.shape)
  loss = lambda layer: lambda x, w: jnp.sum(layer.apply({}, x) * w)
  sharded = layers.MinibatchStd(group_size=4, num_features=2, axis_name=AXIS)
  out8, grad8 = _per_device(
      lambda x, w: (sharded.apply({}, x), jax.grad(loss(sharded))(x, w)),
      x, weights)
  np.testing.assert_allclose(out8, out, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grad8, jax.grad(loss(layer))(x, weights),
                             rtol=1e-4, atol=1e-6)
  # Per device (no axis): groups of each device's 2 examples, another result.
  local = _per_device(lambda x: layers.MinibatchStd(group_size=4).apply({}, x), x)
  assert not np.allclose(local[..., -1], layers.MinibatchStd(4).apply({}, x)[..., -1])
  with pytest.raises(ValueError, match="multiple of the group size 4"):
    layer.apply({}, x[:6])


def test_dropout_masks_follow_the_global_example_index():
  x = jnp.ones((32, 50))
  key = jax.random.key(3)
  drop = lambda layer, x: layer.apply({}, x, deterministic=False,
                                     rngs={"dropout": key})
  one = drop(layers.Dropout(0.5), x)
  kept = np.asarray(one) != 0
  np.testing.assert_allclose(np.asarray(one)[kept], 2.0)  # scaled by 1 / (1 - p)
  assert 0.4 < kept.mean() < 0.6
  assert len({row.tobytes() for row in kept}) == 32  # a mask per example
  # The same masks on 8 devices, in one batched call per device.
  eight = _per_device(lambda x: drop(layers.Dropout(0.5, axis_name=AXIS), x), x)
  np.testing.assert_array_equal(eight, one)
  # Example i's mask does not depend on the batch around it.
  np.testing.assert_array_equal(drop(layers.Dropout(0.5), x[:5]), one[:5])
  np.testing.assert_array_equal(
      layers.Dropout(0.5).apply({}, x, deterministic=True), x)
