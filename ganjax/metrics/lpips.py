"""LPIPS (Zhang et al. 2018) in JAX: the ``lpips`` package's v0.1 metric, weights from a local file.

The learned perceptual image patch similarity between two images is

    d(x, x0) = sum_l 1 / (H_l W_l) sum_{h,w} || w_l * (y^l_hw - y0^l_hw) ||_2^2

where ``y^l`` are the channel-unit-normalised activations of layer ``l`` of a
feature network (AlexNet's five ReLU outputs, or VGG16's ``relu1_2 ..
relu5_3``) and ``w_l >= 0`` are learned per-channel weights (the "linear
heads", 1x1 convolutions without bias; ``w_l * diff`` squared is ``w_l^2``
weighting, which the package folds into one non-negative weight per channel
applied to the squared difference). Input handling is the package's: images
in [-1, 1], then the scaling layer ``(x - shift) / scale`` with its
ImageNet-like constants.

Because the heads are non-negative, LPIPS is a squared Euclidean distance
between embeddings: ``d(x, x0) = || e(x) - e(x0) ||^2`` with ``e(x) =
concat_l sqrt(w_l / (H_l W_l)) * y^l`` (``lpips_embedding``). The mean
pairwise LPIPS of many images (``ganjax.metrics.diversity``) therefore needs
no pairs at all.

Weights are never downloaded. One ``.npz`` holds the backbone (torchvision's
``features.<i>.weight/bias`` of AlexNet or VGG16, torch layout) and the heads
(``lin<l>.weight [1, C_l, 1, 1]``, from the ``lpips`` package's
``weights/v0.1/<net>.pth``). Make it once (no PyTorch needed)::

    python -m ganjax.metrics.lpips --net alex \
        --backbone alexnet-owt-7be5be79.pth --heads .../lpips/weights/v0.1/alex.pth \
        lpips_alex.npz

and pass it to ``load_lpips`` / ``Evaluator(lpips_weights=...)`` or set
``$GANJAX_LPIPS_WEIGHTS``. See ``docs/lpips_weights.md``.

References: Zhang et al., 2018, "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric", https://arxiv.org/abs/1801.03924.
"""

import argparse
import functools
import importlib.util
import os
import pickle
import sys
from typing import Any, Mapping, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ganjax.cache import file_sha256, weights_file

WEIGHTS_ENV = "GANJAX_LPIPS_WEIGHTS"
NETS = ("alex", "vgg")

# The lpips package's ScalingLayer (v0.1): applied to images in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips.normalize_tensor's epsilon, added to the channel norm

# A backbone is a tuple of stages, one tapped ReLU output each. A stage: the
# max pool before it ((window, stride) or None) and its convolutions
# (torchvision's index in ``features``, out channels, kernel, stride,
# padding), each followed by a ReLU.
_ALEX = (
    (None, ((0, 64, 11, 4, 2),)),
    ((3, 2), ((3, 192, 5, 1, 2),)),
    ((3, 2), ((6, 384, 3, 1, 1),)),
    (None, ((8, 256, 3, 1, 1),)),
    (None, ((10, 256, 3, 1, 1),)),
)
_VGG16 = (
    (None, ((0, 64, 3, 1, 1), (2, 64, 3, 1, 1))),
    ((2, 2), ((5, 128, 3, 1, 1), (7, 128, 3, 1, 1))),
    ((2, 2), ((10, 256, 3, 1, 1), (12, 256, 3, 1, 1), (14, 256, 3, 1, 1))),
    ((2, 2), ((17, 512, 3, 1, 1), (19, 512, 3, 1, 1), (21, 512, 3, 1, 1))),
    ((2, 2), ((24, 512, 3, 1, 1), (26, 512, 3, 1, 1), (28, 512, 3, 1, 1))),
)
BACKBONES = {"alex": _ALEX, "vgg": _VGG16}
# The package's head files (``lpips/weights/v0.1/<file>``) and torchvision's
# ImageNet weights (``torchvision.models.<net>``'s IMAGENET1K_V1).
HEAD_FILES = {"alex": "alex.pth", "vgg": "vgg.pth"}
TORCHVISION_FILES = {"alex": "alexnet-owt-7be5be79.pth",
                     "vgg": "vgg16-397923af.pth"}


