"""The FID InceptionV3 in Flax: pytorch-fid's network, with weights from a local file.

Standard FID uses the InceptionV3 graph of TensorFlow's 2015 release
(``inception-2015-12-05``), whose 2048-d final average pool gives the
features. pytorch-fid ports it to PyTorch as torchvision's InceptionV3 with
patched blocks (``FIDInceptionA``, ``FIDInceptionC``, ``FIDInceptionE_1``,
``FIDInceptionE_2``: average pools that leave padding out of the count, a max
pool in the last block) and the weights ``pt_inception-2015-12-05-6726825d.pth``.
This module is that network, layer for layer, in Flax, with the same input
handling as pytorch-fid's ``InceptionV3``: images in [0, 1], bilinear resize
to 299 x 299 (``align_corners=False``, no antialiasing), then ``2 x - 1``.
Grayscale images are repeated to three channels (as pytorch-fid's image
loader does with PIL's ``convert('RGB')``).

Weights are never downloaded. Convert pytorch-fid's file once (no PyTorch
needed):

    python -m ganjax.metrics.inception --convert pt_inception-2015-12-05-6726825d.pth inception_fid.npz

and pass the ``.npz`` (or the ``.pth`` itself) to ``load_inception`` or set
``GANJAX_INCEPTION_WEIGHTS``. See ``docs/inception_weights.md``.
"""

import argparse
import functools
import pickle
import sys
from typing import Any, Mapping, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ganjax.cache import file_sha256, weights_file

