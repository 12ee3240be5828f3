"""Population-based training: exploit (copy the best) and explore (perturb).

The population here is built by hand (no model is compiled): eight members
whose every leaf says which member it came from.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj

N = 8
SCORES = jnp.asarray([5.0, 1.0, 7.0, 3.0, 2.0, 8.0, 4.0, 6.0])  # FID-like
BEST, WORST = [1, 4], [5, 2]  # fraction 0.25 of 8: two each


def _population(alive=None):
  adam = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
  member = lambda i: gj.GANState(
      step=jnp.int32(10), g_params={"w": jnp.full((3,), i, jnp.float32)},
      d_params={"w": jnp.full((2,), -i, jnp.float32)}, g_batch_stats={},
      d_batch_stats={}, g_opt_state=adam.init({"w": jnp.full((3,), i * 1.0)}),
      d_opt_state=adam.init({"w": jnp.zeros((2,))}),
      rng=jnp.asarray([0, i], jnp.uint32),
      ema_g_params={"w": jnp.full((3,), i + 0.5, jnp.float32)},
      augment_p=jnp.float32(i / 10))
  members = jax.tree.map(lambda *xs: jnp.stack(xs), *map(member, range(N)))
  rates = jnp.linspace(1e-4, 8e-4, N, dtype=jnp.float32)
  hparams = {"g_learning_rate": rates, "ema_decay": jnp.full((N,), 0.999)}
  members = gj.population.set_optimizer_hparams(members, hparams)
  return gj.PopulationState(
      members=members, hparams=hparams,
      alive=jnp.ones((N,), bool) if alive is None else jnp.asarray(alive))


EXPLOIT = jax.jit(lambda key, pstate, scores: gj.pbt.exploit_explore(
    key, pstate, scores, fraction=0.25, perturb=(0.8, 1.2),
    bounds={"g_learning_rate": (1e-4, 7e-4)}))


def test_the_worst_copy_the_best_and_keep_their_rng_and_step():
  old = _population()
  new, parents = EXPLOIT(jax.random.key(0), old, SCORES)
  parents = np.asarray(parents)
  assert set(parents[WORST]) <= set(BEST)
  keep = [i for i in range(N) if i not in WORST]
  np.testing.assert_array_equal(parents[keep], keep)
  for i in range(N):
    p = parents[i]
    for leaf in ("g_params", "d_params", "ema_g_params"):
      np.testing.assert_array_equal(getattr(new.members, leaf)["w"][i],
                                    getattr(old.members, leaf)["w"][p])
    np.testing.assert_array_equal(new.members.g_opt_state.inner_state[0].mu["w"][i],
                                  old.members.g_opt_state.inner_state[0].mu["w"][p])
    assert new.members.augment_p[i] == old.members.augment_p[p]
  np.testing.assert_array_equal(new.members.rng, old.members.rng)
  np.testing.assert_array_equal(new.members.step, old.members.step)


def test_copied_hyper_parameters_are_perturbed_within_bounds():
  old = _population()
  new, parents = EXPLOIT(jax.random.key(1), old, SCORES)
  rates = np.asarray(new.hparams["g_learning_rate"])
  old_rates = np.asarray(old.hparams["g_learning_rate"])
  for i in WORST:
    allowed = np.clip(old_rates[parents[i]] * np.float32([0.8, 1.2]), 1e-4,
                      7e-4)
    assert np.any(np.isclose(rates[i], allowed, rtol=1e-6)), (rates[i], allowed)
    # the optimizer reads the member's new rate
    assert new.members.g_opt_state.hyperparams["learning_rate"][i] == rates[i]
    # ema_decay 0.999 * 1.2 is clipped below 1 (ganjax.population.value_range)
    assert new.hparams["ema_decay"][i] < 1.0
  keep = [i for i in range(N) if i not in WORST]
  np.testing.assert_array_equal(rates[keep], old_rates[keep])
  np.testing.assert_array_equal(np.asarray(new.hparams["ema_decay"])[keep],
                                np.float32(0.999))


def test_deterministic_for_a_key_and_higher_is_better():
  old = _population()
  a, pa = EXPLOIT(jax.random.key(2), old, SCORES)
  b, pb = EXPLOIT(jax.random.key(2), old, SCORES)
  np.testing.assert_array_equal(pa, pb)
  assert all(np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  _, parents = jax.jit(lambda k, p, s: gj.pbt.exploit_explore(
      k, p, s, higher_is_better=True))(jax.random.key(2), old, SCORES)
  assert set(np.asarray(parents)[[1, 4]]) <= {5, 2}


def test_frozen_members_and_nan_scores_count_as_the_worst():
  alive = [True] * N
  alive[1] = False  # the best score, but frozen
  old = _population(alive)
  scores = SCORES.at[3].set(jnp.nan)
  new, parents = EXPLOIT(jax.random.key(3), old, scores)
  parents = np.asarray(parents)
  assert parents[1] != 1 and parents[3] != 3
  assert set(parents[[1, 3]]) <= {4, 6}  # the two best live members
  assert bool(np.all(new.alive))


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match=r"fraction must be in \(0, 0.5\]"):
    gj.pbt.exploit_explore(jax.random.key(0), _population(), SCORES,
                           fraction=0.75)
  with pytest.raises(ValueError, match=r"scores must be \[N=8\]"):
    gj.pbt.exploit_explore(jax.random.key(0), _population(), SCORES[:4])
