"""The contract between ``ganjax.GAN``, its models and its batches, checked with messages that name the fix.

* A batch is an array ``[k, B, *data_shape]`` or a dict with the entries
  ``IMAGE`` (that array) and ``LABEL`` (int32 ``[k, B]``), as ``ganjax.data``
  yields them (``unpack``).
* The generator is ``G(z [B, latent_dim], train=...) -> [B, *data_shape]``,
  the discriminator ``D(x [B, *data_shape], train=...) -> logits [B]`` (or a
  dict ``{"logits": [B], **aux}``); with ``num_classes`` both also take labels
  ``y`` int32 ``[B]`` as their second argument (``check_models``,
  ``check_discriminator_output``, ``check_sample_shape``).
* Mixed precision needs models with a ``dtype`` field, synchronised batch
  statistics models with an ``axis_name`` field (``with_compute_dtype``,
  ``with_axis_name``).

``GAN.__post_init__`` runs ``check_options``; ``GAN.init`` the model checks,
once; ``GAN.step`` only ``unpack`` and the shape comparison of real and fake
examples, both on static shapes while it is traced.
"""

import dataclasses
import inspect
import warnings
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ganjax import backend

IMAGE, LABEL = "image", "label"  # the entries of a labelled batch
FAKE_LABELS = ("uniform", "real")
D_APPLY = ("separate", "joint")


# ----------------------------------------------------------- GAN options


def check_options(gan) -> None:
  """Raises a ValueError naming the fix for any invalid field of ``gan``."""
  if not isinstance(gan.k, int) or isinstance(gan.k, bool) or gan.k < 1:
    raise ValueError(
        f"k (discriminator updates per generator update) must be an integer "
        f">= 1, got {gan.k!r}; the paper uses k=1, WGAN-GP k=5.")
  if not isinstance(gan.latent_dim, int) or gan.latent_dim < 1:
    raise ValueError(f"latent_dim must be a positive integer, got "
                     f"{gan.latent_dim!r}.")
  if gan.latent_distribution not in ("normal", "uniform"):
    raise ValueError(f"latent_distribution must be 'normal' or 'uniform', "
                     f"got {gan.latent_distribution!r}.")
  if gan.num_classes is not None and (
      not isinstance(gan.num_classes, int) or gan.num_classes < 2):
    raise ValueError(f"num_classes must be an integer >= 2 (or None for an "
                     f"unconditional GAN), got {gan.num_classes!r}.")
  if gan.d_apply not in D_APPLY:
    raise ValueError(f"d_apply must be one of {D_APPLY} (how D is applied to "
                     f"an update's real and fake examples), got "
                     f"{gan.d_apply!r}.")
  if gan.fake_labels not in FAKE_LABELS:
    raise ValueError(f"fake_labels must be one of {FAKE_LABELS}, got "
                     f"{gan.fake_labels!r}.")
  if gan.ema_decay is not None and not callable(gan.ema_decay) and \
      not 0.0 <= gan.ema_decay < 1.0:
    raise ValueError(f"ema_decay must be in [0, 1), got {gan.ema_decay}.")
  if gan.d_loop not in backend.D_LOOPS:
    raise ValueError(f"d_loop must be 'auto', 'scan' or 'unroll', got "
                     f"{gan.d_loop!r}.")
  if gan.weight_clip is not None and gan.weight_clip <= 0:
    raise ValueError(f"weight_clip must be positive, got {gan.weight_clip}.")
  if gan.ada is not None and gan.augment is None:
    raise ValueError("GAN(ada=...) adapts the probability of an "
                     "augmentation: also pass augment=ganjax.augment."
                     "DiffAugment(...).")
  for field, value in (("penalty", gan.penalties), ("instance_noise",
                        gan.instance_noise), ("augment", gan.augment),
                       ("ada", gan.ada), ("loss_terms", gan.loss_terms)):
    _refuse_classes(field, value)
  for penalty in gan.penalties:
    if not callable(penalty):
      raise ValueError(f"Each penalty must be a callable (d_fn, real, fake, "
                       f"keys) -> scalar, got {penalty!r}.")
  if gan.compute_dtype is not None and not jnp.issubdtype(gan.compute_dtype,
                                                          jnp.floating):
    raise ValueError(f"compute_dtype must be a floating dtype such as "
                     f"jnp.bfloat16, got {gan.compute_dtype!r}.")


