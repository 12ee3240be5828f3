"""Smoke run of the benchmark at toy sizes, and buffer donation of the jitted steps.

Kept small (tiny models, one round, each step compiled once) so that the file
runs in seconds: what is checked is that every code path of
``benchmarks/benchmark.py`` runs and renders its tables, and that every jitted
step writes the new state into the buffers of the old one.
"""

import sys
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ganjax as gj
from benchmarks import benchmark as bm
from benchmarks import naive as naive_lib

TINY = bm.Config(rounds=1, min_round_s=0.0, compile_rounds=1, scan_steps=1,
                 quick=True)


@pytest.fixture(autouse=True)
def _fast_keys():
  """'unsafe_rbg' keys: the steps compile ~15% faster than with threefry on
  XLA:CPU; nothing checked here depends on the random bits."""
  with jax.default_prng_impl("unsafe_rbg"):
    yield


@pytest.fixture
def tiny_models(monkeypatch):
  """The benchmark's model table at toy sizes (same names, 4x4 images, batch 4)."""
  monkeypatch.setitem(bm.MODELS, "small_mlp", (
      lambda: gj.models.small_mlp((4, 4, 1), hidden=4), 4, (4, 4, 1),
      (0.0, 1.0)))

  def scan_models():
    G, D = gj.models.toy_mlp(2, hidden=4, depth=1)
    gan = gj.GAN(G, D, k=1, latent_dim=4)
    return [("toy", gan, lambda key: gj.data.toy.ring(key, 8)[None],
             jnp.zeros((8, 2)))]

  monkeypatch.setattr(bm, "_scan_models", scan_models)


def test_benchmark_sections_run_and_render_their_tables(tiny_models,
                                                        monkeypatch, tmp_path):
  results = {}
  results["throughput"] = bm.throughput(TINY, models=("small_mlp",), ks=(1,),
                                        torch_threads=(1,), variants=False)
  assert results["throughput"][0]["gflops"] > 0  # XLA's cost analysis
  names = [r["candidate"] for r in results["throughput"]]
  torch = ["PyTorch eager (1 thread)"] if bm.torch_available() else []
  assert names == ["ganjax fused", "ganjax naive (k+1 jitted calls)"] + torch
  results["scan_steps"] = bm.scan_steps(TINY)
  assert len(results["scan_steps"]) == 2
  # Without TensorFlow (accelerator machines) the pipeline section skips.
  monkeypatch.setitem(sys.modules, "tensorflow", None)
  rows, note = bm.pipeline_rows(TINY)
  assert rows == [] and "TensorFlow" in note
  results["pipeline"] = (rows, note)
  # The scaling section (accelerators only by default) times the same
  # compiled step as the throughput one; here only its table is rendered.
  results["scaling"] = [dict(model="small_mlp", dtype="bfloat16", batch=4,
                             step_ms=1.0, images_per_s=4000.0, tflops=1e-3)]
  # Last: it clears JAX's caches.
  results["compile"] = bm.compile_times(TINY, models=("small_mlp",), ks=(1,),
                                        loops=("scan",))
  text = bm.render(results, TINY, ["--quick"], "start", "0 0 0")
  for line in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## Targets",
               "| small MLP (100-128-784) | 1 | 4 | ganjax fused |",
               "| small MLP (100-128-784) | scan | ",
               "| toy | scan_steps(1): one call per 1 steps |",
               "| small MLP (100-128-784) | bfloat16 | 4 |",
               "| fused >= 1.3x naive, small MLP (100-128-784), k = 1 "):
    assert line in text, line
  assert "not measured" not in text.split("## 5.")[1].split("## Targets")[0]
  # The command line writes the file (a section that needs no compilation).
  out = tmp_path / "benchmark.md"
  bm.main(["--sections", "pipeline", "--out", str(out)])
  written = out.read_text()
  assert written.startswith("# ganjax performance benchmark")
  assert "## 4. Input pipeline" in written and "## Targets" in written


def test_torch_reference_dcgan_step_runs():
  """(The small MLP runs in the throughput section above.)"""
  torch = pytest.importorskip("torch")
  from benchmarks import torch_reference as tr
  gan = tr.TorchGAN("dcgan", k=2)
  d_loss, g_loss = gan.step(tr.synthetic_batch("dcgan", 2, 4))
  assert torch.isfinite(d_loss) and torch.isfinite(g_loss)


# ------------------------------------------------------------ donation


def _tiny_gan(**kwargs):
  """Tiny MLPs with EMA (every kind of state leaf: params, Adam, EMA, rng)."""
  G, D = gj.models.small_mlp((4, 4, 1), hidden=4)
  return gj.GAN(G, D, k=1, latent_dim=4, ema_decay=0.9, **kwargs)


def _buffers(leaves):
  return [s.data.unsafe_buffer_pointer() for x in leaves
          for s in x.addressable_shards]


def _split_hyperparams(tree):
  """(other leaves, optax.inject_hyperparams leaves) of a state."""
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  hyper = [".hyperparams[" in jax.tree_util.keystr(p) for p, _ in leaves]
  return ([x for (_, x), h in zip(leaves, hyper) if not h],
          [x for (_, x), h in zip(leaves, hyper) if h])


