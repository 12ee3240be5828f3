"""Data parallelism on 8 fake CPU devices: with the defaults, pmap and shard_map equal one device.

Noise and dropout masks come from each example's global index, batch norm and
minibatch-std layers see the global batch, and the loss gets the logits of the
global batch, so the step on 8 devices with a global batch B must give what
one device gives on the same B.
SGD keeps the comparison tight (Adam's normalised update amplifies rounding in
near-zero gradients into differences of the order of its learning rate).
"""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax import parallel

NUM_DEVICES = 8
STEPS = 2


def _mlp_gan():
  """Dropout in D (per-example masks), k = 2, no batch statistics."""
  G = gj.models.MLPGenerator((4, 4, 1), hidden=(16,))
  D = gj.models.MLPDiscriminator(hidden=(8,), maxout_pieces=2,
                                 input_dropout=0.2, hidden_dropout=0.5)
  return gj.GAN(G, D, g_optimizer=optax.sgd(0.1), d_optimizer=optax.sgd(0.1),
                k=2, latent_dim=8, penalty=gj.penalties.R1(1.0))


def _dcgan_gan():
  """Batch norm in G (synchronised across devices), spectral norm off."""
  G, D = gj.models.dcgan(image_shape=(8, 8, 1), latent_dim=8, base_features=4)
  return gj.GAN(G, D, g_optimizer=optax.sgd(0.1), d_optimizer=optax.sgd(0.1),
                k=2, latent_dim=8)


def _conditional_dcgan_gan():
  """Labels in the batch: conditional batch norm in G, a projection D with
  features for feature matching, fake labels drawn in the step, DiffAugment
  with ADA."""
  G, D = gj.models.dcgan(image_shape=(8, 8, 1), latent_dim=8, base_features=4,
                         num_classes=3, return_features=True)
  return gj.GAN(G, D, g_optimizer=optax.sgd(0.1), d_optimizer=optax.sgd(0.1),
                k=1, latent_dim=8, num_classes=3,
                augment=gj.augment.DiffAugment(),
                ada=gj.augment.ADA(initial_probability=0.5, speed_images=1000),
                loss_terms=[gj.terms.FeatureMatching(0.1)])


class _MinibatchStdD(nn.Module):
  """Minibatch std (groups of 4 across devices) and per-example dropout."""
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train=True):
    x = gj.models.MinibatchStd(group_size=4, axis_name=self.axis_name)(x)
    x = nn.Dense(8)(x.reshape(x.shape[0], -1))
    x = gj.models.Dropout(0.5, axis_name=self.axis_name,
                          deterministic=not train)(nn.relu(x))
    return nn.Dense(1)(x)[:, 0]


def _ragan_minibatch_std_gan():
  """RaGAN (batch means of the logits) passed as a function, a minibatch-std
  D with dropout."""
  G = gj.models.MLPGenerator((4, 4, 1), hidden=(16,))
  return gj.GAN(G, _MinibatchStdD(), loss=gj.losses.ragan,
                g_optimizer=optax.sgd(0.1),
                d_optimizer=optax.sgd(0.1), k=2, latent_dim=8)


def _acgan_mlp_gan():
  """AC-GAN with a dropout D (per-example masks and auxiliary outputs) and a
  lazy R1 through it (k = 2, every 2: applied in the first update of each
  step, not in the second)."""
  G = gj.models.MLPGenerator((4, 4, 1), hidden=(16,), num_classes=3)
  D = gj.models.MLPDiscriminator(hidden=(8,), maxout_pieces=2,
                                 input_dropout=0.2, hidden_dropout=0.5,
                                 num_classes=3, aux_classifier=True)
  return gj.GAN(G, D, g_optimizer=optax.sgd(0.1), d_optimizer=optax.sgd(0.1),
                k=2, latent_dim=8, num_classes=3, fake_labels="real",
                penalty=gj.penalties.Lazy(gj.penalties.R1(1.0), every=2),
                loss_terms=[gj.terms.AuxiliaryClassifier(1.0)])