def channels(net: str) -> tuple[int, ...]:
  """Channels of the five tapped layers: ``(64, 192, 384, 256, 256)`` for alex."""
  return tuple(stage[1][-1][1] for stage in BACKBONES[_check_net(net)])


def _check_net(net: str) -> str:
  if net not in BACKBONES:
    raise ValueError(f"Unknown LPIPS network {net!r}; choose from {NETS}.")
  return net


class FeatureStack(nn.Module):
  """torchvision's AlexNet / VGG16 ``features``, returning the ReLU output of each stage.

  ``__call__(x [B, H, W, 3]) -> tuple of [B, H_l, W_l, C_l]``. Convolution
  ``i`` of torchvision's ``features`` is the submodule ``features_<i>``.

  Attributes:
    stages: ``BACKBONES[net]``.
    precision: conv precision (``HIGHEST`` keeps GPUs/TPUs in float32).
  """
  stages: tuple
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    taps = []
    for pool, convs in self.stages:
      if pool is not None:  # torch MaxPool2d, no padding, floor mode
        x = nn.max_pool(x, (pool[0],) * 2, (pool[1],) * 2, "VALID")
      for index, features, kernel, stride, padding in convs:
        x = nn.Conv(features, (kernel, kernel), (stride, stride),
                    padding=((padding, padding),) * 2, precision=self.precision,
                    name=f"features_{index}")(x)
        x = nn.relu(x)
      taps.append(x)
    return tuple(taps)


def preprocess(images: chex.Array, size: int | None = None) -> jax.Array:
  """Images ``[B, H, W, 1 or 3]`` in [0, 1] -> the backbone's input ``[B, size, size, 3]``.

  Grayscale is repeated to RGB; ``size`` (optional) resizes bilinearly
  (half-pixel centres; antialiased when shrinking); then ``2 x - 1`` and the
  package's scaling layer ``(x - SHIFT) / SCALE``.
  """
  x = jnp.asarray(images, jnp.float32)
  chex.assert_rank(x, 4)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if x.shape[-1] != 3:
    raise ValueError(f"LPIPS takes 1 or 3 channels, got shape {x.shape}.")
  if size and x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, 3), "bilinear",
                         antialias=True, precision=jax.lax.Precision.HIGHEST)
  x = 2.0 * x - 1.0
  return (x - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)


def _unit_channels(f: jax.Array) -> jax.Array:
  """``f / (||f||_channels + eps)`` per position, as ``lpips.normalize_tensor``."""
  norm = jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True))
  return f / (norm + EPS)


@functools.partial(jax.jit, static_argnames=("net", "size"))
def lpips_features(variables: Mapping[str, Any], images: chex.Array,
                   net: str = "alex", size: int | None = None
                   ) -> tuple[jax.Array, ...]:
  """Unit-normalised features of each LPIPS layer.

  Args:
    variables: ``{"backbone": flax variables, "heads": [w_l [C_l]]}``
      (``load_lpips``).
    images: ``[B, H, W, 1 or 3]`` in [0, 1].
    net: ``"alex"`` or ``"vgg"``.
    size: resize to ``size x size`` first (None: as given).

  Returns:
    a tuple of ``[B, H_l, W_l, C_l]``, unit norm over channels.
  """
  stack = FeatureStack(BACKBONES[_check_net(net)])
  taps = stack.apply(variables["backbone"], preprocess(images, size))
  return tuple(_unit_channels(t) for t in taps)


