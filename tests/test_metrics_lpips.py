"""LPIPS (ganjax.metrics.lpips) against the lpips package, its identities, and diversity.

Parity: the package's own ``lpips.LPIPS(pnet_rand=True)`` (a randomly
initialised torchvision backbone and the package's shipped v0.1 heads); its
backbone is saved as torchvision saves ImageNet weights, converted with
ganjax's CLI together with the package's head file, and both compute LPIPS
of the same random image pairs. Needs torch, torchvision and lpips (CI
installs them, see .ci/run); those tests skip without them.
"""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.metrics import diversity, evaluator, lpips


def _random_npz(path, net="alex", seed=0):
  """An LPIPS weights file with a random backbone and random non-negative heads (no torch)."""
  np.savez(path, net=np.asarray(net), **lpips.random_state(net, seed))
  return path


@pytest.fixture(scope="module")
def alex(tmp_path_factory):
  path = _random_npz(str(tmp_path_factory.mktemp("lpips") / "alex.npz"))
  net, variables, digest = lpips.load_lpips(path)
  assert net == "alex" and len(digest) == 64
  return variables


def _images(n, h=64, w=64, c=3, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, h, w, c)).astype(
      np.float32)


# ---------------------------------------------------------- no torch ---

def test_identity_symmetry_and_batching(alex):
  x, y = _images(3, seed=1), _images(3, seed=2)
  d = np.asarray(lpips.lpips_distance(alex, x, y))
  assert d.shape == (3,) and np.all(d > 1e-3)
  np.testing.assert_allclose(lpips.lpips_distance(alex, y, x), d, rtol=1e-6)
  np.testing.assert_allclose(lpips.lpips_distance(alex, x, x), 0.0, atol=1e-10)
  single = [float(lpips.lpips_distance(alex, x[i], y[i])) for i in range(3)]
  np.testing.assert_allclose(single, d, rtol=1e-6)
  # LPIPS is the squared distance of the embeddings
  e = lpips.lpips_embedding(alex, np.concatenate([x, y]))
  np.testing.assert_allclose(np.sum(np.square(e[:3] - e[3:]), -1), d,
                             rtol=1e-5)


def test_grayscale_repeated_resize_and_formula(alex):
  gray = _images(2, 28, 28, 1, seed=3)
  rgb = np.repeat(gray, 3, -1)
  np.testing.assert_array_equal(lpips.preprocess(gray, 64),
                                lpips.preprocess(rgb, 64))
  assert lpips.preprocess(gray, 64).shape == (2, 64, 64, 3)
  # the package's scaling layer: (2x - 1 - shift) / scale
  x = lpips.preprocess(np.full((1, 4, 4, 3), 0.25, np.float32))
  np.testing.assert_allclose(x[0, 0, 0], (-0.5 - np.array(lpips.SHIFT))
                             / np.array(lpips.SCALE), rtol=1e-6)
  # the seed-003 formula by hand from the unit-normalised features
  a, b = _images(1, seed=4), _images(1, seed=5)
  fa, fb = lpips.lpips_features(alex, a), lpips.lpips_features(alex, b)
  assert [f.shape[1:] for f in fa] == [(15, 15, 64), (7, 7, 192), (3, 3, 384),
                                       (3, 3, 256), (3, 3, 256)]
  np.testing.assert_allclose(np.linalg.norm(fa[2], axis=-1), 1.0, rtol=1e-5)
  want = sum(np.mean(np.sum(np.asarray(w) * np.square(np.asarray(p - q)), -1))
             for p, q, w in zip(fa, fb, alex["heads"]))
  np.testing.assert_allclose(lpips.lpips_distance(alex, a, b)[0], want,
                             rtol=1e-5)


def test_mean_pairwise_matches_explicit_pairs(alex):
  images = _images(7, 28, 28, 1, seed=6)
  labels = np.array([0, 1, 0, 2, 1, 0, 2])
  first, second = map(list, zip(*itertools.combinations(range(7), 2)))
  pairs = dict(zip(zip(first, second), np.asarray(lpips.lpips_distance(
      alex, images[first], images[second], size=64)).tolist()))
  out = diversity.mean_pairwise_lpips(alex, images, labels, batch_size=3)
  np.testing.assert_allclose(out["all"], np.mean(list(pairs.values())),
                             rtol=1e-4)
  for c in range(3):
    members = np.flatnonzero(labels == c)
    want = np.mean([pairs[p] for p in itertools.combinations(members, 2)])
    np.testing.assert_allclose(out["per_class"][c], want, rtol=1e-4)
  np.testing.assert_allclose(out["mean_per_class"],
                             np.mean(list(out["per_class"].values())))
  # identical images: no diversity
  same = diversity.mean_pairwise_lpips(alex, np.repeat(images[:1], 4, 0))
  assert abs(same["all"]) < 1e-6
  e = np.random.default_rng(0).normal(size=(5, 3))
  np.testing.assert_allclose(
      diversity.mean_pairwise_distance(jnp.asarray(e)),
      np.mean([np.sum((e[i] - e[j]) ** 2) for i in range(5) for j in range(5)
               if i != j]), rtol=1e-5)


