"""Training summaries: TensorBoard event files (tensorboardX) and a JSONL log.

``SummaryWriter`` writes every scalar twice: to TensorBoard (``tensorboard
--logdir=WORKDIR``) and as one JSON object per logged step to
``metrics.jsonl`` (``{"step": 100, "d_loss": 1.3, ...}``), which is easy to
read back in tests and notebooks (``read_jsonl``). Images (sample grids) go
to TensorBoard only; PNG files are ``ganjax.images``' job.

Resuming: ``SummaryWriter(..., resume_step=s)`` drops JSONL records of steps
after ``s`` (written by a run that stopped before its next checkpoint) and
tells TensorBoard to purge its events after ``s`` too, so the logs of a
resumed run read like those of an uninterrupted one.

Every write happens in the caller's thread (TensorBoard events through
tensorboardX's synchronous ``EventsWriter``, flushed every ``flush_secs``):
a write that fails (disk full, permissions) raises ``OSError`` there, with
the file's name in ``filename``, and a JSONL record is written whole or
not at all. Nothing here imports TensorFlow.
"""

import contextlib
import json
import os
import sys
import time
from typing import Any, Mapping, Optional

import numpy as np

JSONL_NAME = "metrics.jsonl"


def _to_float(value: Any) -> float:
  return float(np.asarray(value))


def _import_tensorboardx():
  """Imports tensorboardX without letting it import PyTorch.

  ``tensorboardX.writer`` imports torch, when it is installed, only to accept
  torch tensors; that costs seconds and hundreds of MB in a JAX program. The
  import is blocked for the duration of tensorboardX's own import (a
  ``None`` entry in ``sys.modules`` makes ``import torch`` raise ImportError,
  which tensorboardX handles); torch stays importable afterwards.
  """
  if "tensorboardX" in sys.modules:
    return sys.modules["tensorboardX"]
  block = "torch" not in sys.modules
  if block:
    sys.modules["torch"] = None
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top
  finally:
    if block and sys.modules.get("torch", False) is None:
      del sys.modules["torch"]
  return tensorboardX


def read_jsonl(path: str) -> list[dict]:
  """All records of a JSONL file (a workdir's ``metrics.jsonl`` or the file)."""
  if os.path.isdir(path):
    path = os.path.join(path, JSONL_NAME)
  records = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        records.append(json.loads(line))
  return records


