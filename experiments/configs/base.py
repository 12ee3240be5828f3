"""Every field of an experiment config, with its default.

The other configs start from ``get_config()`` here and change what their
experiment needs; the runner rejects fields that are not listed here.
Sentinels instead of None (so that every field can be set from the command
line): ``image_size=0`` keeps the native size, ``data_dir=""`` uses TFDS's
default, ``weight_clip=0`` / ``ema_decay=0`` / ``instance_noise_std=0`` /
``penalty.name="none"`` turn those off.
"""

import inspect

import ml_collections


def model_config(name: str, **kwargs) -> ml_collections.ConfigDict:
  """``config.model`` for the builder ``name`` (``experiments.builders.MODELS``):
  every keyword argument it takes with its default (so that each one can be
  set from the command line, e.g. ``--config.model.aux_classifier=True``),
  then ``kwargs``. Arguments that default to None appear only when given."""
  from experiments import builders  # pylint: disable=g-import-not-at-top
  builder = builders.MODELS[name][0]
  fields = {p.name: p.default
            for p in inspect.signature(builder).parameters.values()
            if p.name not in builders.IMPLICIT_MODEL_ARGS
            and p.default is not inspect.Parameter.empty
            and p.default is not None}
  return ml_collections.ConfigDict(dict(name=name, **{**fields, **kwargs}))


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  # Data. `dataset`: a TFDS image dataset ("mnist", "fashion_mnist",
  # "cifar10", ...), "digits" (sklearn's real 8x8 digits, offline),
  # "stacked_digits" (three of them in the RGB channels: 1,000 modes), a toy
  # distribution ("toy_ring8", "toy_grid25", "toy_gaussian1d"), or your own
  # images: "folder:PATH" / "zip:PATH" or a path (a folder of images, with
  # label sub-folders for classes, or a StyleGAN dataset zip; decoded once
  # into $GANJAX_CACHE_DIR/data, see ganjax/data/folder.py). For those,
  # image_fit says how an image of another aspect ratio reaches image_size
  # ("center_crop" | "pad") and channels picks 1 (grayscale) or 3 (RGB), 0:
  # RGB when any file is in colour.
  c.dataset = "digits"
  c.split = "train"
  c.image_size = 0          # 0: native size; N: resize to N x N (bilinear)
  c.image_fit = "center_crop"
  c.channels = 0
  c.data_dir = ""           # TFDS data dir; "": $TFDS_DATA_DIR or ~/tensorflow_datasets

  # Models: `name` is one of dcgan, resnet, r3gan, goodfellow_mlp, small_mlp,
  # toy_mlp; the other fields are that builder's keyword arguments
  # (ganjax.models.<name>), e.g. base_features and spectral_norm for dcgan.
  c.model = model_config("dcgan", base_features=64)
  c.latent_dim = 100
  c.latent_distribution = "normal"   # normal | uniform (U[-1, 1])

  # Class-conditional GANs (Mirza & Osindero 2014). num_classes: 0 =
  # unconditional; -1 = the data set's number of classes (10 for digits,
  # mnist, fashion_mnist, cifar10; the modes, 8 / 25, for toy_ring8 /
  # toy_grid25); C >= 2 = that number, which must match the data set's. The
  # models get num_classes=C (dcgan: conditional batch norm in G and a
  # projection D; the MLPs: the one-hot label concatenated to z and x), the
  # pipeline yields {"image", "label"} batches and sample grids show one row
  # per class. fake_labels: the classes G is asked for in training:
  # "uniform" (drawn uniformly per example) or "real" (the real minibatch's).
  # AC-GAN (Odena et al. 2017) instead of the projection: model.aux_classifier
  # =True and loss_terms.aux_classifier > 0 (the weight of the class
  # cross-entropy both players add).
  c.num_classes = 0
  c.fake_labels = "uniform"

  # Extra loss terms (ganjax.terms), each a weight; 0: off.
  # aux_classifier: AC-GAN's class cross-entropy on real and fake (needs
  # num_classes and model.aux_classifier=True); feature_matching: G matches
  # the mean of D's features on real data (Salimans et al. 2016; needs
  # model.return_features=True); mode_seeking: G maximises the distance of
  # its samples per unit of latent distance over pairs of the batch (Mao et
  # al. 2019, lambda_ms; pairs of a conditional GAN share their label; needs
  # an even per-device batch).
  c.loss_terms = ml_collections.ConfigDict(
      dict(aux_classifier=0.0, feature_matching=0.0, mode_seeking=0.0))

  # The game (ganjax.GAN).
  c.loss = "non_saturating"  # minimax | non_saturating | wasserstein | hinge | least_squares | rpgan | ragan
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
  # penalty.name: none | gradient_penalty | r1 | r1_r2 (R1 and R2 with the
  # same gamma, R3GAN's); optional fields decay="cosine", final_weight,
  # decay_steps anneal the weight (experiments/builders.py:build_penalty).
  c.penalty = ml_collections.ConfigDict(dict(name="none", weight=0.0))
  c.instance_noise_std = 0.0
  c.instance_noise_anneal_steps = 0
  c.weight_clip = 0.0        # WGAN's clipping value c; 0: off
  c.ema_decay = 0.0          # EMA of G's weights (used for samples); 0: off
  # Or the EMA by its half-life in images (StyleGAN, R3GAN; ema_decay 0),
  # rising from 0 along a cosine over ema_ramp_images (0: no ramp).
  c.ema_half_life_images = 0.0
  c.ema_ramp_images = 0.0

  # Differentiable augmentation of every input of D (ganjax.augment), for
  # small data sets. policy: "" = off, or transforms separated by commas,
  # "color,translation,cutout" (DiffAugment, Zhao et al. 2020), applied in
  # that order, each to each example with `probability`; translation_ratio /
  # cutout_ratio: largest shift / cut-out side as a fraction of the image.
  # ada_target > 0: ADA (Karras et al. 2020; 0.6 in the paper) replaces
  # `probability` by one adapted during training (from 0, across [0, 1] in
  # ada_speed_images real images) to hold E[sign(D(real))] at the target.
  c.augment = ml_collections.ConfigDict(dict(
      policy="", probability=1.0, translation_ratio=0.125, cutout_ratio=0.5,
      ada_target=0.0, ada_speed_images=500_000))

  # Devices: 1 = plain jax.jit; > 1 or -1 (all local devices) = jax.pmap with
  # the batch split over devices. sync_batch_norm: batch norm statistics of
  # the global batch (the step then computes what one device computes).
  c.num_devices = 1
  c.sync_batch_norm = True
  # Speed: steps_per_call steps run in one compiled call (cut at every log,
  # sample, evaluation and checkpoint step); the metrics are fetched once per
  # call. data_on_device: "auto" puts the split on the device when it takes
  # at most a quarter of one device's memory, "true" / "false" force it; off
  # the device, each call's examples are sent while the previous call runs.
  # Either way the batch of step s depends on (seed, s) only.
  # preempt_grace_s: SIGTERM/SIGINT is answered with a checkpoint of the
  # last finished step within about this time: a call runs at most half of
  # it (fewer steps than steps_per_call when steps are slow), the other half
  # is left for the write. Schedulers of pre-emptible machines send SIGTERM
  # and kill after a grace period (often 30 s): keep it below that.
  c.steps_per_call = 100
  c.preempt_grace_s = 10.0
  c.data_on_device = "auto"
  # Mixed precision: "float32", or "bfloat16" (G and D compute in bfloat16;
  # parameters, optimizer states, statistics and losses stay float32). How
  # the k D updates compile: "auto" (one lax.scan; unrolled on CPU for a D
  # with flax's plain convs), "scan" or "unroll" (ganjax.backend).
  c.compute_dtype = "float32"
  c.d_loop = "auto"

  # Bookkeeping (in generator steps).
  c.log_every = 100          # scalars to TensorBoard + metrics.jsonl (window means)
  c.eval_every = 1000        # sample grid from fixed noise -> samples/step_XXXXXX.png
  c.num_eval_samples = 64    # images in that grid
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3

  # Sample-quality metrics during training (experiments/periodic_eval.py): every
  # `every` steps (0: off) score `num_samples` samples of G (its EMA weights
  # when ema_decay > 0) with ganjax.metrics.Evaluator (FID/KID/IS/precision/
  # recall/density/coverage with the data set's CNN; Parzen when `parzen`) or,
  # for toy data, mode coverage; to TensorBoard ("eval/") and metrics.jsonl.
  # A scoring step first saves a checkpoint (pre-emption safety), also off
  # the checkpoint_every cadence.
  # The state with the best `best_metric` (fid | kid | parzen_ll | precision |
  # recall | density | coverage | is | modes_captured | high_quality_fraction;
  # "": fid, or modes_captured for toy data; "none": off) is kept in
  # checkpoints_best/ (see best.json).
  # networks: "" (cnn for MNIST-like data, inception otherwise) or e.g.
  # "cnn,inception"; inception_weights: "" = $GANJAX_INCEPTION_WEIGHTS;
  # lpips_weights: "" = $GANJAX_LPIPS_WEIGHTS (LPIPS diversity when set, see
  # docs/lpips_weights.md).
  c.evaluation = ml_collections.ConfigDict(dict(
      every=0, num_samples=2000, best_metric="", parzen=False, networks="",
      inception_weights="", lpips_weights=""))

  # Reliability. A step whose losses or gradient norms are NaN/Inf stops the
  # run (exit code 3; the last checkpoint is kept, none of the bad state is
  # written), unless skip_nonfinite_updates, which keeps the previous
  # parameters and optimizer states for that step and counts it
  # ("skipped_steps" in the logs). override_config: resume a workdir whose
  # checkpoint was written by a config with a different model, data, loss,
  # latent or optimizer (refused otherwise). max_consecutive_skipped: that
  # many skipped updates in a row stop the run (exit code 3): a skipped
  # update leaves the state as it was, so it would never recover.
  c.skip_nonfinite_updates = False
  c.max_consecutive_skipped = 10
  c.override_config = False

  # Populations (experiments/members.py): N members of this config trained
  # together in one compiled step, in one workdir. size: N (0: a single
  # run); member i starts from seed + i and, unless shared_data, draws the
  # batches of the run with seed + i. sweep: each member's hyper-parameters.
  # "d_lr=1e-4,2e-4,4e-4; g_lr=1e-4,2e-4" is a grid (";" separates its
  # axes: 6 points); "d_lr=1e-4,2e-4 & g_lr=2e-4,4e-4" zips (items joined by
  # "&" vary together along one axis: 2 points). size 0 takes one member per
  # point; size N (a multiple of the points) repeats each point over N /
  # points consecutive members (seeds). Names: g_lr, d_lr (the optimizers'
  # learning rates), g_b1, d_b1, g_b2, d_b2, penalty_weight, ema_decay,
  # instance_noise_std, ada_target, and ganjax.population.sweepable's.
  # member_map: auto | map | vmap (ganjax.population.Population).
  # pbt.every: population-based training every that many steps (a multiple
  # of evaluation.every; 0: off): after the evaluation of that step, the
  # worst `fraction` of the members continue from copies of the best on
  # `metric` ("": evaluation.best_metric's), their hyper-parameters x0.8 or
  # x1.2; lineage.jsonl records who copied whom and every member's values.
  # The checkpoint of that step holds the members as scored (a resumed run
  # replays the exploit from lineage.jsonl).
  c.population = ml_collections.ConfigDict(dict(
      size=0, sweep="", shared_data=False, member_map="auto",
      pbt=ml_collections.ConfigDict(dict(every=0, fraction=0.25, metric=""))))
  return c
