"""Gaussian Parzen-window log-likelihood: the evaluation of the GAN paper's Table 1.

Protocol (Goodfellow et al., 2014, Section 5, after Breuleux et al., 2011):
fit a Gaussian Parzen window (an isotropic kernel density estimate) on
10,000 generated samples, flattened, pixels in [0, 1]; choose the bandwidth
sigma by maximising the mean log-likelihood of a validation set over a grid
(``logspace(-1, 0, 10)`` in the paper's code; here the grid is then refined
around the best value); report the mean log-likelihood of the test set, in
nats, with its standard error ``std / sqrt(n)``. The paper reports MNIST
225 +- 2 and TFD 2057 +- 26 for its adversarial nets.

The estimate is known to be poor in high dimension (Theis et al., 2016, "A
note on the evaluation of generative models", https://arxiv.org/abs/1511.01844):
report it for comparison with the paper, not as a measure of quality.

    log p(x) = logsumexp_i(-|x - mu_i|^2 / (2 sigma^2)) - log n - d log(sigma sqrt(2 pi))

Computation: for blocks of test points against blocks of kernel centres, the
squared distances come from one matmul per block pair; a running, rescaled
log-sum-exp over the centre blocks (``lax.scan``) keeps it exact and stable;
all candidate sigmas are scored in the same pass, since the distances do not
depend on sigma. Memory is ``O(num_sigmas * block_x * block_c)``.
"""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ganjax.metrics._blocks import block_size, compute_dtype, pad_rows, squared_distances

PAPER_SIGMA_GRID = tuple(np.logspace(-1, 0, 10))


@functools.partial(jax.jit, static_argnames=("num_centers", "block_c"))
def _log_sum_exp_kernels(x_blocks, centers, sigmas, num_centers, block_c):
  """``[S, num_x_blocks * block_x]``: logsumexp_i(-|x - mu_i|^2 / (2 s^2))."""
  c_sq = jnp.sum(centers * centers, axis=1)
  valid = jnp.arange(centers.shape[0]) < num_centers
  cols = (centers.reshape(-1, block_c, centers.shape[1]),
          c_sq.reshape(-1, block_c), valid.reshape(-1, block_c))
  neg_inv_two_var = -0.5 / (sigmas * sigmas)  # [S]

  def x_block(xb):
    xb_sq = jnp.sum(xb * xb, axis=1)

    def body(carry, col):
      running_max, running_sum = carry  # [S, bx] each
      cb, cb_sq, cvalid = col
      d2 = squared_distances(xb, xb_sq, cb, cb_sq)  # [bx, bc]
      e = d2[None] * neg_inv_two_var[:, None, None]  # [S, bx, bc]
      e = jnp.where(cvalid[None, None, :], e, -jnp.inf)
      new_max = jnp.maximum(running_max, jnp.max(e, axis=-1))
      # exp(-inf - finite) = 0 on the first block; every block holds at least
      # one real centre, so new_max is finite from the first block on.
      running_sum = (running_sum * jnp.exp(running_max - new_max)
                     + jnp.sum(jnp.exp(e - new_max[..., None]), axis=-1))
      return (new_max, running_sum), None

    shape = (sigmas.shape[0], xb.shape[0])
    init = (jnp.full(shape, -jnp.inf, xb.dtype), jnp.zeros(shape, xb.dtype))
    (m, s), _ = jax.lax.scan(body, init, cols)
    return m + jnp.log(s)

  out = jax.lax.map(x_block, x_blocks)  # [num_x_blocks, S, bx]
  return jnp.transpose(out, (1, 0, 2)).reshape(sigmas.shape[0], -1)


def parzen_log_likelihood(x: chex.Array, centers: chex.Array, sigma,
                          block_x: int = 1000, block_c: int = 1000) -> jax.Array:
  """Log-density of points under a Gaussian Parzen window, in nats.

  Use to score data under a set of generated samples (the kernel centres);
  ``parzen_window_evaluation`` adds the paper's choice of sigma.

  References: Parzen, 1962, "On Estimation of a Probability Density Function
  and Mode", https://doi.org/10.1214/aoms/1177704472; Goodfellow et al.,
  2014, https://arxiv.org/abs/1406.2661.

  Args:
    x: ``[N, d]`` points to score (or ``[N, ...]``, flattened).
    centers: ``[M, d]`` kernel centres (or ``[M, ...]``, flattened).
    sigma: a bandwidth (scalar) or ``[S]`` bandwidths scored together.
    block_x, block_c: points and centres per block (memory
      ``~4 S block_x block_c`` bytes).

  Returns:
    ``[N]`` log-likelihoods for a scalar sigma, ``[S, N]`` for ``[S]``.
  """
  x = np.reshape(np.asarray(x), (x.shape[0], -1))
  centers = np.reshape(np.asarray(centers), (centers.shape[0], -1))
  chex.assert_equal_shape_suffix([x, centers], 1)
  dtype = compute_dtype(x, centers)
  sigma_arr = np.asarray(sigma, dtype)
  n, m = x.shape[0], centers.shape[0]
  if m < 1 or n < 1:
    raise ValueError(f"Need at least one point and one centre, got {n} and {m}.")
  ll = _parzen_log_likelihood(jnp.asarray(x, dtype), jnp.asarray(centers, dtype),
                              jnp.asarray(np.atleast_1d(sigma_arr)),
                              block_size(n, block_x), block_size(m, block_c))
  return ll[0] if sigma_arr.ndim == 0 else ll