def test_bad_weights_are_refused(tmp_path, monkeypatch):
  path = _random_npz(str(tmp_path / "a.npz"))
  with np.load(path) as data:
    state = {k: data[k] for k in data.files if k != "net"}
  lpips.check_state(state, "alex")
  with pytest.raises(ValueError, match="not LPIPS vgg weights"):
    lpips.check_state(state, "vgg")
  del state["lin2.weight"]
  with pytest.raises(ValueError, match="--heads"):
    lpips.check_state(state, "alex")
  state["lin2.weight"] = -np.ones((1, 384, 1, 1), np.float32)
  with pytest.raises(ValueError, match="non-negative"):
    lpips.check_state(state, "alex")
  assert evaluator.LPIPS_WEIGHTS_ENV == lpips.WEIGHTS_ENV
  monkeypatch.delenv(lpips.WEIGHTS_ENV, raising=False)
  with pytest.raises(FileNotFoundError, match="docs/lpips_weights.md"):
    lpips.weights_path(None)


# ------------------------------------------------------------- torch ---

def _torch_lpips():
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  package = pytest.importorskip("lpips")
  return torch, package


def test_alexnet_lpips_matches_the_package(tmp_path, monkeypatch):
  torch, package = _torch_lpips()
  import torchvision  # pylint: disable=g-import-not-at-top
  from lpips import pretrained_networks  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  backbone = torchvision.models.alexnet()  # random ImageNet-shaped AlexNet
  monkeypatch.setattr(pretrained_networks.tv, "alexnet",
                      lambda *a, **k: backbone)
  theirs = package.LPIPS(pnet_rand=True, net="alex", verbose=False).eval()
  # torchvision's file layout (features.* and classifier.*), then the
  # documented conversion with the package's shipped heads
  pth = str(tmp_path / "alexnet-random.pth")
  torch.save(backbone.state_dict(), pth)
  out = str(tmp_path / "lpips_alex.npz")
  heads = lpips.package_heads_path("alex")
  assert heads is not None
  assert lpips.main(["--net", "alex", "--backbone", pth, "--heads", heads,
                     out]) == 0
  net, variables, _ = lpips.load_lpips(out)
  shipped = dict(theirs.state_dict())
  for l in range(5):
    np.testing.assert_array_equal(
        variables["heads"][l], shipped[f"lin{l}.model.1.weight"].numpy().ravel())
  x, y = _images(3, 50, 71, seed=1), _images(3, 50, 71, seed=2)  # odd sizes
  with torch.no_grad():
    want = theirs(torch.from_numpy(x).permute(0, 3, 1, 2),
                  torch.from_numpy(y).permute(0, 3, 1, 2),
                  normalize=True).numpy().reshape(-1)
  got = np.asarray(lpips.lpips_distance(variables, x, y, net))
  assert want.min() > 1e-3
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_vgg16_lpips_matches_the_package(tmp_path, monkeypatch):
  torch, package = _torch_lpips()
  from torchvision.models import vgg  # pylint: disable=g-import-not-at-top
  from lpips import pretrained_networks  # pylint: disable=g-import-not-at-top
  torch.manual_seed(1)

  class _Features(torch.nn.Module):  # torchvision's VGG16 features, no classifier
    def __init__(self):
      super().__init__()
      self.features = vgg.make_layers(vgg.cfgs["D"])

  backbone = _Features()
  monkeypatch.setattr(pretrained_networks.tv, "vgg16", lambda *a, **k: backbone)
  theirs = package.LPIPS(pnet_rand=True, net="vgg", verbose=False).eval()
  pth = str(tmp_path / "lpips_vgg_state.pth")  # a saved lpips.LPIPS state dict
  torch.save(theirs.state_dict(), pth)
  out = str(tmp_path / "lpips_vgg.npz")
  lpips.convert(pth, out, "vgg")
  net, variables, _ = lpips.load_lpips(out)
  assert net == "vgg"
  x, y = _images(2, 32, 32, seed=7), _images(2, 32, 32, seed=8)
  with torch.no_grad():
    want = theirs(torch.from_numpy(x).permute(0, 3, 1, 2),
                  torch.from_numpy(y).permute(0, 3, 1, 2),
                  normalize=True).numpy().reshape(-1)
  got = np.asarray(lpips.lpips_distance(variables, x, y, net))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
