"""The paper's MLPs, seed 002's small MLP and the toy MLPs: shapes and structure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ganjax as gj


def _init(G, D, data_shape, latent_dim):
  z = jnp.zeros((3, latent_dim))
  g_vars = G.init(jax.random.key(0), z)
  x = G.apply(g_vars, z)
  d_vars = D.init(jax.random.key(1), x, train=False)
  return g_vars, d_vars, x


@pytest.mark.parametrize("shape", [(28, 28, 1), (8, 8, 1), (32, 32, 3)])
def test_goodfellow_mlp_architecture(shape):
  G, D = gj.models.goodfellow_mlp(shape, latent_dim=100)
  g_vars, d_vars, x = _init(G, D, shape, 100)
  assert x.shape == (3,) + shape
  assert jnp.all((x >= 0) & (x <= 1))  # sigmoid output
  g = g_vars["params"]
  assert g["Dense_0"]["kernel"].shape == (100, 1200)
  assert g["Dense_1"]["kernel"].shape == (1200, 1200)
  assert g["Dense_2"]["kernel"].shape == (1200, int(np.prod(shape)))
  d = d_vars["params"]
  # Two maxout layers of 240 units x 5 pieces, then one logit.
  assert d["Maxout_0"]["Dense_0"]["kernel"].shape == (int(np.prod(shape)), 1200)
  assert d["Maxout_1"]["Dense_0"]["kernel"].shape == (240, 1200)
  assert d["Dense_0"]["kernel"].shape == (240, 1)
  assert D.apply(d_vars, x, train=False).shape == (3,)


def test_goodfellow_discriminator_dropout_uses_the_rng():
  _, D = gj.models.goodfellow_mlp((8, 8, 1))
  x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
  variables = D.init(jax.random.key(1), x, train=False)
  a = D.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  b = D.apply(variables, x, train=True, rngs={"dropout": jax.random.key(3)})
  c = D.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(a, c)
  np.testing.assert_array_equal(D.apply(variables, x, train=False),
                                D.apply(variables, x, train=False))


def test_small_mlp_is_100_128_784():
  G, D = gj.models.small_mlp((28, 28, 1), latent_dim=100)
  g_vars, d_vars, x = _init(G, D, (28, 28, 1), 100)
  assert g_vars["params"]["Dense_0"]["kernel"].shape == (100, 128)
  assert g_vars["params"]["Dense_1"]["kernel"].shape == (128, 784)
  assert d_vars["params"]["Dense_0"]["kernel"].shape == (784, 128)
  assert d_vars["params"]["Dense_1"]["kernel"].shape == (128, 1)


def test_toy_mlp_is_unbounded():
  G, D = gj.models.toy_mlp(2, hidden=16, depth=2)
  g_vars, d_vars, x = _init(G, D, (2,), 4)
  assert x.shape == (3, 2)
  z = 100.0 * jnp.ones((1, 4))
  assert jnp.max(jnp.abs(G.apply(g_vars, z))) > 1.0  # linear output


def test_unknown_output_activation():
  G = gj.models.MLPGenerator((2,), output_activation="softplus")
  with pytest.raises(ValueError, match="output activation 'softplus'"):
    G.init(jax.random.key(0), jnp.zeros((1, 2)))
