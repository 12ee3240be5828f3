"""Extending the step: composed and lazy penalties, callable losses, loss terms."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj


def _gan(**kwargs):
  G, D = gj.models.small_mlp((4, 4, 1), hidden=8)
  kwargs.setdefault("g_optimizer", optax.sgd(0.1))
  kwargs.setdefault("d_optimizer", optax.sgd(0.1))
  return gj.GAN(G, D, latent_dim=4, **kwargs)


_BATCH = jax.random.uniform(jax.random.key(1), (1, 8, 4, 4, 1))


def _state(gan):
  return gan.init(jax.random.key(0), _BATCH[0])


def test_lazy_penalty_is_every_times_the_penalty_on_its_updates_only():
  lazy = _gan(penalty=gj.penalties.Lazy(gj.penalties.R1(1.0), every=2))
  strong = _gan(penalty=gj.penalties.R1(2.0))
  plain = _gan(penalty=None)
  state, lazy_step = _state(lazy), jax.jit(lazy.step)
  # Update 0 (step 0, k = 1): 2 x R1, with its gradient.
  got, got_metrics = lazy_step(state, _BATCH)
  want, want_metrics = jax.jit(strong.step)(state, _BATCH)
  chex.assert_trees_all_close(got.d_params, want.d_params, atol=1e-6)
  np.testing.assert_allclose(got_metrics["d_penalty"],
                             want_metrics["d_penalty"], rtol=1e-5)
  assert float(got_metrics["d_penalty"]) > 0
  # Update 1: nothing at all.
  got, got_metrics = lazy_step(want, _BATCH)
  without, _ = jax.jit(plain.step)(want, _BATCH)
  chex.assert_trees_all_close(got.d_params, without.d_params, atol=1e-7)
  assert float(got_metrics["d_penalty"]) == 0.0


def test_penalties_compose_as_their_sum_with_metrics_named_after_them():
  r1, gp = gj.penalties.R1(1.0), gj.penalties.GradientPenalty(1.0)
  state = _state(_gan())
  _, both = jax.jit(_gan(penalty=[r1, gp]).step)(state, _BATCH)
  _, only_r1 = jax.jit(_gan(penalty=r1).step)(state, _BATCH)
  np.testing.assert_allclose(both["d_penalty_r1"], only_r1["d_penalty"],
                             rtol=1e-5)
  np.testing.assert_allclose(only_r1["d_penalty_r1"], only_r1["d_penalty"])
  np.testing.assert_allclose(
      both["d_penalty"], both["d_penalty_r1"] + both["d_penalty_gradient_penalty"],
      rtol=1e-6)
  assert float(both["d_penalty_gradient_penalty"]) > 0
  # Two of a kind are numbered after the first.
  assert gj.penalties.metric_names([r1, r1, gj.penalties.Lazy(gp)]) == [
      "d_penalty_r1", "d_penalty_r1_1", "d_penalty_gradient_penalty"]
  with pytest.raises(ValueError, match="Each penalty must be a callable"):
    _gan(penalty=[r1, 3.0])


def test_penalty_classes_are_refused_at_construction():
  for penalty in (gj.penalties.R1, [gj.penalties.GradientPenalty],
                  gj.penalties.Lazy(gj.penalties.R1)):
    with pytest.raises(ValueError, match=r"got the class .*R1\(\)|"
                       r"got the class .*GradientPenalty\(\)"):
      _gan(penalty=penalty)
  with pytest.raises(ValueError, match="loss_terms.*FeatureMatching()"):
    _gan(loss_terms=[gj.terms.FeatureMatching])


def test_a_lazy_penalty_is_reported_per_application_over_k_updates():
  """k = 2, every 2: applied in update 0 of each step; its metric is that
  update's value, not the mean with the update it skips."""
  lazy = gj.penalties.Lazy(gj.penalties.R1(1.0), every=2)
  batch = jnp.concatenate([_BATCH, _BATCH])
  gan = _gan(penalty=lazy, k=2, d_optimizer=optax.sgd(0.0))
  _, metrics = jax.jit(gan.step)(_state(gan), batch)
  _, once = jax.jit(_gan(penalty=gj.penalties.R1(2.0), d_optimizer=optax.sgd(
      0.0)).step)(_state(gan), _BATCH)
  np.testing.assert_allclose(metrics["d_penalty_r1"], once["d_penalty"],
                             rtol=1e-5)
  np.testing.assert_allclose(metrics["d_penalty"], once["d_penalty"] / 2,
                             rtol=1e-5)