def _check_donated(fn, state, *args):
  """Calls ``fn(state, *args)``; the state's buffers must be donated and reused.

  Except the paper's SGD's learning rate and momentum
  (``optax.inject_hyperparams``): outputs only, recomputed by every update,
  so ``jax.jit`` prunes them as inputs (they are neither donated nor reused).
  """
  leaves, hyper = _split_hyperparams(state)
  before = _buffers(leaves)
  assert len(set(before)) == len(before), "state leaves share buffers"
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # "Some donated buffers were not usable"
    new, metrics = fn(state, *args)
  jax.block_until_ready((new, metrics))
  assert all(x.is_deleted() for x in leaves)
  after = _buffers(_split_hyperparams(new)[0])
  assert len(set(after)) == len(after), "new state leaves share buffers"
  assert set(after) == set(before), "outputs not written in place"
  assert np.all(np.isfinite(jax.tree.leaves(_split_hyperparams(new)[1])))
  return new


def test_every_jitted_step_donates_the_state():
  batch = jax.random.uniform(jax.random.key(1), (1, 8, 4, 4, 1))
  # The paper's SGD for G in the jitted step and scan_steps, Adam elsewhere.
  sgd = _tiny_gan(g_optimizer=gj.optim.goodfellow_sgd())
  state = sgd.init(jax.random.key(0), batch[0])
  step = jax.jit(sgd.step, donate_argnums=0)
  state = _check_donated(step, state, batch)
  # No implicit host transfers once the step is compiled and fed device arrays.
  with jax.transfer_guard("disallow"):
    new = _check_donated(step, state, batch)
  _, hyper = _split_hyperparams(state)
  assert len(hyper) == 2 and not any(x.is_deleted() for x in hyper)  # pruned
  run = gj.loops.scan_steps(
      sgd.step, lambda key: jax.random.uniform(key, (1, 8, 4, 4, 1)), 2)
  _check_donated(run, new, jax.random.key(3))

  gan = _tiny_gan()
  initial = gan.init(jax.random.key(0), batch[0])
  fresh = lambda: jax.tree.map(jnp.copy, initial)
  n = 2
  pstate = gj.parallel.replicate(fresh(), jax.local_devices()[:n])
  _check_donated(gj.parallel.pmap_step(gan), pstate,
                 gj.parallel.shard(batch, n))
  mesh = gj.parallel.make_mesh(jax.devices()[:n])
  sstate = gj.parallel.put_replicated(fresh(), mesh)
  _check_donated(gj.parallel.shard_map_step(gan, mesh), sstate,
                 gj.parallel.put_batch(batch, mesh))

  # The naive baseline starts from GAN.init's parameters.
  nstate = naive_lib.NaiveGAN(gan).init(jax.random.key(0), batch[0])
  jax.tree.map(np.testing.assert_array_equal,
               (nstate.g_params, nstate.d_params),
               (initial.g_params, initial.d_params))


def test_runner_benchmark_times_seconds_not_only_steps(monkeypatch):
  """On an accelerator (a step of about 1 ms) a fixed 1,000 steps is too
  short for the runner's own steps/s: runs are sized to last TIMED_SECONDS
  after their first call, and a runner that still reports none is named."""
  from benchmarks import runner
  assert runner.timed_steps(1000, 50.0) == 1000        # CPU: the steps
  assert runner.timed_steps(1000, 2000.0) == 10_000    # GPU: 5 s of them
  asked = []
  monkeypatch.setattr(runner, "bare_step_runner",
                      lambda config: lambda steps: 2000.0)
  monkeypatch.setattr(runner, "runner_steps_per_s",
                      lambda config, steps: asked.append(steps) or 1900.0)
  from tests import helpers  # pylint: disable=import-outside-toplevel
  config = helpers.tiny_config()
  row = runner.compare("tiny", config, 1000, 2)
  assert asked == [config.steps_per_call + 10_000] * 2
  assert row["steps"] == asked[0] and row["ratio"] == 0.95
  monkeypatch.setattr(runner, "runner_steps_per_s", lambda config, steps: None)
  with pytest.raises(RuntimeError, match="timed too few steps after its "
                     "first call"):
    runner.compare("tiny", config, 1000, 1)


def test_runner_benchmark_measures_resume_and_renders():
  from benchmarks import runner
  resume = runner.resume_positioning_seconds(step=1000)
  assert set(resume) == {0, 1000} and all(t > 0 for t in resume.values())
  row = dict(name="tiny", runner=9.0, bare=10.0, ratio=0.9, runner_all=[9.0],
             bare_all=[10.0], steps=5)
  text = runner.render([row], 3.0, {0: 1e-3, 100_000: 1e-3}, [], "start")
  assert "| tiny | 5 | 9.0 | 10.0 | 0.90 |" in text and "step 100,000" in text
  text = runner.render_stops(
      {1: {"one": [9.0], "queued": [10.0]}},
      {"name": "tiny", "steps": 1, "saves": 2,
       "result": {"none": [1.0], "background": [1.5], "waited": [2.0]}},
      {"defaults": [{"saved_s": 1.25, "exit_s": 2.0, "code": 143,
                     "line": "SIGTERM received: stopped at step 7"}]},
      [], "start")
  assert "| 1 | 9.0 | 10.0 | 0.90 |" in text
  assert "Background writes take -0.50 s against waited ones" in text
  assert "| defaults | 1.25 | 2.00 | 143 | SIGTERM received" in text


