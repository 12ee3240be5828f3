"""Scores from a classifier's softmax: the Inception Score and class coverage."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ganjax.metrics._blocks import compute_dtype


def _xlogy_ratio(p: jax.Array, q: jax.Array) -> jax.Array:
  """``p * (log p - log q)`` with ``0 log 0 = 0``."""
  safe_p = jnp.where(p > 0, p, 1.0)
  safe_q = jnp.where(q > 0, q, 1.0)
  return jnp.where(p > 0, p * (jnp.log(safe_p) - jnp.log(safe_q)), 0.0)


def inception_score(probs: chex.Array, num_splits: int = 10) -> dict:
  """``exp(E_x KL(p(y|x) || p(y)))`` over splits: the Inception Score of any classifier.

  Use with InceptionV3's 1008-way softmax for the classic Inception Score,
  or with a classifier trained on the data set at hand (then say which: the
  number only compares between runs scored by the same classifier).

  References: Salimans et al., 2016, "Improved Techniques for Training
  GANs", https://arxiv.org/abs/1606.03498 (10 splits, ``p(y)`` the mean
  softmax of each split).

  Args:
    probs: ``[N, K]`` class probabilities of N samples (rows sum to 1).
    num_splits: contiguous splits ``[i N / s, (i + 1) N / s)``, as in the
      reference code.

  Returns:
    ``{"mean": scalar, "std": scalar}`` over splits (std with ``ddof=0``).
  """
  chex.assert_rank(probs, 2)
  n = probs.shape[0]
  if not 1 <= num_splits <= n:
    raise ValueError(f"num_splits must be in [1, {n}], got {num_splits}.")
  split_of = np.searchsorted(
      np.arange(1, num_splits) * n // num_splits, np.arange(n), side="right")
  dtype = compute_dtype(probs)
  mean, std = _split_scores(jnp.asarray(probs, dtype), jnp.asarray(split_of),
                            num_splits)
  return {"mean": mean, "std": std}


@functools.partial(jax.jit, static_argnums=2)
def _split_scores(p, split_of, num_splits):
  counts = jax.ops.segment_sum(jnp.ones_like(p[:, 0]), split_of, num_splits)
  marginals = jax.ops.segment_sum(p, split_of, num_splits) / counts[:, None]
  kl = jnp.sum(_xlogy_ratio(p, marginals[split_of]), axis=1)
  mean_kl = jax.ops.segment_sum(kl, split_of, num_splits) / counts
  scores = jnp.exp(mean_kl)
  return jnp.mean(scores), jnp.std(scores)


def class_coverage(probs: chex.Array, threshold: float = 0.01) -> dict:
  """How evenly a classifier spreads samples over classes: a mode-collapse score.

  Use on a data set's classifier (``ganjax.metrics.classifier``): a collapsed
  generator puts its samples in few classes.

  References: the classifier-based mode counts of Che et al., 2017, "Mode
  Regularized GANs", https://arxiv.org/abs/1612.02136, and Srivastava et
  al., 2017 (VEEGAN), https://arxiv.org/abs/1705.07761 (KL of the predicted
  class histogram to the uniform one).

  Args:
    probs: ``[N, K]`` class probabilities; each sample counts for its argmax.
    threshold: a class is covered when it receives at least this fraction
      of the samples (1%).

  Returns:
    ``{"classes_covered": int, "num_classes": int, "kl_to_uniform": scalar
    (nats, 0 for a uniform histogram, log K for a single class),
    "histogram": [K] fractions}``.
  """
  chex.assert_rank(probs, 2)
  histogram, kl, covered = _class_histogram(jnp.asarray(probs), threshold)
  return {"classes_covered": int(covered),
          "num_classes": int(probs.shape[1]),
          "kl_to_uniform": kl,
          "histogram": histogram}


@jax.jit
def _class_histogram(probs, threshold):
  """``(histogram [K], KL(histogram || uniform), classes >= threshold)`` of
  the argmax classes."""
  num_classes = probs.shape[1]
  predicted = jnp.argmax(probs, axis=1)
  histogram = jnp.bincount(predicted, length=num_classes) / probs.shape[0]
  kl = jnp.sum(_xlogy_ratio(histogram, jnp.full_like(histogram,
                                                     1.0 / num_classes)))
  return histogram, kl, jnp.sum(histogram >= threshold)