def lpips_distance(variables: Mapping[str, Any], x0: chex.Array,
                   x1: chex.Array, net: str = "alex",
                   size: int | None = None) -> jax.Array:
  """LPIPS between image pairs: ``lpips.LPIPS(net=net)(2 x0 - 1, 2 x1 - 1)``.

  Use as a perceptual distance between two images (0 for identical ones);
  for the diversity of a set of samples use ``ganjax.metrics.diversity``.

  References: Zhang et al., 2018, https://arxiv.org/abs/1801.03924 (v0.1
  of the ``lpips`` package: scaling layer, linear heads).

  Args:
    variables: ``load_lpips``'s variables.
    x0, x1: ``[B, H, W, C]`` or one image ``[H, W, C]``, C in {1, 3},
      values in [0, 1]; same shape.
    net: ``"alex"`` or ``"vgg"``.
    size: resize both to ``size x size`` first (None: as given).

  Returns:
    ``[B]`` distances (a scalar for unbatched inputs).
  """
  chex.assert_equal_shape([x0, x1])
  if jnp.ndim(x0) == 3:
    return lpips_distance(variables, x0[None], x1[None], net, size)[0]
  chex.assert_rank(x0, 4)
  return _distance(variables, x0, x1, net, size)


@functools.partial(jax.jit, static_argnames=("net", "size"))
def _distance(variables, x0, x1, net, size):
  f0 = lpips_features(variables, x0, net, size)
  f1 = lpips_features(variables, x1, net, size)
  total = 0.0
  for a, b, w in zip(f0, f1, variables["heads"]):
    # The head is a 1x1 conv (no bias) on the squared difference, then the
    # spatial average: sum_c w_c (a_c - b_c)^2, mean over (h, w).
    per_position = jnp.einsum("bhwc,c->bhw", jnp.square(a - b), w,
                              precision=jax.lax.Precision.HIGHEST)
    total = total + jnp.mean(per_position, axis=(1, 2))
  return total


@functools.partial(jax.jit, static_argnames=("net", "size"))
def lpips_embedding(variables: Mapping[str, Any], images: chex.Array,
                    net: str = "alex", size: int | None = None) -> jax.Array:
  """The embedding in which LPIPS is the squared Euclidean distance.

  ``lpips_distance(x, y) == ||e(x) - e(y)||^2`` with ``e = concat_l
  sqrt(w_l / (H_l W_l)) * y^l`` (heads are non-negative). Use to compute many
  distances at once (mean pairwise LPIPS, nearest neighbours).

  Args:
    variables: ``load_lpips``'s variables.
    images: ``[B, H, W, 1 or 3]`` in [0, 1].
    net: ``"alex"`` or ``"vgg"``.
    size: resize to ``size x size`` first (None: as given).

  Returns:
    ``[B, D]``, D = sum_l H_l W_l C_l (31,872 for alex at 64 x 64).
  """
  feats = lpips_features(variables, images, net, size)
  parts = []
  for f, w in zip(feats, variables["heads"]):
    b, h, wd, _ = f.shape
    scale = jnp.sqrt(jnp.maximum(w, 0.0) / (h * wd))
    parts.append((f * scale).reshape(b, -1))
  return jnp.concatenate(parts, axis=-1)


# ---------------------------------------------------------- weights ------

def _as_numpy(value) -> np.ndarray:
  if hasattr(value, "detach"):
    value = value.detach().cpu().numpy()
  return np.asarray(value, np.float32)


def canonical_state(state_dict: Mapping[str, Any], net: str) -> dict:
  """Backbone and head arrays under this module's file names, from any known layout.

  Understands torchvision's ``features.<i>.weight`` (``classifier.*``
  dropped), the lpips module's ``net.slice<k>.<i>.weight`` and
  ``lin<l>.model.1.weight`` (its ``lins.<l>.*`` duplicates dropped), and
  this module's own ``lin<l>.weight``.

  Returns:
    ``{"features.<i>.weight": [O, I, kh, kw], "features.<i>.bias": [O],
    "lin<l>.weight": [1, C_l, 1, 1]}``, whichever of these are present.
  """
  out = {}
  for name, value in state_dict.items():
    parts = name.split(".")
    if parts[0] == "features" and len(parts) == 3:
      out[name] = _as_numpy(value)
    elif parts[0] == "net" and parts[1].startswith("slice") and len(parts) == 4:
      out[f"features.{parts[2]}.{parts[3]}"] = _as_numpy(value)
    elif parts[0].startswith("lin") and parts[0][3:].isdigit() and \
        parts[-1] == "weight":
      out[f"{parts[0]}.weight"] = _as_numpy(value)
    elif parts[0] in ("classifier", "lins", "scaling_layer", "net"):
      continue  # the ImageNet classifier, duplicates, constants
    elif parts[0] == "net_type":
      continue
    else:
      raise ValueError(f"Unexpected entry {name!r} in an LPIPS {net} weights "
                       "file.")
  return out


