"""Gradient penalties on discriminators whose input gradient is known analytically."""

import jax
import jax.numpy as jnp
import numpy as np

from ganjax import penalties


def _linear_critic(w):
  # D(x) = <w, x>: its input gradient is w everywhere.
  return lambda x: jnp.sum(x.reshape(x.shape[0], -1) * w.ravel(), axis=-1)


def test_gradient_penalty_on_linear_critic_is_closed_form():
  w = jnp.array([[3.0, 4.0]])  # ||w|| = 5
  real = jax.random.normal(jax.random.key(0), (16, 1, 2))
  fake = jax.random.normal(jax.random.key(1), (16, 1, 2))
  alpha = jax.random.uniform(jax.random.key(2), (16,))
  gp = penalties.gradient_penalty(_linear_critic(w), real, fake, alpha)
  np.testing.assert_allclose(gp, (5.0 - 1.0) ** 2, rtol=1e-5)
  r1 = penalties.r1_penalty(_linear_critic(w), real)
  np.testing.assert_allclose(r1, 25.0, rtol=1e-5)


def test_gradient_penalty_weighting_and_per_example_keys():
  w = jnp.array([0.6, 0.8])  # unit norm: the penalty is zero
  keys = jax.random.split(jax.random.key(0), 8)
  x = jnp.ones((8, 2))
  gp = penalties.GradientPenalty(weight=10.0)(_linear_critic(w), x, -x, keys)
  np.testing.assert_allclose(gp, 0.0, atol=1e-5)
  gp = penalties.GradientPenalty(weight=10.0)(_linear_critic(2 * w), x, -x, keys)
  np.testing.assert_allclose(gp, 10.0, rtol=1e-5)
  r1 = penalties.R1(gamma=4.0)(_linear_critic(2 * w), x, -x, keys)
  np.testing.assert_allclose(r1, 0.5 * 4.0 * 4.0, rtol=1e-5)


def test_gradient_penalty_finite_at_zero_gradient():
  # A constant critic has zero input gradient: a naive norm gives NaN gradients.
  params = {"w": jnp.zeros(2), "b": jnp.ones(())}

  def penalty(params):
    d_fn = lambda x: x @ params["w"] + params["b"]
    alpha = jnp.full((4,), 0.5)
    return penalties.gradient_penalty(d_fn, jnp.ones((4, 2)), jnp.zeros((4, 2)),
                                      alpha)

  value, grads = jax.value_and_grad(penalty)(params)
  np.testing.assert_allclose(value, 1.0, atol=1e-5)
  assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))


def test_gradient_penalty_gradient_matches_analytic():
  # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||.
  w = jnp.array([3.0, 4.0])
  alpha = jnp.full((4,), 0.3)
  grad = jax.grad(lambda w: penalties.gradient_penalty(
      _linear_critic(w), jnp.ones((4, 2)), jnp.zeros((4, 2)), alpha))(w)
  np.testing.assert_allclose(grad, 2 * 4.0 * w / 5.0, rtol=1e-5)


def test_instance_noise_anneals_linearly_to_zero():
  noise = penalties.InstanceNoise(std=0.2, anneal_steps=100)
  np.testing.assert_allclose(noise.std_at(0), 0.2)
  np.testing.assert_allclose(noise.std_at(50), 0.1, rtol=1e-6)
  np.testing.assert_allclose(noise.std_at(100), 0.0)
  np.testing.assert_allclose(noise.std_at(1000), 0.0)
  np.testing.assert_allclose(penalties.InstanceNoise(0.3).std_at(10**6), 0.3)
  keys = jax.random.split(jax.random.key(0), 4096)
  x = jnp.zeros((4096, 3))
  noisy = noise(x, keys, step=0)
  np.testing.assert_allclose(jnp.std(noisy), 0.2, rtol=0.05)
  np.testing.assert_array_equal(noise(x, keys, step=100), x)


def test_clip_weights():
  params = {"a": jnp.array([-1.0, 0.005, 2.0]), "b": {"c": jnp.array(0.5)}}
  clipped = penalties.clip_weights(params, 0.01)
  np.testing.assert_allclose(clipped["a"], [-0.01, 0.005, 0.01])
  np.testing.assert_allclose(clipped["b"]["c"], 0.01)
