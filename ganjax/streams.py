"""The random streams of ganjax: every draw and the key it comes from, in one place.

A run's randomness derives from one integer seed. Each draw has a stream of
its own, listed here, so that two draws never share a key by accident. The
values are part of a run's identity: changing one changes what every run
with that seed draws, and breaks the bit-exact resume of earlier runs.

Run streams: ``run_key(seed, stream) = fold_in(key(seed), stream)``, used by
the runner (``experiments/``):

======================  ==  ====================================================
``INIT``                0   ``GAN.init``: the players' parameters and ``state.rng``
``FIXED_NOISE``         1   the latents of the sample grids
``TOY_DATA``            2   toy data: the batch of step ``s`` is drawn from
                            ``fold_in(key, s)``
``REAL_POINTS``         3   the real toy points of the scatter plots
``EVAL_NOISE``          4   the samples of the periodic evaluation
``DATA``                5   the order of every epoch of a data set
                            (``ganjax.data.on_device``)
``PBT``                 6   population-based training: the exploit/explore
                            draws of step ``s`` come from ``fold_in(key, s)``
======================  ==  ====================================================

``GAN.init(key)``: ``split(key, 3)`` gives the generator's initial
parameters, the discriminator's, and ``state.rng``.

The step's streams, from ``state.rng`` (``GAN.step``):

* ``update_keys``: ``fold_in(rng, step)``, then ``D_UPDATES`` (split into the
  k discriminator updates) and ``G_UPDATE``;
* ``example_keys``: per example, ``fold_in(update_key, global_index)`` split
  into ``NUM_STEP_STREAMS`` keys: ``LATENT``, two unused columns
  (``DROPOUT_REAL``, ``DROPOUT_FAKE``: dropout masks come from the call keys
  below; the columns keep the others' values), ``PENALTY`` (penalty
  ``i > 0`` of a list folds ``i`` into it), ``NOISE_REAL``, ``NOISE_FAKE``
  (instance noise); in conditional or augmented games also
  ``fold_in(fold_in(update_key, EXTRA_SALT), global_index)`` split into
  ``LABEL`` (the fake labels), ``AUGMENT_REAL``, ``AUGMENT_FAKE``, so that
  the first six are the same with or without them;
* ``call_key``: the ``'dropout'`` rng of one model call in an update, the
  same on every device (``G_CALL``, ``D_REAL_CALL``, ``D_FAKE_CALL``,
  ``D_JOINT_CALL``); ``ganjax.models.layers.Dropout`` folds each example's
  global index into it. The penalties' calls of D use ``D_REAL_CALL``.

The global index makes every per-example draw independent of how a batch is
split over devices. ``GAN.sample(state, key, num)`` draws latents from
``split(key, num)`` and, for a conditional GAN without labels, the labels
from ``split(fold_in(key, EXTRA_SALT), num)``.
"""

import jax
import jax.numpy as jnp

# Run streams of the seed.
INIT, FIXED_NOISE, TOY_DATA, REAL_POINTS, EVAL_NOISE, DATA, PBT = range(7)

# Update streams of a step key.
D_UPDATES, G_UPDATE = 0, 1

# Per-example streams of an update (columns of ``example_keys``).
LATENT, DROPOUT_REAL, DROPOUT_FAKE, PENALTY, NOISE_REAL, NOISE_FAKE = range(6)
NUM_STEP_STREAMS = 6
LABEL, AUGMENT_REAL, AUGMENT_FAKE = range(NUM_STEP_STREAMS, NUM_STEP_STREAMS + 3)
NUM_EXTRA_STREAMS = 3
EXTRA_SALT = 2 ** 31  # no example index reaches it

# Model calls of an update (``call_key``).
G_CALL, D_REAL_CALL, D_FAKE_CALL, D_JOINT_CALL = range(4)
CALL_SALT = 2 ** 31 + 1


def as_key(rng) -> jax.Array:
  """A typed key from a typed key or uint32 key data (``jax.random.key_data``:
  how ``state.rng`` and the runner's compiled calls carry keys)."""
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return rng
  return jax.random.wrap_key_data(rng)


def run_key(seed: int, stream: int) -> jax.Array:
  """The key of run stream ``stream`` (``INIT``, ``DATA``, ...) of ``seed``."""
  return jax.random.fold_in(jax.random.key(seed), stream)


def update_keys(rng: jax.Array, step: jax.Array,
                k: int) -> tuple[jax.Array, jax.Array]:
  """``(d_keys [k], g_key)``: the keys of step ``step``'s k discriminator
  updates and of its generator update."""
  step_key = jax.random.fold_in(rng, step)
  d_keys = jax.random.split(jax.random.fold_in(step_key, D_UPDATES), k)
  return d_keys, jax.random.fold_in(step_key, G_UPDATE)


def example_keys(update_key: jax.Array, index: jax.Array,
                 extra: bool) -> jax.Array:
  """Keys ``[B, streams]`` of the examples at global indices ``index [B]``.

  Args:
    update_key: the key of one discriminator or generator update.
    index: int32 ``[B]`` global batch indices (``ganjax.parallel.global_index``).
    extra: also the ``LABEL`` and ``AUGMENT_*`` columns.

  Returns:
    ``[B, NUM_STEP_STREAMS (+ NUM_EXTRA_STREAMS)]`` keys, indexed by the
    stream constants.
  """
  def split(key, count):
    return jax.vmap(
        lambda i: jax.random.split(jax.random.fold_in(key, i), count))(index)

  keys = split(update_key, NUM_STEP_STREAMS)
  if not extra:
    return keys
  extra_keys = split(jax.random.fold_in(update_key, EXTRA_SALT),
                     NUM_EXTRA_STREAMS)
  return jnp.concatenate([keys, extra_keys], axis=1)


def call_key(update_key: jax.Array, call: int) -> jax.Array:
  """The rng of model call ``call`` (``G_CALL``, ``D_REAL_CALL``, ...) of an update."""
  return jax.random.fold_in(jax.random.fold_in(update_key, CALL_SALT), call)
