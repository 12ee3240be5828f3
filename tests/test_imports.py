"""The core never imports TensorFlow."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_ganjax_does_not_import_tensorflow():
  code = ("import sys, ganjax, ganjax.data.pipeline; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; "
          "print(sorted(ganjax.__all__))")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  result = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert "GAN" in result.stdout
