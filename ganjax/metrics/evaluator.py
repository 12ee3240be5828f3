"""All sample-quality metrics of a data set in one call, with their protocol in their names.

    ev = ganjax.metrics.Evaluator("fashion_mnist", num=10_000)
    metrics = ev(samples)    # samples [N, 28, 28(, 1)], float in [0, 1] or uint8
    # {"fid10k_fashion_mnist_cnn": ..., "kid10k_fashion_mnist_cnn": ...,
    #  "parzen_ll10k_fashion_mnist": ..., ...}
    ev.protocol(10_000)      # {metric name: how it was computed}

    # Class-conditional samples: pass the class each sample was drawn for.
    metrics = ev(samples, labels=labels)   # labels int [N]
    # adds {"class_accuracy10k_fashion_mnist_cnn": ...,
    #       "min_class_accuracy10k_fashion_mnist_cnn": ...,
    #       "intra_fid10k_fashion_mnist_cnn": ...}

The evaluator loads (or trains, once) the feature networks and caches the
real data's statistics on first use, in memory and on disk, so periodic
evaluation during training pays only for the generated side.

Metric names: ``<metric><count>_<dataset>_<network>``, count = number of
generated samples used (``10k``, or the number when not a multiple of 1000),
network = ``cnn`` (the data set's classifier, ``ganjax.metrics.classifier``)
or ``inception`` (FID InceptionV3); Parzen needs no network:
``parzen_ll<count>_<dataset>``.

With LPIPS weights (``lpips_weights=`` or ``$GANJAX_LPIPS_WEIGHTS``, see
``docs/lpips_weights.md``) the diversity of the samples is added:
``lpips_diversity<count>_<dataset>_<net><size>`` (mean LPIPS over all pairs of
samples; ``alex64``: AlexNet LPIPS v0.1, images resized to 64 x 64, one
channel repeated to RGB), and with labels its mean within each class,
``lpips_diversity_per_class<count>_...``.

Stacked digits (``stacked_digits``, ``stacked_mnist``;
``ganjax.data.stacked``): ``modes<count>_<dataset>`` (of the 1,000 modes,
those the samples reach, each channel classified by the base data set's cnn
classifier) and ``mode_kl<count>_<dataset>`` (KL of the mode histogram to
uniform, nats; ``ganjax.metrics.stacked_modes``); no feature network by
default.

With labels (conditional samples): ``class_accuracy`` (the cnn classifier's
accuracy on the samples of each requested class, mean over classes; real
test images give the ceiling), ``min_class_accuracy`` (the worst class) and,
per network, ``intra_fid`` (the Frechet distance within each class against
the real images of that class, mean over classes; Miyato & Koyama 2018).
"""

import math
import os
import sys
import time
from typing import Any, Sequence

import jax
import numpy as np

from ganjax.data import stacked
from ganjax.metrics import conditional
from ganjax.metrics import features as features_lib
from ganjax.metrics import real_data
from ganjax.metrics.frechet import frechet_distance, gaussian_statistics
from ganjax.metrics.inception_score import class_coverage, inception_score
from ganjax.metrics.kid import kernel_inception_distance
from ganjax.metrics.parzen import parzen_window_evaluation
from ganjax.metrics.precision_recall import density_coverage
from ganjax.metrics.precision_recall import knn_radii
from ganjax.metrics.precision_recall import precision_recall
from ganjax.metrics.reference_stats import reference_statistics
from ganjax.metrics.stacked_modes import stacked_modes

NETWORKS = ("cnn", "inception")
LPIPS_WEIGHTS_ENV = "GANJAX_LPIPS_WEIGHTS"  # ganjax.metrics.lpips.WEIGHTS_ENV

# Validation split for the Parzen bandwidth: the last part of train, as the
# paper's MNIST protocol (train[50000:60000]).
PARZEN_VALIDATION = {"digits": "train[1200:]", "mnist": "train[50000:]",
                     "fashion_mnist": "train[50000:]",
                     "kmnist": "train[50000:]"}
DEFAULT_PARZEN_VALIDATION = "train[-10000:]"


class InvalidSamplesError(ValueError):
  """The samples cannot be evaluated for this data set; the message says why."""


