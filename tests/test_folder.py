"""Image folders and StyleGAN zips as a data source (ganjax.data.folder, decode,
image_cache): layouts and labels, decoding, fitting, the cache, every bad-data case."""

import io
import json
import os
import struct
import zipfile
import zlib

import jax
import numpy as np
import PIL.Image
import pytest

from ganjax import images as images_lib
from ganjax.data import decode
from ganjax.data import folder
from ganjax.data import image_cache
from ganjax.data import pipeline
from ganjax.data.errors import DataError, DatasetNotFoundError


def pixels(seed, shape):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path, array, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  PIL.Image.fromarray(np.squeeze(array, -1) if array.shape[-1] == 1
                      else array).save(path, **kwargs)


def png16(array16: np.ndarray) -> bytes:
  """A 16-bit RGB PNG (Pillow writes none), written by hand."""
  height, width, _ = array16.shape
  raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in array16)

  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

  return (b"\x89PNG\r\n\x1a\n"
          + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
          + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def stylegan_zip(path, arrays, labels=None, json_name="dataset.json"):
  """A zip laid out as StyleGAN's dataset_tool.py writes it (stored PNGs)."""
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
    names = []
    for i, a in enumerate(arrays):
      buf = io.BytesIO()
      PIL.Image.fromarray(np.squeeze(a, -1) if a.shape[-1] == 1 else a).save(
          buf, format="png", compress_level=0)
      name = f"{i // 1000:05d}/img{i:08d}.png"
      z.writestr(name, buf.getvalue())
      names.append(name)
    if json_name:
      z.writestr(json_name, json.dumps(
          {"labels": None if labels is None else
           [[n, int(c)] for n, c in zip(names, labels)]}))
  return str(path)


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
  """Every test gets its own cache root (never the user's)."""
  root = tmp_path / "cache"
  monkeypatch.setenv("GANJAX_CACHE_DIR", str(root))
  image_cache._MEMO.clear()  # pylint: disable=protected-access
  return root


def labelled_folder(root, per_class=3, size=(8, 8, 3), classes=("b", "a", "c")):
  for c, name in enumerate(classes):
    for i in range(per_class):
      save(f"{root}/{name}/{i}.png", pixels(10 * c + i, size))
  return str(root)


# ------------------------------------------------------------ paths ---

def test_which_strings_are_paths(tmp_path, monkeypatch):
  (tmp_path / "pics").mkdir()
  monkeypatch.chdir(tmp_path)
  for spec in ("folder:x", "zip:x.zip", "/data/x", "./x", "../x", "~/x",
               "x.zip", "pics"):
    assert folder.is_path(spec), spec
  for spec in ("mnist", "celeb_a_hq/128", "digits", "toy_ring8"):
    assert not folder.is_path(spec), spec
  assert isinstance(pipeline.source_kind("folder:pics"), folder.ImageFolder)
  assert folder.ImageFolder("folder:~/x").path == os.path.expanduser("~/x")


# ---------------------------------------------------------- layouts ---

def test_label_folders_give_sorted_classes_and_matching_labels(tmp_path):
  root = labelled_folder(tmp_path / "pics")
  spec = f"folder:{root}"
  assert pipeline.class_names(spec) == ["a", "b", "c"]
  assert pipeline.num_classes(spec) == 3
  images, labels, maxval = pipeline.load_split(spec, labels=True)
  assert images.shape == (9, 8, 8, 3) and images.dtype == np.uint8
  assert maxval == 255.0 and labels.dtype == np.int32
  for image, label in zip(images, labels):  # each image is its folder's
    name = ["a", "b", "c"][label]
    assert any(np.array_equal(image, np.asarray(PIL.Image.open(
        f"{root}/{name}/{i}.png"))) for i in range(3))


def test_split_layout_flat_layout_and_nesting(tmp_path):
  for split, n in (("train", 2), ("test", 1)):
    for name in ("x", "y"):
      for i in range(n):
        save(f"{tmp_path}/s/{split}/{name}/{i}.png", pixels(i, (4, 4, 1)))
  source = folder.ImageFolder(tmp_path / "s")
  assert source.splits() == ("test", "train")
  assert len(pipeline.load_split(source, "test")[0]) == 2
  np.testing.assert_array_equal(
      pipeline.load_split(source, "train", labels=True)[1], [0, 0, 1, 1])
  with pytest.raises(DataError, match="no split 'validation'"):
    pipeline.load_split(source, "validation")

  for i in range(3):
    save(f"{tmp_path}/flat/{i}.jpg", pixels(i, (4, 4, 3)))
  assert pipeline.num_classes(f"folder:{tmp_path}/flat") is None
  with pytest.raises(ValueError, match="no class labels"):
    pipeline.load_split(f"folder:{tmp_path}/flat", labels=True)

  save(f"{tmp_path}/deep/a/more/0.png", pixels(0, (4, 4, 1)))
  with pytest.raises(DataError, match="nested deeper than a label folder"):
    pipeline.num_classes(f"folder:{tmp_path}/deep")
  save(f"{tmp_path}/mixed/a/0.png", pixels(0, (4, 4, 1)))
  save(f"{tmp_path}/mixed/1.png", pixels(1, (4, 4, 1)))
  with pytest.raises(DataError, match="both images"):
    pipeline.num_classes(f"folder:{tmp_path}/mixed")


def test_folder_zip_and_numpy_give_the_same_arrays(tmp_path, capsys):
  arrays = [pixels(i, (8, 8, 3)) for i in range(6)]
  labels = np.array([2, 0, 1, 1, 0, 2])
  zipped = stylegan_zip(tmp_path / "d.zip", arrays, labels)
  for i, (a, c) in enumerate(zip(arrays, labels)):  # label folders, sorted
    save(f"{tmp_path}/d/{c}/{i:02d}.png", a)
  stylegan_dir = tmp_path / "unzipped"
  zipfile.ZipFile(zipped).extractall(stylegan_dir)
  numpy_pair = (np.stack(arrays), labels)
  want_x, want_y, _ = pipeline.load_split(numpy_pair, labels=True)
  for spec in (zipped, f"zip:{zipped}", f"folder:{stylegan_dir}"):
    x, y, _ = pipeline.load_split(spec, labels=True)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)
  x, y, _ = pipeline.load_split(f"folder:{tmp_path}/d", labels=True)
  order = np.argsort(labels, kind="stable")  # the folder lists by class
  np.testing.assert_array_equal(x, want_x[order])
  np.testing.assert_array_equal(y, want_y[order])
  # Resized: the folder and the numpy array go through the same resize.
  a, _, _ = pipeline.load_split(numpy_pair, image_size=(5, 5))
  b, _, _ = pipeline.load_split(zipped, image_size=(5, 5))
  np.testing.assert_array_equal(a, b)

  no_json = stylegan_zip(tmp_path / "n.zip", arrays, json_name=None)
  capsys.readouterr()
  assert pipeline.num_classes(no_json) is None
  pipeline.load_split(no_json)
  assert "has no dataset.json" in capsys.readouterr().err


