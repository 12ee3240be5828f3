"""Proposition 1 and Theorem 1 of Goodfellow et al. (2014), checked numerically.

A discriminator trained by ``GAN.step`` against a fixed generator
(``p_g = N(-0.5, 0.8^2)``) on ``p_data = N(0.5, 0.6^2)`` approaches
``D* = p_data / (p_data + p_g)`` (Proposition 1), and the value of the game
at that discriminator approaches ``-log 4 + 2 JSD(p_data || p_g)`` (Theorem 1).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax.data import toy
from tests.helpers import optimised

DATA_MEAN, DATA_STD = 0.5, 0.6
GEN_MEAN, GEN_STD = -0.5, 0.8
GRID = np.linspace(-6.0, 6.0, 6001)


class FixedGaussianGenerator(nn.Module):
  """x = mean + std * z: a generator with no parameters and density N(mean, std^2)."""
  mean: float
  std: float

  def __call__(self, z, train=True):
    return self.mean + self.std * z


def _normal_pdf(x, mean, std):
  return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))


def _densities():
  return _normal_pdf(GRID, DATA_MEAN, DATA_STD), _normal_pdf(GRID, GEN_MEAN, GEN_STD)


def _integrate(values):
  return np.trapezoid(values, GRID)


def _value(d, p_data, p_g):
  """V(D, G) = E_data[log D(x)] + E_g[log(1 - D(x))], by quadrature."""
  d = np.clip(d, 1e-12, 1 - 1e-12)
  return _integrate(p_data * np.log(d) + p_g * np.log1p(-d))


def _jsd(p, q):
  m = 0.5 * (p + q)
  kl = lambda a, b: _integrate(np.where(a > 0, a * np.log(a / b), 0.0))
  return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def test_value_at_optimal_discriminator_is_minus_log4_plus_2jsd():
  p_data, p_g = _densities()
  d_star = p_data / (p_data + p_g)
  np.testing.assert_allclose(_value(d_star, p_data, p_g),
                             -np.log(4.0) + 2.0 * _jsd(p_data, p_g), atol=1e-7)
  # C(G) reaches its minimum -log 4 only at p_g = p_data (D* = 1/2).
  np.testing.assert_allclose(_value(np.full_like(GRID, 0.5), p_data, p_data),
                             -np.log(4.0), atol=1e-6)


@pytest.fixture(scope="module")
def trained_discriminator():
  generator = FixedGaussianGenerator(GEN_MEAN, GEN_STD)
  discriminator = gj.models.MLPDiscriminator(hidden=(64, 64))
  gan = gj.GAN(generator, discriminator, loss="minimax",
               g_optimizer=optax.set_to_zero(), d_optimizer=optax.adam(3e-3),
               k=1, latent_dim=1)
  batch_size = 1024
  state = gan.init(jax.random.key(0), jnp.zeros((batch_size, 1)))
  run = gj.loops.scan_steps(
      gan.step,
      lambda key: toy.gaussian_1d(key, batch_size, DATA_MEAN, DATA_STD)[None],
      num_steps=1000)
  run = optimised(run, state, jax.random.key(1))  # 2000 steps
  for _ in range(2):
    state, _ = run(state, jax.random.key(1))
  logits = discriminator.apply({"params": state.d_params},
                               jnp.asarray(GRID, jnp.float32)[:, None], train=False)
  return np.asarray(jax.nn.sigmoid(logits), np.float64)


def test_trained_discriminator_approaches_proposition_1(trained_discriminator):
  p_data, p_g = _densities()
  d_star = p_data / (p_data + p_g)
  mass = 0.5 * (p_data + p_g)  # where the discriminator is trained
  weighted_error = _integrate(mass * np.abs(trained_discriminator - d_star))
  assert weighted_error < 0.025, weighted_error
  central = np.abs(GRID) < 1.5
  assert np.max(np.abs(trained_discriminator - d_star)[central]) < 0.05


def test_value_at_trained_discriminator_approaches_theorem_1(trained_discriminator):
  p_data, p_g = _densities()
  c_of_g = -np.log(4.0) + 2.0 * _jsd(p_data, p_g)
  value = _value(trained_discriminator, p_data, p_g)
  assert value <= c_of_g + 1e-6  # D* maximises V(D, G)
  np.testing.assert_allclose(value, c_of_g, atol=0.005)
