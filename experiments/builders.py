"""From an experiment config to the objects that train: models, optimizers, the GAN.

``build(config)`` checks the config against the known fields
(``experiments/configs/base.py``), resolves the device count, the data's
shape and pixel range, and returns an ``Experiment`` holding the ``ganjax.GAN``.
Every user mistake (an unknown field, model, loss, optimizer argument or
dataset; a batch that does not split over the devices) raises ``ConfigError``
(or the pipeline's ``UnknownDatasetError`` / ``DatasetNotFoundError``, also
``ValueError``s) with a message saying what to change.

Pixel range: data are scaled to the range of the generator's output: (0, 1)
for the sigmoid MLPs of the GAN paper and the tutorial, (-1, 1) for DCGAN's
tanh. Toy data (points) are not scaled.

Conditional runs (``config.num_classes`` != 0): the number of classes is
resolved against the data set's (``ganjax.data.pipeline.num_classes``), the
models are built with ``num_classes=C`` and the GAN with ``num_classes=C``
and ``fake_labels``; ``Experiment.num_classes`` tells the runner to ask the
pipeline for labels. ``config.augment`` and ``config.loss_terms`` map onto
``ganjax.augment.DiffAugment`` / ``ADA`` and ``ganjax.terms``.
"""

import dataclasses
import difflib
import inspect
import math
from typing import Callable, Optional, Sequence

import jax.numpy as jnp
import ml_collections
import optax

import ganjax as gj
from experiments import members

Config = ml_collections.ConfigDict


class ConfigError(ValueError):
  """A mistake in the experiment config; the message says how to fix it."""


# name -> (builder, kind of data, value range of the generator's output)
MODELS = {
    "dcgan": (gj.models.dcgan, "image", (-1.0, 1.0)),
    "goodfellow_mlp": (gj.models.goodfellow_mlp, "image", (0.0, 1.0)),
    "small_mlp": (gj.models.small_mlp, "image", (0.0, 1.0)),
    "toy_mlp": (gj.models.toy_mlp, "points", None),
    "resnet": (gj.models.resnet, "image", (-1.0, 1.0)),
    "r3gan": (gj.models.r3gan, "image", (-1.0, 1.0)),
}
# Arguments a builder gets from the data and the config, not from config.model.
IMPLICIT_MODEL_ARGS = ("image_shape", "latent_dim", "data_dim", "num_classes")

OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": optax.adam,
    "sgd": optax.sgd,
    "rmsprop": optax.rmsprop,
    "goodfellow_sgd": gj.optim.goodfellow_sgd,
    "r3gan_adam": gj.optim.r3gan_adam,
}
# Optimizers that hold their hyper-parameters in their state already.
_INJECTED = ("goodfellow_sgd", "r3gan_adam")

# "r1_r2": R1 and R2 with the same gamma (R3GAN's regulariser).
PENALTIES = ("none", "gradient_penalty", "r1", "r1_r2")

TOY_DATASETS = ("toy_ring8", "toy_grid25", "toy_gaussian1d")


@dataclasses.dataclass(frozen=True)
class Experiment:
  """What ``build`` resolves from a config.

  Attributes:
    gan: the ``ganjax.GAN``.
    data_shape: shape of one example, e.g. ``(8, 8, 1)`` or ``(2,)``.
    value_range: pixel range of data and samples, or None for points.
    num_devices: devices the step runs on (1: plain ``jax.jit``).
    is_toy: the data are points from a toy distribution.
    num_classes: the classes of a conditional run (batches carry labels),
      None for an unconditional one.
    population: the ``ganjax.Population`` of ``config.population``
      (experiments/members.py), None for a single run.
  """
  gan: gj.GAN
  data_shape: tuple
  value_range: Optional[tuple]
  num_devices: int
  is_toy: bool
  num_classes: Optional[int] = None
  population: Optional[gj.Population] = None

  def resolved(self) -> dict:
    record = {"data_shape": list(self.data_shape),
              "value_range": (list(self.value_range)
                              if self.value_range is not None else None),
              "num_devices": self.num_devices}
    if self.num_classes is not None:  # recorded only when set, like "ada",
      record["num_classes"] = self.num_classes  # so older records match
    if self.gan.ada is not None:  # ADA keeps its probability in the state
      record["ada"] = True
    return record


