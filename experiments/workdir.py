"""The work directory of a run: its paths, its lock and its JSON files.

A run's files (the names below): ``config.json`` (the config and what was
resolved from it), ``checkpoints/<step>/`` (orbax),
``metrics.jsonl`` and TensorBoard events, ``samples/step_XXXXXX.png``,
``checkpoints_best/`` and ``best.json`` (periodic evaluation), ``.lock``.

One run at a time. ``Lock`` takes an exclusive ``flock`` on
``<workdir>/.lock`` and on the workdir itself for the whole run, and
refuses a second run with ``WorkdirError`` (exit code 2 on the command line)
naming the holder (host, pid, start time). The kernel releases both when
their process dies, even by ``kill -9``, so nothing stale is left behind.
Deleting ``.lock`` while a run holds it does not let a second run in: the
lock on the directory still refuses it, and the run writes ``.lock`` again
at its next check (``Lock.check``).

Limits of the lock: ``flock`` is exclusive between processes of one machine
and, on Linux NFS clients (v3 with lockd, v4), between machines (the client
turns a lock on ``.lock`` into a whole-file POSIX lock on the server; a
directory cannot be locked there, so only ``.lock`` counts). File systems
that do not implement locks (some FUSE mounts such as gcsfuse, Lustre
mounted without ``-o flock``) refuse the lock; the run then warns once and
goes on without it, so two runs there must be kept apart by hand. A
multi-process run takes the lock in process 0 only (``locked``).

Writes. Every file of the run is written whole or not at all
(``write_json``, ``write_bytes``: a temporary file, then a rename; the
temporary file is removed when the write fails); a failed write raises
``OSError`` with the file's name, which ``write_error`` turns into one
message naming the file and the fix.

Nothing here imports JAX at module level: the lock is cheap to take before
anything heavy.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Optional

CONFIG_JSON = "config.json"
CLASSES_JSON = "classes.json"  # {"classes": [name of class 0, ...]}
CHECKPOINT_DIR = "checkpoints"
SAMPLE_DIR = "samples"
BEST_CHECKPOINT_DIR = "checkpoints_best"
BEST_JSON = "best.json"
METRICS_JSONL = "metrics.jsonl"
LOCK_FILE = ".lock"
# What a run writes besides its checkpoints (set aside when it restarts
# from step 0 with no checkpoint; see ``set_aside_logs``).
LOG_FILES = (METRICS_JSONL, BEST_JSON, BEST_CHECKPOINT_DIR, SAMPLE_DIR)
LOG_PREFIXES = ("events.out.tfevents.",)
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL,
             errno.EBADF)


class WorkdirError(ValueError):
  """The work directory cannot be used as asked; the message says why and what to do."""


class RunWriteError(RuntimeError):
  """A file of the run could not be written; the message names it and the fix (exit code 2)."""


def prepare(workdir: str) -> str:
  """Checks ``workdir`` (creating it) and returns its absolute path.

  Raises:
    WorkdirError: empty, a file, not creatable or not writable.
  """
  workdir = check_path(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"cannot create the workdir {workdir}: "
                       f"{e.strerror or e}. Choose a directory you can write "
                       "to.") from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise WorkdirError(f"the workdir {workdir} is not writable by this user. "
                       "Choose a directory you can write to, or fix its "
                       "permissions.")
  return workdir


def check_path(workdir: str) -> str:
  """The absolute path of ``workdir``, checked without creating anything.

  Raises:
    WorkdirError: empty, or a file.
  """
  if workdir is None or not str(workdir).strip():
    raise WorkdirError(
        "--workdir is empty: name the directory the run writes its "
        "checkpoints and logs to, e.g. --workdir=/tmp/digits.")
  workdir = os.path.abspath(os.path.expanduser(str(workdir)))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"the workdir {workdir} is a file, not a directory. "
                       "Pass a directory (it is created if missing).")
  return workdir


# ------------------------------------------------------------------ lock


class Lock:
  """An exclusive lock on a workdir, held from ``acquire`` to ``release``.

  Use it as ``with Lock(workdir): ...`` around everything a run writes.

  Args:
    workdir: an existing directory.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.workdir = workdir
    self._file = None
    self._dir = None
    self._created = False  # .lock did not exist before this lock
    self._announced = False

  def acquire(self) -> "Lock":
    try:
      self._dir = os.open(self.workdir, os.O_RDONLY)
      fcntl.flock(self._dir, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._close_dir()
      raise self._in_use() from None
    except OSError:  # a directory cannot be locked here: .lock only
      self._close_dir()
    self._created = not os.path.exists(self.path)
    self._file = self._lock_file()
    return self

  def _lock_file(self):
    try:
      f = open(self.path, "a+")  # pylint: disable=consider-using-with
    except OSError as e:
      raise WorkdirError(f"cannot write the lock file {self.path}: "
                         f"{e.strerror or e}. Choose a directory you can "
                         "write to.") from None
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.close()
      self._close_dir()
      raise self._in_use() from None
    except OSError as e:
      if e.errno not in _NO_LOCKS:
        f.close()
        raise WorkdirError(f"cannot lock {self.path}: {e}") from None
      print(f"warning: the file system of {self.workdir} does not support "
            f"locks ({e.strerror}); make sure no other run uses this "
            "workdir.", file=sys.stderr)
    return f

  def announce(self) -> None:
    """Writes who holds the lock into ``.lock`` (once the run starts: a
    refused run leaves the file as it was).

    Raises:
      OSError: the write failed (``filename``: ``.lock``).
    """
    try:
      self._file.seek(0)
      self._file.truncate()
      self._file.write(json.dumps({
          "host": socket.gethostname(), "pid": os.getpid(),
          "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
      self._file.flush()
    except OSError as e:
      raise OSError(e.errno, e.strerror, self.path) from None
    self._announced = True

  def _in_use(self) -> WorkdirError:
    try:
      with open(self.path) as f:
        holder = _holder(f.read())
    except OSError:
      holder = f"its {LOCK_FILE} file was deleted"
    return WorkdirError(
        f"the workdir {self.workdir} is in use by another run ({holder}). "
        "Two runs in one workdir would overwrite each other's checkpoints "
        "and logs: wait for that run to end or stop it (its lock goes "
        "with its process), or use another --workdir.")

  def check(self) -> None:
    """Writes ``.lock`` again if it was deleted while the run holds it."""
    if self._file is None:
      return
    try:
      if os.stat(self.path).st_ino == os.fstat(self._file.fileno()).st_ino:
        return
    except FileNotFoundError:
      pass
    print(f"warning: {self.path} was deleted while this run holds it; "
          "writing it again.", file=sys.stderr)
    self._file.close()
    self._file = self._lock_file()
    self.announce()

  def _close_dir(self) -> None:
    if self._dir is not None:
      os.close(self._dir)
      self._dir = None

  def release(self) -> None:
    if self._file is not None:
      if self._created and not self._announced:  # a refused run: as it was
        with contextlib.suppress(OSError):
          os.remove(self.path)
      self._file.close()  # closing the file releases the lock
      self._file = None
    self._close_dir()

  def __enter__(self) -> "Lock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _holder(text: str) -> str:
  try:
    info = json.loads(text)
    return (f"pid {info['pid']} on host {info['host']}, started "
            f"{info['started']}")
  except (ValueError, KeyError, TypeError):
    return "a process that has not said who it is yet"


@contextlib.contextmanager
def locked(workdir: str):
  """Holds the workdir's ``Lock`` (process 0 takes it; every process of a
  multi-process run stops when it cannot). Yields the lock (None in the
  other processes)."""
  import jax  # pylint: disable=g-import-not-at-top
  lock = Lock(workdir) if jax.process_index() == 0 else None
  error = None
  try:
    if lock is not None:
      lock.acquire()
  except WorkdirError as e:
    error = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    if multihost_utils.broadcast_one_to_all(np.int32(error is not None)):
      error = error or WorkdirError(
          f"process 0 cannot lock the workdir {workdir}; see its message.")
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()


# ---------------------------------------------------------------- writes


def write_error(error: OSError,
                then: str = "run the same command again to resume") -> str:
  """One message for a failed write: the file, the reason, the fix."""
  path = error.filename or "a file of the run"
  fix = {errno.ENOSPC: "Free disk space",
         errno.EDQUOT: "Free disk space (or raise your quota)",
         errno.EEXIST: "Move away the file that stands where a directory is "
                       "expected",
         errno.ENOTDIR: "Move away the file that stands where a directory is "
                        "expected",
         errno.EISDIR: "Move away the directory that stands where a file is "
                       "expected",
         errno.EROFS: "Use a writable file system"}.get(
             error.errno, "Fix the permissions of the file and its folder")
  return f"cannot write {path} ({error.strerror or error}). {fix}, then {then}."


def write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` whole or not at all (a temporary file, then
  a rename; the temporary file is removed when the write fails).

  Raises:
    OSError: with ``filename`` set to ``path`` (or the folder that cannot
      be made).
  """
  directory = os.path.dirname(path)
  if directory:
    try:
      os.makedirs(directory, exist_ok=True)
    except FileExistsError:  # a file where the folder should be
      raise OSError(errno.ENOTDIR, "a file stands where a directory is "
                    "expected", directory) from None
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise OSError(e.errno, e.strerror, path) from None


def write_json(path: str, record: dict) -> None:
  """Writes ``record`` to ``path`` whole or not at all (``write_bytes``)."""
  write_bytes(path, (json.dumps(record, indent=2, sort_keys=True)
                     + "\n").encode())


def read_config_record(workdir: str) -> Optional[dict]:
  """The dict of ``<workdir>/config.json``, or None when there is none.

  Raises:
    WorkdirError: the file exists but is not a JSON object.
  """
  path = os.path.join(workdir, CONFIG_JSON)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirError(
        f"{path} cannot be read ({e}). It is the record of the run's config: "
        "restore it (e.g. from a copy of the workdir), or write it again by "
        "training in this workdir with the run's config file and "
        "--config.override_config=True.") from None
  if not isinstance(record, dict):
    raise WorkdirError(f"{path} does not hold a JSON object; restore it or "
                       "train in this workdir again with the run's config "
                       "and --config.override_config=True.")
  return record


# ------------------------------------------------------------- the logs


def read_records(path: str) -> list[dict]:
  """The records of a ``metrics.jsonl``, without a last line cut short.

  A run killed while writing leaves a partial last line; it is dropped (any
  other unreadable line too), never a reason to fail.
  """
  records = []
  if not os.path.exists(path):
    return records
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except ValueError:
        continue
      if isinstance(record, dict):
        records.append(record)
  return records


def has_logs(workdir: str) -> bool:
  """Whether ``workdir`` holds the logs of an earlier run."""
  return any(_log_entries(workdir))


def _log_entries(workdir: str):
  if not os.path.isdir(workdir):
    return
  for name in sorted(os.listdir(workdir)):
    if name in LOG_FILES or name.startswith(LOG_PREFIXES):
      yield name


def set_aside_logs(workdir: str) -> Optional[str]:
  """Moves an earlier run's logs (and its config.json) to ``previous-<time>/``.

  Use it when a run restarts from step 0 in a workdir that holds logs but no
  checkpoint (deleted, or none readable): the new run starts fresh logs
  instead of appending a second copy of steps 1, 2, ... Nothing is deleted.

  Returns:
    the folder the logs went to, or None when there were none.
  """
  names = list(_log_entries(workdir))
  if not names:
    return None
  stamp = time.strftime("%Y%m%d-%H%M%S")
  dest = os.path.join(workdir, f"previous-{stamp}")
  i = 1
  while os.path.exists(dest):
    i += 1
    dest = os.path.join(workdir, f"previous-{stamp}-{i}")
  os.makedirs(dest)
  for name in names + ([CONFIG_JSON] if os.path.exists(
      os.path.join(workdir, CONFIG_JSON)) else []):
    os.replace(os.path.join(workdir, name), os.path.join(dest, name))
  return dest
