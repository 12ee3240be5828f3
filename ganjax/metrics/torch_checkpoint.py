"""Reads a PyTorch ``state_dict`` file into numpy arrays, without PyTorch.

Handles both formats ``torch.save`` has written: the zip archive (PyTorch >=
1.6) and the older "legacy" stream of pickles, which is the format of
pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``. Only what a state
dict holds is understood: tensors (contiguous or strided views of storages),
parameters, ordered dicts and plain Python values. Nothing else is
unpickled: any other class in the file raises ``pickle.UnpicklingError``.
"""

import collections
import io
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32,
    "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
  """A flat numpy array standing in for a torch storage (filled in later for
  the legacy format)."""

  def __init__(self, dtype: np.dtype, numel: int):
    self.dtype, self.numel = dtype, numel
    self.array: np.ndarray | None = None


def _rebuild_tensor(storage: _Storage, offset, size, stride, *unused):
  del unused  # requires_grad, backward hooks, metadata
  return ("tensor", storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
  del unused
  return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):

  def __init__(self, file, load_storage):
    super().__init__(file)
    self._load_storage = load_storage

  def find_class(self, module, name):
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    raise pickle.UnpicklingError(
        f"{module}.{name} is not part of a state dict; refusing to unpickle it.")

  def persistent_load(self, pid):
    if pid[0] not in ("storage", b"storage"):
      raise pickle.UnpicklingError(f"Unknown persistent id {pid[0]!r}.")
    return self._load_storage(pid[1:])


def _materialise(obj: Any) -> Any:
  """Turns the ``("tensor", ...)`` placeholders into numpy arrays."""
  if isinstance(obj, tuple) and len(obj) == 5 and obj[0] == "tensor":
    _, storage, offset, size, stride = obj
    itemsize = storage.array.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage.array[offset:], shape=size,
        strides=tuple(s * itemsize for s in stride))
    return np.array(view)  # a copy, owning its memory
  if isinstance(obj, dict):
    return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
  if isinstance(obj, list):
    return [_materialise(v) for v in obj]
  return obj


def _load_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pkl = next(n for n in names if n.endswith("data.pkl"))
    prefix = pkl[: -len("data.pkl")]
    storages: dict[str, _Storage] = {}

    def load_storage(args):
      storage_type, key, _location, numel = args[:4]
      if key not in storages:
        storage = _Storage(storage_type.dtype, numel)
        raw = archive.read(f"{prefix}data/{key}")
        storage.array = np.frombuffer(raw, storage_type.dtype.newbyteorder("<"),
                                      count=numel).astype(storage_type.dtype)
        storages[key] = storage
      return storages[key]

    result = _Unpickler(io.BytesIO(archive.read(pkl)), load_storage).load()
  return _materialise(result)


def _load_legacy(path: str) -> Any:
  with open(path, "rb") as f:
    if pickle.load(f) != _MAGIC_NUMBER:
      raise ValueError(f"{path} is not a PyTorch file (bad magic number).")
    if pickle.load(f) != _PROTOCOL_VERSION:
      raise ValueError(f"{path}: unknown PyTorch legacy protocol version.")
    sys_info = pickle.load(f)
    if not sys_info.get("little_endian", True):
      raise ValueError(f"{path} was saved on a big-endian machine.")
    storages: dict[str, _Storage] = {}
    views = []

    def load_storage(args):
      storage_type, root_key, _location, numel, view_metadata = args
      if root_key not in storages:
        storages[root_key] = _Storage(storage_type.dtype, numel)
      if view_metadata is not None:
        view_key, offset, view_size = view_metadata
        view = _Storage(storage_type.dtype, view_size)
        views.append((view, storages[root_key], offset))
        return view
      return storages[root_key]

    result = _Unpickler(f, load_storage).load()
    keys = pickle.load(f)
    for key in keys:
      storage = storages[key]
      (numel,) = struct.unpack("<q", f.read(8))
      raw = f.read(numel * storage.dtype.itemsize)
      storage.array = np.frombuffer(raw, storage.dtype.newbyteorder("<"),
                                    count=numel).astype(storage.dtype)
    for view, root, offset in views:
      view.array = root.array[offset:offset + view.numel]
  return _materialise(result)


def load_state_dict(path: str) -> "collections.OrderedDict[str, np.ndarray]":
  """Loads a ``torch.save``'d state dict as ``{name: numpy array}``, without torch.

  Args:
    path: a ``.pth`` / ``.pt`` file (zip or legacy format).

  Returns:
    an ordered dict of numpy arrays (parameters and buffers, in file order).
  """
  if zipfile.is_zipfile(path):
    state = _load_zip(path)
  else:
    state = _load_legacy(path)
  if isinstance(state, dict) and "state_dict" in state and isinstance(
      state["state_dict"], dict):
    state = state["state_dict"]
  if not isinstance(state, dict):
    raise ValueError(f"{path} does not hold a state dict (found "
                     f"{type(state).__name__}).")
  return state