# ----------------------------------------------------------------- checks


def did_you_mean(name: str, choices: Sequence[str]) -> str:
  """``" Did you mean 'x'?"`` for the choices close to ``name``, or ``""``."""
  close = difflib.get_close_matches(str(name), list(choices), n=2, cutoff=0.6)
  return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _choose(kind: str, name: str, choices: Sequence[str]) -> str:
  if name not in choices:
    raise ConfigError(
        f"Unknown {kind} {name!r}.{did_you_mean(name, choices)} Choose one of: "
        f"{', '.join(choices)}.")
  return name


def check_fields(config: Config, reference: Optional[Config] = None) -> None:
  """Raises ``ConfigError`` for top-level fields the runner does not know.

  Sub-configs (``model``, ``g_optimizer``, ``d_optimizer``, ``penalty``) hold
  keyword arguments that are checked against what the chosen model,
  optimizer or penalty accepts, when they are built.
  """
  if reference is None:
    from experiments.configs import base  # pylint: disable=g-import-not-at-top
    reference = base.get_config()
  known = set(reference.keys())
  unknown = [key for key in config.keys() if key not in known]
  if unknown:
    hints = "".join(did_you_mean(key, sorted(known)) for key in unknown)
    raise ConfigError(
        f"Unknown config field(s) {', '.join(repr(u) for u in unknown)}.{hints} "
        f"Known fields: {', '.join(sorted(known))}.")
  for key in ("model", "g_optimizer", "d_optimizer", "penalty"):
    if not isinstance(config[key], ml_collections.ConfigDict) or \
        "name" not in config[key]:
      raise ConfigError(f"config.{key} must be a ConfigDict with a 'name' "
                        f"field (e.g. {reference[key].to_dict()}).")
  for key in ("augment", "loss_terms", "population"):
    if key not in config:
      continue
    if not isinstance(config[key], ml_collections.ConfigDict):
      raise ConfigError(f"config.{key} must be a ConfigDict like "
                        f"{reference[key].to_dict()}.")
    unknown = [k for k in config[key].keys() if k not in reference[key]]
    if unknown:
      raise ConfigError(
          f"Unknown field(s) {', '.join(repr(u) for u in unknown)} in "
          f"config.{key}.{''.join(did_you_mean(u, list(reference[key])) for u in unknown)}"
          f" It takes: {', '.join(reference[key].keys())}.")


_WHY_POSITIVE = {
    "keep_checkpoints": " (the number of newest checkpoints kept; with 0 "
                        "every checkpoint would be deleted as it is written)",
    "num_eval_samples": " (the samples in each grid of samples/)",
}


def _kwargs_for(fn: Callable, kwargs: dict, what: str,
                implicit: Sequence[str] = ()) -> dict:
  """Checks ``kwargs`` against ``fn``'s signature; returns them."""
  params = inspect.signature(fn).parameters
  accepted = [p for p in params if p not in implicit]
  unknown = [k for k in kwargs if k not in accepted]
  if unknown:
    raise ConfigError(
        f"{what} does not take {', '.join(repr(u) for u in unknown)}."
        f"{''.join(did_you_mean(u, accepted) for u in unknown)} It accepts: "
        f"{', '.join(accepted) or 'nothing'}. Remove the field(s) from the "
        "config file; the command line cannot delete fields, so to switch "
        "models or optimizers start from a config file that uses them (e.g. "
        "experiments/configs/small_mlp_mnist.py --config.dataset=digits).")
  return kwargs


def resolve_num_devices(config: Config) -> int:
  """The device count of ``config.num_devices`` (-1: all local devices)."""
  try:
    n = gj.parallel.num_local_devices(config.num_devices)
  except ValueError as e:
    raise ConfigError(f"config.{e}") from None
  try:
    gj.parallel.check_divisible(config.batch_size, n, "config.batch_size")
  except ValueError as e:
    raise ConfigError(str(e)) from None
  return n


