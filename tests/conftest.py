"""Test configuration: eight fake CPU devices, set before JAX starts any backend.

XLA:CPU compiles the suite's many small programs with its LLVM optimisation
off and its legacy fusion emitters (``COMPILE_FLAGS``): with them 68 tests
took 99 s instead of 139 s, back to back on 2 cores. Under the legacy
emitters a step inside a loop (``lax.map`` of members, many steps per call)
can round differently in the last bit from the same step alone, so the
tests marked ``xla_default_emitters``, which check that different programs
give bit-identical states, each run in a fresh interpreter with XLA's
default emitters (``XlaDefaultEmittersTest``).

One persistent XLA compilation cache for the whole run (the pytest-xdist
workers and the training subprocesses inherit it through the environment):
many tests compile the same tiny steps. It starts empty and is removed at
the end, so no run sees another run's executables (its keys include the
XLA flags).
"""
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile

EMITTERS_FLAG = "--xla_cpu_use_fusion_emitters=false"
COMPILE_FLAGS = ("--xla_backend_optimization_level=0", EMITTERS_FLAG)


def _xla_accepts(flag: str) -> bool:
  """Whether this jaxlib's XLA knows ``flag`` (it aborts on unknown flags)."""
  probe = subprocess.run(
      [sys.executable, "-c", "import jax; jax.devices('cpu')"],
      env={**os.environ, "XLA_FLAGS": flag}, capture_output=True, check=False)
  return probe.returncode == 0


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# The controlling process sets the flags and the cache; the xdist workers, the
# commands the tests run and the fresh interpreters inherit them.
_OWNS_JAX_CACHE = "GANJAX_TEST_JAX_CACHE" not in os.environ
if _OWNS_JAX_CACHE:
  _flags = os.environ.get("XLA_FLAGS", "").split()
  for _flag in COMPILE_FLAGS:
    if (not any(f.startswith(_flag.split("=")[0]) for f in _flags)
        and (_flag != EMITTERS_FLAG or _xla_accepts(_flag))):
      _flags.append(_flag)
  os.environ["XLA_FLAGS"] = " ".join(_flags)
  os.environ["GANJAX_TEST_JAX_CACHE"] = tempfile.mkdtemp(prefix="ganjax-xla-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["GANJAX_TEST_JAX_CACHE"]
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import chex  # noqa: E402
import pytest  # noqa: E402

chex.set_n_cpu_devices(8)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
  """One metrics cache for the session, shared by the xdist workers and the
  commands the tests run: the digits classifier is trained once, by the
  first worker to get here while the others wait, and its reference
  statistics are computed once per key (files written atomically; the
  weights are checked against their sha256 when read)."""
  root = tmp_path_factory.getbasetemp()
  if "PYTEST_XDIST_WORKER" in os.environ:  # a worker's basetemp: the run's, /gwN
    root = root.parent
  path = root / "ganjax_metrics_cache"
  path.mkdir(exist_ok=True)
  from ganjax.metrics import classifier  # pylint: disable=import-outside-toplevel
  with open(root / "ganjax_metrics_cache.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    classifier.load_or_train("digits", cache_dir=str(path), verbose=False)
  return str(path)


class XlaDefaultEmittersTest(pytest.Item):
  """A test marked ``xla_default_emitters``, run by pytest in a fresh
  interpreter whose XLA keeps its default fusion emitters."""

  def runtest(self):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["XLA_FLAGS"] = " ".join(f for f in env["XLA_FLAGS"].split()
                                if f != EMITTERS_FLAG)
    with tempfile.TemporaryDirectory(prefix="ganjax-emitters-") as basetemp:
      proc = subprocess.run(
          [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           f"--basetemp={basetemp}", self.nodeid],
          cwd=self.config.rootpath, env=env, capture_output=True, text=True,
          check=False)
    if proc.returncode != 0:
      raise AssertionError(
          f"{self.nodeid}, run with XLA's default fusion emitters, failed:\n"
          + proc.stdout[-8000:] + proc.stderr[-2000:])

  def repr_failure(self, excinfo, style=None):
    return str(excinfo.value)

  def reportinfo(self):
    return self.path, None, self.name


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "xla_default_emitters: checks that different programs give "
      "bit-identical states; runs with XLA's default fusion emitters")


def pytest_collection_modifyitems(config, items):
  del config
  if EMITTERS_FLAG not in os.environ["XLA_FLAGS"].split():
    return
  for i, item in enumerate(items):
    if item.get_closest_marker("xla_default_emitters"):
      items[i] = XlaDefaultEmittersTest.from_parent(item.parent, name=item.name)


def pytest_unconfigure(config):
  del config
  if _OWNS_JAX_CACHE:  # the process that made it (pytest's, or xdist's controller)
    shutil.rmtree(os.environ["GANJAX_TEST_JAX_CACHE"], ignore_errors=True)
