"""DCGAN on your own images: a folder of image files or a StyleGAN dataset zip.

    python -m experiments.train --config=experiments/configs/dcgan_folder.py \
        --workdir=runs/mine --config.dataset=folder:my_images \
        [--config.image_size=64 --config.num_classes=-1]

``dataset``: ``folder:PATH`` (``PATH/label/*.png`` for classes,
``PATH/*.png`` without), ``zip:PATH`` (a StyleGAN ``dataset_tool.py`` zip),
see ``ganjax/data/folder.py``. The images are decoded once, at
``image_size`` (64: DCGAN's resolution; ``image_fit``: ``center_crop`` or
``pad`` for other aspect ratios), into ``$GANJAX_CACHE_DIR/data`` (default
``~/.cache/ganjax/data``); ``python -m experiments.prepare_data PATH
--image_size=64`` does it ahead of time. ``num_classes=-1`` trains a
conditional DCGAN on the label folders (``classes.json`` in the workdir names
each class). Data on the device, exact epochs and resume as for every other
data set. The model and optimizers are ``dcgan_cifar10``'s (Radford et al.
2015).
"""

import ml_collections

from experiments.configs import dcgan_cifar10


def get_config() -> ml_collections.ConfigDict:
  c = dcgan_cifar10.get_config()
  c.dataset = "folder:my_images"
  c.image_size = 64
  c.image_fit = "center_crop"
  c.channels = 0              # inferred: RGB when any file is in colour
  c.batch_size = 64
  c.num_steps = 20_000
  c.eval_every = 1000
  c.checkpoint_every = 1000
  return c
