"""Evaluation metrics for generative models (pure JAX, no TensorFlow, no scipy).

Building blocks (jitted, batched, memory-bounded):
  * ``parzen_log_likelihood`` / ``select_sigma`` / ``parzen_window_evaluation``:
    the GAN paper's Gaussian Parzen-window log-likelihood (Table 1).
  * ``gaussian_statistics``, ``frechet_distance``: FID's distance, on device.
  * ``kernel_inception_distance``: KID, unbiased MMD^2 over subsets.
  * ``inception_score``: exp E KL(p(y|x) || p(y)) from any classifier's softmax.
  * ``precision_recall``: improved precision and recall (k-NN manifolds);
    ``density_coverage``: their outlier-robust variants (real balls only);
    ``in_manifold``: the per-sample indicator precision averages.
  * ``class_coverage``: classes receiving >= 1% of samples, KL to uniform.
  * ``mode_coverage``: modes captured on the toy Gaussian mixtures.
  * ``lpips_distance`` / ``lpips_embedding`` (``ganjax.metrics.lpips``):
    LPIPS (Zhang et al. 2018), weights from a local file;
    ``mean_pairwise_lpips``: sample diversity, overall and within classes.
  * ``class_accuracy``, ``intra_fid``: metrics of class-conditional samples.

Feature networks: ``classifier`` (a CNN per MNIST-like data set, trained and
cached by the project), ``inception`` (pytorch-fid's FID InceptionV3, weights
from a local file). Everything together, with the protocol in the metric
names: ``Evaluator`` / ``evaluate_samples``.
"""

from ganjax.metrics.conditional import (class_accuracy, class_gaussians,
                                        intra_fid)
from ganjax.metrics.evaluator import (Evaluator, InvalidSamplesError,
                                      check_samples, count_tag,
                                      evaluate_samples)
from ganjax.metrics.features import (FeatureNetwork, cnn_network,
                                     inception_network)
from ganjax.metrics.frechet import (frechet_distance,
                                    frechet_distance_from_features,
                                    gaussian_statistics, trace_sqrt_product)
from ganjax.metrics.inception_score import class_coverage, inception_score
from ganjax.metrics.kid import kernel_inception_distance, mmd2_unbiased
from ganjax.metrics.mode_coverage import mode_coverage
from ganjax.metrics.parzen import (parzen_log_likelihood,
                                   parzen_window_evaluation, select_sigma)
from ganjax.metrics.precision_recall import (density_coverage, in_manifold,
                                            knn_radii, precision_recall)
from ganjax.metrics.reference_stats import reference_statistics

__all__ = [
    "Evaluator", "FeatureNetwork", "InvalidSamplesError", "check_samples",
    "class_accuracy", "class_coverage", "class_gaussians", "cnn_network",
    "count_tag", "density_coverage", "evaluate_samples",
    "frechet_distance", "frechet_distance_from_features",
    "gaussian_statistics", "inception_network", "inception_score",
    "in_manifold", "intra_fid", "kernel_inception_distance", "knn_radii",
    "load_lpips", "lpips_distance", "lpips_embedding", "mean_pairwise_distance",
    "mean_pairwise_lpips", "mmd2_unbiased", "mode_coverage",
    "parzen_log_likelihood", "parzen_window_evaluation", "precision_recall",
    "reference_statistics", "select_sigma", "trace_sqrt_product",
]

# LPIPS is imported on first use (PEP 562), so that `python -m
# ganjax.metrics.lpips` (the weights converter) runs a module not yet imported.
_LAZY = {"load_lpips": "lpips", "lpips_distance": "lpips",
         "lpips_embedding": "lpips", "mean_pairwise_distance": "diversity",
         "mean_pairwise_lpips": "diversity"}


def __getattr__(name):
  if name in _LAZY:
    import importlib  # pylint: disable=g-import-not-at-top
    module = importlib.import_module(f"ganjax.metrics.{_LAZY[name]}")
    return getattr(module, name)
  raise AttributeError(f"module 'ganjax.metrics' has no attribute {name!r}")
