"""A small CNN classifier per data set: the feature network for MNIST-like data.

InceptionV3 features mean little on 28 x 28 grayscale clothes or 8 x 8
digits. For those data sets the project trains its own classifier once (a
minute or two on two CPU cores), caches it, and uses its penultimate layer
(128-d, after ReLU) as features for FID / KID / precision-recall and its
softmax for the Inception-Score-style score and class coverage. Metrics
computed with it carry the protocol in their name
(``fid10k_fashion_mnist_cnn``): they compare between runs scored with the
same classifier (its weights' sha256 is recorded with the cache), never with
published Inception FIDs.

A user's labelled images (a data set object, ``ganjax.data.folder.ImageFolder``)
get their own classifier the same way: trained on their ``train`` split
(less every tenth image, held out to measure it, when there is no ``test``
split) for at least ``MIN_STEPS`` steps, keyed by the images' fingerprint.

Cache layout: ``<cache_dir>/classifiers/<dataset>_cnn_v1/params.msgpack``
(``<name>-<fingerprint>_cnn_v1`` for a data set object) and ``info.json``
beside it (test accuracy, training time, steps, seed, the
weights' sha256). ``cache_dir``: argument, ``$GANJAX_CACHE_DIR`` or
``~/.cache/ganjax``.
"""

import hashlib
import json
import math
import os
import sys
import time
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ganjax import cache as cache_lib
from ganjax.metrics import real_data

ARCH_VERSION = "cnn_v1"

# (epochs, batch size) per data set; others default to DEFAULT_SCHEDULE.
SCHEDULES = {"digits": (10, 64), "fashion_mnist": (2, 128), "mnist": (2, 128)}
DEFAULT_SCHEDULE = (2, 128)
# A data set object trains for at least this many steps (more epochs when small).
MIN_STEPS = 500


class Conv3x3(nn.Module):
  """3x3 convolution, stride 1, zero 'SAME' padding, as nine shifted slices
  and one matmul (im2col).

  Same function and parameters (``kernel [3, 3, C_in, C_out]``, ``bias``) as
  ``nn.Conv(features, (3, 3))``; written this way because XLA:CPU's
  convolution gradients are slow on small images (measured ~13x slower for
  this classifier's training step), and the classifier trains on CPU.
  """
  features: int

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, c, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate(
        [padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], -1)
    return patches @ kernel.reshape(9 * c, self.features) + bias


