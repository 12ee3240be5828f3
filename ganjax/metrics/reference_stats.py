"""Features and Gaussian statistics of real data, cached per (data set, split, feature network).

Computing the real side of FID / KID / precision-recall costs as much as the
generated side; it never changes, so it is computed once and cached in
``<cache_dir>/reference/``. The key hashes the data set, the split, the number
of images, the feature network's name and its weights' sha256, and a format
version: new weights or another split never reuse stale statistics. Files are
written atomically (temporary file, then ``os.replace``).
"""

import hashlib
import json
import os
import re

import numpy as np

from ganjax import cache as cache_lib
from ganjax.metrics import real_data
from ganjax.metrics.features import FeatureNetwork

FORMAT_VERSION = 1


def reference_key(dataset, split: str, num: int | None,
                  network: FeatureNetwork) -> str:
  """sha256 of everything the reference statistics depend on (a data set
  object: its name and fingerprint, which covers its files and transform)."""
  spec = {"dataset": real_data.name(dataset), "split": split, "num": num,
          "network": network.name, "weights_sha256": network.fingerprint,
          "format": FORMAT_VERSION}
  if not isinstance(dataset, str):
    spec["fingerprint"] = dataset.fingerprint
  return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def reference_path(dataset, split: str, num: int | None,
                   network: FeatureNetwork, cache_dir: str | None = None) -> str:
  key = reference_key(dataset, split, num, network)
  safe_split = re.sub(r"[^\w-]", "_", split)
  return os.path.join(cache_lib.cache_dir(cache_dir), "reference",
                      f"{real_data.name(dataset)}-{safe_split}-{network.name}-"
                      f"{key[:16]}.npz")


def reference_statistics(dataset, network: FeatureNetwork,
                         split: str = "test", num: int | None = None,
                         cache_dir: str | None = None,
                         data_dir: str | None = None) -> dict:
  """Features, class probabilities, mean and covariance of a real split.

  Args:
    dataset: what ``ganjax.metrics.real_data.load_split`` reads (a name or a
      data set object).
    network: the feature network.
    split: the split (``"test"``, ``"train[50000:]"``, ...).
    num: use the first ``num`` images of the split (all when None).
    cache_dir: cache root (``$GANJAX_CACHE_DIR`` or ``~/.cache/ganjax``).
    data_dir: TFDS data dir.

  Returns:
    ``{"features": [N, d] float32, "probs": [N, K] float32, "labels": [N],
    "mu": [d] float64, "sigma": [d, d] float64, "path": cache file}``.
  """
  path = reference_path(dataset, split, num, network, cache_dir)
  if os.path.isfile(path):
    try:
      with np.load(path, allow_pickle=False) as data:
        stats = {k: data[k] for k in data.files}
      stats["path"] = path
      return stats
    except (OSError, ValueError):  # unreadable: recompute and overwrite
      pass
  images, labels = real_data.load_split(dataset, split, data_dir)
  if num is not None:
    images, labels = images[:num], labels[:num]
  features, probs = network(images)
  f64 = features.astype(np.float64)
  stats = {"features": features, "probs": probs, "labels": labels,
           "mu": f64.mean(axis=0), "sigma": np.cov(f64, rowvar=False)}
  cache_lib.atomic_save_npz(path, stats)
  stats["path"] = path
  return stats
