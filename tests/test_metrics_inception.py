"""The Flax FID InceptionV3 against pytorch-fid's, with identical random weights.

pytorch-fid's network is built exactly as it builds it (``fid_inception_v3``
then ``InceptionV3``), with two things patched so that nothing is
downloaded: the weight download returns nothing and ``load_state_dict`` is
skipped; every weight is then drawn at random (He-normal convolutions,
random batch-norm statistics), saved with ``torch.save`` in the layout of
``pt_inception-2015-12-05-6726825d.pth``, converted with ganjax's CLI, and
loaded by ``ganjax.metrics.inception``. Both nets then see the same images.

Needs torch, torchvision and pytorch-fid (skipped, with the reason, without
them): ``pip install torch==2.14.1 torchvision==0.29.1`` and ``pip install
--no-deps pytorch-fid==0.3.0``.
"""

import importlib.util

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.metrics import inception, torch_checkpoint


def _missing(*modules):
  return [m for m in modules if importlib.util.find_spec(m) is None]


def _importable(name):
  try:
    __import__(name)
    return None
  except Exception as e:  # noqa: BLE001  (torchvision can fail at import)
    return f"{name} does not import: {type(e).__name__}: {e}"


_MISSING = _missing("torch", "torchvision", "pytorch_fid")
_REASON = (f"needs {', '.join(_MISSING)} (pip install torch==2.14.1 "
           "torchvision==0.29.1; pip install --no-deps pytorch-fid==0.3.0)"
           if _MISSING else (_importable("torchvision")
                             or _importable("pytorch_fid.inception")))
needs_torch = pytest.mark.skipif(bool(_MISSING) or _REASON is not None,
                                 reason=_REASON or "")


# ------------------------------------------------------------ no torch ---

def _flax_to_torch(variables):
  """Inverse of ``inception.torch_to_flax`` (test helper)."""
  out = {}
  flat = flax.traverse_util.flatten_dict(variables)
  for path, value in flat.items():
    collection, *names, leaf = path
    value = np.asarray(value)
    prefix = ".".join(names)
    if names == ["fc"]:
      out[f"fc.{'weight' if leaf == 'kernel' else 'bias'}"] = (
          value.T if leaf == "kernel" else value)
    elif leaf == "kernel":
      out[f"{prefix}.weight"] = np.transpose(value, (3, 2, 0, 1))
    else:
      torch_leaf = {"scale": "weight", "bias": "bias", "mean": "running_mean",
                    "var": "running_var"}[leaf]
      out[f"{prefix}.{torch_leaf}"] = value
  return out


def test_conversion_round_trip_and_structure_check():
  shapes = jax.eval_shape(lambda: inception.FIDInceptionV3().init(
      jax.random.key(0), jnp.zeros((1, 299, 299, 3))))
  leaves, treedef = jax.tree.flatten(shapes)
  rng = np.random.default_rng(0)
  variables = jax.tree.unflatten(
      treedef, [rng.normal(size=l.shape).astype(np.float32) for l in leaves])
  state = _flax_to_torch(flax.core.unfreeze(variables))
  # pytorch-fid's file: 94 convs with batch norm (5 arrays each) + fc (2)
  assert len(state) == 94 * 5 + 2
  assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
  assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
  assert state["fc.weight"].shape == (1008, 2048)
  back = inception.torch_to_flax(state)
  inception._check_variables(back)  # pylint: disable=protected-access
  jax.tree.map(np.testing.assert_array_equal, back,
               flax.core.unfreeze(variables))
  del state["Mixed_6b.branch7x7_2.bn.running_var"]
  with pytest.raises(ValueError, match="missing"):
    inception._check_variables(inception.torch_to_flax(state))  # pylint: disable=protected-access


def test_missing_weights_error_says_how_to_get_them(monkeypatch):
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  with pytest.raises(FileNotFoundError, match="--convert"):
    inception.weights_path(None)


# -------------------------------------------------------------- torch ---

