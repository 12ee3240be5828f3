"""Test configuration: eight fake CPU devices, set before JAX starts any backend."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import chex  # noqa: E402

chex.set_n_cpu_devices(8)
