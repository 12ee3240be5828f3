"""Evaluation metrics for generative models (pure JAX, no TensorFlow)."""

from ganjax.metrics.mode_coverage import mode_coverage

__all__ = ["mode_coverage"]