# ----------------------------------------------------------------- builders


def image_size(config: Config) -> Optional[tuple]:
  """``config.image_size`` as ``(H, W)``, or None for the native size."""
  size = config.image_size
  if not size:
    return None
  if isinstance(size, int):
    return (size, size)
  size = tuple(int(s) for s in size)
  if len(size) != 2:
    raise ConfigError(f"image_size must be 0, an int or (height, width), got "
                      f"{config.image_size!r}.")
  return size


def data_dir(config: Config) -> Optional[str]:
  return config.data_dir or None


def data_source(config: Config):
  """What the pipeline and the metrics read for ``config.dataset``: an
  ``ImageFolder`` at ``config.image_size`` / ``image_fit`` / ``channels`` for
  a folder or zip, the dataset name itself otherwise."""
  from ganjax.data import folder  # pylint: disable=g-import-not-at-top
  dataset = str(config.dataset)
  if folder.is_path(dataset):
    try:
      return folder.ImageFolder(dataset, image_size=image_size(config),
                                fit=config.image_fit,
                                channels=config.channels)
    except ValueError as e:
      raise ConfigError(f"config.dataset={dataset!r}: {e}") from None
  if config.image_fit != "center_crop" or config.channels != 0:
    raise ConfigError(
        "config.image_fit and config.channels apply to image folders and "
        f"zips; {dataset!r} is read as it is stored (leave them at "
        "center_crop and 0).")
  return dataset


def class_names(config: Config) -> Optional[list]:
  """The name of each class of ``config``'s data (a folder's label
  sub-folders in sorted order, TFDS's label names, "0".."9" for digits), or
  None when its labels are bare indices."""
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.class_names(data_source(config), data_dir=data_dir(config))


def build_models(config: Config, data_shape: Sequence[int],
                 num_classes: Optional[int] = None):
  """``(generator, discriminator, value_range)`` for ``config.model``.

  ``num_classes``: None, or C for class-conditional models (the builder's
  ``num_classes=`` argument).
  """
  spec = config.model.to_dict()
  name = _choose("model", spec.pop("name"), list(MODELS))
  builder, kind, value_range = MODELS[name]
  _kwargs_for(builder, spec, f"Model {name!r}", IMPLICIT_MODEL_ARGS)
  if num_classes is not None:
    if "num_classes" not in inspect.signature(builder).parameters:
      conditional = [m for m, (b, _, _) in MODELS.items()
                     if "num_classes" in inspect.signature(b).parameters]
      raise ConfigError(
          f"Model {name!r} has no class-conditional version, but "
          f"num_classes={config.num_classes}. Use one of "
          f"{', '.join(conditional)}, or --config.num_classes=0.")
    spec["num_classes"] = num_classes
  elif spec.get("aux_classifier"):
    raise ConfigError(
        "config.model.aux_classifier=True (AC-GAN) needs a conditional run: "
        "set --config.num_classes=-1 (the data set's classes).")
  data_shape = tuple(int(d) for d in data_shape)
  if kind == "points":
    if len(data_shape) != 1:
      raise ConfigError(
          f"Model {name!r} is for toy data (points), but dataset "
          f"{config.dataset!r} holds images of shape {data_shape}. Use "
          f"--config.model.name=dcgan (or small_mlp), or a toy dataset "
          f"({', '.join(TOY_DATASETS)}).")
    g, d = builder(data_dim=data_shape[0], **spec)
  else:
    if len(data_shape) != 3:
      raise ConfigError(
          f"Model {name!r} generates images, but dataset {config.dataset!r} "
          f"holds points of shape {data_shape}. Use --config.model.name="
          f"toy_mlp for toy data.")
    try:
      g, d = builder(image_shape=data_shape, latent_dim=config.latent_dim,
                     **spec)
    except (ValueError, TypeError) as e:
      raise ConfigError(f"Cannot build model {name!r} for data of shape "
                        f"{data_shape}: {e}") from None
  return g, d, value_range


