"""ganjax: generative adversarial networks in JAX, as pure functions.

    import ganjax as gj
    G, D = gj.models.dcgan(image_shape=(28, 28, 1), latent_dim=100)
    gan = gj.GAN(generator=G, discriminator=D, loss="non_saturating", k=1,
                 latent_dim=100)
    state = gan.init(jax.random.key(0), images)
    state, metrics = jax.jit(gan.step, donate_argnums=0)(state, batch)

The core never imports TensorFlow; only ``ganjax.data.tfds_source`` does, lazily.
"""

from ganjax import (augment, checkpoint, contract, data, images, loops,
                    losses, metrics, models, optim, parallel, pbt, penalties,
                    population, streams, terms)
from ganjax.gan import GAN, GANState
from ganjax.population import Population, PopulationState

__version__ = "0.1.0"

__all__ = ["GAN", "GANState", "Population", "PopulationState", "augment",
           "checkpoint", "contract", "data", "images", "loops", "losses",
           "metrics", "models", "optim", "parallel", "pbt", "penalties",
           "population", "streams", "terms"]