def _refuse_classes(field: str, value) -> None:
  """A class where an instance belongs (``penalty=ganjax.penalties.R1``)."""
  for item in value if isinstance(value, (tuple, list)) else (value,):
    while item is not None:  # and what a Lazy or Scheduled penalty wraps
      candidate, item = item, getattr(item, "penalty", None)
      if isinstance(candidate, type):
        raise ValueError(
            f"GAN({field}=...) got the class {candidate.__module__}."
            f"{candidate.__name__}; pass an instance, e.g. "
            f"{candidate.__name__}() or with its parameters "
            f"({candidate.__name__}(...)).")


def _has_field(module: nn.Module, name: str) -> bool:
  return name in {f.name for f in dataclasses.fields(module)}


def with_compute_dtype(module: nn.Module, dtype, role: str) -> nn.Module:
  """``module`` cloned to compute in ``dtype`` (its ``dtype`` field); None: as is."""
  if dtype is None:
    return module
  if not _has_field(module, "dtype"):
    raise ValueError(
        f"GAN(compute_dtype={jnp.dtype(dtype).name}) needs a {role} with a "
        f"`dtype` field (the computation dtype passed to its layers, as every "
        f"ganjax model has); {type(module).__name__} has none.")
  return module.clone(dtype=dtype)


def with_axis_name(module: nn.Module, axis_name: str) -> nn.Module:
  """``module`` cloned with ``axis_name`` (its batch norm averages statistics
  over that axis), when it has such a field."""
  if _has_field(module, "axis_name"):
    return module.clone(axis_name=axis_name)
  return module


# --------------------------------------------------------------- models


def _check_signature(module: nn.Module, role: str, args: str) -> None:
  """The model contract that a signature shows: ``__call__(..., train=...)``."""
  params = inspect.signature(type(module).__call__).parameters
  takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
  if "train" not in params and not takes_kwargs:
    raise ValueError(
        f"The {role} {type(module).__name__} must take a `train` keyword "
        f"argument: __call__(self, {args}, train: bool) (True in the step: "
        f"batch statistics and dropout; False for sampling). Its signature is "
        f"{inspect.signature(type(module).__call__)}.")


def _positional(module: nn.Module) -> list:
  params = inspect.signature(type(module).__call__).parameters.values()
  return [p for p in params
          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
          and p.name not in ("self", "train")]


def _takes_labels(module: nn.Module) -> bool:
  """Whether ``__call__`` accepts a second positional argument (the labels)."""
  params = inspect.signature(type(module).__call__).parameters.values()
  return len(_positional(module)) >= 2 or any(
      p.kind == p.VAR_POSITIONAL for p in params)


def _requires_labels(module: nn.Module) -> bool:
  """Whether ``__call__`` needs a second positional argument (no default)."""
  positional = _positional(module)
  return len(positional) >= 2 and positional[1].default is inspect.Parameter.empty


