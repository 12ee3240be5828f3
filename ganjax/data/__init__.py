"""Data for GANs: sources read by kind, laid out as the GAN step takes them.

* ``pipeline``: the entry points (``batches``, ``load_split``, ``data_shape``,
  ``num_classes``, ``class_names``, ``prefetch_to_device``) and
  ``source_kind``, the one place a source kind is added.
* Source kinds: ``arrays`` (numpy arrays, the digits, and what every kind held
  in memory shares), ``folder`` (image folders and StyleGAN zips, with
  ``decode`` and ``image_cache``), ``tfds_source`` (TFDS; the only module
  that imports TensorFlow, inside its functions), ``toy`` (pure JAX
  mixtures).
* ``sources``: real data files that need no network (sklearn's digits,
  Debian's Fashion-MNIST); ``errors``: the package's errors.
* ``on_device``: a data set kept on the device, exact epochs drawn inside the
  compiled step.
"""

from ganjax.data import toy

__all__ = ["toy"]
