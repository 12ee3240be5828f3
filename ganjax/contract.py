"""The contract between ``ganjax.GAN``, its models and its batches.

A batch is an array ``[k, B, *data_shape]`` or a dict with the entries
``IMAGE`` (that array) and ``LABEL`` (int32 ``[k, B]``), as
``ganjax.data`` yields them.
"""

IMAGE, LABEL = "image", "label"  # the entries of a labelled batch
