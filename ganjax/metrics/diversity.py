"""Sample diversity as the mean pairwise LPIPS, over all samples and within each class.

A generator that collapses onto a few images per class can still score a
good FID over all classes (the classes differ, so the features spread); the
mean LPIPS between two samples of the same class exposes it (Zhu et al.
2017's and Huang et al. 2018's diversity score; LPIPS of Zhang et al. 2018).

LPIPS is a squared Euclidean distance between embeddings
(``ganjax.metrics.lpips.lpips_embedding``), so the mean over *all* pairs of
N samples is exact from first and second moments, in O(N) time and O(D)
memory (no sampled pairs)::

    mean_{i != j} ||e_i - e_j||^2 = 2 N / (N - 1) * mean_i ||e_i - mean(e)||^2
"""

import functools
from typing import Any, Mapping

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ganjax.metrics import lpips as lpips_lib


def mean_pairwise_distance(embeddings: chex.Array) -> jax.Array:
  """Mean squared Euclidean distance over all ordered pairs ``i != j``.

  Use on ``lpips_embedding``s for the mean pairwise LPIPS of a small set; for
  many images use ``mean_pairwise_lpips`` (batched, memory-bounded).

  Args:
    embeddings: ``[N, D]``, N >= 2.

  Returns:
    a scalar: ``2 N / (N - 1) * mean_i ||e_i - mean(e)||^2``.
  """
  chex.assert_rank(embeddings, 2)
  n = embeddings.shape[0]
  if n < 2:
    raise ValueError(f"Need at least 2 embeddings for a pairwise mean, got {n}.")
  centred = embeddings - jnp.mean(embeddings, axis=0)
  return 2.0 * n / (n - 1) * jnp.mean(jnp.sum(jnp.square(centred), axis=-1))


def _from_moments(count: float, total: np.ndarray, squares: float) -> float:
  """``mean_{i != j} ||e_i - e_j||^2`` from ``n``, ``sum e`` and ``sum ||e||^2`` (float64)."""
  if count < 2:
    return float("nan")
  mean_sq = squares / count - float(np.sum(np.square(total / count)))
  return float(2.0 * count / (count - 1) * max(mean_sq, 0.0))


@functools.partial(jax.jit, static_argnames=("net", "size", "groups"))
def _moments(variables, images, groups_of, valid, net, size, groups):
  """Per-group ``sum e [G, D]``, ``sum ||e||^2 [G]`` and counts ``[G]`` of one batch."""
  e = lpips_lib.lpips_embedding(variables, images, net, size)
  w = valid.astype(e.dtype)
  total = jax.ops.segment_sum(e * w[:, None], groups_of, num_segments=groups)
  squares = jax.ops.segment_sum(jnp.sum(jnp.square(e), -1) * w, groups_of,
                                num_segments=groups)
  counts = jax.ops.segment_sum(w, groups_of, num_segments=groups)
  return total, squares, counts


def mean_pairwise_lpips(variables: Mapping[str, Any], images: Any,
                        labels: Any = None, *, net: str = "alex",
                        size: int | None = 64, num_classes: int | None = None,
                        batch_size: int = 100) -> dict:
  """Mean LPIPS over all pairs of images, and over the pairs within each class.

  Use as a diversity score of generated samples (higher: more diverse); the
  per-class mean catches intra-class mode collapse in conditional models.

  References: Zhang et al., 2018, https://arxiv.org/abs/1801.03924 (LPIPS);
  Zhu et al., 2017, https://arxiv.org/abs/1711.11586 (mean pairwise LPIPS
  as diversity).

  Args:
    variables: ``ganjax.metrics.lpips.load_lpips``'s variables.
    images: ``[N, H, W, C]``, C in {1, 3}, float in [0, 1]. One-channel
      images are repeated to RGB and every image is resized bilinearly to
      ``size x size`` (64 by default, the patch size LPIPS was calibrated
      on; 28 x 28 or 8 x 8 images are too small for AlexNet's pooling).
    labels: optional int ``[N]`` class of each image.
    net: ``"alex"`` or ``"vgg"``.
    size: side the images are resized to (None: as given).
    num_classes: classes (default ``max(labels) + 1``).
    batch_size: images per compiled call.

  Returns:
    ``{"all": float, "per_class": {c: float}, "mean_per_class": float}``
    (the last two only with labels; classes with fewer than 2 images are left
    out of the mean, and are NaN in ``per_class``).
  """
  images = np.asarray(images, np.float32)
  chex.assert_rank(images, 4)
  n = images.shape[0]
  if n < 2:
    raise ValueError(f"Need at least 2 images, got {n}.")
  if labels is None:
    groups_of, groups = np.zeros(n, np.int32), 1
  else:
    groups_of = np.asarray(labels).astype(np.int32).reshape(-1)
    if groups_of.shape[0] != n:
      raise ValueError(f"Got {groups_of.shape[0]} labels for {n} images.")
    groups = int(num_classes or int(groups_of.max()) + 1)
    if groups_of.min() < 0 or groups_of.max() >= groups:
      raise ValueError(f"Labels must lie in [0, {groups}).")
  b = min(batch_size, n)
  total = squares = counts = None
  for start in range(0, n, b):
    batch, g = images[start:start + b], groups_of[start:start + b]
    valid = np.ones(b, bool)
    if batch.shape[0] < b:  # pad the last batch: one compiled shape
      pad = b - batch.shape[0]
      valid[b - pad:] = False
      batch = np.concatenate([batch, np.zeros((pad,) + batch.shape[1:],
                                              batch.dtype)])
      g = np.concatenate([g, np.zeros(pad, np.int32)])
    t, s, c = (np.asarray(a, np.float64) for a in _moments(
        variables, jnp.asarray(batch), jnp.asarray(g), jnp.asarray(valid),
        net, size, groups))
    total, squares, counts = ((t, s, c) if total is None else
                              (total + t, squares + s, counts + c))
  out = {"all": _from_moments(counts.sum(), total.sum(0), squares.sum())}
  if labels is not None:
    per_class = {c: _from_moments(counts[c], total[c], squares[c])
                 for c in range(groups) if counts[c] > 0}
    finite = [v for v in per_class.values() if np.isfinite(v)]
    out["per_class"] = per_class
    out["mean_per_class"] = float(np.mean(finite)) if finite else float("nan")
  return out