def _expected_shapes(net: str) -> dict:
  shapes, c_in = {}, 3
  for _, convs in BACKBONES[net]:
    for index, features, kernel, _, _ in convs:
      shapes[f"features.{index}.weight"] = (features, c_in, kernel, kernel)
      shapes[f"features.{index}.bias"] = (features,)
      c_in = features
  for l, c in enumerate(channels(net)):
    shapes[f"lin{l}.weight"] = (1, c, 1, 1)
  return shapes


def check_state(state: Mapping[str, np.ndarray], net: str) -> None:
  """Every array of ``net``'s backbone and heads present with its shape, nothing else."""
  expected = _expected_shapes(_check_net(net))
  missing = sorted(set(expected) - set(state))
  extra = sorted(set(state) - set(expected))
  wrong = sorted(k for k in set(expected) & set(state)
                 if tuple(state[k].shape) != expected[k])
  if missing or extra or wrong:
    raise ValueError(
        f"These are not LPIPS {net} weights: missing {missing[:6]}"
        f"{'...' if len(missing) > 6 else ''}, unexpected {extra[:6]}, wrong "
        f"shapes {wrong[:6]}. A backbone file needs its heads: pass --heads "
        f"(the lpips package's weights/v0.1/{HEAD_FILES.get(net)}).")
  negative = [k for k in expected if k.startswith("lin")
              and float(state[k].min()) < 0]
  if negative:
    raise ValueError(f"LPIPS heads must be non-negative; {negative} are not.")


def random_state(net: str = "alex", seed: int = 0) -> dict:
  """Random LPIPS weights in the file layout: He-normal backbone, uniform [0, 1) heads.

  For tests and smoke runs where the real weights are absent
  (``np.savez(path, net=net, **random_state(net))``); its distances mean
  nothing perceptually.
  """
  rng = np.random.default_rng(seed)
  state = {}
  for name, shape in _expected_shapes(_check_net(net)).items():
    if name.startswith("lin"):
      state[name] = rng.uniform(size=shape)
    elif name.endswith("weight"):
      state[name] = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[1:]))
    else:
      state[name] = 0.01 * rng.normal(size=shape)
  return {k: v.astype(np.float32) for k, v in state.items()}


def state_to_variables(state: Mapping[str, np.ndarray], net: str) -> dict:
  """Torch-layout arrays -> ``{"backbone": flax variables, "heads": [w_l [C_l]]}``."""
  check_state(state, net)
  params = {}
  for _, convs in BACKBONES[net]:
    for index, *_ in convs:
      params[f"features_{index}"] = {
          # [O, I, kh, kw] -> [kh, kw, I, O]
          "kernel": jnp.asarray(np.transpose(state[f"features.{index}.weight"],
                                             (2, 3, 1, 0))),
          "bias": jnp.asarray(state[f"features.{index}.bias"])}
  heads = [jnp.asarray(state[f"lin{l}.weight"].reshape(-1))
           for l in range(len(BACKBONES[net]))]
  return {"backbone": {"params": params}, "heads": heads}


def read_state_dict(path: str) -> dict:
  """A ``.pth`` (read without torch) or an ``.npz``, as ``{name: array}``."""
  if path.endswith(".npz"):
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  from ganjax.metrics import torch_checkpoint  # pylint: disable=g-import-not-at-top
  return dict(torch_checkpoint.load_state_dict(path))