CASES = {"mlp_dropout": (_mlp_gan, (4, 4, 1)),
         "dcgan_sync_bn": (_dcgan_gan, (8, 8, 1)),
         "conditional_dcgan_augment": (_conditional_dcgan_gan, (8, 8, 1)),
         "conditional_acgan_mlp": (_acgan_mlp_gan, (4, 4, 1)),
         "ragan_minibatch_std": (_ragan_minibatch_std_gan, (4, 4, 1))}


def _setup(case, batch_size=16):
  make_gan, shape = CASES[case]
  gan = make_gan()
  image_key, label_key = jax.random.split(jax.random.key(1))
  batch = jax.random.uniform(image_key, (gan.k, batch_size) + shape,
                             minval=0.0, maxval=1.0)
  state = gan.init(jax.random.key(0), batch[0])
  if gan.num_classes:
    labels = jax.random.randint(label_key, (gan.k, batch_size), 0,
                                gan.num_classes)
    batch = {"image": batch, "label": labels}
  return gan, state, batch


@functools.lru_cache(maxsize=None)
def _reference(case):
  """``(gan, state, batch, want, want_metrics)``: a case and what one device
  computes in STEPS steps (compiled once per case and test process)."""
  gan, state, batch = _setup(case)
  step = jax.jit(gan.step)
  want = state
  for _ in range(STEPS):
    want, want_metrics = step(want, batch)
  return gan, state, batch, want, want_metrics


def _assert_states_close(got, want):
  chex.assert_trees_all_close(got, want, atol=2e-5, rtol=2e-5)


# The two mappings share every line of the step and differ in how the axis
# is bound (batch norm's collectives included): batch norm runs under both,
# every other case under one only.
PMAP_CASES = ["conditional_acgan_mlp", "dcgan_sync_bn", "ragan_minibatch_std"]
SHARD_MAP_CASES = ["conditional_dcgan_augment", "dcgan_sync_bn"]


@pytest.mark.parametrize("case", PMAP_CASES)
def test_pmap_equals_single_device(case):
  assert jax.local_device_count() == NUM_DEVICES
  gan, state, batch, want, want_metrics = _reference(case)
  pstep = parallel.pmap_step(gan)  # the defaults
  rstate = parallel.replicate(state)
  sharded = parallel.shard(batch)
  for leaf in jax.tree.leaves(sharded):
    assert leaf.shape[:3] == (NUM_DEVICES, gan.k, 2)
  for _ in range(STEPS):
    rstate, metrics = pstep(rstate, sharded)
  _assert_states_close(parallel.unreplicate(rstate), want)
  # Every device holds the same state, and metrics are global means.
  for leaf in jax.tree.leaves(rstate):
    np.testing.assert_array_equal(leaf[0], leaf[-1])
  chex.assert_trees_all_close(parallel.unreplicate(metrics), want_metrics,
                              atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", SHARD_MAP_CASES)
def test_shard_map_equals_single_device(case):
  gan, state, batch, want, _ = _reference(case)
  mesh = parallel.make_mesh()
  step = parallel.shard_map_step(gan, mesh)  # the defaults
  gstate = parallel.put_replicated(state, mesh)
  gbatch = parallel.put_batch(batch, mesh)
  for _ in range(STEPS):
    gstate, metrics = step(gstate, gbatch)
  _assert_states_close(jax.device_get(gstate), want)
  assert np.isfinite(float(metrics["d_loss"]))


def test_layers_kept_per_device_still_keep_replicas_identical():
  """The opt-out (sync_batch_norm=False): each device's batch norm sees its
  own examples, and every device still holds the same state."""
  gan, state, batch = _setup("dcgan_sync_bn")
  pstep = parallel.pmap_step(gan, sync_batch_norm=False)
  rstate, _ = pstep(parallel.replicate(state), parallel.shard(batch))
  for leaf in jax.tree.leaves(rstate):
    np.testing.assert_array_equal(leaf[0], leaf[-1])


def test_each_device_draws_different_noise():
  gan, state, _ = _setup("mlp_dropout")
  pgan = gan.parallel(parallel.BATCH_AXIS)
  # Two examples per device: 16 per-example key sets, all distinct.
  keys = jax.pmap(lambda rng: pgan._example_keys(jax.random.wrap_key_data(rng), 2),
                  axis_name=parallel.BATCH_AXIS)(parallel.replicate(state).rng)
  data = np.asarray(jax.random.key_data(keys)).reshape(NUM_DEVICES * 2, -1)
  assert len(np.unique(data, axis=0)) == NUM_DEVICES * 2


def test_batch_not_divisible_by_devices_is_refused():
  with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 "
                     "devices.*multiple of 8"):
    parallel.shard(jnp.zeros((1, 12, 2)))
  with pytest.raises(ValueError, match="not divisible"):
    parallel.put_batch(jnp.zeros((1, 12, 2)), parallel.make_mesh())


