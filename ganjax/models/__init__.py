"""Generators and discriminators (flax.linen).

Every generator maps ``z [B, latent_dim] -> [B, *data_shape]``, every
discriminator ``x [B, *data_shape] -> logits [B]``; both take ``train``.
"""

from ganjax.models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan
from ganjax.models.layers import ConvTranspose
from ganjax.models.mlp import (Maxout, MLPDiscriminator, MLPGenerator,
                               goodfellow_mlp, small_mlp, toy_mlp)

__all__ = [
    "ConvTranspose", "DCGANDiscriminator", "DCGANGenerator", "MLPDiscriminator",
    "MLPGenerator", "Maxout", "dcgan", "goodfellow_mlp", "small_mlp", "toy_mlp",
]