def count_tag(n: int) -> str:
  """``10000 -> "10k"``, ``1797 -> "1797"``."""
  return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def check_samples(samples: Any, data_shape: Sequence[int],
                  min_count: int = 4) -> np.ndarray:
  """Validates generated samples and returns them as float32 ``[N, H, W, C]`` in [0, 1].

  Accepts ``[N, H, W]`` (one channel) or ``[N, H, W, C]``, uint8 (0..255) or
  float in [0, 1] (a margin of 1e-4 for rounding, then clipped).

  Raises:
    InvalidSamplesError: wrong rank, shape, dtype, too few samples, NaN or
      infinite values, or values outside [0, 1].
  """
  data_shape = tuple(int(s) for s in data_shape)
  if not isinstance(samples, np.ndarray):
    samples = np.asarray(samples)
  if samples.ndim == 3 and data_shape[-1] == 1:
    samples = samples[..., None]
  if samples.ndim != 4 or tuple(samples.shape[1:]) != data_shape:
    raise InvalidSamplesError(
        f"Samples have shape {samples.shape}; this data set needs "
        f"[N, {', '.join(map(str, data_shape))}]"
        + (f" or [N, {data_shape[0]}, {data_shape[1]}]" if data_shape[-1] == 1
           else "") + ".")
  if samples.shape[0] < min_count:
    raise InvalidSamplesError(f"Need at least {min_count} samples, got "
                              f"{samples.shape[0]}.")
  if samples.dtype == np.uint8:
    return samples.astype(np.float32) / 255.0
  if not np.issubdtype(samples.dtype, np.floating):
    raise InvalidSamplesError(
        f"Samples must be float in [0, 1] or uint8 in [0, 255], got dtype "
        f"{samples.dtype}" + (" (cast 0..255 integers to uint8)."
                              if np.issubdtype(samples.dtype, np.integer) else "."))
  samples = samples.astype(np.float32)
  bad = ~np.isfinite(samples)
  if bad.any():
    raise InvalidSamplesError(
        f"Samples contain {int(bad.sum())} NaN or infinite values (in "
        f"{int(bad.reshape(len(samples), -1).any(1).sum())} samples).")
  lo, hi = float(samples.min()), float(samples.max())
  if lo < -1e-4 or hi > 1 + 1e-4:
    hint = (" They look like tanh outputs in [-1, 1]: pass (x + 1) / 2."
            if lo >= -1 - 1e-4 and lo < -1e-4 and hi <= 1 + 1e-4 else "")
    raise InvalidSamplesError(
        f"Float samples must lie in [0, 1]; found values in [{lo:.4g}, "
        f"{hi:.4g}].{hint}")
  return np.clip(samples, 0.0, 1.0)


def _default_networks(dataset, inception_weights: str | None,
                      verbose: bool) -> tuple:
  if isinstance(dataset, str) and dataset in stacked.BASES:
    return ()  # mode coverage by the base's classifier (see prepare)
  if not isinstance(dataset, str):  # a user's images
    labelled = dataset.num_classes() is not None
    if inception_weights:
      return ("inception", "cnn") if labelled else ("inception",)
    how = ("Without FID InceptionV3 weights (never downloaded; see "
           "docs/inception_weights.md: convert pytorch-fid's weights once, "
           "then pass inception_weights= / --config.evaluation."
           "inception_weights or set $GANJAX_INCEPTION_WEIGHTS)")
    if not labelled:
      raise ValueError(
          f"{how}, the unlabelled images of {dataset.name} have no feature "
          "network: the project's own CNN is a classifier and needs label "
          "folders. Get the weights, or give the images label folders.")
    if verbose:
      print(f"[ganjax.metrics] {how}, {dataset.name} is scored with a CNN "
            "classifier trained on its own labelled images (metrics named "
            "..._cnn, comparable only between runs scored with that "
            "classifier).", file=sys.stderr, flush=True)
    return ("cnn",)
  if dataset in real_data.MNIST_LIKE:
    return ("cnn", "inception") if inception_weights else ("cnn",)
  return ("inception",)


