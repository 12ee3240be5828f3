"""Generators and discriminators (flax.linen).

Every generator maps ``z [B, latent_dim] -> [B, *data_shape]`` and has an
``output_range`` property, every discriminator ``x [B, *data_shape] -> logits
[B]`` (or a dict ``{"logits": [B], ...}`` when asked for an AC-GAN head or its
features); both take ``train`` as a keyword. Models built with ``num_classes``
also take labels ``y int32 [B]``: ``G(z, y, train=...)``, ``D(x, y,
train=...)``.
"""

from ganjax.models.conditioning import ConditionalBatchNorm
from ganjax.models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan
from ganjax.models.layers import ConvTranspose, Dropout, MinibatchStd
from ganjax.models.mlp import (Maxout, MLPDiscriminator, MLPGenerator,
                               goodfellow_mlp, small_mlp, toy_mlp)
from ganjax.models.r3gan import R3GANDiscriminator, R3GANGenerator, r3gan
from ganjax.models.resnet import (ResNetDiscriminator, ResNetGenerator,
                                  resnet)

__all__ = [
    "ConditionalBatchNorm", "ConvTranspose", "DCGANDiscriminator",
    "DCGANGenerator", "Dropout", "MLPDiscriminator", "MLPGenerator", "Maxout",
    "MinibatchStd", "R3GANDiscriminator", "R3GANGenerator",
    "ResNetDiscriminator", "ResNetGenerator", "dcgan", "goodfellow_mlp",
    "r3gan", "resnet", "small_mlp", "toy_mlp",
]
