"""The work directory of a run: its checks, its lock, its config file and logs.

One run at a time. ``lock(workdir)`` takes an exclusive ``flock`` on
``<workdir>/.lock`` for the whole run and refuses a second run with
``WorkdirError`` (exit code 2 on the command line) naming the holder (host,
pid, start time). The kernel releases the lock when its process dies, even
by ``kill -9``, so nothing stale is left behind: a job scheduler that
restarts a job whose old process is still alive gets a clear refusal, and a
restart after the old process died just proceeds.

Limits of the lock: ``flock`` is exclusive between processes of one machine
and, on Linux NFS clients (v3 with lockd, v4), between machines (the client
turns it into a whole-file POSIX lock on the server). File systems that do
not implement locks (some FUSE mounts such as gcsfuse, Lustre mounted
without ``-o flock``) refuse the lock; the run then warns once and goes on
without it, so two runs there must be kept apart by hand. A multi-process
run takes the lock in process 0 only (the others share its workdir).

Nothing here imports JAX: the lock is cheap to take before anything heavy.
"""

import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Optional

CONFIG_JSON = "config.json"
CHECKPOINT_DIR = "checkpoints"
SAMPLE_DIR = "samples"
LOCK_FILE = ".lock"
# What a run writes besides its checkpoints (set aside when it restarts
# from step 0 with no checkpoint; see ``set_aside_logs``).
LOG_FILES = ("metrics.jsonl", "best.json", "checkpoints_best", SAMPLE_DIR)
LOG_PREFIXES = ("events.out.tfevents.",)


class WorkdirError(ValueError):
  """The work directory cannot be used as asked; the message says why and what to do."""


def prepare(workdir: str) -> str:
  """Checks ``workdir`` (creating it) and returns its absolute path.

  Raises:
    WorkdirError: empty, a file, not creatable or not writable.
  """
  if workdir is None or not str(workdir).strip():
    raise WorkdirError(
        "--workdir is empty: name the directory the run writes its "
        "checkpoints and logs to, e.g. --workdir=/tmp/digits.")
  workdir = os.path.abspath(os.path.expanduser(str(workdir)))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"the workdir {workdir} is a file, not a directory. "
                       "Pass a directory (it is created if missing).")
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


# ------------------------------------------------------------------ lock


class Lock:
  """An exclusive lock on a workdir, held from ``acquire`` to ``release``.

  Use it as ``with Lock(workdir): ...`` around everything a run writes.

  Args:
    workdir: an existing directory.
    enabled: False makes it a no-op (processes other than 0 of a
      multi-process run).
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.workdir = workdir
    self.enabled = enabled
    self._file = None

  def acquire(self) -> "Lock":
    if not self.enabled:
      return self
    try:
      f = open(self.path, "a+")  # pylint: disable=consider-using-with
    except OSError as e:
      raise WorkdirError(f"cannot write the lock file {self.path}: "
                         f"{e.strerror or e}. Choose a directory you can "
                         "write to.") from None
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = _holder(f.read())
      f.close()
      raise WorkdirError(
          f"the workdir {self.workdir} is in use by another run ({holder}). "
          "Two runs in one workdir would overwrite each other's checkpoints "
          "and logs: wait for that run to end or stop it (its lock goes "
          "with its process), or use another --workdir.") from None
    except OSError as e:
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS,
                         errno.EINVAL):
        f.close()
        raise WorkdirError(f"cannot lock {self.path}: {e}") from None
      print(f"warning: the file system of {self.workdir} does not support "
            f"locks ({e.strerror}); make sure no other run uses this "
            "workdir.", file=sys.stderr)
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                        "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
    f.flush()
    self._file = f
    return self

  def release(self) -> None:
    if self._file is not None:
      self._file.close()  # closing the file releases the lock
      self._file = None

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


# ------------------------------------------------------------ config.json


def write_json(path: str, record: dict) -> None:
  """Writes ``record`` to ``path`` atomically (a temporary file, then rename)."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


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
                       "train in this workdir again with the run's config.")
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