def test_placements_run_the_same_many_step_call_on_device_data():
  """One compiled call of 3 steps drawing labelled digits on the device:
  1 device, 8 local devices (pmap) and an 8-device mesh agree."""
  from sklearn.datasets import load_digits
  from ganjax.data import on_device
  digits = load_digits()
  data = on_device.from_arrays(
      digits.images[:100, ::2, ::2, None].astype(np.uint8),
      digits.target[:100], value_range=(0.0, 1.0), maxval=16)
  G = gj.models.MLPGenerator((4, 4, 1), hidden=(16,), num_classes=10)
  D = gj.models.MLPDiscriminator(hidden=(8,), maxout_pieces=2,
                                 hidden_dropout=0.5, num_classes=10)
  gan = gj.GAN(G, D, g_optimizer=optax.sgd(0.1), d_optimizer=optax.sgd(0.1),
               k=1, latent_dim=8, num_classes=10)
  state = gan.init(jax.random.key(0), jnp.zeros((16, 4, 4, 1)))
  results = []
  for placement in (parallel.SingleDevice(), parallel.LocalDevices(),
                    parallel.MeshDevices()):
    pgan = gan.parallel(placement.axis_name) if placement.axis_name else gan

    def run(state, data, placement=placement, pgan=pgan):
      return gj.loops.scan_steps_at(
          pgan.step, lambda step: on_device.batch_at(
              data, jax.random.key(5), step, gan.k, 16,
              axis_name=placement.axis_name), num_steps=3)(state)

    # The data set is an argument (replicated), not a constant of the call.
    final, metrics = placement.wrap(run, replicated_args=2)(
        placement.put_state(state), placement.put_state(data))
    results.append(placement.to_host((final, metrics)))
  for got in results[1:]:
    _assert_states_close(got[0], results[0][0])
    chex.assert_trees_all_close(got[1], results[0][1], atol=1e-4, rtol=1e-4)
  assert int(results[0][0].step) == 3
  # The caller's state survives the donation of its placed copy.
  assert int(state.step) == 0


def test_a_pmapped_step_names_an_unreplicated_state():
  gan, state, batch = _setup("mlp_dropout")
  with pytest.raises(ValueError, match="replicated over the local devices.*"
                     r"shapes such as \(\)"):
    parallel.pmap_step(gan)(state, parallel.shard(batch))


def test_device_arithmetic_and_one_copy_of_a_placed_state():
  # Inside a mapped function each device knows which global examples it holds.
  batch = jnp.arange(2 * 16).reshape(2, 16)
  local, index = jax.pmap(
      lambda b: (parallel.local_slice(b, parallel.BATCH_AXIS),
                 parallel.global_index(2, parallel.BATCH_AXIS)),
      axis_name=parallel.BATCH_AXIS)(parallel.replicate(batch))
  np.testing.assert_array_equal(local, parallel.shard(batch))
  np.testing.assert_array_equal(index.reshape(-1), np.arange(16))
  np.testing.assert_array_equal(parallel.global_index(3, None), [0, 1, 2])
  # One copy of a placed state, whatever the placement.
  state = {"w": jnp.arange(3.0)}
  for placement in (parallel.make(1), parallel.make(-1),
                    parallel.make(2, use_mesh=True)):
    placed = placement.put_state(state)
    np.testing.assert_array_equal(placement.unreplicate(placed)["w"], state["w"])
  assert parallel.make(2, use_mesh=True).num_devices == 2
  with pytest.raises(ValueError, match="this machine has 8 local cpu device"):
    parallel.num_local_devices(9)
  assert parallel.num_local_devices(-1) == NUM_DEVICES
  assert parallel.device_memory_bytes() is None  # the CPU reports none
