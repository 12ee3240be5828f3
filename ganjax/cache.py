"""The project's cache directory and atomic writes (temporary file + ``os.replace``).

Cache root: the ``cache_dir`` argument, else ``$GANJAX_CACHE_DIR``, else
``~/.cache/ganjax``. It holds decoded image folders (``data/``,
``ganjax.data.image_cache``), trained classifiers (``classifiers/``) and
reference statistics of real data (``reference/``). Every file is written to
a temporary name in its final folder and renamed into place, so concurrent
runs and interrupted runs never leave a half-written file behind.
"""

import hashlib
import json
import os
import tempfile

import numpy as np

CACHE_ENV = "GANJAX_CACHE_DIR"


def cache_dir(path: str | None = None) -> str:
  """The cache root: ``path``, ``$GANJAX_CACHE_DIR`` or ``~/.cache/ganjax``."""
  return os.path.expanduser(path or os.environ.get(CACHE_ENV) or
                            "~/.cache/ganjax")


def _atomic(path: str, write) -> None:
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-",
                             suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_bytes(path: str, data: bytes) -> None:
  _atomic(path, lambda f: f.write(data))


def atomic_write_json(path: str, obj) -> None:
  atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n")
                     .encode())


def atomic_save_npz(path: str, arrays: dict) -> None:
  _atomic(path, lambda f: np.savez(f, **arrays))


def file_sha256(path: str) -> str:
  """The SHA-256 of a file (weights files are identified by it)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def weights_file(path, env: str, what: str, how_to_get: str) -> str:
  """A local weights file: ``path``, else ``$env``; never downloaded.

  Raises:
    FileNotFoundError: neither is set (the message says ``how_to_get``), or
      the file does not exist.
  """
  path = path or os.environ.get(env)
  if not path:
    raise FileNotFoundError(
        f"{what} weights are needed for this metric and are never downloaded. "
        f"{how_to_get} and pass the .npz or set ${env}.")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} weights file {path} does not exist.")
  return path