def check_models(generator: nn.Module, discriminator: nn.Module,
                 latent_dim: int, num_classes: Optional[int]) -> None:
  """The model contract that needs no parameters: signatures, ``latent_dim``,
  conditional models in a conditional GAN and unconditional ones otherwise."""
  conditional = num_classes is not None
  _check_signature(generator, "generator", "z" + ", y" * conditional)
  _check_signature(discriminator, "discriminator", "x" + ", y" * conditional)
  g_latent = getattr(generator, "latent_dim", None)
  if isinstance(g_latent, int) and g_latent != latent_dim:
    raise ValueError(
        f"The generator was built for latent_dim={g_latent} but the GAN has "
        f"latent_dim={latent_dim}: pass the same latent_dim to both.")
  for role, module in (("generator", generator),
                       ("discriminator", discriminator)):
    model_classes = getattr(module, "num_classes", None)
    if model_classes is None and not conditional and _requires_labels(module):
      raise ValueError(
          f"The {role} {type(module).__name__} takes labels (its __call__ "
          f"needs {_positional(module)[1].name!r}) but the GAN is "
          f"unconditional: pass GAN(num_classes=C) and labelled batches "
          f"{{{IMAGE!r}: ..., {LABEL!r}: ...}}, or give the labels a default "
          f"of None.")
    if model_classes is not None and not conditional:
      raise ValueError(
          f"The {role} is conditional (num_classes={model_classes}) but the "
          f"GAN is not: pass GAN(num_classes={model_classes}) and labelled "
          f"batches {{{IMAGE!r}: ..., {LABEL!r}: ...}}.")
    if conditional:
      if model_classes is not None and model_classes != num_classes:
        raise ValueError(
            f"The {role} was built for num_classes={model_classes} but the "
            f"GAN has num_classes={num_classes}: use the same number.")
      if model_classes is None and (_has_field(module, "num_classes")
                                    or not _takes_labels(module)):
        raise ValueError(
            f"GAN(num_classes={num_classes}) calls the {role} with "
            f"labels, but {type(module).__name__} is unconditional: build a "
            f"conditional model (e.g. ganjax.models.dcgan(..., num_classes="
            f"{num_classes})) or drop num_classes.")


def check_sample_shape(fake_shape: tuple, images_shape: tuple) -> None:
  """The generator's samples ``fake_shape`` (one example) fit data of shape
  ``images_shape`` (``[B, ...]`` or ``[k, B, ...]``)."""
  fake_shape, images_shape = tuple(fake_shape), tuple(images_shape)
  if fake_shape not in (images_shape[1:], images_shape[2:]):
    # Images are [H, W, C]: a rank-5 batch is [k, B, H, W, C].
    step_batch = len(images_shape) == 5 or (
        len(images_shape) > 2 and len(fake_shape) == len(images_shape) - 2)
    data_shape = images_shape[2:] if step_batch else images_shape[1:]
    example = (f"ganjax.models.dcgan(image_shape={data_shape})"
               if len(data_shape) == 3 else
               f"ganjax.models.toy_mlp(data_dim={data_shape[0]})"
               if len(data_shape) == 1 else "models for that shape")
    raise ValueError(
        f"The generator produces samples of shape {fake_shape}, but the data "
        f"have examples of shape {data_shape} (example batch {images_shape}, "
        f"read as {'[k, B, ...]' if step_batch else '[B, ...]'}). Build the "
        f"models for the data, e.g. {example}.")


def check_discriminator_output(out) -> None:
  """D's output on a batch of 2 is logits ``[2]`` (or a dict with them)."""
  logits = out["logits"] if isinstance(out, dict) else out
  if not hasattr(logits, "shape") or tuple(logits.shape) != (2,):
    shape = getattr(logits, "shape", type(logits).__name__)
    raise ValueError(
        f"The discriminator must return one logit per example, shape [B], "
        f"(or a dict with 'logits' [B]); on a batch of 2 it returned "
        f"{tuple(shape) if isinstance(shape, tuple) else shape}. For a "
        f"[B, 1] output, return logits[:, 0] (or jnp.squeeze(x, -1)).")


def _data_range(images) -> Optional[tuple[float, float]]:
  """``(min, max)`` of concrete data, None for traced or abstract data."""
  if isinstance(images, (jax.core.Tracer, jax.ShapeDtypeStruct)):
    return None
  images = np.asarray(images)
  if images.size == 0:
    return None
  return float(images.min()), float(images.max())


