"""Two processes (one CPU device each, gloo collectives) train like one.

``python -m experiments.train --coordinator_address=localhost:PORT
--num_processes=2 --process_id=I`` twice: every process draws the same global
batch of each step from the index stream (experiments/feeds.py) and
the step runs under ``jax.shard_map`` on the global mesh, each device on its
half. The reference: the same run in one process on two devices.
"""

import os
import socket
import subprocess
import sys

import chex

from tests import helpers as tt

STEPS = 3


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def reference_state(config, workdir):
  """The same run in this process on 2 local devices (pmap)."""
  config = config.copy_and_resolve_references()
  config.num_devices = 2
  tt.run(config, workdir)
  return tt.final_state(str(workdir), config)


def test_two_processes_train_like_one_process_on_two_devices(tmp_path):
  port = free_port()
  # One CPU device per process; conftest.py's other XLA flags (its faster
  # compilation) are kept.
  xla_flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
               if not f.startswith("--xla_force_host_platform_device_count")]
  env = {**os.environ, "PYTHONPATH": tt.REPO, "JAX_PLATFORMS": "cpu",
         "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
         "XLA_FLAGS": " ".join(
             xla_flags + ["--xla_force_host_platform_device_count=1"])}
  args = [sys.executable, "-m", "experiments.train",
          "--config=experiments/configs/dcgan_digits.py",
          f"--workdir={tmp_path}", "--config.image_size=0",
          "--config.model.base_features=4", "--config.latent_dim=8",
          "--config.batch_size=8", f"--config.num_steps={STEPS}",
          "--config.ema_decay=0.9", "--config.log_every=1",
          f"--config.eval_every={STEPS}", f"--config.checkpoint_every={STEPS}",
          "--config.num_eval_samples=4", "--config.num_devices=-1",
          f"--coordinator_address=localhost:{port}", "--num_processes=2"]
  procs = [subprocess.Popen(args + [f"--process_id={i}"], cwd=tt.REPO,
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  try:
    outs = [p.communicate(timeout=240) for p in procs]
  finally:  # on a timeout, no process is left waiting on its peer
    for p in procs:
      p.kill()
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert f"Done: step {STEPS}" in outs[0][0]
  with open(tmp_path / "config.json") as f:
    assert '"num_processes": 2' in f.read()
  records = tt.losses_by_step(tmp_path)
  assert sorted(records) == list(range(1, STEPS + 1))  # logged once
  config = tt.tiny_config(num_steps=STEPS, num_devices=-1)
  got = tt.final_state(tmp_path, config)
  want = reference_state(config, tmp_path / "reference")
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