@functools.partial(jax.jit, static_argnums=(3, 4))
def _parzen_log_likelihood(x, centers, sigmas, bx, bc):
  """``[S, N]`` log-likelihoods of ``x [N, d]``: one program per call."""
  n, m, d = x.shape[0], centers.shape[0], x.shape[1]
  # Centring on the centres' mean keeps |x|^2 + |mu|^2 - 2 x.mu accurate.
  shift = jnp.mean(centers, axis=0)
  xp, _ = pad_rows(x - shift, bx)
  cp, _ = pad_rows(centers - shift, bc)
  lse = _log_sum_exp_kernels(xp.reshape(-1, bx, d), cp, sigmas, m, bc)[:, :n]
  log_norm = math.log(m) + d * (jnp.log(sigmas) + 0.5 * math.log(2 * math.pi))
  return lse - log_norm[:, None]


def select_sigma(centers: chex.Array, validation: chex.Array,
                 grid=PAPER_SIGMA_GRID, refine_rounds: int = 2,
                 refine_points: int = 9, block_x: int = 1000,
                 block_c: int = 1000) -> dict:
  """Chooses the Parzen bandwidth that maximises the validation log-likelihood.

  Use before ``parzen_log_likelihood`` on the test set. Scores every sigma of
  ``grid`` in one pass, then ``refine_rounds`` times a log-spaced grid of
  ``refine_points`` between the neighbours of the best value so far.

  Args:
    centers: ``[M, d]`` kernel centres (the generated samples).
    validation: ``[N, d]`` held-out real data.
    grid: the first grid (the paper's ``logspace(-1, 0, 10)``).
    refine_rounds: rounds of refinement around the best sigma.
    refine_points: sigmas per refinement round.
    block_x, block_c: block sizes, as in ``parzen_log_likelihood``.

  Returns:
    ``{"sigma": float, "validation_ll": float (mean, nats), "sigmas": [S]
    every sigma tried, "validation_lls": [S] their mean log-likelihoods}``.
  """
  tried_sigmas, tried_lls = [], []

  def score(sigmas):
    lls = parzen_log_likelihood(validation, centers, np.asarray(sigmas),
                                block_x, block_c)
    means = np.asarray(lls, np.float64).mean(axis=1)
    tried_sigmas.extend(float(s) for s in sigmas)
    tried_lls.extend(float(v) for v in means)
    return means

  current = np.sort(np.asarray(grid, np.float64))
  means = score(current)
  for _ in range(refine_rounds):
    best = int(np.nanargmax(means))
    lo = current[max(best - 1, 0)]
    hi = current[min(best + 1, len(current) - 1)]
    if best == 0:  # the best is at an edge: look one step beyond it too
      lo = current[0] ** 2 / current[1] if len(current) > 1 else lo / 2
    if best == len(current) - 1:
      hi = current[-1] ** 2 / current[-2] if len(current) > 1 else hi * 2
    current = np.logspace(np.log10(lo), np.log10(hi), refine_points)
    means = score(current)
  best = int(np.nanargmax(tried_lls))
  return {"sigma": tried_sigmas[best], "validation_ll": tried_lls[best],
          "sigmas": np.asarray(tried_sigmas), "validation_lls": np.asarray(tried_lls)}


def parzen_window_evaluation(samples: chex.Array, validation: chex.Array,
                             test: chex.Array, sigma: float | None = None,
                             **select_kwargs) -> dict:
  """The GAN paper's Parzen-window evaluation: sigma on validation, mean test log-likelihood.

  Use to compare with Table 1 of Goodfellow et al. (2014): 10,000 generated
  samples as ``samples``, pixels in [0, 1], the data set's validation and
  test splits (MNIST 225 +- 2 nats there).

  References: Goodfellow et al., 2014, https://arxiv.org/abs/1406.2661;
  Breuleux, Bengio & Vincent, 2011, "Quickly generating representative
  samples from an RBM-derived process", https://doi.org/10.1162/NECO_a_00158.

  Args:
    samples: ``[M, ...]`` generated samples, the kernel centres.
    validation: ``[Nv, ...]`` real data for choosing sigma (ignored when
      ``sigma`` is given).
    test: ``[Nt, ...]`` real test data.
    sigma: a fixed bandwidth, skipping the selection.
    **select_kwargs: passed to ``select_sigma`` (grid, refine_rounds, ...).

  Returns:
    ``{"mean": float (nats), "stderr": float (std / sqrt(Nt)), "sigma":
    float, "validation_ll": float or None}``.
  """
  validation_ll = None
  block_kwargs = {k: v for k, v in select_kwargs.items()
                  if k in ("block_x", "block_c")}
  if sigma is None:
    selection = select_sigma(samples, validation, **select_kwargs)
    sigma, validation_ll = selection["sigma"], selection["validation_ll"]
  ll = np.asarray(parzen_log_likelihood(test, samples, sigma, **block_kwargs),
                  np.float64)
  return {"mean": float(ll.mean()),
          "stderr": float(ll.std() / np.sqrt(ll.shape[0])),
          "sigma": float(sigma), "validation_ll": validation_ll}
