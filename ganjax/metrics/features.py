"""Feature networks for the sample-quality metrics: images in, (features, class probabilities) out.

A ``FeatureNetwork`` runs a jitted network over images in fixed-size batches
(the last one padded, so it compiles once), and carries what a metric's
protocol must state: a short name used in metric names (``cnn``,
``inception``), and the sha256 of its weights, which keys cached reference
statistics.

* ``cnn_network(dataset)``: the data set's own classifier
  (``ganjax.metrics.classifier``), 128-d features, 10-way softmax.
* ``inception_network(weights)``: pytorch-fid's FID InceptionV3
  (``ganjax.metrics.inception``), 2048-d pool features, 1008-way softmax.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def as_unit_images(images: Any) -> np.ndarray:
  """``[N, H, W]`` or ``[N, H, W, C]``, uint8 (0..255) or float in [0, 1] -> float32 ``[N, H, W, C]``."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  return images.astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureNetwork:
  """A jitted feature network with its protocol.

  Attributes:
    name: the protocol tag in metric names (``"cnn"``, ``"inception"``).
    apply: ``(variables, images [B, H, W, C] float32 in [0, 1]) -> (features
      [B, d], probs [B, K])``, jitted.
    variables: the network's variables.
    fingerprint: sha256 of the weights.
    info: facts for the protocol (accuracy, source file, ...).
    batch_size: images per call.
  """
  name: str
  apply: Callable
  variables: Any
  fingerprint: str
  info: dict
  batch_size: int = 500

  def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[N, d]`` and probabilities ``[N, K]`` (numpy float32) of images ``[N, H, W(, C)]``."""
    images = as_unit_images(images)
    n = images.shape[0]
    b = min(self.batch_size, max(n, 1))
    feats, probs = [], []
    for start in range(0, n, b):
      batch = images[start:start + b]
      valid = batch.shape[0]
      if valid < b:  # pad the last batch: one compiled shape
        batch = np.concatenate(
            [batch, np.zeros((b - valid,) + batch.shape[1:], batch.dtype)])
      f, p = self.apply(self.variables, jnp.asarray(batch))
      feats.append(np.asarray(f)[:valid])
      probs.append(np.asarray(p)[:valid])
    return np.concatenate(feats), np.concatenate(probs)


def cnn_network(dataset, cache_dir: str | None = None,
                data_dir: str | None = None, batch_size: int = 1000,
                verbose: bool = True) -> FeatureNetwork:
  """The data set's cached CNN classifier (trained on first use) as a feature network."""
  from ganjax.metrics import classifier  # pylint: disable=g-import-not-at-top
  from ganjax.metrics import real_data  # pylint: disable=g-import-not-at-top
  model, params, info = classifier.load_or_train(dataset, cache_dir, data_dir,
                                                 verbose=verbose)

  @jax.jit
  def apply(variables, images):
    logits, features = model.apply(variables, images)
    return features, jax.nn.softmax(logits, axis=-1)

  return FeatureNetwork(
      name="cnn", apply=apply, variables={"params": params},
      fingerprint=info["weights_sha256"],
      info={"network": f"ganjax {classifier.ARCH_VERSION} classifier of "
                       f"{real_data.name(dataset)}, penultimate layer ({info['feature_dim']}-d)",
            "test_accuracy": info["test_accuracy"],
            "weights_sha256": info["weights_sha256"]},
      batch_size=batch_size)


def inception_network(weights: str | None = None, batch_size: int = 100
                      ) -> FeatureNetwork:
  """pytorch-fid's FID InceptionV3 from a local weights file (``$GANJAX_INCEPTION_WEIGHTS``)."""
  from ganjax.metrics import inception  # pylint: disable=g-import-not-at-top
  path = inception.weights_path(weights)
  module, variables, digest = inception.load_inception(path)

  @jax.jit
  def apply(variables, images):
    out = module.apply(variables, images)
    return out["pool"], jax.nn.softmax(out["logits"], axis=-1)

  return FeatureNetwork(
      name="inception", apply=apply, variables=variables, fingerprint=digest,
      info={"network": "FID InceptionV3 (pytorch-fid port of the 2015 "
                       "TensorFlow graph), 2048-d pool, bilinear resize to 299",
            "weights": path, "weights_sha256": digest},
      batch_size=batch_size)
