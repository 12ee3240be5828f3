"""Metrics of class-conditional samples: per-class accuracy and intra-FID.

A conditional generator is asked for class ``y`` and should deliver an image
of class ``y`` (accuracy of a classifier trained on real data; real test
images give the ceiling) that is as varied as the real images of ``y``
(intra-FID: the Frechet distance computed within each class, then averaged;
Miyato & Koyama 2018, Table 1).
"""

from typing import Any

import chex
import numpy as np

from ganjax.metrics.frechet import frechet_distance, gaussian_statistics


def check_labels(labels: Any, num: int, num_classes: int) -> np.ndarray:
  """Validates labels of ``num`` samples: int ``[num]`` in ``[0, num_classes)``.

  Raises:
    ValueError: naming the problem and the fix.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.shape[0] != num:
    raise ValueError(f"Labels must have shape [{num}] (one class per sample), "
                     f"got {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"Labels must be integers, got dtype {labels.dtype}.")
  if num and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"Labels must lie in [0, {num_classes}), got values in "
                     f"[{labels.min()}, {labels.max()}].")
  return labels.astype(np.int64)


def class_accuracy(probs: chex.Array, labels: chex.Array) -> dict:
  """Accuracy of a classifier on the samples requested for each class.

  Use on conditional samples with the softmax of a classifier trained on the
  real data (``ganjax.metrics.classifier``): the fraction of samples of each
  requested class that it assigns to that class, averaged over classes (so
  unequal class counts do not weight the mean).

  References: Odena et al., 2017, https://arxiv.org/abs/1610.09585
  (classification accuracy of conditional samples); Shmelkov et al., 2018,
  https://arxiv.org/abs/1807.09499.

  Args:
    probs: ``[N, K]`` class probabilities (or logits: only the argmax counts).
    labels: int ``[N]``, the requested classes.

  Returns:
    ``{"mean": float, "min": float, "per_class": {c: float}}`` over the
    classes present in ``labels``.
  """
  probs, labels = np.asarray(probs), np.asarray(labels)
  chex.assert_rank([probs, labels], [2, 1])
  chex.assert_equal_shape_prefix([probs, labels], 1)
  correct = np.argmax(probs, axis=-1) == labels
  per_class = {int(c): float(correct[labels == c].mean())
               for c in np.unique(labels)}
  values = list(per_class.values())
  return {"mean": float(np.mean(values)), "min": float(np.min(values)),
          "per_class": per_class}


def class_gaussians(features: chex.Array, labels: chex.Array) -> dict:
  """``{c: (mu [d], sigma [d, d])}`` of the features of each class (>= 2 examples each).

  Raises:
    ValueError: a class with fewer than 2 examples.
  """
  features, labels = np.asarray(features), np.asarray(labels)
  out = {}
  for c in np.unique(labels):
    rows = features[labels == c]
    if rows.shape[0] < 2:
      raise ValueError(
          f"Class {int(c)} has {rows.shape[0]} sample(s); intra-FID needs at "
          "least 2 per class (draw labels covering every class equally, e.g. "
          "labels = arange(num) % num_classes).")
    out[int(c)] = gaussian_statistics(rows)
  return out


def intra_fid(reference: dict, features: chex.Array, labels: chex.Array
              ) -> dict:
  """Mean over classes of the Frechet distance between real and generated features of that class.

  Use for conditional generators: FID over all classes is blind to a
  generator that puts one good image in each class; intra-FID is not.

  References: Miyato & Koyama, 2018, "cGANs with Projection
  Discriminator", https://arxiv.org/abs/1802.05637 (intra-FID);
  Heusel et al., 2017, https://arxiv.org/abs/1706.08500 (FID).

  Args:
    reference: ``class_gaussians`` of the real features, every requested
      class included.
    features: ``[N, d]`` features of the samples.
    labels: int ``[N]``, their requested classes (>= 2 samples per class).

  Returns:
    ``{"mean": float, "per_class": {c: float}}`` over the classes in
    ``labels``.
  """
  generated = class_gaussians(features, labels)
  missing = sorted(set(generated) - set(reference))
  if missing:
    raise ValueError(f"Classes {missing} have no real reference images.")
  per_class = {}
  for c, (mu, sigma) in generated.items():
    ref_mu, ref_sigma = reference[c]
    per_class[c] = float(frechet_distance(
        np.asarray(ref_mu, np.float32), np.asarray(ref_sigma, np.float32),
        mu, sigma))
  return {"mean": float(np.mean(list(per_class.values()))),
          "per_class": per_class}