def build_optimizer(spec: Config, what: str,
                    num_updates: Optional[int] = None, inject: tuple = ()
                    ) -> optax.GradientTransformation:
  """An optax optimizer from ``{name: adam|sgd|rmsprop|goodfellow_sgd, **kwargs}``.

  ``inject``: the names of hyper-parameters held in the optimizer's state
  (``optax.inject_hyperparams``; a population sweeps them); the others stay
  Python constants, so the updates are the same bit for bit.

  ``decay="linear"`` (optional field; default ``"none"``) decays
  ``learning_rate`` linearly to 0 over ``num_updates`` updates of this
  optimizer (SN-GAN / mimicry: over the run's generator steps, so the
  discriminator's ``num_steps * k`` updates).
  """
  kwargs = spec.to_dict()
  name = _choose(f"{what} optimizer", kwargs.pop("name"), list(OPTIMIZERS))
  decay = kwargs.pop("decay", "none")
  factory = OPTIMIZERS[name]
  _kwargs_for(factory, kwargs, f"Optimizer {name!r} ({what})")
  if decay == "linear":
    if "learning_rate" not in kwargs or not num_updates:
      raise ConfigError(f"The {what} optimizer's decay='linear' needs a "
                        "learning_rate and a positive number of steps.")
    kwargs["learning_rate"] = optax.linear_schedule(
        float(kwargs["learning_rate"]), 0.0, int(num_updates))
  elif decay != "none":
    raise ConfigError(f"The {what} optimizer's decay must be 'none' or "
                      f"'linear', got {decay!r}.")
  lr = kwargs.get("learning_rate")
  if isinstance(lr, (int, float)) and not (math.isfinite(lr) and lr >= 0):
    short = "g" if what == "generator" else "d"
    raise ConfigError(
        f"the {what}'s learning rate must be a finite number >= 0, got {lr} "
        f"(--config.{short}_optimizer.learning_rate); optax optimizers "
        "descend with a positive learning rate.")
  if inject and name not in _INJECTED:
    factory = optax.inject_hyperparams(factory, static_args=tuple(
        k for k in inspect.signature(factory).parameters if k not in inject))
  try:
    return factory(**kwargs)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"Cannot build the {what} optimizer {name!r} with "
                      f"{kwargs}: {e}") from None


_PENALTY_FIELDS = ("name", "weight", "decay", "final_weight", "decay_steps")


def build_penalty(spec: Config, num_updates: Optional[int] = None):
  """The penalty (or list) of ``config.penalty``: ``{name, weight}``.

  Optional fields: ``decay="cosine"`` takes the weight from ``weight`` to
  ``final_weight`` along ``ganjax.optim.cosine_schedule`` over
  ``decay_steps`` discriminator updates (0: ``num_updates``, the run's),
  as R3GAN's gamma (``ganjax.penalties.Scheduled``); ``"none"`` (default)
  keeps it constant.
  """
  name = _choose("penalty", spec.name, PENALTIES)
  extra = [k for k in spec.keys() if k not in _PENALTY_FIELDS]
  if extra:
    raise ConfigError(f"config.penalty takes only {', '.join(_PENALTY_FIELDS)}"
                      f"; got {extra}.")
  if name == "none":
    return None
  weight = float(spec.weight)
  if weight <= 0:
    raise ConfigError(f"penalty {name!r} needs a positive weight, got "
                      f"{spec.weight} (WGAN-GP uses 10).")
  decay = spec.get("decay", "none")
  if decay not in ("none", "cosine"):
    raise ConfigError(f"config.penalty.decay must be 'none' or 'cosine', got "
                      f"{decay!r}.")
  if decay == "cosine":
    steps = int(spec.get("decay_steps", 0)) or num_updates
    final = float(spec.get("final_weight", 0.0))
    if not steps or steps < 0 or final < 0:
      raise ConfigError("config.penalty.decay='cosine' needs final_weight "
                        ">= 0 and decay_steps > 0 (0: the run's updates).")
    schedule = gj.optim.cosine_schedule(weight, final, steps)
    weight = 1.0
  make = {"gradient_penalty": lambda: [gj.penalties.GradientPenalty(weight)],
          "r1": lambda: [gj.penalties.R1(weight)],
          "r1_r2": lambda: [gj.penalties.R1(weight), gj.penalties.R2(weight)]}
  penalties = make[name]()
  if decay == "cosine":
    penalties = [gj.penalties.Scheduled(p, schedule) for p in penalties]
  return penalties[0] if len(penalties) == 1 else penalties


