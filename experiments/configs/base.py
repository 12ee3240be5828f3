"""Every field of an experiment config, with its default.

The other configs start from ``get_config()`` here and change what their
experiment needs; the runner rejects fields that are not listed here.
Sentinels instead of None (so that every field can be set from the command
line): ``image_size=0`` keeps the native size, ``data_dir=""`` uses TFDS's
default, ``weight_clip=0`` / ``ema_decay=0`` / ``instance_noise_std=0`` /
``penalty.name="none"`` turn those off.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  # Data. `dataset`: a TFDS image dataset ("mnist", "fashion_mnist",
  # "cifar10", ...), "digits" (sklearn's real 8x8 digits, offline), or a toy
  # distribution ("toy_ring8", "toy_grid25", "toy_gaussian1d").
  c.dataset = "digits"
  c.split = "train"
  c.image_size = 0          # 0: native size; N: resize to N x N (bilinear)
  c.data_dir = ""           # TFDS data dir; "": $TFDS_DATA_DIR or ~/tensorflow_datasets

  # Models: `name` is one of dcgan, goodfellow_mlp, small_mlp, toy_mlp; the
  # other fields are that builder's keyword arguments
  # (ganjax.models.<name>), e.g. base_features and spectral_norm for dcgan.
  c.model = ml_collections.ConfigDict(
      dict(name="dcgan", base_features=64, spectral_norm=False))
  c.latent_dim = 100
  c.latent_distribution = "normal"   # normal | uniform (U[-1, 1])

  # The game (ganjax.GAN).
  c.loss = "non_saturating"  # minimax | non_saturating | wasserstein | hinge | least_squares
  c.k = 1                    # discriminator updates per generator update
  c.batch_size = 64          # global minibatch size m (split over devices)
  c.num_steps = 10_000       # generator updates
  c.seed = 0

  # Optimizers: `name` is adam | sgd | rmsprop | goodfellow_sgd, the other
  # fields its keyword arguments (optax.<name> / ganjax.optim.goodfellow_sgd).
  c.g_optimizer = ml_collections.ConfigDict(
      dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999))
  c.d_optimizer = ml_collections.ConfigDict(
      dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999))

  # Regularisers.
  c.penalty = ml_collections.ConfigDict(dict(name="none", weight=0.0))  # none | gradient_penalty | r1
  c.instance_noise_std = 0.0
  c.instance_noise_anneal_steps = 0
  c.weight_clip = 0.0        # WGAN's clipping value c; 0: off
  c.ema_decay = 0.0          # EMA of G's weights (used for samples); 0: off

  # Devices: 1 = plain jax.jit; > 1 or -1 (all local devices) = jax.pmap with
  # the batch split over devices. sync_batch_norm: batch norm statistics of
  # the global batch (the step then computes what one device computes).
  c.num_devices = 1
  c.sync_batch_norm = True

  # Bookkeeping (in generator steps).
  c.log_every = 100          # scalars to TensorBoard + metrics.jsonl (window means)
  c.eval_every = 1000        # sample grid from fixed noise -> samples/step_XXXXXX.png
  c.num_eval_samples = 64    # images in that grid
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3

  # Sample-quality metrics during training (experiments/evaluation.py): every
  # `every` steps (0: off) score `num_samples` samples of G (its EMA weights
  # when ema_decay > 0) with ganjax.metrics.Evaluator (FID/KID/IS/precision/
  # recall with the data set's CNN; Parzen when `parzen`) or, for toy data,
  # mode coverage; to TensorBoard ("eval/") and metrics.jsonl. The state with
  # the best `best_metric` (fid | kid | parzen_ll | precision | recall | is |
  # modes_captured | high_quality_fraction; "": fid, or modes_captured for
  # toy data; "none": off) is kept in checkpoints_best/ (see best.json).
  # networks: "" (cnn for MNIST-like data, inception otherwise) or e.g.
  # "cnn,inception"; inception_weights: "" = $GANJAX_INCEPTION_WEIGHTS.
  c.evaluation = ml_collections.ConfigDict(dict(
      every=0, num_samples=2000, best_metric="", parzen=False, networks="",
      inception_weights=""))

  # Reliability. A step whose losses or gradient norms are NaN/Inf stops the
  # run (exit code 3; the last checkpoint is kept, none of the bad state is
  # written), unless skip_nonfinite_updates, which keeps the previous
  # parameters and optimizer states for that step and counts it
  # ("skipped_steps" in the logs). override_config: resume a workdir whose
  # checkpoint was written by a config with a different model, data, loss,
  # latent or optimizer (refused otherwise).
  c.skip_nonfinite_updates = False
  c.override_config = False
  return c