WEIGHTS_ENV = "GANJAX_INCEPTION_WEIGHTS"
PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
NUM_CLASSES = 1008  # the 2015 graph's softmax: 1000 ImageNet classes + 8 unused
FEATURE_DIM = 2048


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
  """Conv (no bias) + batch norm (inference, eps 1e-3) + ReLU: torchvision's ``BasicConv2d``."""
  features: int
  kernel_size: Any
  stride: Any = 1
  padding: Any = 0
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    ph, pw = _pair(self.padding)
    x = nn.Conv(self.features, _pair(self.kernel_size), _pair(self.stride),
                padding=((ph, ph), (pw, pw)), use_bias=False,
                precision=self.precision, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool_same(x):
  """3x3 stride-1 average pool, padding 1, padded zeros left out of the count
  (TensorFlow's behaviour, the FID blocks' patch)."""
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_valid(x):
  return nn.max_pool(x, (3, 3), (2, 2), "VALID")


class FIDInceptionA(nn.Module):
  pool_features: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b1 = conv(64, 1, name="branch1x1")(x)
    b5 = conv(48, 1, name="branch5x5_1")(x)
    b5 = conv(64, 5, padding=2, name="branch5x5_2")(b5)
    b3 = conv(64, 1, name="branch3x3dbl_1")(x)
    b3 = conv(96, 3, padding=1, name="branch3x3dbl_2")(b3)
    b3 = conv(96, 3, padding=1, name="branch3x3dbl_3")(b3)
    bp = conv(self.pool_features, 1, name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b3 = conv(384, 3, stride=2, name="branch3x3")(x)
    bd = conv(64, 1, name="branch3x3dbl_1")(x)
    bd = conv(96, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = conv(96, 3, stride=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_valid(x)], axis=-1)


class FIDInceptionC(nn.Module):
  channels_7x7: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    c7 = self.channels_7x7
    b1 = conv(192, 1, name="branch1x1")(x)
    b7 = conv(c7, 1, name="branch7x7_1")(x)
    b7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = conv(c7, 1, name="branch7x7dbl_1")(x)
    bd = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = conv(192, 1, name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b3 = conv(192, 1, name="branch3x3_1")(x)
    b3 = conv(320, 3, stride=2, name="branch3x3_2")(b3)
    b7 = conv(192, 1, name="branch7x7x3_1")(x)
    b7 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = conv(192, 3, stride=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_valid(x)], axis=-1)


class FIDInceptionE(nn.Module):
  """``FIDInceptionE_1`` (average pool) or, with ``max_pool``, ``FIDInceptionE_2``."""
  max_pool: bool = False
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b1 = conv(320, 1, name="branch1x1")(x)
    b3 = conv(384, 1, name="branch3x3_1")(x)
    b3 = jnp.concatenate([
        conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
        conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = conv(448, 1, name="branch3x3dbl_1")(x)
    bd = conv(384, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([
        conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
        conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.max_pool:  # pytorch-fid's patch: the 2015 graph max-pools here
      pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_same(x)
    bp = conv(192, 1, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def resize_bilinear(images: jax.Array, size: int = 299) -> jax.Array:
  """``[B, H, W, C] -> [B, size, size, C]``: ``F.interpolate(mode='bilinear',
  align_corners=False)`` (half-pixel centres, no antialiasing)."""
  b, h, w, c = images.shape
  if (h, w) == (size, size):
    return images
  return jax.image.resize(images, (b, size, size, c), "bilinear",
                          antialias=False, precision=jax.lax.Precision.HIGHEST)


def preprocess(images: jax.Array, resize_input: bool = True,
               normalize_input: bool = True) -> jax.Array:
  """pytorch-fid's input handling: ``[B, H, W, 1 or 3]`` in [0, 1] -> RGB
  ``[B, 299, 299, 3]`` in [-1, 1] (grayscale repeated, bilinear resize,
  ``2 x - 1``)."""
  x = jnp.asarray(images, jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if x.shape[-1] != 3:
    raise ValueError(f"InceptionV3 takes 1 or 3 channels, got shape {x.shape}.")
  if resize_input:
    x = resize_bilinear(x, 299)
  if normalize_input:
    x = 2.0 * x - 1.0
  return x


class FIDInceptionV3(nn.Module):
  """pytorch-fid's ``InceptionV3`` (``use_fid_inception=True``), 2048-d pool features.

  ``__call__(images [B, H, W, C] in [0, 1]) -> {"pool": [B, 2048], "logits":
  [B, 1008]}``; C is 3, or 1 (repeated to RGB). Submodules carry
  torchvision's attribute names, so ``torch_to_flax`` maps a state dict
  one to one.

  Attributes:
    resize_input: bilinear resize to 299 x 299 first (pytorch-fid's default).
    normalize_input: map [0, 1] to [-1, 1] first (pytorch-fid's default).
    precision: matmul/conv precision; ``HIGHEST`` keeps TPUs and GPUs in
      full float32, which FID is sensitive to.
  """
  resize_input: bool = True
  normalize_input: bool = True
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, images):
    x = preprocess(images, self.resize_input, self.normalize_input)
    p = self.precision
    conv = functools.partial(BasicConv2d, precision=p)
    x = conv(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
    x = conv(32, 3, name="Conv2d_2a_3x3")(x)
    x = conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
    x = _max_pool_valid(x)
    x = conv(80, 1, name="Conv2d_3b_1x1")(x)
    x = conv(192, 3, name="Conv2d_4a_3x3")(x)
    x = _max_pool_valid(x)
    x = FIDInceptionA(32, p, name="Mixed_5b")(x)
    x = FIDInceptionA(64, p, name="Mixed_5c")(x)
    x = FIDInceptionA(64, p, name="Mixed_5d")(x)
    x = InceptionB(p, name="Mixed_6a")(x)
    x = FIDInceptionC(128, p, name="Mixed_6b")(x)
    x = FIDInceptionC(160, p, name="Mixed_6c")(x)
    x = FIDInceptionC(160, p, name="Mixed_6d")(x)
    x = FIDInceptionC(192, p, name="Mixed_6e")(x)
    x = InceptionD(p, name="Mixed_7a")(x)
    x = FIDInceptionE(False, p, name="Mixed_7b")(x)
    x = FIDInceptionE(True, p, name="Mixed_7c")(x)
    pool = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(NUM_CLASSES, precision=p, name="fc")(pool)
    return {"pool": pool, "logits": logits}


# ------------------------------------------------------------ conversion ---

_BN = {"weight": ("params", "scale"), "bias": ("params", "bias"),
       "running_mean": ("batch_stats", "mean"),
       "running_var": ("batch_stats", "var")}


def torch_to_flax(state_dict: Mapping[str, Any]) -> dict:
  """pytorch-fid's Inception state dict (torch names and layouts) -> Flax variables.

  Conv kernels ``[O, I, kh, kw] -> [kh, kw, I, O]``, the classifier
  ``[1008, 2048] -> [2048, 1008]``, batch norm weight/bias to params
  scale/bias and running mean/var to ``batch_stats``.
  ``num_batches_tracked`` and the aux classifier (absent from pytorch-fid's
  file) are skipped.

  Args:
    state_dict: ``{name: array}`` (numpy or torch tensors).

  Returns:
    ``{"params": ..., "batch_stats": ...}`` nested dicts of float32 arrays.
  """
  variables = {"params": {}, "batch_stats": {}}

  def put(collection, path, value):
    node = variables[collection]
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = np.asarray(value, np.float32)

  for name, value in state_dict.items():
    value = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach")
                       else value)
    parts = name.split(".")
    if parts[-1] == "num_batches_tracked" or parts[0] == "AuxLogits":
      continue
    if parts[0] == "fc":
      put("params", ["fc", {"weight": "kernel", "bias": "bias"}[parts[1]]],
          value.T if parts[1] == "weight" else value)
    elif parts[-2] == "conv" and parts[-1] == "weight":
      put("params", parts[:-1] + ["kernel"], np.transpose(value, (2, 3, 1, 0)))
    elif parts[-2] == "bn" and parts[-1] in _BN:
      collection, leaf = _BN[parts[-1]]
      put(collection, parts[:-1] + [leaf], value)
    else:
      raise ValueError(f"Unexpected entry {name!r} in an InceptionV3 state dict.")
  return variables


def _check_variables(variables: dict) -> None:
  """Every expected array present with the right shape, nothing more."""
  expected = jax.eval_shape(
      lambda: FIDInceptionV3().init(jax.random.key(0),
                                    jnp.zeros((1, 299, 299, 3))))
  flat_expected = flax.traverse_util.flatten_dict(dict(expected), sep="/")
  flat_got = flax.traverse_util.flatten_dict(variables, sep="/")
  missing = sorted(set(flat_expected) - set(flat_got))
  extra = sorted(set(flat_got) - set(flat_expected))
  wrong = sorted(k for k in set(flat_expected) & set(flat_got)
                 if tuple(flat_expected[k].shape) != tuple(flat_got[k].shape))
  if missing or extra or wrong:
    raise ValueError(
        "These are not the weights of pytorch-fid's FID InceptionV3: "
        f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
        f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}, "
        f"wrong shapes {wrong[:5]}.")


def read_state_dict(path: str) -> dict:
  """A ``.pth`` (read without torch) or a converted ``.npz``, as ``{torch name: array}``."""
  if path.endswith(".npz"):
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  from ganjax.metrics import torch_checkpoint  # pylint: disable=g-import-not-at-top
  return dict(torch_checkpoint.load_state_dict(path))


def convert(pth_path: str, npz_path: str) -> str:
  """Converts pytorch-fid's ``.pth`` to the ``.npz`` this module loads; returns its sha256.

  The ``.npz`` keeps torch's names and layouts (float32), so it can be
  checked against the original key by key; ``load_inception`` transposes.
  Written atomically (temporary file, then ``os.replace``).
  """
  state = {k: np.asarray(v, np.float32) for k, v in read_state_dict(pth_path).items()
           if not k.endswith("num_batches_tracked")}
  _check_variables(torch_to_flax(state))  # refuse a wrong file before writing
  from ganjax.cache import atomic_save_npz  # pylint: disable=g-import-not-at-top
  atomic_save_npz(npz_path, state)
  return file_sha256(npz_path)


def weights_path(path: str | None = None) -> str:
  """The weights file: ``path``, else ``$GANJAX_INCEPTION_WEIGHTS``; a clear error if neither exists."""
  return weights_file(
      path, WEIGHTS_ENV, "InceptionV3",
      f"Get pytorch-fid's {PYTORCH_FID_WEIGHTS} (its FID_WEIGHTS_URL), "
      "convert it with `python -m ganjax.metrics.inception --convert "
      f"{PYTORCH_FID_WEIGHTS} inception_fid.npz` (inception_weights=... / "
      "--inception_weights)")


def load_inception(path: str | None = None, resize_input: bool = True,
                   precision=jax.lax.Precision.HIGHEST):
  """The FID InceptionV3 and its weights, from a local ``.npz`` or ``.pth``.

  Args:
    path: weights file; default ``$GANJAX_INCEPTION_WEIGHTS``.
    resize_input: resize inputs to 299 x 299 (pytorch-fid's default).
    precision: conv/matmul precision.

  Returns:
    ``(module, variables, sha256 of the file)``.
  """
  path = weights_path(path)
  variables = torch_to_flax(read_state_dict(path))
  _check_variables(variables)
  variables = jax.tree.map(jnp.asarray, variables)
  return (FIDInceptionV3(resize_input=resize_input, precision=precision),
          variables, file_sha256(path))


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m ganjax.metrics.inception",
      description="Convert pytorch-fid's InceptionV3 weights for ganjax "
      "(no PyTorch needed).")
  parser.add_argument("--convert", nargs=2, metavar=("IN_PTH", "OUT_NPZ"),
                      required=True,
                      help=f"pytorch-fid's {PYTORCH_FID_WEIGHTS} -> .npz")
  args = parser.parse_args(argv)
  src, dst = args.convert
  try:
    digest = convert(src, dst)
  except (OSError, ValueError, pickle.UnpicklingError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {dst} (sha256 {digest})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