def test_stylegan_json_mistakes(tmp_path):
  arrays = [pixels(i, (4, 4, 1)) for i in range(2)]
  bad = stylegan_zip(tmp_path / "v.zip", arrays, json_name=None)
  with zipfile.ZipFile(bad, "a") as z:
    z.writestr("dataset.json", json.dumps(
        {"labels": [["00000/img00000000.png", [0.5, 1.0]],
                    ["00000/img00000001.png", [1.0, 0.0]]]}))
  with pytest.raises(DataError, match="vector labels are not read"):
    pipeline.num_classes(bad)
  partial = stylegan_zip(tmp_path / "p.zip", arrays, json_name=None)
  with zipfile.ZipFile(partial, "a") as z:
    z.writestr("dataset.json", json.dumps(
        {"labels": [["00000/img00000000.png", 1]]}))
  with pytest.raises(DataError, match="no label for 1 of the 2 images"):
    pipeline.num_classes(partial)
  (tmp_path / "not.zip").write_bytes(b"not a zip")
  with pytest.raises(DataError, match="not a readable zip"):
    pipeline.num_classes(str(tmp_path / "not.zip"))


# ---------------------------------------------------------- decoding ---

def test_bad_files_are_skipped_and_counted(tmp_path, capsys):
  root = tmp_path / "pics"
  save(f"{root}/a/0.png", pixels(0, (10, 12, 3)))           # odd size, RGB
  save(f"{root}/a/1.jpg", pixels(1, (9, 9, 3)), quality=95)  # JPEG
  save(f"{root}/b/0.png", pixels(2, (11, 8, 1)))            # grayscale
  save(f"{root}/b/1.png", pixels(3, (4, 4, 3)))             # too small
  full = (root / "a" / "0.png").read_bytes()
  (root / "b" / "2.png").write_bytes(full[:len(full) // 2])   # truncated
  (root / "b" / "notes.txt").write_text("not an image")
  (root / ".DS_Store").write_bytes(b"\0")                    # hidden: ignored
  x, y, _ = pipeline.load_split(f"folder:{root}", image_size=(8, 8),
                                labels=True)
  err = capsys.readouterr().err
  assert x.shape == (3, 8, 8, 3) and list(y) == [0, 0, 1]
  assert "skipped 1 file that is not an image" in err and "notes.txt" in err
  assert "skipped 1 unreadable or truncated image" in err and "b/2.png" in err
  assert "skipped 1 image smaller than the training resolution 8x8" in err
  assert "1 grayscale image among 3: trained as RGB" in err
  assert "class 'b' has a single image" in err
  gray = x[2]
  assert np.array_equal(gray[..., 0], gray[..., 1])  # repeated to RGB


def test_sixteen_bits_exif_palette_and_alpha(tmp_path, capsys):
  root = tmp_path / "pics"
  os.makedirs(root)
  deep = np.random.default_rng(0).integers(0, 65536, (6, 6, 3), np.uint16)
  (root / "rgb16.png").write_bytes(png16(deep))
  gray16 = (np.arange(36, dtype=np.uint16).reshape(6, 6) * 1800)
  PIL.Image.fromarray(gray16).save(root / "gray16.png")
  wide = pixels(4, (6, 10, 3))  # stored 10 wide, 6 high, EXIF: rotate 90
  exif = PIL.Image.Exif()
  exif[0x0112] = 6
  PIL.Image.fromarray(wide).save(root / "rotated.png", exif=exif)
  PIL.Image.fromarray(pixels(5, (6, 6, 4)), "RGBA").save(root / "alpha.png")
  PIL.Image.fromarray(pixels(6, (6, 6, 3))).convert("P").save(root / "pal.png")
  source = folder.ImageFolder(root, image_size=(6, 6), fit="center_crop")
  images, _, _ = pipeline.load_split(source)
  err = capsys.readouterr().err
  assert "reduced 2 16-bit images to 8 bits" in err
  assert "rotated 1 image as its EXIF orientation says" in err
  by_name = dict(zip(sorted(os.listdir(root)), images))
  np.testing.assert_array_equal(by_name["rgb16.png"], deep >> 8)
  np.testing.assert_array_equal(by_name["gray16.png"][..., 0], gray16 >> 8)
  upright = np.rot90(wide, k=-1)  # orientation 6: rotate 90 clockwise
  np.testing.assert_array_equal(by_name["rotated.png"], upright[2:8])
  np.testing.assert_array_equal(by_name["alpha.png"], pixels(5, (6, 6, 4))[..., :3])


def test_fit_crop_and_pad(tmp_path):
  wide = np.zeros((4, 8, 1), np.uint8)
  wide[:, 2:6] = 200  # the central 4x4 square
  assert decode.box(4, 8, (4, 4), "center_crop") == (4, 4)
  assert decode.box(4, 8, (4, 4), "pad") == (8, 8)
  np.testing.assert_array_equal(decode.fit(wide, (4, 4), "center_crop"),
                                wide[:, 2:6])
  padded = decode.fit(wide, (8, 8), "pad")
  np.testing.assert_array_equal(padded[2:6], wide)
  assert not padded[:2].any() and not padded[6:].any()  # black borders
  assert decode.is_upscaled(4, 8, (8, 8), "center_crop")
  assert not decode.is_upscaled(4, 8, (8, 8), "pad")
  for i, shape in enumerate([(4, 8, 1), (8, 4, 1)]):
    save(f"{tmp_path}/f/{i}.png", wide if i == 0 else wide.transpose(1, 0, 2))
  with pytest.raises(DataError, match="2 sizes .* no image_size was given"):
    pipeline.load_split(f"folder:{tmp_path}/f")
  x, _, _ = pipeline.load_split(folder.ImageFolder(tmp_path / "f", fit="pad",
                                                   image_size=(8, 8)))
  assert x.shape == (2, 8, 8, 1)


def test_channels_inferred_or_forced(tmp_path):
  for i in range(2):
    save(f"{tmp_path}/g/{i}.png", pixels(i, (4, 4, 1)))
  assert pipeline.data_shape(f"folder:{tmp_path}/g") == (4, 4, 1)
  rgb = folder.ImageFolder(tmp_path / "g", channels=3)
  x, _, _ = pipeline.load_split(rgb)
  assert x.shape == (2, 4, 4, 3)
  save(f"{tmp_path}/g/2.png", pixels(2, (4, 4, 3)))
  x, _, _ = pipeline.load_split(folder.ImageFolder(tmp_path / "g", channels=1))
  assert x.shape == (3, 4, 4, 1)
  with pytest.raises(ValueError, match="channels must be 1, 3 or 0"):
    folder.ImageFolder(tmp_path / "g", channels=2)


def test_resize_is_jax_image_resize():
  x = np.random.default_rng(0).uniform(size=(2, 13, 7, 3)).astype(np.float32)
  for size in ((5, 5), (20, 9), (13, 7), (1, 1)):
    want = jax.image.resize(x, (2,) + size + (3,), "bilinear", antialias=True)
    np.testing.assert_allclose(images_lib.resize(x, size), want, atol=1e-6)


# ------------------------------------------------------------ errors ---

def test_nothing_usable_is_one_clear_error(tmp_path):
  with pytest.raises(DatasetNotFoundError, match="No folder or zip"):
    pipeline.num_classes(f"folder:{tmp_path}/absent")
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "readme.md").write_text("x")
  with pytest.raises(DataError, match="holds no image files"):
    pipeline.data_shape(f"folder:{tmp_path}/empty")
  (tmp_path / "broken").mkdir()
  (tmp_path / "broken" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n")
  with pytest.raises(DataError, match="none of its 1 images can be used"):
    pipeline.data_shape(f"folder:{tmp_path}/broken")
  save(f"{tmp_path}/tiny/0.png", pixels(0, (4, 4, 3)))
  with pytest.raises(DataError, match="smaller --config.image_size"):
    pipeline.data_shape(f"folder:{tmp_path}/tiny", image_size=(8, 8))


# ------------------------------------------------------------- cache ---

def test_the_cache_is_reused_and_rebuilt_when_files_change(
    tmp_path, cache_root, monkeypatch, capsys):
  root = labelled_folder(tmp_path / "pics", per_class=2)
  decoded = []
  read = decode.read
  monkeypatch.setattr(decode, "read",
                      lambda f, gray=None: decoded.append(f) or read(f, gray))

  def load():
    image_cache._MEMO.clear()  # pylint: disable=protected-access
    return pipeline.load_split(f"folder:{root}", image_size=(4, 4),
                               labels=True)

  first = load()
  assert len(decoded) == 6
  files = os.listdir(cache_root / "data")
  assert len(files) == 1 and files[0].startswith("pics4-train-")
  assert not any(name.startswith(".") for name in os.listdir(root))
  capsys.readouterr()
  again = load()  # unchanged: read, not decoded
  assert len(decoded) == 6 and "from the cache" in capsys.readouterr().err
  for a, b in zip(first[:2], again[:2]):
    np.testing.assert_array_equal(a, b)

  save(f"{root}/a/new.png", pixels(99, (8, 8, 3)))  # added
  assert len(load()[0]) == 7 and len(decoded) == 13
  assert "1 added" in capsys.readouterr().err
  os.remove(f"{root}/b/0.png")  # removed
  assert len(load()[0]) == 6
  assert "1 removed" in capsys.readouterr().err
  save(f"{root}/c/1.png", pixels(7, (8, 8, 3)))  # rewritten
  os.utime(f"{root}/c/1.png", ns=(1, 1))
  x, _, _ = load()
  assert "1 rewritten" in capsys.readouterr().err
  assert len(os.listdir(cache_root / "data")) == 1  # replaced, atomically
  np.testing.assert_array_equal(
      x[-1], images_lib.resize(pixels(7, (8, 8, 3))[None], (4, 4))[0]
      .round().astype(np.uint8))
  # Another transform is another cache file.
  pipeline.load_split(f"folder:{root}", image_size=(2, 2))
  assert len(os.listdir(cache_root / "data")) == 2


# ----------------------------------------------------------- metrics ---

def test_the_metrics_read_a_folder_at_its_training_size(tmp_path, monkeypatch):
  from ganjax import metrics  # pylint: disable=g-import-not-at-top
  from ganjax.metrics import real_data  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("GANJAX_INCEPTION_WEIGHTS", raising=False)
  for i in range(3):
    save(f"{tmp_path}/flat/{i}.png", pixels(i, (8, 8, 3)))
  with pytest.raises(ValueError, match="docs/inception_weights.md.*label "
                     "folders"):
    metrics.Evaluator(folder.ImageFolder(tmp_path / "flat"), num=10)
  labelled = folder.ImageFolder(labelled_folder(tmp_path / "pics"),
                                image_size=(4, 4))
  evaluator = metrics.Evaluator(labelled, num=10, verbose=False)
  assert evaluator.networks == ("cnn",) and evaluator.reference_split == "train"
  assert evaluator.data_shape == (4, 4, 3) and evaluator.dataset == "pics4"
  # The metrics read a fixed shuffle: a slice holds more than one class.
  images, labels = real_data.load_split(labelled, "train[:4]")
  assert images.shape == (4, 4, 4, 3) and images.dtype == np.float32
  order = np.random.default_rng(0).permutation(9)[:4]
  stored, stored_labels, _ = pipeline.load_split(labelled, labels=True)
  np.testing.assert_array_equal(labels, stored_labels[order])
  np.testing.assert_array_equal(images * 255, stored[order].astype(np.float32))
  assert len(set(labels)) > 1
