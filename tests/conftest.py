"""Test configuration: eight fake CPU devices, set before JAX starts any backend.

One persistent XLA compilation cache for the whole run (the pytest-xdist
workers and the training subprocesses inherit it through the environment):
many tests compile the same tiny steps. It starts empty and is removed at
the end, so no run sees another run's executables.
"""
import fcntl
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# Tests compile many small programs and run each for a few steps: XLA's CPU
# backend without its LLVM optimisation compiles them in about half the time
# (the suite took 15% less wall time), at some cost to the long runs.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()
if "GANJAX_TEST_JAX_CACHE" not in os.environ:  # the controlling process
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


def pytest_unconfigure(config):
  if not hasattr(config, "workerinput"):  # the controlling process
    shutil.rmtree(os.environ.get("GANJAX_TEST_JAX_CACHE", ""),
                  ignore_errors=True)