def _truncate_jsonl(path: str, last_step: int) -> None:
  """Keeps only the records with ``step <= last_step``."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      record = json.loads(line)
    except json.JSONDecodeError:  # a line cut short by a crash
      continue
    if record.get("step", -1) <= last_step:
      kept.append(json.dumps(record) + "\n")
  if len(kept) != len(lines):
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
      with open(tmp, "w") as f:
        f.writelines(kept)
      os.replace(tmp, path)
    except OSError as e:
      with contextlib.suppress(OSError):
        os.remove(tmp)
      raise OSError(e.errno, e.strerror, path) from None


class SummaryWriter:
  """Scalars to TensorBoard and JSONL, images to TensorBoard.

  Args:
    logdir: folder for the event files and ``metrics.jsonl``.
    resume_step: the step a resumed run restarts from; later records are
      dropped. None (or 0) for a fresh run.
    tensorboard: write TensorBoard events (tensorboardX) besides the JSONL.
    enabled: False makes every call a no-op (non-zero processes of a
      multi-host run).
    flush_secs: the longest TensorBoard events wait in memory.

  Raises (every method):
    OSError: a write failed; ``filename`` is the file.
  """

  def __init__(self, logdir: str, resume_step: Optional[int] = None,
               tensorboard: bool = True, enabled: bool = True,
               flush_secs: float = 10.0):
    self.logdir = logdir
    self.enabled = enabled
    self.flush_secs = flush_secs
    self._tb = None
    self._jsonl = None
    if not enabled:
      return
    self.jsonl_path = os.path.join(logdir, JSONL_NAME)
    with _naming(self.jsonl_path):
      os.makedirs(logdir, exist_ok=True)
      if resume_step is not None:
        _truncate_jsonl(self.jsonl_path, int(resume_step))
      self._jsonl = open(self.jsonl_path, "a")  # pylint: disable=consider-using-with
    if tensorboard:
      tensorboardX = _import_tensorboardx()
      from tensorboardX import event_file_writer  # pylint: disable=g-import-not-at-top
      with _naming(os.path.join(logdir, "events.out.tfevents.*")):
        self._tb = event_file_writer.EventsWriter(
            os.path.join(logdir, "events"))
      self._flushed = time.time()
      if resume_step:
        purge = int(resume_step) + 1
        Event, SessionLog = tensorboardX.proto.event_pb2.Event, (
            tensorboardX.proto.event_pb2.SessionLog)
        self._write_event(Event(step=purge, file_version="brain.Event:2"))
        self._write_event(Event(step=purge, session_log=SessionLog(
            status=SessionLog.START)))

  @property
  def events_path(self) -> Optional[str]:
    return self._tb._file_name if self._tb is not None else None  # pylint: disable=protected-access

  def _write_event(self, event) -> None:
    with _naming(self.events_path):
      self._tb.write_event(event)
      if time.time() - self._flushed >= self.flush_secs:
        self._tb.flush()
        self._flushed = time.time()

  def _summary(self, step: int, summary) -> None:
    from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
    self._write_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                      summary=summary))

  def scalars(self, step: int, scalars: Mapping[str, Any],
              prefix: str = "train/", fields: Mapping[str, Any] = ()) -> dict:
    """Writes ``{name: scalar}`` at ``step``; returns them as floats.

    TensorBoard tags get ``prefix``; JSONL keys are the plain names, after
    ``fields`` (e.g. ``{"member": 3}``: what the record is of).
    Non-finite values are written as they are (JSON ``NaN``/``Infinity``),
    so that a diverging run is visible in both.
    """
    values = {name: _to_float(v) for name, v in scalars.items()}
    if not self.enabled:
      return values
    record = {"step": int(step), **dict(fields)}
    record.update(values)
    with _naming(self.jsonl_path):
      end = self._jsonl.tell()
      try:
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
      except OSError:  # no line cut short: back to the last whole record
        with contextlib.suppress(OSError):
          self._jsonl.truncate(end)
        raise
    if self._tb is not None:
      from tensorboardX import summary as tb_summary  # pylint: disable=g-import-not-at-top
      for name, v in values.items():
        self._summary(step, tb_summary.scalar(prefix + name, v))
    return values

  def image(self, step: int, tag: str, picture: np.ndarray) -> None:
    """Writes a uint8 ``[H, W, C]`` (or ``[H, W]``) picture to TensorBoard."""
    if not self.enabled or self._tb is None:
      return
    from tensorboardX import summary as tb_summary  # pylint: disable=g-import-not-at-top
    picture = np.asarray(picture)
    if picture.ndim == 2:
      picture = picture[..., None]
    if picture.shape[-1] == 1:
      picture = np.repeat(picture, 3, axis=-1)
    self._summary(step, tb_summary.image(tag, picture, dataformats="HWC"))

  def text(self, step: int, tag: str, text: str) -> None:
    """Writes a text summary (e.g. the config) to TensorBoard."""
    if self.enabled and self._tb is not None:
      from tensorboardX import summary as tb_summary  # pylint: disable=g-import-not-at-top
      self._summary(step, tb_summary.text(tag, text))

  def flush(self) -> None:
    if self._jsonl is not None:
      with _naming(self.jsonl_path):
        self._jsonl.flush()
    if self._tb is not None:
      with _naming(self.events_path):
        self._tb.flush()
      self._flushed = time.time()

  def close(self) -> None:
    """Flushes and closes the files (closed even when the flush fails)."""
    try:
      self.flush()
    finally:
      if self._jsonl is not None:
        with contextlib.suppress(OSError):
          self._jsonl.close()
        self._jsonl = None
      if self._tb is not None:
        with contextlib.suppress(OSError):
          self._tb.close()
        self._tb = None

  def __enter__(self) -> "SummaryWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


@contextlib.contextmanager
def _naming(path: Optional[str]):
  """Re-raises an ``OSError`` without a file name with ``path`` as its name."""
  try:
    yield
  except OSError as e:
    if e.filename:
      raise
    raise OSError(e.errno, e.strerror or str(e), path) from None