class Evaluator:
  """Computes every metric of generated samples against one data set.

  Use in training loops (one evaluator, called every N steps) and from
  ``python -m experiments.evaluate``. Real-data statistics and feature
  networks are loaded on first use (``prepare()``) and reused.

  Args:
    dataset: ``"fashion_mnist"``, ``"digits"``, ``"mnist"``, a TFDS image
      data set (those need ``inception``), or a user's images
      (``ganjax.data.folder.ImageFolder``: scored at their training
      resolution, named in metrics by ``ImageFolder.name``).
    num: generated samples to evaluate (the first ``num`` given; fewer are
      used, and named, if fewer are given).
    networks: feature networks, from ``("cnn", "inception")``; default
      ``cnn`` for MNIST-like data (plus ``inception`` when weights are
      given), ``inception`` otherwise; a user's images: ``inception`` when
      weights are given, plus ``cnn`` (a classifier trained on them) when
      they are labelled, ``cnn`` alone without weights.
    inception_weights: the FID InceptionV3 weights file (``.npz`` from
      ``python -m ganjax.metrics.inception --convert``, or pytorch-fid's
      ``.pth``); default ``$GANJAX_INCEPTION_WEIGHTS``.
    cache_dir: cache root (default ``$GANJAX_CACHE_DIR`` or ``~/.cache/ganjax``).
    data_dir: TFDS data dir.
    reference_split: the real split the feature metrics compare against;
      default ``test`` (``train`` for a user's images without a test split).
    parzen: compute the Parzen-window log-likelihood (tens of seconds on CPU
      for 10k x 10k MNIST-size images).
    parzen_validation_split: split for choosing sigma (default
      ``PARZEN_VALIDATION[dataset]``).
    parzen_test_split: split scored by the Parzen window (default
      ``reference_split``).
    kid_subsets, kid_subset_size: KID's subsets.
    k: neighbours of improved precision / recall.
    density_k: neighbours of density / coverage (Naeem et al. 2020: 5).
    is_splits: splits of the Inception-Score-style score.
    seed: KID subsets' seed.
    verbose: print what is being prepared (classifier training, caches).
    lpips_weights: LPIPS weights (``.npz`` from ``python -m
      ganjax.metrics.lpips``); default ``$GANJAX_LPIPS_WEIGHTS``; without
      them no diversity is reported.
    lpips_size: side the samples are resized to for LPIPS (bilinear; None:
      as given). 64 by default: LPIPS's calibration patches are 64 x 64,
      and AlexNet's pooling needs more than 28 x 28.
  """

  def __init__(self, dataset, num: int = 10_000, *,
               networks: Sequence[str] | None = None,
               inception_weights: str | None = None,
               cache_dir: str | None = None, data_dir: str | None = None,
               reference_split: str | None = None, parzen: bool = True,
               parzen_validation_split: str | None = None,
               parzen_test_split: str | None = None,
               kid_subsets: int = 100, kid_subset_size: int = 1000, k: int = 3,
               density_k: int = 5, is_splits: int = 10, seed: int = 0, verbose: bool = True,
               lpips_weights: str | None = None,
               lpips_size: int | None = 64):
    if isinstance(dataset, str) and dataset.startswith("toy_"):
      raise ValueError(
          f"{dataset} is a toy distribution of points, not images: score it "
          "with ganjax.metrics.mode_coverage(samples, centers, std).")
    self.source = dataset  # what the real data are read from
    self.dataset = real_data.name(dataset)  # its name in metric names
    self.num = int(num)
    if self.num < 4:
      raise ValueError(f"num must be at least 4, got {num}.")
    inception_weights = inception_weights or os.environ.get(
        "GANJAX_INCEPTION_WEIGHTS")
    self.networks = tuple(networks or _default_networks(
        dataset, inception_weights, verbose))
    unknown = set(self.networks) - set(NETWORKS)
    if unknown:
      raise ValueError(f"Unknown feature networks {sorted(unknown)}; choose "
                       f"from {NETWORKS}.")
    self.inception_weights = inception_weights
    self.cache_dir, self.data_dir = cache_dir, data_dir
    reference_split = (reference_split
                       or real_data.default_reference_split(dataset))
    self.reference_split = reference_split
    self.parzen = parzen
    self.parzen_validation_split = (
        parzen_validation_split
        or PARZEN_VALIDATION.get(self.dataset, DEFAULT_PARZEN_VALIDATION))
    self.parzen_test_split = parzen_test_split or reference_split
    self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
    self.k, self.is_splits, self.seed = k, is_splits, seed
    self.density_k = density_k
    self.verbose = verbose
    self.data_shape = real_data.data_shape(dataset, data_dir)
    self._feature_networks: dict[str, features_lib.FeatureNetwork] = {}
    self._reference: dict[str, dict] = {}
    self._parzen_data: tuple[np.ndarray, np.ndarray] | None = None
    self.lpips_weights = lpips_weights or os.environ.get(
        LPIPS_WEIGHTS_ENV) or None
    self.lpips_size = int(lpips_size) if lpips_size else None
    self._lpips: tuple[str, dict, str] | None = None  # (net, variables, sha)
    self._class_reference: dict[str, dict] = {}
    self._mode_network: features_lib.FeatureNetwork | None = None

  # ---------------------------------------------------------- preparation

  def _network(self, name: str) -> features_lib.FeatureNetwork:
    if name not in self._feature_networks:
      if name == "cnn":
        net = features_lib.cnn_network(self.source, self.cache_dir,
                                       self.data_dir, verbose=self.verbose)
      else:
        net = features_lib.inception_network(self.inception_weights)
      self._feature_networks[name] = net
    return self._feature_networks[name]

  def prepare(self) -> "Evaluator":
    """Loads (or trains) the feature networks and the real-data statistics now."""
    for name in self.networks:
      net = self._network(name)
      if name not in self._reference:
        start = time.time()
        ref = reference_statistics(self.source, net, self.reference_split,
                                   None, self.cache_dir, self.data_dir)
        # On the device once, with the real k-NN radii of precision/recall
        # and density/coverage: every evaluation compares against them.
        ref["features"] = jax.device_put(ref["features"])
        radii = knn_radii(ref["features"], (self.k, self.density_k))
        ref["pr_radii"], ref["dc_radii"] = radii[:, 0], radii[:, 1]
        self._reference[name] = ref
        if self.verbose and time.time() - start > 5:
          print(f"[ganjax.metrics] {name} reference statistics of "
                f"{self.dataset}:{self.reference_split} cached in "
                f"{ref['path']}", file=sys.stderr, flush=True)
    if self.parzen and self._parzen_data is None:
      flat = lambda split: real_data.load_split(
          self.source, split, self.data_dir)[0].reshape(-1, math.prod(
              self.data_shape))
      self._parzen_data = (flat(self.parzen_validation_split),
                           flat(self.parzen_test_split))
    if self.dataset in stacked.BASES and self._mode_network is None:
      self._mode_network = features_lib.cnn_network(
          stacked.BASES[self.dataset][0], self.cache_dir, self.data_dir,
          verbose=self.verbose)
    if self.lpips_weights and self._lpips is None:
      from ganjax.metrics import lpips  # pylint: disable=g-import-not-at-top
      self._lpips = lpips.load_lpips(self.lpips_weights)
    return self

  @property
  def num_classes(self) -> int:
    """Classes of the data set (from the real reference labels); after ``prepare()``."""
    if self.dataset in stacked.BASES:  # its labels are the modes
      return stacked.NUM_MODES
    ref = self._reference[self.networks[0]]
    return int(np.max(ref["labels"])) + 1

  def _lpips_tag(self) -> str:
    return f"{self._lpips[0]}{self.lpips_size or ''}"

  def _class_gaussians(self, name: str) -> dict:
    """Per-class Gaussians of the real features of network ``name`` (once)."""
    if name not in self._class_reference:
      ref = self._reference[name]
      self._class_reference[name] = conditional.class_gaussians(
          np.asarray(ref["features"]), np.asarray(ref["labels"]))
    return self._class_reference[name]

  # ------------------------------------------------------------ metrics

  def __call__(self, samples: Any, labels: Any = None) -> dict[str, float]:
    """Every metric of ``samples`` (the first ``num``), as ``{name: float}``.

    Args:
      samples: ``[N, H, W(, C)]``, float in [0, 1] or uint8.
      labels: for class-conditional samples, int ``[N]``: the class each
        sample was drawn for (at least 2 samples per class present). Adds
        ``class_accuracy``, ``min_class_accuracy``, ``intra_fid`` and the
        per-class LPIPS diversity.

    Raises:
      InvalidSamplesError: samples of the wrong shape or range, or NaN;
        labels of the wrong shape, type or range.
    """
    images = check_samples(samples, self.data_shape, min_count=self.k + 1)
    n_given = images.shape[0]
    images = images[:self.num]
    self.prepare()
    n = images.shape[0]
    if labels is not None:
      try:
        labels = conditional.check_labels(labels, n_given, self.num_classes)
      except ValueError as e:
        raise InvalidSamplesError(str(e)) from None
      labels = labels[:n]
      classes, counts = np.unique(labels, return_counts=True)
      if counts.min() < 2:  # refused before any network runs
        raise InvalidSamplesError(
            f"Class {int(classes[np.argmin(counts)])} has 1 sample; the "
            "per-class metrics need at least 2 per class (draw labels "
            "covering every class equally, e.g. arange(num) % num_classes).")
    tag = count_tag(n)
    out: dict[str, float] = {}
    for name in self.networks:
      prefix = f"{tag}_{self.dataset}_{name}"
      ref = self._reference[name]
      feats, probs = self._feature_networks[name](images)
      mu, sigma = gaussian_statistics(feats)
      out[f"fid{prefix}"] = float(frechet_distance(
          ref["mu"].astype(np.float32), ref["sigma"].astype(np.float32),
          mu, sigma))
      kid = kernel_inception_distance(
          ref["features"], feats, jax.random.key(self.seed),
          self.kid_subsets, self.kid_subset_size)
      out[f"kid{prefix}"] = float(kid["mean"])
      out[f"kid{prefix}_std"] = float(kid["std"])
      score = inception_score(probs, min(self.is_splits, n))
      out[f"is{prefix}"] = float(score["mean"])
      out[f"is{prefix}_std"] = float(score["std"])
      pr = precision_recall(ref["features"], feats, k=self.k,
                            real_radii=ref["pr_radii"])
      out[f"precision{prefix}"] = float(pr["precision"])
      out[f"recall{prefix}"] = float(pr["recall"])
      dc = density_coverage(ref["features"], feats, k=self.density_k,
                            real_radii=ref["dc_radii"])
      out[f"density{prefix}"] = float(dc["density"])
      out[f"coverage{prefix}"] = float(dc["coverage"])
      if name == "cnn":
        coverage = class_coverage(probs)
        out[f"classes_covered{prefix}"] = float(coverage["classes_covered"])
        out[f"class_kl{prefix}"] = float(coverage["kl_to_uniform"])
      if labels is not None:
        if name == "cnn":
          accuracy = conditional.class_accuracy(probs, labels)
          out[f"class_accuracy{prefix}"] = accuracy["mean"]
          out[f"min_class_accuracy{prefix}"] = accuracy["min"]
        try:
          intra = conditional.intra_fid(self._class_gaussians(name), feats,
                                        labels)
        except ValueError as e:  # a class with < 2 samples
          raise InvalidSamplesError(str(e)) from None
        out[f"intra_fid{prefix}"] = intra["mean"]
    if self._mode_network is not None:
      modes = stacked_modes(self._mode_network, images)
      out[f"modes{tag}_{self.dataset}"] = float(modes["modes"])
      out[f"mode_kl{tag}_{self.dataset}"] = modes["kl"]
    if self._lpips is not None:
      from ganjax.metrics.diversity import mean_pairwise_lpips  # pylint: disable=g-import-not-at-top
      net, variables, _ = self._lpips
      prefix = f"{tag}_{self.dataset}_{self._lpips_tag()}"
      div = mean_pairwise_lpips(variables, images, labels, net=net,
                                size=self.lpips_size,
                                num_classes=(self.num_classes
                                             if labels is not None else None))
      out[f"lpips_diversity{prefix}"] = div["all"]
      if labels is not None:
        out[f"lpips_diversity_per_class{prefix}"] = div["mean_per_class"]
    if self.parzen:
      validation, test = self._parzen_data
      flat = images.reshape(n, -1)
      result = parzen_window_evaluation(flat, validation, test)
      prefix = f"{tag}_{self.dataset}"
      out[f"parzen_ll{prefix}"] = result["mean"]
      out[f"parzen_ll{prefix}_stderr"] = result["stderr"]
      out[f"parzen_sigma{prefix}"] = result["sigma"]
    return out

  evaluate = __call__

  def protocol(self, num_samples: int | None = None,
               labelled: bool = False) -> dict[str, Any]:
    """How each metric is computed, keyed like the metrics (``num_samples``
    defaults to ``num``; ``labelled``: include the metrics of labelled
    samples); call after ``prepare()`` or a first evaluation for the
    networks' facts (accuracy, weights' sha256)."""
    n = num_samples or self.num
    tag = count_tag(n)
    ref = self.reference_split
    out: dict[str, Any] = {
        "dataset": self.dataset, "num_samples": n,
        "reference_split": ref}
    for name in self.networks:
      prefix = f"{tag}_{self.dataset}_{name}"
      net = self._feature_networks.get(name)
      n_ref = (len(self._reference[name]["features"])
               if name in self._reference else None)
      against = (f"{n} generated samples vs the {n_ref or 'all'} images of "
                 f"{self.dataset}:{ref}, {name} features")
      out[f"network_{name}"] = dict(net.info) if net else name
      out[f"fid{prefix}"] = f"Frechet distance, {against}."
      out[f"kid{prefix}"] = (f"KID (unbiased MMD^2, cubic kernel), mean +- "
                             f"std over {self.kid_subsets} subsets of "
                             f"{self.kid_subset_size}, {against}.")
      out[f"is{prefix}"] = (f"exp(E KL(p(y|x) || p(y))) with the {name} "
                            f"network's softmax, {self.is_splits} splits of "
                            f"the {n} generated samples, mean +- std.")
      out[f"precision{prefix}"] = (f"improved precision (k={self.k}), "
                                   f"{against}.")
      out[f"recall{prefix}"] = f"improved recall (k={self.k}), {against}."
      out[f"density{prefix}"] = (
          f"density (k={self.density_k}; real k-NN balls only, about 1 for "
          f"samples like the data), {against}.")
      out[f"coverage{prefix}"] = (
          f"coverage (k={self.density_k}): fraction of real k-NN balls "
          f"holding a generated sample, {against}.")
      if name == "cnn":
        out[f"classes_covered{prefix}"] = (
            "classes (argmax of the cnn classifier) receiving >= 1% of the "
            f"{n} generated samples.")
        out[f"class_kl{prefix}"] = ("KL(class histogram || uniform), nats, "
                                    f"of the {n} generated samples.")
      if labelled and name == "cnn":
        out[f"class_accuracy{prefix}"] = (
            "accuracy of the cnn classifier (argmax) on the generated samples "
            "of each requested class, mean over the classes present (real "
            "test images with their labels give the ceiling).")
        out[f"min_class_accuracy{prefix}"] = (
            "the lowest per-class accuracy of class_accuracy.")
      if labelled:
        out[f"intra_fid{prefix}"] = (
            "intra-FID (Miyato & Koyama 2018): Frechet distance between the "
            f"{name} features of the generated samples of each requested "
            f"class and those of the images of that class in "
            f"{self.dataset}:{ref}, mean over classes (about {n} / classes "
            "samples each: biased upward for few samples, compare at equal "
            "counts).")
    if self.dataset in stacked.BASES:
      base = stacked.BASES[self.dataset][0]
      net = self._mode_network
      out["network_modes"] = (dict(net.info) if net else
                              f"cnn classifier of {base}")
      how = (f"each channel of the {n} generated samples classified by the "
             f"cnn classifier of {base} (argmax), mode = 100 * red + 10 * "
             "green + blue")
      out[f"modes{tag}_{self.dataset}"] = (
          f"modes of the 1,000 receiving at least one sample; {how}.")
      out[f"mode_kl{tag}_{self.dataset}"] = (
          f"KL(mode histogram || uniform over 1,000), nats; {how}.")
    if self._lpips is not None:
      net, _, digest = self._lpips
      prefix = f"{tag}_{self.dataset}_{self._lpips_tag()}"
      how = ("one channel repeated to RGB, " if self.data_shape[-1] == 1
             else "") + (f"bilinear resize to {self.lpips_size} x "
                         f"{self.lpips_size}" if self.lpips_size
                         else "native resolution")
      out["network_lpips"] = {
          "network": f"LPIPS v0.1 (Zhang et al. 2018), {net} backbone, "
                     "the lpips package's linear heads",
          "weights": self.lpips_weights, "weights_sha256": digest}
      out[f"lpips_diversity{prefix}"] = (
          f"mean LPIPS ({net}, v0.1; {how}) over all pairs of the {n} "
          "generated samples (exact, from the LPIPS embedding's moments); "
          "higher is more diverse.")
      if labelled:
        out[f"lpips_diversity_per_class{prefix}"] = (
            "mean LPIPS over all pairs of generated samples of the same "
            "requested class, mean over classes (intra-class diversity).")
    if self.parzen:
      prefix = f"{tag}_{self.dataset}"
      out[f"parzen_ll{prefix}"] = (
          f"Gaussian Parzen window on {n} generated samples (pixels in [0, "
          f"1]), sigma maximising the mean log-likelihood of "
          f"{self.dataset}:{self.parzen_validation_split} over logspace(-1, "
          f"0, 10) refined twice; mean log-likelihood of "
          f"{self.dataset}:{self.parzen_test_split} in nats, +- stderr "
          "(Goodfellow et al. 2014, Table 1).")
    return out


def evaluate_samples(samples: Any, dataset, num: int = 10_000,
                     labels: Any = None, **kwargs) -> dict[str, float]:
  """One-off evaluation: ``Evaluator(dataset, num, **kwargs)(samples, labels)``.

  For repeated evaluation (during training) keep one ``Evaluator``: it holds
  the networks and reference statistics in memory.
  """
  return Evaluator(dataset, num, **kwargs)(samples, labels)