@pytest.fixture(scope="module")
def random_pytorch_fid(tmp_path_factory):
  """pytorch-fid's InceptionV3 with random weights, saved like its .pth."""
  from unittest import mock  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import pytorch_fid.inception as pfi  # pylint: disable=g-import-not-at-top

  with mock.patch.object(pfi, "load_state_dict_from_url",
                         lambda *a, **k: {}), \
       mock.patch.object(torch.nn.Module, "load_state_dict",
                         lambda self, *a, **k: None):
    net = pfi.fid_inception_v3()
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, torch.nn.Conv2d):
        fan_in = module.weight[0].numel()
        module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                            * (2.0 / fan_in) ** 0.5)
      elif isinstance(module, torch.nn.BatchNorm2d):
        c = module.num_features
        module.weight.copy_(1 + 0.1 * torch.randn(c, generator=gen))
        module.bias.copy_(0.1 * torch.randn(c, generator=gen))
        module.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
        module.running_var.copy_(1 + 0.2 * torch.rand(c, generator=gen))
      elif isinstance(module, torch.nn.Linear):
        module.weight.copy_(0.02 * torch.randn(module.weight.shape, generator=gen))
        module.bias.copy_(0.01 * torch.randn(module.bias.shape, generator=gen))
  with mock.patch.object(pfi, "fid_inception_v3", lambda: net):
    wrapper = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
  folder = tmp_path_factory.mktemp("inception")
  pth = str(folder / "random_inception.pth")
  # the legacy (pre-zip) format, as pytorch-fid's 2019 file
  torch.save(net.state_dict(), pth, _use_new_zipfile_serialization=False)
  return {"net": net, "wrapper": wrapper, "pth": pth, "folder": folder}


@needs_torch
def test_reader_matches_torch_load_in_both_formats(random_pytorch_fid, tmp_path):
  import torch  # pylint: disable=g-import-not-at-top
  state = random_pytorch_fid["net"].state_dict()
  for zip_format in (True, False):
    path = str(tmp_path / f"sd_{zip_format}.pth")
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    ours = torch_checkpoint.load_state_dict(path)
    theirs = torch.load(path, weights_only=True)
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
      np.testing.assert_array_equal(ours[key], value.numpy())


@needs_torch
def test_pool_features_match_pytorch_fid(random_pytorch_fid):
  import torch  # pylint: disable=g-import-not-at-top
  npz = str(random_pytorch_fid["folder"] / "random_inception.npz")
  assert inception.main(["--convert", random_pytorch_fid["pth"], npz]) == 0
  module, variables, digest = inception.load_inception(npz)
  assert len(digest) == 64

  rng = np.random.default_rng(0)
  images = rng.uniform(size=(2, 3, 37, 45)).astype(np.float32)  # NCHW in [0, 1]
  with torch.no_grad():
    want_pool = random_pytorch_fid["wrapper"](torch.from_numpy(images))[0]
    want_logits = random_pytorch_fid["net"].fc(want_pool.flatten(1)).numpy()
    want_pool = want_pool.numpy().reshape(2, -1)
  got = jax.jit(module.apply)(variables, jnp.asarray(images.transpose(0, 2, 3, 1)))
  scale = np.abs(want_pool).max()
  assert scale > 1e-3  # the random net's features are not degenerate
  np.testing.assert_allclose(np.asarray(got["pool"]), want_pool, rtol=1e-4,
                             atol=1e-4 * scale)
  np.testing.assert_allclose(np.asarray(got["logits"]), want_logits, rtol=1e-4,
                             atol=1e-4 * np.abs(want_logits).max())


@needs_torch
def test_resize_matches_torch_interpolate():
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  for h, w in ((28, 28), (40, 31), (350, 320)):  # up and down (no antialias)
    x = rng.uniform(size=(1, 3, h, w)).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x), size=(299, 299), mode="bilinear",
                         align_corners=False).numpy()
    got = inception.resize_bilinear(jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), want,
                               atol=2e-6)


def test_grayscale_is_repeated_to_rgb_and_scaled():
  gray = np.random.default_rng(2).uniform(size=(2, 20, 24, 1)).astype(np.float32)
  x = inception.preprocess(gray)
  assert x.shape == (2, 299, 299, 3)
  np.testing.assert_array_equal(x, inception.preprocess(np.repeat(gray, 3, -1)))
  assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
  with pytest.raises(ValueError, match="channels"):
    inception.preprocess(np.zeros((1, 8, 8, 2)))