def build_ema_decay(config: Config):
  """``GAN.ema_decay`` of the config: None, ``ema_decay``, or a half-life schedule.

  ``ema_half_life_images > 0`` (StyleGAN / R3GAN style; ``ema_decay`` must
  then be 0): ``ganjax.optim.ema_half_life_decay(batch_size,
  ema_half_life_images, ema_ramp_images)``.
  """
  half_life = float(config.ema_half_life_images)
  if half_life < 0 or float(config.ema_ramp_images) < 0:
    raise ConfigError("config.ema_half_life_images and ema_ramp_images must "
                      "be >= 0.")
  if half_life > 0:
    if config.ema_decay:
      raise ConfigError(
          "Set either config.ema_decay or config.ema_half_life_images (an "
          "EMA given by its half-life in images), not both.")
    return gj.optim.ema_half_life_decay(int(config.batch_size), half_life,
                                        float(config.ema_ramp_images))
  return float(config.ema_decay) if config.ema_decay else None


def resolve_num_classes(config: Config,
                        dataset_classes: Optional[int] = -1) -> Optional[int]:
  """The classes of a conditional run (None: unconditional).

  Args:
    config: with ``num_classes`` 0 (unconditional), -1 (the data set's) or
      C >= 2 (checked against the data set's).
    dataset_classes: the data set's number of classes (None: unlabelled);
      -1 (default) looks it up (``ganjax.data.pipeline.num_classes``: TFDS
      data sets read their metadata).

  Raises:
    ConfigError: for a bad value, an unlabelled data set, or a C that is
      not the data set's.
  """
  requested = config.num_classes
  if (not isinstance(requested, int) or isinstance(requested, bool)
      or requested < -1 or requested == 1):
    raise ConfigError(
        f"config.num_classes must be 0 (unconditional), -1 (the data set's "
        f"number of classes) or an integer >= 2, got {requested!r}.")
  if requested == 0:
    return None
  if dataset_classes == -1:
    from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
    try:
      dataset_classes = pipeline.num_classes(data_source(config),
                                             data_dir=data_dir(config))
    except (pipeline.UnknownDatasetError, pipeline.DatasetNotFoundError):
      raise
    except (ValueError, TypeError) as e:
      raise ConfigError(f"Dataset {config.dataset!r}: {e}") from None
  if dataset_classes is None:
    raise ConfigError(
        f"num_classes={requested} asks for a class-conditional GAN, but "
        f"dataset {config.dataset!r} has no class labels. Use a labelled "
        "data set (digits, mnist, fashion_mnist, cifar10, toy_ring8, "
        "toy_grid25, a folder with label sub-folders) or "
        "--config.num_classes=0.")
  if requested != -1 and requested != dataset_classes:
    raise ConfigError(
        f"num_classes={requested} but dataset {config.dataset!r} has "
        f"{dataset_classes} classes. Use --config.num_classes="
        f"{dataset_classes} (or -1: the data set's).")
  return int(dataset_classes)


def build_augment(config: Config, data_shape: Sequence[int]):
  """``(augment, ada)`` for ``GAN(augment=..., ada=...)`` from ``config.augment``."""
  spec = config.augment
  policy = str(spec.policy).strip()
  ada_target = float(spec.ada_target)
  if not policy:
    if ada_target:
      raise ConfigError(
          "config.augment.ada_target > 0 (ADA) adapts the probability of an "
          "augmentation, but augment.policy is empty: set e.g. "
          "--config.augment.policy=color,translation,cutout.")
    return None, None
  if len(data_shape) != 3:
    raise ConfigError(
        f"config.augment transforms images, but dataset {config.dataset!r} "
        f"holds points of shape {tuple(data_shape)}: use "
        "--config.augment.policy=''.")
  try:
    augment = gj.augment.DiffAugment(
        policy=tuple(p.strip() for p in policy.split(",") if p.strip()),
        probability=float(spec.probability),
        translation_ratio=float(spec.translation_ratio),
        cutout_ratio=float(spec.cutout_ratio))
    ada = (gj.augment.ADA(target=ada_target,
                          speed_images=int(spec.ada_speed_images))
           if ada_target else None)
  except ValueError as e:
    raise ConfigError(f"config.augment: {e}") from None
  return augment, ada


