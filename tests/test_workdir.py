"""The work directory (experiments/workdir.py): its checks, the lock, whole-or-
nothing writes and the messages of a failed write."""

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from experiments import workdir as workdir_lib
from tests import helpers as tt
from tests.helpers import REPO, TINY_ARGS


def test_a_second_run_in_the_same_workdir_is_refused(tmp_path):
  """The lock: exit code 2 while another process holds it; gone with it."""
  workdir = tmp_path / "w"
  workdir.mkdir()
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import sys, time; from experiments import workdir as w; "
       "lock = w.Lock(sys.argv[1]).acquire(); lock.announce(); "
       "print('locked', flush=True); "
       "time.sleep(600)", str(workdir)],
      cwd=REPO, stdout=subprocess.PIPE, text=True,
      env={**os.environ, "PYTHONPATH": REPO})
  try:
    assert holder.stdout.readline().strip() == "locked"
    proc = tt.cli("experiments.train", *TINY_ARGS, f"--workdir={workdir}",
                  "--config.num_steps=2")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        f"error: the workdir {workdir} is in use by another run (pid "
        f"{holder.pid} on host "), proc.stderr
    assert sorted(os.listdir(workdir)) == [".lock"]  # nothing else written
  finally:
    holder.kill()  # kill -9: the kernel releases the lock
    holder.wait()
  with workdir_lib.Lock(str(workdir)):
    with pytest.raises(workdir_lib.WorkdirError, match="in use by another"):
      workdir_lib.Lock(str(workdir)).acquire()  # also within one process


def test_workdir_that_is_a_file_or_empty_is_one_clear_error(tmp_path):
  (tmp_path / "f").write_text("")
  with pytest.raises(workdir_lib.WorkdirError, match="is a file"):
    tt.run(tt.tiny_config(), tmp_path / "f")
  with pytest.raises(workdir_lib.WorkdirError, match="--workdir is empty"):
    tt.run(tt.tiny_config(), "")


def test_a_deleted_lock_file_lets_no_second_run_in(tmp_path):
  lock = workdir_lib.Lock(str(tmp_path)).acquire()
  lock.announce()
  os.remove(tmp_path / ".lock")
  with pytest.raises(workdir_lib.WorkdirError) as info:
    workdir_lib.Lock(str(tmp_path)).acquire()  # the directory is locked too
  assert "in use by another run (its .lock file was deleted)" in str(info.value)
  lock.check()  # the run writes it again
  assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
  with pytest.raises(workdir_lib.WorkdirError, match=f"pid {os.getpid()}"):
    workdir_lib.Lock(str(tmp_path)).acquire()
  lock.release()
  workdir_lib.Lock(str(tmp_path)).acquire().release()


def test_a_refused_run_leaves_no_lock_file_behind(tmp_path):
  lock = workdir_lib.Lock(str(tmp_path)).acquire()
  lock.release()  # never announced: the run did not start
  assert not os.listdir(tmp_path)


def test_writes_are_whole_or_nothing_and_name_the_file(tmp_path, monkeypatch):
  path = str(tmp_path / "d" / "best.json")
  workdir_lib.write_json(path, {"a": 1})
  assert json.loads(open(path).read()) == {"a": 1}

  def full(fd):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "fsync", full)
  with pytest.raises(OSError) as info:
    workdir_lib.write_json(path, {"a": 2})
  assert info.value.filename == path
  assert os.listdir(tmp_path / "d") == ["best.json"]  # no temporary file
  assert json.loads(open(path).read()) == {"a": 1}  # the old one intact
  message = workdir_lib.write_error(info.value)
  assert message == (f"cannot write {path} (No space left on device). Free "
                     "disk space, then run the same command again to resume.")
  (tmp_path / "samples").write_text("")  # a file where a folder should be
  with pytest.raises(OSError) as info:
    workdir_lib.write_bytes(str(tmp_path / "samples" / "x.png"), b"png")
  assert "Move away the file that stands where a directory is expected" in \
      workdir_lib.write_error(info.value)
  assert str(tmp_path / "samples") in workdir_lib.write_error(info.value)


def test_set_aside_logs_moves_logs_and_config_and_nothing_else(tmp_path):
  for name in ("metrics.jsonl", "config.json", "events.out.tfevents.1.x"):
    (tmp_path / name).write_text("x")
  (tmp_path / "samples").mkdir()
  (tmp_path / "checkpoints").mkdir()
  assert workdir_lib.has_logs(str(tmp_path))
  moved = workdir_lib.set_aside_logs(str(tmp_path))
  assert sorted(os.listdir(moved)) == ["config.json", "events.out.tfevents.1.x",
                                       "metrics.jsonl", "samples"]
  assert sorted(os.listdir(tmp_path)) == ["checkpoints",
                                          os.path.basename(moved)]
  assert not workdir_lib.has_logs(str(tmp_path))


def as_unprivileged_user():
  """argv prefix that runs a command as 'nobody' (root ignores permissions)."""
  if os.geteuid() != 0:
    return []
  if shutil.which("setpriv") is None:
    pytest.skip("running as root without setpriv: cannot drop privileges to "
                "test permissions")
  prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
  probe = subprocess.run(  # a light import: can 'nobody' run this checkout?
      prefix + [sys.executable, "-c", "import experiments.workdir"],
      cwd=REPO, capture_output=True, text=True, timeout=60,
      env={**os.environ, "PYTHONPATH": REPO})
  if probe.returncode:
    pytest.skip("the unprivileged user 'nobody' cannot run this checkout "
                f"(a parent directory is private?): {probe.stderr[-300:]}")
  return prefix


def test_unwritable_workdir_is_one_clear_error():
  import tempfile  # pylint: disable=g-import-not-at-top
  prefix = as_unprivileged_user()
  root = tempfile.mkdtemp(prefix="ganjax-ro-")  # not under a 0700 tmp dir
  home = tempfile.mkdtemp(prefix="ganjax-home-")
  try:
    os.chmod(root, 0o555)  # everyone may enter, no one but root may write
    os.chmod(home, 0o777)
    proc = subprocess.run(
        prefix + [sys.executable, "-m", "experiments.train", *TINY_ARGS,
                  f"--workdir={root}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": REPO, "HOME": home})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        f"error: the workdir {root} is not writable by this user."
    ), proc.stderr[-2000:]
    assert os.listdir(root) == []
  finally:
    os.chmod(root, 0o755)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