def warn_outside_output_range(generator: nn.Module, images) -> None:
  """Warns when concrete data lie outside the generator's ``output_range``."""
  output_range = getattr(generator, "output_range", None)
  data_range = _data_range(images)
  if output_range is None or data_range is None:
    return
  (lo, hi), (dmin, dmax) = output_range, data_range
  tolerance = 1e-3 * (hi - lo)
  if dmin < lo - tolerance or dmax > hi + tolerance:
    warnings.warn(
        f"The data lie in [{dmin:.3g}, {dmax:.3g}] but the generator's "
        f"samples lie in [{lo}, {hi}]: D can tell them apart by their range "
        f"alone. Scale the data to [{lo}, {hi}] (e.g. images / 127.5 - 1 "
        f"for tanh, images / 255 for sigmoid).", stacklevel=3)


# -------------------------------------------------------------- batches


def unpack(batch, k: int, num_classes: Optional[int]
           ) -> tuple[jax.Array, Optional[jax.Array]]:
  """A step batch -> ``(images [k, B, ...], labels int32 [k, B] or None)``, checked."""
  if isinstance(batch, dict):
    if IMAGE not in batch:
      raise ValueError(f"A dict batch needs an {IMAGE!r} entry [k, B, ...] "
                       f"(and {LABEL!r} [k, B]); got keys {sorted(batch)}.")
    images, labels = batch[IMAGE], batch.get(LABEL)
  else:
    images, labels = batch, None
  if images.ndim < 3 or images.shape[0] != k:
    raise ValueError(
        f"GAN.step expects a batch of shape [k, B, *data_shape] with k={k} "
        f"real minibatches (one per discriminator update), got shape "
        f"{tuple(images.shape)}. Reshape a [k*B, ...] batch with "
        f"batch.reshape(k, B, ...), or use ganjax.data pipelines with k={k}.")
  if images.shape[1] == 0:
    raise ValueError("GAN.step got an empty minibatch (B = 0): each of the "
                     "k minibatches needs at least one example.")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"GAN.step expects floating-point data scaled to the "
                     f"generator's output range, got dtype {images.dtype}.")
  if num_classes is None:
    return images, None
  if labels is None:
    raise ValueError(
        f"This GAN is conditional (num_classes={num_classes}): pass "
        f"batches {{{IMAGE!r}: [k, B, ...], {LABEL!r}: int32 [k, B]}}.")
  if (tuple(labels.shape) != tuple(images.shape[:2])
      or not jnp.issubdtype(labels.dtype, jnp.integer)):
    raise ValueError(
        f"batch[{LABEL!r}] must be integer [k, B] = {tuple(images.shape[:2])}, "
        f"got {labels.dtype} {tuple(labels.shape)}.")
  return images, labels.astype(jnp.int32)


def check_step_shapes(fake_shape: tuple, real_shape: tuple) -> None:
  """In the step: fakes ``[B, ...]`` have the shape of the real minibatch."""
  if tuple(fake_shape[1:]) != tuple(real_shape[1:]):
    raise ValueError(
        f"The real data have examples of shape {tuple(real_shape[1:])} but "
        f"the generator makes {tuple(fake_shape[1:])}: build the models for "
        f"the data's shape (e.g. ganjax.models.dcgan(image_shape="
        f"{tuple(real_shape[1:])})) or resize the data.")


def check_label_range(labels, num_classes: int) -> None:
  """Concrete labels lie in [0, num_classes) (traced ones are checked by the
  step's ``label_out_of_range`` metric)."""
  if labels is None or isinstance(labels, (jax.core.Tracer,
                                           jax.ShapeDtypeStruct)):
    return
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(
        f"labels must lie in [0, {num_classes}) (num_classes={num_classes}); "
        f"got values from {labels.min()} to {labels.max()}.")


def check_labels(labels, num: int, num_classes: Optional[int]
                 ) -> Optional[jax.Array]:
  """Labels given to ``sample`` / ``generate``: int32 ``[num]`` or None."""
  if num_classes is None:
    if labels is not None:
      raise ValueError("labels given to an unconditional GAN: build it with "
                       "num_classes=... (and conditional models).")
    return None
  if labels is None:
    return None
  labels = jnp.asarray(labels)
  if labels.shape != (num,) or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"labels must be integer [{num}] (one class per "
                     f"sample), got {labels.dtype} {tuple(labels.shape)}.")
  return labels.astype(jnp.int32)

