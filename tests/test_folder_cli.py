"""Your own images from the command line: the README's folder example (train a
conditional DCGAN, sample, evaluate) on a folder written here, the same
parameters from a folder, a StyleGAN zip and numpy arrays, and bad data as one
error line with exit code 2."""

import io
import json
import os
import re
import subprocess
import sys
import zipfile

import jax
import numpy as np
import PIL.Image
import pytest

from experiments import builders
from experiments import prepare_data
from experiments import resume
from experiments import train
from experiments.configs import dcgan_folder
from ganjax.data import image_cache
from tests.helpers import evaluate_in_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
CLASSES = ("cats", "dogs", "zebras")
# The README trains for hours; here the same commands run a tiny model briefly.
TINY = ["--config.num_steps=4", "--config.batch_size=8",
        "--config.model.base_features=8", "--config.latent_dim=8",
        "--config.log_every=2", "--config.eval_every=4",
        "--config.checkpoint_every=4", "--config.steps_per_call=2"]


def readme_folder_commands():
  text = open(README).read()
  block = text.split("<!-- folder example")[1].split("```bash\n")[1]
  return [line.split() for line in block.split("```")[0].splitlines()
          if line.startswith("python -m")]


def pixels(seed, shape):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write_images(root):
  """Three label folders: PNG and JPEG, RGB and grayscale, odd sizes, a
  truncated file and a file that is not an image."""
  for c, name in enumerate(CLASSES):
    os.makedirs(root / name)
    for i in range(4):
      shape = (8 + i, 9, 1) if name == "dogs" and i % 2 else (10, 8 + i, 3)
      image = PIL.Image.fromarray(np.squeeze(pixels(10 * c + i, shape)))
      image.save(root / name / (f"{i}.jpg" if i == 3 else f"{i}.png"))
  png = (root / "cats" / "0.png").read_bytes()
  (root / "cats" / "broken.png").write_bytes(png[:len(png) // 2])
  (root / "dogs" / "notes.txt").write_text("not an image")


def run(args, cwd, env):
  return subprocess.run([sys.executable] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  root = tmp_path_factory.mktemp("cli")
  write_images(root / "my_images")
  return root, {**os.environ, "PYTHONPATH": REPO,
                "GANJAX_CACHE_DIR": str(root / "cache")}


def test_readme_folder_example_trains_samples_and_scores(env, monkeypatch,
                                                         capsys):
  """Training and sampling run as commands, evaluation in this process."""
  cwd, environ = env
  commands = readme_folder_commands()
  assert [c[2] for c in commands] == ["experiments.train", "experiments.sample",
                                      "experiments.evaluate"]
  # Run in a fresh directory holding my_images/: the config file by its full path.
  train_cmd = [re.sub(r"image_size=\d+", "image_size=8", a).replace(
      "=experiments/", f"={REPO}/experiments/") for a in commands[0][1:]] + TINY
  out = run(train_cmd, cwd, environ)
  assert out.returncode == 0, out.stderr[-3000:]
  err = out.stderr
  assert "skipped 1 file that is not an image" in err and "notes.txt" in err
  assert "skipped 1 unreadable or truncated image" in err
  assert "2 grayscale images among 12: trained as RGB" in err
  workdir = cwd / "runs" / "mine"
  with open(workdir / "classes.json") as f:
    assert json.load(f) == {"classes": list(CLASSES)}
  with open(workdir / "config.json") as f:
    resolved = json.load(f)["resolved"]
  assert resolved["num_classes"] == 3 and resolved["data_shape"] == [8, 8, 3]

  out = run(commands[1][1:], cwd, environ)
  assert out.returncode == 0, out.stderr[-3000:]
  assert np.load(workdir / "samples.npy").shape == (1000, 8, 8, 3)
  assert (workdir / "samples.png").exists()

  monkeypatch.chdir(cwd)
  monkeypatch.setenv("GANJAX_CACHE_DIR", environ["GANJAX_CACHE_DIR"])
  result, err = evaluate_in_process(commands[2][3:], capsys)
  metrics = result["metrics"]
  assert result["dataset"] == "my_images8"
  assert np.isfinite(metrics["fid1k_my_images8_cnn"])
  assert 0 <= metrics["class_accuracy1k_my_images8_cnn"] <= 1
  assert "no feature network" not in err  # labelled: the CNN fallback
  assert "trained on its own labelled images" in err
  # The data were decoded once: the sample and evaluate commands read the cache.
  assert len(os.listdir(cwd / "cache" / "data")) == 1


def test_folder_zip_and_numpy_train_the_same_parameters(tmp_path, monkeypatch):
  monkeypatch.setenv("GANJAX_CACHE_DIR", str(tmp_path / "cache"))
  labels = np.repeat(np.arange(3), 4)  # in the folder's order: by class
  images = np.stack([pixels(i, (8, 8, 3)) for i in range(12)])
  with zipfile.ZipFile(tmp_path / "data.zip", "w") as z:
    for i, (image, label) in enumerate(zip(images, labels)):
      os.makedirs(tmp_path / "folder" / CLASSES[label], exist_ok=True)
      PIL.Image.fromarray(image).save(
          tmp_path / "folder" / CLASSES[label] / f"{i:02d}.png")
      buf = io.BytesIO()
      PIL.Image.fromarray(image).save(buf, format="png", compress_level=0)
      z.writestr(f"00000/img{i:08d}.png", buf.getvalue())
    z.writestr("dataset.json", json.dumps(
        {"labels": [[f"00000/img{i:08d}.png", int(c)]
                    for i, c in enumerate(labels)]}))
  sources = {"folder": f"folder:{tmp_path / 'folder'}",
             "zip": f"zip:{tmp_path / 'data.zip'}"}

  def config(dataset):
    c = dcgan_folder.get_config()
    c.dataset = dataset
    c.update_from_flattened_dict({
        "image_size": 8, "num_classes": -1, "num_steps": 4, "batch_size": 8,
        "log_every": 4, "eval_every": 4, "checkpoint_every": 4,
        "steps_per_call": 4, "latent_dim": 8, "model.base_features": 8})
    return c

  def trained(name, dataset):
    train.train_and_evaluate(config(dataset), str(tmp_path / name),
                             progress=False)
    state = resume.load(str(tmp_path / name)).state
    return {"g": state.g_params, "d": state.d_params}

  for dataset in sources.values():  # the same uint8 arrays and labels
    decoded = image_cache.load(builders.data_source(config(dataset)))
    np.testing.assert_array_equal(decoded.images, images)
    np.testing.assert_array_equal(decoded.labels, labels)
  params = {name: trained(name, dataset) for name, dataset in sources.items()}
  monkeypatch.setattr(builders, "data_source",
                      lambda c: (images, labels))  # the same data as numpy
  params["numpy"] = trained("numpy", "digits")  # "digits" is not read
  for name in ("zip", "numpy"):
    jax.tree.map(np.testing.assert_array_equal, params["folder"], params[name])


@pytest.mark.parametrize("layout,message", [
    ("empty", "holds no image files"),
    ("nested", "nested deeper than a label folder"),
    ("missing", "No folder or zip"),
])
def test_bad_folders_are_one_error_line(tmp_path, capsys, layout, message):
  root = tmp_path / "pics"
  if layout == "empty":
    os.makedirs(root)
  if layout == "nested":
    os.makedirs(root / "a" / "b")
    PIL.Image.fromarray(pixels(0, (8, 8, 3))).save(root / "a" / "b" / "0.png")
  code = prepare_data.main([f"folder:{root}", "--image_size=8",
                            "--cache_dir", str(tmp_path / "cache")])
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("error: ") and message in err
  assert "Traceback" not in err


def test_training_on_a_bad_folder_exits_2_without_traceback(tmp_path):
  (tmp_path / "pics").mkdir()
  (tmp_path / "pics" / "notes.txt").write_text("x")
  out = run(["-m", "experiments.train",
             "--config=experiments/configs/dcgan_folder.py",
             f"--workdir={tmp_path / 'run'}",
             f"--config.dataset=folder:{tmp_path / 'pics'}"], REPO,
            {**os.environ, "PYTHONPATH": REPO,
             "GANJAX_CACHE_DIR": str(tmp_path / "cache")})
  assert out.returncode == 2, out.stderr[-2000:]
  assert "error: " in out.stderr and "holds no image files" in out.stderr
  assert "Traceback" not in out.stderr