@pytest.mark.xla_default_emitters
def test_population_benchmark_quick_runs_checks_members_and_renders(tmp_path):
  """``benchmarks/population_speed.py --quick`` on a tiny DCGAN: member i of
  each formulation equals the single step of member i (lax.map bit for bit),
  and the results file has its sections and the choice."""
  from benchmarks import population_speed as ps
  out = tmp_path / "population_speed.md"
  # threefry keys, the library's default: vmapped rbg keys draw other
  # noise than each member's key alone, so vmap would not be member-exact.
  with jax.default_prng_impl("threefry2x32"):
    results = ps.main(["--quick", "--out", str(out)])
  one, many = results["one_step"], results["steps_per_call"]
  assert [r["candidate"] for r in one] == [
      "loop", "vmap", "lax.map", "vmap, one conv per member"]
  assert [r["candidate"] for r in many] == [
      "loop, 1 step per call", "loop, 2 steps per call",
      "vmap, 1 step per call", "lax.map, 1 step per call"]
  for r in one + many:
    assert r["max_diff"] < 1e-6, r  # one step, Adam at 2e-4
    assert r["member_steps_per_s"] > 0 and r["compile_s"] > 0
    if r["candidate"].startswith(("loop", "lax.map")):
      assert r["max_diff"] == 0 and not r["leaf"], r
  text = out.read_text()
  for line in ("## 1. One population step per call",
               "## 2. Many steps per call", "## 3. Correctness",
               "## 4. What the library should choose",
               "| tiny DCGAN | 2 | vmap, one conv per member |",
               "- **cpu + convolutions: "):
    assert line in text, line


def test_seed_study_trains_the_configs_sweep():
  from benchmarks import seed_study
  from tests import helpers
  config = helpers.tiny_config(num_steps=1)
  config.population.sweep = "d_lr=1e-4,4e-4"
  population, state, _, _ = seed_study.train(config, num_members=5, seed=0,
                                             steps_per_call=1)
  assert population.size == 2 and not population.shared_batch
  np.testing.assert_array_equal(state.hparams["d_learning_rate"],
                                np.float32([1e-4, 4e-4]))
  assert state.members.step.tolist() == [1, 1]


def test_seed_study_trains_members_scores_each_and_tabulates(cache_dir,
                                                             monkeypatch):
  """``benchmarks/seed_study.py`` on a tiny conditional DCGAN, 2 members,
  2 steps in one call: member 1 is the single run of seed + 1 on its batches,
  every member is scored, and the table gives mean ± std per metric."""
  from benchmarks import seed_study
  from tests import helpers
  monkeypatch.setenv("GANJAX_CACHE_DIR", cache_dir)
  config = helpers.tiny_config(num_steps=2, num_classes=-1)
  # threefry keys, the library's default (this file's fixture sets rbg keys,
  # under which the vmapped batches differ from the members' own).
  with jax.default_prng_impl("threefry2x32"):
    population, state, experiment, seconds = seed_study.train(
        config, num_members=2, seed=5, steps_per_call=2)
    gan = experiment.gan
    images, labels = seed_study.load_data(config, experiment)
    single = gan.init(jax.random.key(6), seed_study.example_batch(
        images, labels, config.batch_size))
    # Seed 6's batches drawn alone: they depend on its seed, not on the
    # population's size or first seed.
    batch_at = seed_study.member_batches(images, labels, [6], config.k,
                                         config.batch_size)
    step = jax.jit(gan.step)
    for s in range(2):
      single, _ = step(single, batch_at(s, 0))
  assert int(state.step) == 2 and bool(np.all(state.alive)) and seconds > 0
  chex.assert_trees_all_close(population.member(state, 1), single,
                              atol=1e-6, rtol=1e-6)
  scores = seed_study.score(population, state, experiment, "digits", num=20)
  assert len(scores) == 2 and "class_accuracy20_digits_cnn" in scores[0]
  text = seed_study.table("tiny", scores, seconds, config, seed=5)
  assert "2 members (seeds 5-6), 2 steps each at batch 8" in text
  fid = [s["fid20_digits_cnn"] for s in scores]
  assert (f"| fid20_digits_cnn | {gj.population.mean_std(fid)} | "
          f"{fid[0]:.4g}, {fid[1]:.4g} |") in text
  swept = seed_study.table("tiny", scores, seconds, config, seed=5,
                           hparams={"d_learning_rate": (1e-4, 4e-4)})
  assert "| metric | mean ± std | members |\n|---|---:|---|\n" \
         "| d_learning_rate | | 0.0001, 0.0004 |\n" in swept
