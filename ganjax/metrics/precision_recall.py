"""Precision and recall, density and coverage: k-nearest-neighbour manifolds in feature space.

Each set's manifold is the union of balls around its points, of radius the
distance to the point's k-th nearest neighbour in the same set. Precision is
the fraction of generated points inside the real manifold (quality); recall
the fraction of real points inside the generated manifold (diversity).
Density and coverage use the real balls only (Naeem et al. 2020): density
counts how many real balls hold each generated point, coverage is the
fraction of real balls that hold a generated point. Recall's generated balls
grow around outliers (an isolated sample's k-th neighbour is far away), so a
few bad samples can cover much of the real set; coverage has no generated
balls and does not reward them.

Distances are computed in blocks of rows and columns (``block`` points at a
time), so memory is ``O(block^2)`` whatever the number of points. The real
balls depend on the real set only: when one real set is scored against many
generated sets, compute its radii once with ``knn_radii`` and pass them as
``real_radii``.
"""

import functools
from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp

from ganjax.metrics._blocks import block_size, compute_dtype, pad_rows, squared_distances


@functools.partial(jax.jit, static_argnames=("n", "ks", "block"))
def _kth_neighbours_sq(x, n, ks, block):
  """``[rows, len(ks)]``: squared distance of each of the first n rows of x
  to its k-th nearest neighbour among them (itself excluded), for each k in
  ks, from one pass over the pairs."""
  x_sq = jnp.sum(x * x, axis=1)
  valid = jnp.arange(x.shape[0]) < n
  cols = (x.reshape(-1, block, x.shape[1]), x_sq.reshape(-1, block),
          valid.reshape(-1, block))
  keep = max(ks) + 1  # the point itself is its own 0-th neighbour

  def row_block(args):
    xb, xb_sq = args

    def body(best, col):
      cb, cb_sq, cvalid = col
      d2 = jnp.where(cvalid[None, :], squared_distances(xb, xb_sq, cb, cb_sq),
                     jnp.inf)
      merged = jnp.concatenate([best, d2], axis=1)
      return -jax.lax.top_k(-merged, keep)[0], None

    init = jnp.full((xb.shape[0], keep), jnp.inf, x.dtype)
    best, _ = jax.lax.scan(body, init, cols)
    return best[:, list(ks)]

  rows = (x.reshape(-1, block, x.shape[1]), x_sq.reshape(-1, block))
  return jax.lax.map(row_block, rows).reshape(-1, len(ks))


@functools.partial(jax.jit, static_argnames=("num_query", "block"))
def _ball_counts(query, ref, ref_radius_sq, num_query, block):
  """For the balls around the reference rows (squared radii; -1 for padded
  rows): ``([Q] how many balls hold each query row, [R] whether each ball
  holds one of the first num_query query rows)``."""
  ref_sq = jnp.sum(ref * ref, axis=1)
  cols = (ref.reshape(-1, block, ref.shape[1]), ref_sq.reshape(-1, block),
          ref_radius_sq.reshape(-1, block))
  valid = (jnp.arange(query.shape[0]) < num_query).reshape(-1, block)

  def row_block(args):
    qb, qvalid = args
    qb_sq = jnp.sum(qb * qb, axis=1)

    def body(_, col):
      cb, cb_sq, radius = col
      d2 = squared_distances(qb, qb_sq, cb, cb_sq)
      inside = (d2 <= radius[None, :]) & qvalid[:, None]
      return None, (jnp.sum(inside, axis=1), jnp.any(inside, axis=0))

    _, (counts, held) = jax.lax.scan(body, None, cols)
    return jnp.sum(counts, axis=0), held.reshape(-1)

  counts, held = jax.lax.map(
      row_block, (query.reshape(-1, block, query.shape[1]), valid))
  return counts.reshape(-1), jnp.any(held, axis=0)


def _radii_sq(x_padded, n, k, block, radii=None):
  """Squared k-NN radii of the first n rows, -1 for the padded rows (a ball
  nothing is inside); from ``radii [n]`` when given."""
  if radii is None:
    r2 = _kth_neighbours_sq(x_padded, n, (k,), block)[:, 0]
  else:
    r2, _ = pad_rows(jnp.square(radii.astype(x_padded.dtype)), block)
  return jnp.where(jnp.arange(x_padded.shape[0]) < n, r2, -1.0)