def build_loss_terms(config: Config, num_classes: Optional[int]) -> tuple:
  """``ganjax.terms`` callables from ``config.loss_terms`` (weights, 0: off)."""
  spec = config.loss_terms
  terms = []
  for name in ("aux_classifier", "feature_matching", "mode_seeking"):
    weight = spec[name]
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) \
        or weight < 0:
      raise ConfigError(f"config.loss_terms.{name} is a weight >= 0 (0: off),"
                        f" got {weight!r}.")
  has_head = bool(config.model.get("aux_classifier", False))
  if spec.aux_classifier > 0:
    if num_classes is None:
      raise ConfigError(
          "config.loss_terms.aux_classifier > 0 (AC-GAN) needs a conditional "
          "run: set --config.num_classes=-1 and "
          "--config.model.aux_classifier=True.")
    if not has_head:
      raise ConfigError(
          "config.loss_terms.aux_classifier > 0 (AC-GAN) needs D's classifier "
          "head: set --config.model.aux_classifier=True.")
    terms.append(gj.terms.AuxiliaryClassifier(
        weight=float(spec.aux_classifier)))
  elif has_head:
    raise ConfigError(
        "config.model.aux_classifier=True adds AC-GAN's classifier head, but "
        "config.loss_terms.aux_classifier is 0, so nothing trains it: set "
        "--config.loss_terms.aux_classifier=1.0 (Odena et al. 2017).")
  if spec.feature_matching > 0:
    if not config.model.get("return_features", False):
      raise ConfigError(
          "config.loss_terms.feature_matching > 0 needs D's features: set "
          "--config.model.return_features=True.")
    terms.append(gj.terms.FeatureMatching(weight=float(spec.feature_matching)))
  if spec.mode_seeking > 0:
    terms.append(gj.terms.ModeSeeking(weight=float(spec.mode_seeking)))
  return tuple(terms)


def data_shape_of(config: Config) -> tuple:
  """The shape of one example of ``config.dataset`` (after resizing)."""
  from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top
  size = image_size(config)
  if config.dataset in TOY_DATASETS and size is not None:
    raise ConfigError(f"{config.dataset} holds points: image_size must be 0.")
  try:
    return tuple(pipeline.data_shape(data_source(config), image_size=size,
                                     data_dir=data_dir(config)))
  except (pipeline.UnknownDatasetError, pipeline.DatasetNotFoundError):
    raise
  except (ValueError, TypeError) as e:
    raise ConfigError(f"Dataset {config.dataset!r}: {e}") from None


COMPUTE_DTYPES = {"float32": None, "bfloat16": "bfloat16",
                  "float16": "float16"}


def compute_dtype(config: Config):
  """``config.compute_dtype`` as ``GAN(compute_dtype=...)`` takes it."""
  name = _choose("compute_dtype", config.compute_dtype, sorted(COMPUTE_DTYPES))
  dtype = COMPUTE_DTYPES[name]
  return None if dtype is None else jnp.dtype(dtype)