def package_heads_path(net: str) -> str | None:
  """The ``lpips`` package's ``weights/v0.1/<net>.pth``, found without importing it (or None)."""
  spec = importlib.util.find_spec("lpips")
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(list(spec.submodule_search_locations)[0], "weights",
                      "v0.1", HEAD_FILES[net])
  return path if os.path.isfile(path) else None


def convert(backbone_path: str, out_path: str, net: str = "alex",
            heads_path: str | None = None) -> str:
  """Writes the one ``.npz`` ``load_lpips`` reads; returns its sha256.

  Args:
    backbone_path: torchvision's ImageNet ``.pth`` (``alexnet-owt-7be5be79.pth``
      / ``vgg16-397923af.pth``), or a saved ``lpips.LPIPS`` state dict (which
      holds its heads too), or an ``.npz`` of torch-named arrays.
    out_path: the ``.npz`` to write (atomically).
    net: ``"alex"`` or ``"vgg"``.
    heads_path: the heads (the package's ``weights/v0.1/<net>.pth``); default:
      the installed ``lpips`` package's, when the backbone file has none.
  """
  _check_net(net)
  state = canonical_state(read_state_dict(backbone_path), net)
  if not any(k.startswith("lin") for k in state):
    heads_path = heads_path or package_heads_path(net)
    if heads_path is None:
      raise ValueError(
          f"{backbone_path} holds no LPIPS heads and the lpips package is not "
          f"installed: pass --heads PATH/lpips/weights/v0.1/{HEAD_FILES[net]}.")
  if heads_path:
    heads = canonical_state(read_state_dict(heads_path), net)
    state.update({k: v for k, v in heads.items() if k.startswith("lin")})
  check_state(state, net)  # refuse a wrong file before writing
  state["net"] = np.asarray(net)
  from ganjax.cache import atomic_save_npz  # pylint: disable=g-import-not-at-top
  atomic_save_npz(out_path, state)
  return file_sha256(out_path)


def weights_path(path: str | None = None) -> str:
  """The weights file: ``path``, else ``$GANJAX_LPIPS_WEIGHTS``; a clear error if neither exists."""
  return weights_file(
      path, WEIGHTS_ENV, "LPIPS",
      "Convert torchvision's AlexNet weights and the lpips package's heads "
      "once with `python -m ganjax.metrics.lpips --net alex --backbone "
      f"{TORCHVISION_FILES['alex']} lpips_alex.npz` (see "
      "docs/lpips_weights.md)")


def load_lpips(path: str | None = None) -> tuple[str, dict, str]:
  """LPIPS weights from a converted ``.npz`` (default ``$GANJAX_LPIPS_WEIGHTS``).

  Returns:
    ``(net, variables, sha256 of the file)``, for ``lpips_distance(variables,
    x0, x1, net)``.
  """
  path = weights_path(path)
  raw = read_state_dict(path)
  net = str(raw.pop("net", "alex"))
  variables = state_to_variables(canonical_state(raw, net), net)
  return net, variables, file_sha256(path)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m ganjax.metrics.lpips",
      description="Convert LPIPS weights (torchvision backbone + the lpips "
      "package's v0.1 heads) to one .npz for ganjax (no PyTorch needed).")
  parser.add_argument("--net", choices=NETS, default="alex")
  parser.add_argument("--backbone", required=True,
                      help="torchvision ImageNet weights (e.g. "
                      f"{TORCHVISION_FILES['alex']}) or a saved lpips.LPIPS "
                      "state dict")
  parser.add_argument("--heads", default=None,
                      help="the lpips package's weights/v0.1/<net>.pth "
                      "(default: the installed package's)")
  parser.add_argument("out", help="the .npz to write")
  args = parser.parse_args(argv)
  try:
    digest = convert(args.backbone, args.out, args.net, args.heads)
  except (OSError, ValueError, pickle.UnpicklingError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.out} (sha256 {digest})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
