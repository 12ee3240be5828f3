"""Executes every notebook in notebooks/ at small size and checks the numbers it computes.

Each notebook reads ``GANJAX_NOTEBOOK_SMALL=1`` in its first code cell and shrinks its
run; its last cell asserts its own checks and prints ``RESULT {...}``, which is checked
here again. The kernel is this interpreter (a kernelspec written to a temporary
``JUPYTER_PATH``), so no ``ipykernel install`` is needed; it runs with the working
directory in a temporary folder and the repository root on ``PYTHONPATH``.
"""

import ast
import json
import math
import os
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
KERNEL = "ganjax-notebook-test"
CELL_TIMEOUT_S = 600
# conftest.py compiles for speed (XLA's CPU optimisation off, legacy fusion
# emitters). Notebooks that run their compiled steps many times are quicker
# with XLA's defaults (measured alone, one after the other, on a loaded 2-core
# host): 05 (1000 DCGAN steps) 69 s instead of 133 s, 03 (vmapped D trainings)
# 66 s instead of 80 s (and 26 s instead of 30 s with the default emitters
# too, two at a time on 2 cores); 01, 02 and 04 compile more than they run
# (04: 87 s at level 0, 103 s at the default).
OPTIMISED = {"03_theory", "05_conditional"}


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory):
  """A Jupyter data dir holding a kernelspec that runs the current interpreter."""
  root = tmp_path_factory.mktemp("jupyter")
  spec_dir = root / "kernels" / KERNEL
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
               "{connection_file}"],
      "display_name": "ganjax notebook test", "language": "python"}))
  return root


def _execute(path, tmp_path, monkeypatch, jupyter_path):
  """Runs the notebook at small size; returns the executed notebook."""
  monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
  monkeypatch.setenv("GANJAX_NOTEBOOK_SMALL", "1")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  # conftest.py asks XLA for 8 fake CPU devices; the notebooks want the real one.
  dropped = ["--xla_force_host_platform_device_count"]
  if path.stem in OPTIMISED:
    dropped += ["--xla_backend_optimization_level",
                "--xla_cpu_use_fusion_emitters"]
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not any(f.startswith(d) for d in dropped)]
  monkeypatch.setenv("XLA_FLAGS", " ".join(flags))
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(
      nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S,
      resources={"metadata": {"path": str(tmp_path)}})
  client.execute()   # raises CellExecutionError on the first failing cell
  return nb


def _result(nb) -> dict:
  """The dict printed as ``RESULT {...}`` by the notebook's last cell."""
  for cell in reversed(nb.cells):
    for output in cell.get("outputs", []):
      if output.get("output_type") == "stream":
        for line in output["text"].splitlines():
          if line.startswith("RESULT "):
            return ast.literal_eval(line[len("RESULT "):])
  raise AssertionError("the notebook printed no RESULT line")


def _check_quickstart(r):
  assert r["steps"] == 200
  assert r["identical_state"] and r["finite_samples"]
  assert r["resumed_step"] == 201                           # resumed from the checkpoint


def _check_figure1(r):
  assert r["b_d_real"] > 0.9 and r["b_d_fake"] < 0.1        # (b): D separates
  assert abs(r["g_mean_d"] - 4.0) < abs(r["g_mean_a"] - 4.0) / 2


def _check_theory(r):
  assert r["prop1_mean_error"] < 0.05                        # D* = p_d / (p_d + p_g)
  assert r["thm1_max_error"] < 0.1                           # C(G) = -log 4 + 2 JSD
  assert abs(r["v_at_data"] + math.log(4)) < 0.02
  assert abs(r["grad_minimax_at_0"]) < 2e-3 < 0.99 < abs(r["grad_ns_at_0"])
  assert r["saturation_ratio"] < 0.05


def _check_mode_collapse(r):
  assert r and all(isinstance(v, int) and 0 <= v <= 8 for v in r.values()), r


def _check_conditional(r):
  assert r["finite"] and r["real_accuracy"] > 0.9
  assert r["accuracy"] > 0.5        # chance is 0.1 (small run: 1000 steps, ~0.95)


CHECKS = {
    "01_quickstart": _check_quickstart,
    "02_figure1_1d": _check_figure1,
    "03_theory": _check_theory,
    "04_mode_collapse": _check_mode_collapse,
    "05_conditional": _check_conditional,
}


def test_every_notebook_is_checked():
  assert {p.stem for p in NOTEBOOKS} == set(CHECKS)
  assert OPTIMISED <= set(CHECKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch, jupyter_path, cache_dir):
  # The metrics' classifiers (05_conditional) go to the session's cache.
  monkeypatch.setenv("GANJAX_CACHE_DIR", cache_dir)
  nb = _execute(path, tmp_path, monkeypatch, jupyter_path)
  errors = [o for c in nb.cells for o in c.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors, errors
  CHECKS[path.stem](_result(nb))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped(path):
  """Committed notebooks carry no outputs and start with the parameter cell."""
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.outputs == [] and c.execution_count is None for c in code)
  assert "GANJAX_NOTEBOOK_SMALL" in code[0].source