def build(config: Config, data_shape: Optional[Sequence[int]] = None,
          num_devices: Optional[int] = None,
          dataset_classes: Optional[int] = -1) -> Experiment:
  """Checks ``config`` and builds the GAN it describes.

  Args:
    config: an experiment config (see ``experiments/configs/base.py``).
    data_shape: the shape of one example; default from the dataset (TFDS
      data sets read their metadata, which imports TensorFlow).
    num_devices: the resolved device count; default from the config.
    dataset_classes: the data set's number of classes (None: unlabelled),
      used only when ``config.num_classes`` != 0; -1 (default) looks it up
      like ``data_shape``.

  Returns:
    an ``Experiment``.

  Raises:
    ConfigError: for any mistake in the config.
  """
  check_fields(config)
  for field in ("k", "batch_size", "num_steps", "latent_dim", "log_every",
                "eval_every", "checkpoint_every", "num_eval_samples",
                "keep_checkpoints", "max_consecutive_skipped",
                "steps_per_call"):
    value = config[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f"config.{field} must be a positive integer, got "
                        f"{value!r}{_WHY_POSITIVE.get(field, '')}.")
  every = config.evaluation.every
  if not isinstance(every, int) or isinstance(every, bool) or every < 0:
    raise ConfigError("config.evaluation.every must be an integer >= 0 "
                      f"(0: no evaluation during training), got {every!r}.")
  if num_devices is None:
    num_devices = resolve_num_devices(config)
  if data_shape is None:
    data_shape = data_shape_of(config)
  data_shape = tuple(int(d) for d in data_shape)
  num_classes = resolve_num_classes(config, dataset_classes)
  if config.fake_labels not in ("uniform", "real"):
    raise ConfigError(f"config.fake_labels must be 'uniform' or 'real', got "
                      f"{config.fake_labels!r}.")
  generator, discriminator, value_range = build_models(config, data_shape,
                                                       num_classes)
  augment, ada = build_augment(config, data_shape)
  loss_terms = build_loss_terms(config, num_classes)
  _choose("loss", config.loss, sorted(gj.losses.LOSSES))
  instance_noise = None
  if config.instance_noise_std < 0:
    raise ConfigError("instance_noise_std must be >= 0.")
  if config.instance_noise_std > 0:
    instance_noise = gj.penalties.InstanceNoise(
        std=float(config.instance_noise_std),
        anneal_steps=int(config.instance_noise_anneal_steps))
  try:
    population_spec = members.spec(config)
  except members.ConfigError as e:
    raise ConfigError(str(e)) from None
  try:
    gan = gj.GAN(
        generator=generator,
        discriminator=discriminator,
        loss=config.loss,
        g_optimizer=build_optimizer(
            config.g_optimizer, "generator", config.num_steps,
            inject=members.swept_optimizer_hparams(population_spec, "g")),
        d_optimizer=build_optimizer(
            config.d_optimizer, "discriminator", config.num_steps * config.k,
            inject=members.swept_optimizer_hparams(population_spec, "d")),
        k=int(config.k),
        latent_dim=int(config.latent_dim),
        latent_distribution=config.latent_distribution,
        penalty=build_penalty(config.penalty, config.num_steps * config.k),
        instance_noise=instance_noise,
        weight_clip=float(config.weight_clip) if config.weight_clip else None,
        ema_decay=build_ema_decay(config),
        num_classes=num_classes,
        fake_labels=config.fake_labels,
        augment=augment,
        ada=ada,
        loss_terms=loss_terms,
        d_loop=config.d_loop,
        compute_dtype=compute_dtype(config))
  except ValueError as e:
    if isinstance(e, ConfigError):
      raise
    raise ConfigError(str(e)) from None
  population = None
  if population_spec is not None:
    try:
      population = members.build(config, gan, population_spec, data_shape)
    except members.ConfigError as e:
      raise ConfigError(str(e)) from None
  return Experiment(gan=gan, data_shape=data_shape, value_range=value_range,
                    num_devices=num_devices,
                    is_toy=config.dataset in TOY_DATASETS,
                    num_classes=num_classes, population=population)


def config_from_dict(d: dict) -> Config:
  """A ConfigDict from ``config.json``'s dict.

  Top-level fields the record lacks (a workdir written before the field
  existed) take ``experiments/configs/base.py``'s defaults.
  """
  from experiments.configs import base  # pylint: disable=g-import-not-at-top
  defaults = base.get_config().to_dict()
  return ml_collections.ConfigDict(
      {**{k: v for k, v in defaults.items() if k not in d}, **d})

