"""Data for GANs. ``toy`` is pure JAX; ``pipeline`` (tf.data / TFDS) imports
TensorFlow lazily, only when its functions are called."""

from ganjax.data import toy

__all__ = ["toy"]