def knn_radii(features: chex.Array, k: int | Sequence[int] = 3,
              block: int = 1024) -> jax.Array:
  """Distance of each point to its k-th nearest neighbour in the same set.

  ``[N, d] -> [N]``, or ``[N, len(k)]`` for a sequence of k (one pass for
  all of them). Of the real features, it is ``real_radii`` for
  ``precision_recall`` (k = 3) and ``density_coverage`` (k = 5).
  """
  chex.assert_rank(features, 2)
  ks = (k,) if isinstance(k, int) else tuple(k)
  n = features.shape[0]
  if n <= max(ks):
    raise ValueError(f"k-NN radii need more than k={max(ks)} points, got {n}.")
  radii = _knn_radii(jnp.asarray(features, compute_dtype(features)), ks,
                     block_size(n, block))
  return radii[:, 0] if isinstance(k, int) else radii


@functools.partial(jax.jit, static_argnums=(1, 2))
def _knn_radii(x, ks, block):
  n = x.shape[0]
  # Centred as precision_recall and density_coverage centre the real set.
  x, _ = pad_rows(x - jnp.mean(x, axis=0), block)
  return jnp.sqrt(_kth_neighbours_sq(x, n, ks, block)[:n])


def _checked_radii(radii, n: int, dtype, name: str = "real"):
  if radii is None:
    return None
  if jnp.shape(radii) != (n,):
    raise ValueError(f"{name}_radii must have shape ({n},), one radius per "
                     f"{name} point (knn_radii({name}_features, k)), got "
                     f"{jnp.shape(radii)}.")
  return jnp.asarray(radii, dtype)


def precision_recall(real_features: chex.Array, fake_features: chex.Array,
                     k: int = 3, block: int = 1024,
                     real_radii: chex.Array | None = None) -> dict:
  """Improved precision and recall of generated features against real ones.

  Use to separate sample quality (precision) from coverage of the data
  (recall), which FID mixes into one number.

  References: Kynkaanniemi et al., 2019, "Improved Precision and Recall
  Metric for Assessing Generative Models", https://arxiv.org/abs/1904.06991
  (k = 3; 50k real and 50k generated points in the paper).

  Args:
    real_features: ``[N, d]``.
    fake_features: ``[M, d]``.
    k: the neighbour that sets each ball's radius.
    block: points per block of the distance computations.
    real_radii: ``[N]``, ``knn_radii(real_features, k)`` when already
      computed (None: computed here).

  Returns:
    ``{"precision": scalar, "recall": scalar}``, fractions in [0, 1].
  """
  chex.assert_rank([real_features, fake_features], 2)
  chex.assert_equal_shape_suffix([real_features, fake_features], 1)
  n, m = real_features.shape[0], fake_features.shape[0]
  for name, count in (("real", n), ("generated", m)):
    if count <= k:
      raise ValueError(f"precision_recall needs more than k={k} {name} "
                       f"points, got {count}.")
  dtype = compute_dtype(real_features, fake_features)
  precision, recall = _precision_recall(
      jnp.asarray(real_features, dtype), jnp.asarray(fake_features, dtype),
      _checked_radii(real_radii, n, dtype), k, block_size(n, block),
      block_size(m, block))
  return {"precision": precision, "recall": recall}


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _precision_recall(real, fake, real_radii, k, b_real, b_fake):
  """``(precision, recall)``: one program, so that a call compiles once."""
  # Centre both sets on the real mean: smaller norms, less cancellation in
  # |x|^2 + |y|^2 - 2 x.y.
  shift = jnp.mean(real, axis=0)
  real, fake = real - shift, fake - shift
  return (jnp.mean(_in_manifold(real, fake, k, b_real, real_radii)),
          jnp.mean(_in_manifold(fake, real, k, b_fake)))


def _in_manifold(ref, query, k, block, ref_radii=None):
  """``[Q]`` bool: is each query row inside some ref row's k-NN ball?"""
  n, q = ref.shape[0], query.shape[0]
  ref_p, _ = pad_rows(ref, block)
  # Queries are padded to the block size of the balls they are tested against.
  query_p, _ = pad_rows(query, block)
  counts, _ = _ball_counts(query_p, ref_p,
                           _radii_sq(ref_p, n, k, block, ref_radii), q, block)
  return counts[:q] > 0


