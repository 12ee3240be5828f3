"""Populations: member i of a population is the run of member i alone.

Most tests share one tiny MLP GAN (a 1-D toy) with three members, learning
rates 1e-3, 2e-3 and 1e30 (the last goes non-finite in its first step),
whose population step is compiled once per member map.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax import backend
from ganjax import population as population_lib
from ganjax.data import toy

ADAM = optax.inject_hyperparams(optax.adam)
RATES = (1e-3, 2e-3, 1e30)
STEPS = 3


def _gan(g_rate=1e-3, **kwargs):
  G, D = gj.models.toy_mlp(1, hidden=8, depth=1)
  return gj.GAN(G, D, g_optimizer=ADAM(learning_rate=g_rate, b1=0.5),
                d_optimizer=ADAM(learning_rate=1e-3, b1=0.5), latent_dim=2,
                ema_decay=0.9, **kwargs)


def _batch(seed):
  return toy.gaussian_1d(jax.random.key(seed), 16, 1.0, 0.5)[None]


def _member(pstate, i):
  """Member ``i`` indexed on the host (eager indexing compiles per shape)."""
  return jax.tree.map(lambda x: np.asarray(x)[i], pstate.members)


def _leaves_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _max_diff(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                             strict=True))


@pytest.fixture(scope="module")
def setup():
  gan = _gan()
  keys = jax.random.split(jax.random.key(0), len(RATES))
  singles = []  # (gan, key, state after STEPS steps) of members 0 and 1 alone
  for key, rate in zip(keys[:2], RATES[:2]):
    single = _gan(rate)
    state, step = single.init(key, _batch(1)), jax.jit(single.step)
    for _ in range(STEPS):
      state, _ = step(state, _batch(1))
    singles.append((single, key, state))
  return gan, keys, singles


@pytest.fixture(scope="module", params=["map", "vmap"])
def trained(request, setup):
  gan = setup[0]
  pop = gj.Population(gan, hparams={"g_learning_rate": RATES},
                      member_map=request.param)
  pstate = pop.init(jax.random.key(0), _batch(1))
  first = pstate
  step = jax.jit(pop.step)
  for _ in range(STEPS):
    pstate, metrics = step(pstate, _batch(1))
  return pop, step, first, pstate, metrics


def test_init_gives_member_i_what_gan_init_gives_for_its_key(setup, trained):
  _, keys, singles = setup
  pop, _, first, _, _ = trained
  assert first.members.step.shape == (3,) and first.alive.tolist() == [True] * 3
  np.testing.assert_array_equal(first.hparams["g_learning_rate"],
                                np.float32(RATES))
  assert {"ema_decay", "g_learning_rate", "d_b1"} <= set(
      population_lib.sweepable(pop.gan, first.members))
  for i, (single, key, _) in enumerate(singles):
    assert _leaves_equal(_member(first, i), single.init(key, _batch(1)))


def test_init_of_a_dcgan_is_each_members_init():
  G, D = gj.models.dcgan(image_shape=(8, 8, 1), latent_dim=4, base_features=4)
  gan = gj.GAN(G, D, latent_dim=4)
  keys = jax.random.split(jax.random.key(3), 2)
  pstate = gj.Population(gan, size=2).init(keys, jnp.zeros((2, 8, 8, 1)))
  for i in range(2):
    single = gan.init(keys[i], jnp.zeros((2, 8, 8, 1)))
    assert _leaves_equal(_member(pstate, i), single)
  # 'auto': lax.map over members for convolutions on CPU (ganjax.backend).
  assert jax.default_backend() == "cpu"
  assert gj.Population(gan, size=2)._map(pstate.members) == "map"  # pylint: disable=protected-access


@pytest.mark.xla_default_emitters
def test_seeds_mapped_are_their_single_runs_bit_for_bit():
  G, D = gj.models.toy_mlp(1, hidden=8, depth=1)
  gan = gj.GAN(G, D, latent_dim=2, ema_decay=0.9)  # optax.adam, not injected
  pop = gj.Population(gan, size=2, member_map="map")
  unchecked = gj.Population(gan, size=2, member_map="map",
                            freeze_nonfinite=False)
  keys = jax.random.split(jax.random.key(4), 2)
  pstate = fast = pop.init(keys, _batch(1))
  step, fast_step = jax.jit(pop.step), jax.jit(unchecked.step)
  single_step = jax.jit(gan.step)
  singles = [gan.init(key, _batch(1)) for key in keys]
  for _ in range(STEPS):
    pstate, _ = step(pstate, _batch(1))
    fast, metrics = fast_step(fast, _batch(1))
    singles = [single_step(state, _batch(1))[0] for state in singles]
  # run_steps: each member's steps in a row, in one call
  ran, _ = jax.jit(lambda ps: pop.run_steps(
      ps, lambda step, member: _batch(1), STEPS, STEPS))(pop.init(keys, _batch(1)))
  for i, single in enumerate(singles):
    assert _leaves_equal(_member(pstate, i), single)
    assert _leaves_equal(_member(fast, i), single)
    assert _leaves_equal(_member(ran, i), single)
  assert metrics["alive"].tolist() == [1.0, 1.0]


def test_members_with_their_learning_rates_are_their_single_runs(setup,
                                                                 trained):
  # Against single GANs built with each member's learning rate. Injected
  # hyper-parameters (runtime values in the optax state) compile into a
  # slightly different update inside lax.map than in a single step: Adam's
  # second moment differs in its last bit. 'vmap' batches the members'
  # matrix products, which rounds differently again.
  _, _, singles = setup
  pop, _, _, pstate, metrics = trained
  tolerance = 1e-7 if pop.member_map == "map" else 1e-5
  for i, (_, _, single_state) in enumerate(singles):
    assert _max_diff(_member(pstate, i), single_state) < tolerance
  assert metrics["g_loss"].shape == (3,)
  # 'auto' vmaps MLPs.
  assert gj.Population(pop.gan, size=3)._map(pstate.members) == "vmap"  # pylint: disable=protected-access


def test_a_member_gone_non_finite_is_frozen_and_the_others_go_on(trained):
  pop, step, _, pstate, metrics = trained
  assert pstate.alive.tolist() == [True, True, False]
  np.testing.assert_array_equal(metrics["alive"], [1.0, 1.0, 0.0])
  assert int(pstate.members.step[2]) < STEPS == int(pstate.step)
  frozen = _member(pstate, 2)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(frozen))
  again, metrics = step(pstate, _batch(1))
  assert _leaves_equal(_member(again, 2), frozen)
  assert again.members.step.tolist() == [STEPS + 1, STEPS + 1, frozen.step]
  assert metrics["alive"].tolist() == [1.0, 1.0, 0.0]


def test_members_move_by_their_own_learning_rates(trained):
  # Adam's first update moves every parameter by about its learning rate.
  pop, step, first, _, _ = trained
  pstate, _ = step(first, _batch(1))
  moved = lambda i: np.max(np.abs(
      _member(pstate, i).g_params["Dense_1"]["bias"]
      - _member(first, i).g_params["Dense_1"]["bias"]))
  np.testing.assert_allclose([moved(0), moved(1)], RATES[:2], rtol=1e-3)


def test_run_steps_is_that_many_steps_in_one_call(trained):
  # The many-step call of the runner: with 'map', each member's steps in a
  # row (members outer); with 'vmap', every step over all members.
  pop, _, first, pstate, metrics = trained
  run = jax.jit(lambda ps, n: pop.run_steps(
      ps, lambda step, member: _batch(1), n, STEPS + 1))
  ran, stacked = run(first, STEPS)
  assert ran.alive.tolist() == [True, True, False]
  assert ran.members.step.tolist() == pstate.members.step.tolist()
  assert _max_diff(ran.members, pstate.members) < 1e-6
  assert stacked["g_loss"].shape == (STEPS + 1, 3)
  np.testing.assert_allclose(stacked["g_loss"][STEPS - 1, :2],
                             metrics["g_loss"][:2], rtol=1e-6)
  np.testing.assert_array_equal(stacked["alive"][STEPS - 1], metrics["alive"])
  assert not np.any(stacked["g_loss"][STEPS])  # beyond num_steps: zeros
  frozen = _member(ran, 2)  # frozen at the step it overflowed, as by step
  assert 0 < frozen.step < STEPS and frozen.step == pstate.members.step[2]
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(frozen))


def test_one_batch_per_member(setup):
  gan, keys, singles = setup
  pop = gj.Population(gan, hparams={"g_learning_rate": RATES[:2]},
                      shared_batch=False, member_map="map")
  pstate = pop.init(keys[:2], _batch(1))
  batches = jnp.stack([_batch(5), _batch(1)])
  step = jax.jit(pop.step)
  for _ in range(STEPS):
    pstate, _ = step(pstate, batches)
  assert _max_diff(_member(pstate, 1), singles[1][2]) < 1e-7
  assert not _leaves_equal(_member(pstate, 0), singles[0][2])
  # run_steps draws member i's batch alone (batch_at(step, i))
  ran, _ = jax.jit(lambda ps: pop.run_steps(
      ps, lambda step, member: batches[member], STEPS, STEPS))(
          pop.init(keys[:2], _batch(1)))
  assert _max_diff(ran.members, pstate.members) < 1e-7
  with pytest.raises(ValueError, match=r"one batch per member.*shared_batch"):
    pop.step(pstate, _batch(1))


def test_a_member_computes_the_same_on_any_layout_of_8_devices():
  """8 members on 1 device, and on a (member, batch) mesh of 8 devices: one
  member per device, or every member's batch split over 8: the same
  parameters (batch means over devices are summed in another order: float32
  rounding)."""
  gan = _gan()
  rates = tuple(1e-3 * (1 + i) for i in range(8))
  pop = gj.Population(gan, hparams={"d_learning_rate": rates},
                      shared_batch=False, member_map="vmap")
  keys = jax.random.split(jax.random.key(0), 8)
  batches = jnp.stack([_batch(10 + i) for i in range(8)])
  init = jax.jit(pop.init)
  alone, _ = jax.jit(pop.step)(init(keys, _batch(1)), batches)
  for member_shards in (8, 1):
    mesh = gj.parallel.population_mesh(member_shards)
    step = gj.parallel.population_step(pop, mesh)
    placed, metrics = step(
        gj.parallel.put_population(init(keys, _batch(1)), mesh),
        gj.parallel.put_population_batch(batches, mesh, shared=False))
    kernel = placed.members.d_params["Dense_0"]["kernel"]  # [8, ...]
    assert kernel.sharding.shard_shape(kernel.shape)[0] == 8 // member_shards
    assert metrics["d_loss"].shape == (8,)
    assert _max_diff(alone.members, jax.device_get(placed.members)) < 1e-6
    assert _leaves_equal(alone.hparams, jax.device_get(placed.hparams))
  with pytest.raises(ValueError, match="must divide the 8 devices"):
    gj.parallel.population_mesh(3)
  with pytest.raises(ValueError, match="cannot be split into the mesh's 8"):
    gj.parallel.population_step(gj.Population(gan, size=4),
                                gj.parallel.population_mesh(8))


def test_sample_and_generate_of_one_member_or_all(setup, trained):
  gan = setup[0]
  pop, _, _, pstate, _ = trained
  key, z = jax.random.key(7), jnp.ones((4, 2))

  @jax.jit
  def draw(p):
    return (pop.sample(p, key, 5), pop.sample(p, key, 5, member=1),
            gan.sample(pop.member(p, 1), key, 5), pop.generate(p, z),
            pop.generate(p, z, member=0), gan.generate(pop.member(p, 0), z))

  every, one, alone, generated, first, first_alone = draw(pstate)
  assert every.shape == (3, 5, 1) and generated.shape == (3, 4, 1)
  np.testing.assert_array_equal(one, alone)
  np.testing.assert_allclose(every[1], one, atol=1e-6)
  np.testing.assert_array_equal(first, first_alone)
  np.testing.assert_allclose(generated[0], first, atol=1e-6)


def test_gan_hyper_parameters_are_bound_per_member():
  gan = _gan(penalty=gj.penalties.Lazy(gj.penalties.R1(1.0), every=4),
             instance_noise=gj.penalties.InstanceNoise(0.1))
  names = population_lib.sweepable(gan)
  assert {"ema_decay", "r1_gamma", "instance_noise_std"} <= set(names)
  pop = gj.Population(gan, hparams={"r1_gamma": [0.5, 2.0],
                                    "ema_decay": [0.5, 0.99]})
  bound = pop.bind({"r1_gamma": jnp.float32(2.0), "ema_decay": 0.5})
  assert bound.penalty.every == 4 and bound.penalty.penalty.gamma == 2.0
  assert bound.ema_decay == 0.5 and gan.ema_decay == 0.9  # gan unchanged


def test_refusals_name_the_problem():
  gan = _gan()
  with pytest.raises(ValueError, match=r"'k' is static.*same for all members"):
    gj.Population(gan, hparams={"k": [1, 2]})
  with pytest.raises(ValueError, match=r"'latent_dim' is static"):
    gj.Population(gan, hparams={"latent_dim": [2, 4]})
  with pytest.raises(ValueError, match=r"has 2 values.*3 members"):
    gj.Population(gan, hparams={"g_learning_rate": [1e-3, 2e-3]}, size=3)
  with pytest.raises(ValueError, match=r"unknown hyper-parameter 'r1_gamma'"):
    gj.Population(gan, hparams={"r1_gamma": [1.0, 2.0]})
  with pytest.raises(ValueError, match=r"'g_b1'.*\[0.0, 0.99"):
    gj.Population(gan, hparams={"g_b1": [0.5, 1.5]})
  with pytest.raises(ValueError, match=r"ema_decay"):
    gj.Population(gan, hparams={"ema_decay": [0.5, 1.0]})  # the GAN's check
  with pytest.raises(ValueError, match=r"member_map must be one of"):
    gj.Population(gan, size=2, member_map="pmap")
  with pytest.raises(ValueError, match=r"needs size"):
    gj.Population(gan)
  pop = gj.Population(gan, size=2)
  with pytest.raises(ValueError, match=r"one key or 2 keys"):
    pop.init(jax.random.split(jax.random.key(0), 3), _batch(1))


def test_optimizer_hyper_parameters_need_constant_injected_values():
  plain = dataclasses.replace(_gan(), g_optimizer=optax.adam(1e-3))
  with pytest.raises(ValueError, match=r"'g_learning_rate' needs g_optimizer "
                     r"built with optax.inject_hyperparams"):
    gj.Population(plain, hparams={"g_learning_rate": [1e-3, 2e-3]}).init(
        jax.random.key(0), _batch(1))
  scheduled = dataclasses.replace(_gan(), d_optimizer=ADAM(
      learning_rate=optax.linear_schedule(1e-3, 0.0, 100)))
  with pytest.raises(ValueError, match=r"'d_learning_rate' follows a schedule"):
    gj.Population(scheduled, hparams={"d_learning_rate": [1e-3, 2e-3]}).init(
        jax.random.key(0), _batch(1))


def test_a_population_of_four_seeds_learns():
  # 1-D data N(1, 0.5^2): every member's samples move towards its mean and std.
  G, D = gj.models.toy_mlp(1, hidden=32, depth=2)
  gan = gj.GAN(G, D, g_optimizer=optax.adam(5e-4, b1=0.5),
               d_optimizer=optax.adam(5e-4, b1=0.5), latent_dim=4)
  pop = gj.Population(gan, size=4)
  pstate = pop.init(jax.random.key(0), jnp.zeros((64, 1)))
  error = jax.jit(lambda p: jax.vmap(
      lambda s: jnp.abs(jnp.mean(s) - 1.0) + jnp.abs(jnp.std(s) - 0.5))(
          pop.sample(p, jax.random.key(2), 2000)))
  before = error(pstate)
  run = gj.loops.scan_steps(
      pop.step, lambda key: toy.gaussian_1d(key, 64, 1.0, 0.5)[None], 600)
  pstate, metrics = run(pstate, jax.random.key(1))
  before, after = np.asarray(before), np.asarray(error(pstate))
  print(f"|mean - 1| + |std - 0.5| over 4 seeds: "
        f"{population_lib.mean_std(before)} -> {population_lib.mean_std(after)}")
  assert metrics["alive"].shape == (600, 4) and np.all(metrics["alive"] == 1)
  assert np.all(after < before / 3), (before, after)
