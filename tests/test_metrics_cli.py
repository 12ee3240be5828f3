"""``python -m experiments.evaluate``: a small samples file, and its refusals (exit 2, no traceback)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import evaluate
from ganjax.metrics import real_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_evaluates_a_samples_file(tmp_path, cache_dir, capsys):
  samples = real_data.load_split("digits", "train[:200]")[0]
  path = str(tmp_path / "samples.npy")
  np.save(path, samples[..., 0])  # [N, H, W] float in [0, 1]
  out = str(tmp_path / "result.json")
  code = evaluate.main([f"--samples={path}", "--dataset=digits", "--num=150",
                        f"--cache_dir={cache_dir}", f"--out={out}"])
  assert code == 0
  printed = json.loads(capsys.readouterr().out)
  with open(out) as f:
    assert json.load(f) == printed
  assert printed["dataset"] == "digits" and printed["num_samples"] == 150
  names = set(printed["metrics"])
  for name in ("fid150_digits_cnn", "kid150_digits_cnn", "is150_digits_cnn",
               "precision150_digits_cnn", "recall150_digits_cnn",
               "classes_covered150_digits_cnn", "parzen_ll150_digits",
               "parzen_ll150_digits_stderr"):
    assert name in names
    assert np.isfinite(printed["metrics"][name])
  assert "fid150_digits_cnn" in printed["protocol"]
  assert printed["protocol"]["network_cnn"]["test_accuracy"] > 0.9


def test_real_data_scores_are_the_ceiling(cache_dir, capsys):
  code = evaluate.main(["--real=train", "--dataset=digits", "--num=500",
                        "--no_parzen", f"--cache_dir={cache_dir}"])
  assert code == 0
  printed = json.loads(capsys.readouterr().out)
  assert printed["source"] == {"real": "digits:train"}
  assert printed["num_samples"] == 500
  m = printed["metrics"]
  # Real digits against the held-out real digits: near-perfect scores.
  assert m["fid500_digits_cnn"] < 5 and m["precision500_digits_cnn"] > 0.8
  assert m["recall500_digits_cnn"] > 0.8
  assert m["classes_covered500_digits_cnn"] == 10


def _save(tmp_path, name, array, **kwargs):
  path = str(tmp_path / name)
  np.save(path, array, **kwargs)
  return path


@pytest.mark.parametrize("array,message", [
    (np.full((20, 8, 8), np.nan, np.float32), "NaN"),
    (np.zeros((20, 28, 28), np.float32), "shape (20, 28, 28)"),
    (np.zeros((8, 8, 1), np.float32),  # one image without its N axis
     "the samples have shape (8, 8, 1); this data set needs [N, 8, 8, 1] or "
     "[N, 8, 8]"),
    (np.full((20, 8, 8, 1), 1.5, np.float32), "[0, 1]"),
    (np.zeros((20, 8, 8, 1), np.float64) - 1.0, "[0, 1]"),
])
def test_refuses_bad_samples(tmp_path, capsys, array, message):
  path = _save(tmp_path, "bad.npy", array)
  assert evaluate.main([f"--samples={path}", "--dataset=digits",
                        f"--cache_dir={tmp_path}"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err


def test_refuses_unreadable_files_and_bad_arguments(tmp_path, capsys):
  pickled = _save(tmp_path, "obj.npy", np.array([{"a": 1}], dtype=object),
                  allow_pickle=True)
  text = str(tmp_path / "text.npy")
  with open(text, "w") as f:
    f.write("not an array")
  good = _save(tmp_path, "good.npy", np.zeros((20, 8, 8), np.float32))
  for argv, message in (
      ([f"--samples={pickled}", "--dataset=digits"], "cannot read"),
      ([f"--samples={text}", "--dataset=digits"], "cannot read"),
      ([f"--samples={tmp_path / 'missing.npy'}", "--dataset=digits"],
       "does not exist"),
      ([f"--samples={good}"], "--dataset is required"),
      ([f"--samples={good}", "--dataset=digits", "--num=2"], "--num"),
      ([f"--samples={good}", "--dataset=digits", "--networks=inception",
        "--inception_weights=/nonexistent.npz"], "does not exist"),
      ([f"--samples={good}", "--dataset=digits", f"--lpips_weights={text}"],
       f"the LPIPS weights file {text} cannot be used"),
  ):
    assert evaluate.main(argv + [f"--cache_dir={tmp_path}"]) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, (argv, err)


def test_refuses_a_workdir_without_a_run(tmp_path, capsys):
  assert evaluate.main([f"--workdir={tmp_path}",
                        f"--cache_dir={tmp_path}"]) == 2
  assert capsys.readouterr().err.startswith("error: ")


def test_command_line_exit_status_and_no_traceback(tmp_path):
  path = _save(tmp_path, "nan.npy", np.full((20, 8, 8), np.nan, np.float32))
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.evaluate", f"--samples={path}",
       "--dataset=digits", f"--cache_dir={tmp_path}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert "NaN" in proc.stderr and proc.stdout == ""