def in_manifold(reference_features: chex.Array, query_features: chex.Array,
                k: int = 3, block: int = 1024,
                reference_radii: chex.Array | None = None) -> jax.Array:
  """Whether each query point lies in the reference set's k-NN manifold, ``[Q]`` bool.

  Precision is its mean for generated queries against real references,
  recall for real queries against generated references; use it to pick out
  the samples that precision counts (or those it does not).

  Args:
    reference_features: ``[N, d]``, N > k: the balls, of radius each
      point's distance to its k-th nearest reference neighbour.
    query_features: ``[Q, d]``.
    k: the neighbour that sets each ball's radius.
    block: points per block of the distance computations.
    reference_radii: ``[N]``, ``knn_radii(reference_features, k)`` when
      already computed (e.g. once for many query sets); None computes them.
  """
  chex.assert_rank([reference_features, query_features], 2)
  chex.assert_equal_shape_suffix([reference_features, query_features], 1)
  n = reference_features.shape[0]
  if n <= k:
    raise ValueError(f"in_manifold needs more than k={k} reference points, "
                     f"got {n}.")
  dtype = compute_dtype(reference_features, query_features)
  ref = jnp.asarray(reference_features, dtype)
  radii = _checked_radii(reference_radii, n, dtype, "reference")
  return _in_manifold_jit(ref, jnp.asarray(query_features, dtype), radii, k,
                          block_size(n, block))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _in_manifold_jit(ref, query, ref_radii, k, block):
  shift = jnp.mean(ref, axis=0)
  return _in_manifold(ref - shift, query - shift, k, block, ref_radii)


def density_coverage(real_features: chex.Array, fake_features: chex.Array,
                     k: int = 5, block: int = 1024,
                     real_radii: chex.Array | None = None) -> dict:
  """Density and coverage of generated features against real ones.

  Use beside precision and recall when the generated set may hold outliers:
  both are computed from balls around the real points only (radius: the
  distance to the k-th nearest real neighbour), so a stray sample cannot
  inflate them the way it inflates recall.

  References: Naeem et al., 2020, "Reliable Fidelity and Diversity Metrics
  for Generative Models", https://arxiv.org/abs/2002.09797 (k = 5).

  Args:
    real_features: ``[N, d]``.
    fake_features: ``[M, d]``.
    k: the neighbour that sets each real ball's radius.
    block: points per block of the distance computations.
    real_radii: ``[N]``, ``knn_radii(real_features, k)`` when already
      computed (None: computed here).

  Returns:
    ``{"density": scalar, "coverage": scalar}``: density is
    ``sum_j #{real balls holding fake j} / (k M)`` (about 1 when the two sets
    come from one distribution, unbounded above), coverage the fraction of
    real balls holding at least one generated point, in [0, 1].
  """
  chex.assert_rank([real_features, fake_features], 2)
  chex.assert_equal_shape_suffix([real_features, fake_features], 1)
  n, m = real_features.shape[0], fake_features.shape[0]
  if n <= k or m < 1:
    raise ValueError(f"density_coverage needs more than k={k} real points "
                     f"and a generated one, got {n} and {m}.")
  dtype = compute_dtype(real_features, fake_features)
  density, coverage = _density_coverage(
      jnp.asarray(real_features, dtype), jnp.asarray(fake_features, dtype),
      _checked_radii(real_radii, n, dtype), k, block_size(n, block))
  return {"density": density, "coverage": coverage}


@functools.partial(jax.jit, static_argnums=(3, 4))
def _density_coverage(real, fake, real_radii, k, b_real):
  shift = jnp.mean(real, axis=0)
  real, fake = real - shift, fake - shift
  n, m = real.shape[0], fake.shape[0]
  real_p, _ = pad_rows(real, b_real)
  real_r2 = _radii_sq(real_p, n, k, b_real, real_radii)
  fake_q, _ = pad_rows(fake, b_real)
  counts, held = _ball_counts(fake_q, real_p, real_r2, m, b_real)
  return jnp.sum(counts) / (k * m), jnp.mean(held[:n])