def _max_pool_2x2(x):
  """2x2 max pool, stride 2, by reshape (an odd side is zero-padded; inputs
  are post-ReLU, so zeros never win over real values)."""
  b, h, w, c = x.shape
  x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
  return x.reshape(b, (h + 1) // 2, 2, (w + 1) // 2, 2, c).max(axis=(2, 4))


class CNNClassifier(nn.Module):
  """conv3x3(32)-maxpool-conv3x3(64)-maxpool-dense(128)-dense(classes), ReLUs.

  ``__call__(images [B, H, W, C] in [0, 1]) -> (logits [B, classes],
  features [B, 128])``; the features are the penultimate layer, after ReLU.
  """
  num_classes: int = 10
  feature_dim: int = 128

  @nn.compact
  def __call__(self, x):
    x = jnp.asarray(x, jnp.float32) - 0.5
    x = _max_pool_2x2(nn.relu(Conv3x3(32, name="conv1")(x)))
    x = _max_pool_2x2(nn.relu(Conv3x3(64, name="conv2")(x)))
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(nn.Dense(self.feature_dim, name="dense")(x))
    logits = nn.Dense(self.num_classes, name="logits")(features)
    return logits, features


def classifier_dir(dataset, cache_dir: str | None = None) -> str:
  key = (dataset if isinstance(dataset, str)
         else f"{dataset.name}-{dataset.fingerprint[:16]}")
  return os.path.join(cache_lib.cache_dir(cache_dir), "classifiers",
                      f"{key}_{ARCH_VERSION}")


def _train_test(dataset, data_dir):
  """The classifier's training and held-out data, ``((x, y), (x, y))``."""
  if not isinstance(dataset, str) and dataset.num_classes() is None:
    raise ValueError(
        f"{real_data.name(dataset)} has no class labels, so no classifier can "
        "be trained on it for the 'cnn' metrics: give it label folders, or "
        "use the 'inception' network (docs/inception_weights.md).")
  if isinstance(dataset, str) or "test" in dataset.splits():
    return (real_data.load_split(dataset, "train", data_dir),
            real_data.load_split(dataset, "test", data_dir))
  images, labels = real_data.load_split(dataset, "train", data_dir)
  held_out = np.arange(len(images)) % 10 == 9
  return ((images[~held_out], labels[~held_out]),
          (images[held_out], labels[held_out]))


def _accuracy(model, params, images, labels, batch=1000) -> float:
  apply = jax.jit(lambda p, x: jnp.argmax(model.apply({"params": p}, x)[0], -1))
  correct = 0
  for i in range(0, len(images), batch):
    correct += int(np.sum(np.asarray(apply(params, images[i:i + batch]))
                          == labels[i:i + batch]))
  return correct / len(images)


def train_classifier(dataset, epochs: int | None = None,
                     batch_size: int | None = None, seed: int = 0,
                     learning_rate: float = 1e-3,
                     data_dir: str | None = None) -> tuple[Any, dict]:
  """Trains ``CNNClassifier`` on a data set's train split (Adam, cross-entropy).

  Args:
    dataset: ``"digits"``, ``"fashion_mnist"``, ``"mnist"``, ..., or a
      labelled data set object.
    epochs, batch_size: default ``SCHEDULES[dataset]`` (data set objects:
      ``DEFAULT_SCHEDULE``, with the epochs of ``MIN_STEPS`` steps if more).
    seed: initialisation and shuffling seed.
    learning_rate: Adam's step size.
    data_dir: TFDS data dir, for data sets read through TFDS.

  Returns:
    ``(params, info)``; info has ``test_accuracy``, ``train_seconds``,
    ``steps`` and the settings.
  """
  default_epochs, default_batch = SCHEDULES.get(real_data.name(dataset),
                                                DEFAULT_SCHEDULE)
  batch_size = batch_size or default_batch
  (images, labels), (test_images, test_labels) = _train_test(dataset,
                                                             data_dir)
  if not isinstance(dataset, str):
    batch_size = min(batch_size, len(images))
    default_epochs = max(default_epochs, math.ceil(
        MIN_STEPS / (len(images) // batch_size)))
  epochs = epochs or default_epochs
  num_classes = int(max(labels.max(), test_labels.max()) + 1)
  model = CNNClassifier(num_classes=num_classes)
  start = time.time()
  params = model.init(jax.random.key(seed), images[:1])["params"]
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)
  steps_per_epoch = len(images) // batch_size
  images_d, labels_d = jnp.asarray(images), jnp.asarray(labels)

  def loss_fn(p, x, y):
    logits, _ = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def epoch(p, o, order):
    def step(carry, idx):
      p, o = carry
      loss, grads = jax.value_and_grad(loss_fn)(p, images_d[idx], labels_d[idx])
      updates, o = tx.update(grads, o, p)
      return (optax.apply_updates(p, updates), o), loss

    (p, o), losses = jax.lax.scan(step, (p, o), order)
    return p, o, losses.mean()

  rng = np.random.default_rng(seed)
  for _ in range(epochs):
    order = rng.permutation(len(images))[:steps_per_epoch * batch_size]
    params, opt_state, _ = epoch(params, opt_state,
                                 order.reshape(steps_per_epoch, batch_size))
  jax.block_until_ready(params)
  train_seconds = time.time() - start
  info = {
      "dataset": real_data.name(dataset), "architecture": ARCH_VERSION,
      "num_classes": num_classes, "feature_dim": model.feature_dim,
      "test_accuracy": _accuracy(model, params, test_images, test_labels),
      "num_test": int(len(test_images)), "train_seconds": round(train_seconds, 2),
      "epochs": epochs, "batch_size": batch_size,
      "steps": epochs * steps_per_epoch, "seed": seed,
      "learning_rate": learning_rate, "jax_version": jax.__version__,
      "backend": jax.default_backend(),
  }
  return params, info


def load_or_train(dataset, cache_dir: str | None = None,
                  data_dir: str | None = None, verbose: bool = True
                  ) -> tuple[CNNClassifier, Any, dict]:
  """The data set's cached classifier, trained and cached first if absent.

  Returns:
    ``(model, params, info)``; ``info["weights_sha256"]`` fingerprints the
    weights (it keys the reference statistics).
  """
  folder = classifier_dir(dataset, cache_dir)
  params_path = os.path.join(folder, "params.msgpack")
  info_path = os.path.join(folder, "info.json")
  if os.path.isfile(params_path) and os.path.isfile(info_path):
    with open(info_path) as f:
      info = json.load(f)
    with open(params_path, "rb") as f:
      raw = f.read()
    model = CNNClassifier(num_classes=info["num_classes"],
                          feature_dim=info["feature_dim"])
    if hashlib.sha256(raw).hexdigest() == info.get("weights_sha256"):
      params = flax.serialization.msgpack_restore(raw)
      return model, jax.tree.map(jnp.asarray, params), info
    # A mismatch means a torn or foreign file: retrain below.
  if verbose:
    print(f"[ganjax.metrics] training the {real_data.name(dataset)} CNN "
          "classifier for the "
          f"metrics (cached in {folder}) ...", file=sys.stderr, flush=True)
  params, info = train_classifier(dataset, data_dir=data_dir)
  raw = flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params))
  info["weights_sha256"] = hashlib.sha256(raw).hexdigest()
  cache_lib.atomic_write_bytes(params_path, raw)
  cache_lib.atomic_write_json(info_path, info)
  if verbose:
    print(f"[ganjax.metrics] {real_data.name(dataset)} classifier: test accuracy "
          f"{info['test_accuracy']:.4f}, trained in {info['train_seconds']} s.",
          file=sys.stderr, flush=True)
  model = CNNClassifier(num_classes=info["num_classes"],
                        feature_dim=info["feature_dim"])
  return model, params, info
