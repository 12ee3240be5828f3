"""Test configuration: eight fake CPU devices, set before JAX starts any backend."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import chex  # noqa: E402
import pytest  # noqa: E402

chex.set_n_cpu_devices(8)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
  """One metrics cache for the session (per xdist worker): the digits
  classifier and its reference statistics are computed once."""
  path = tmp_path_factory.getbasetemp() / "ganjax_metrics_cache"
  path.mkdir(exist_ok=True)
  return str(path)