class _UnhashableLoss:
  """A loss object with state, as research code writes them: not hashable."""
  __hash__ = None

  def __init__(self):
    self.calls = []

  def __eq__(self, other):
    return self is other

  def __call__(self, real_logits, fake_logits):
    self.calls.append(real_logits.shape)
    return gj.losses.non_saturating(real_logits, fake_logits)


def test_callable_losses_keep_their_metrics_and_need_not_be_hashable():
  state = _state(_gan())
  _, by_name = jax.jit(_gan(loss="non_saturating").step)(state, _BATCH)
  _, by_function = jax.jit(_gan(loss=gj.losses.non_saturating).step)(
      state, _BATCH)
  chex.assert_trees_all_close(by_name, by_function)
  assert "d_real" in by_function and "d_fake" in by_function
  loss = _UnhashableLoss()
  _, metrics = jax.jit(_gan(loss=loss).step, donate_argnums=0)(
      _state(_gan()), _BATCH)
  assert loss.calls and "d_real" not in metrics  # unknown: no probabilities
  chex.assert_trees_all_close(
      metrics, {k: v for k, v in by_name.items() if k not in ("d_real", "d_fake")})


def test_feature_matching_matches_its_formula_and_changes_only_g():
  out = gj.terms.UpdateOutputs(
      step=jnp.zeros((), jnp.int32), real_logits=jnp.zeros(2),
      fake_logits=jnp.zeros(2), real_aux={"features": jnp.array([[1., 2.],
                                                                 [3., 4.]])},
      fake_aux={"features": jnp.array([[0., 0.], [2., 2.]])},
      real_labels=None, fake_labels=None)
  term = gj.terms.FeatureMatching(weight=0.5)
  # means (2, 3) and (1, 1): 0.5 * (1 + 4)
  np.testing.assert_allclose(term("generator", out)["feature_matching"], 2.5)
  assert term("discriminator", out) == {}

  G, D = gj.models.small_mlp((4, 4, 1), hidden=8, return_features=True)
  matched = gj.GAN(G, D, latent_dim=4, g_optimizer=optax.sgd(0.1),
                   d_optimizer=optax.sgd(0.1),
                   loss_terms=[gj.terms.FeatureMatching()])
  plain = gj.GAN(G, D, latent_dim=4, g_optimizer=optax.sgd(0.1),
                 d_optimizer=optax.sgd(0.1))
  state = matched.init(jax.random.key(0), _BATCH[0])
  got, metrics = jax.jit(matched.step)(state, _BATCH)
  want, want_metrics = jax.jit(plain.step)(state, _BATCH)
  chex.assert_trees_all_close(got.d_params, want.d_params)
  assert float(metrics["g_feature_matching"]) > 0
  np.testing.assert_allclose(metrics["g_loss"], want_metrics["g_loss"],
                             rtol=1e-6)
  assert not np.allclose(got.g_params["Dense_0"]["kernel"],
                         want.g_params["Dense_0"]["kernel"])


def test_a_user_term_sees_the_update_and_adds_to_the_loss():
  seen = {}

  def logit_penalty(player, out):
    """A user's regulariser: the squared logits of real data, for D only."""
    seen[player] = (out.real_logits.shape, out.fake_labels)
    if player == "generator":
      return {}
    return {"logit_l2": 0.1 * jnp.mean(out.real_logits ** 2)}

  state = _state(_gan())
  _, metrics = jax.jit(_gan(loss_terms=[logit_penalty]).step)(state, _BATCH)
  assert seen == {"discriminator": ((8,), None), "generator": ((8,), None)}
  assert float(metrics["d_logit_l2"]) >= 0 and "g_logit_l2" not in metrics
