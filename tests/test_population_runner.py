"""Populations in the runner (experiments/members.py): one workdir, N members.

Member i of a population started with seed s is the single run with seed
s + i and member i's hyper-parameters, through the command line; logs carry
a member field and the population's mean and std; population-based training
resumes exactly and its lineage file says what happened; a diverged member
is frozen and named, and a population whose every member diverged stops with
exit code 3 and an intact checkpoint. Tiny models on the 8x8 digits and the
toy ring.
"""

import json
import os

import jax
import numpy as np
import optax
import pytest

import ganjax as gj
from ganjax import summary
from experiments import builders
from experiments import members
from experiments import resume
from experiments.configs import diverge
from experiments.configs import toy_ring8
from tests import helpers as tt
from tests.helpers import steps_on_disk


def leaves_equal(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ------------------------------------------------------------------ sweeps


def test_a_sweep_is_a_grid_of_its_axes_or_zipped_names():
  assert members.parse_sweep("d_lr=1,2; g_lr=3,4,5") == [
      {"d_lr": a, "g_lr": b} for a in (1, 2) for b in (3, 4, 5)]
  assert members.parse_sweep(" d_lr=1,2 & g_lr=3,4 ") == [
      {"d_lr": 1, "g_lr": 3}, {"d_lr": 2, "g_lr": 4}]
  c = tt.tiny_config()
  c.population.sweep, c.population.size = "d_lr=1e-4,2e-4; ema_decay=0.9", 4
  spec = members.spec(c)  # each point over size / points consecutive seeds
  assert spec.size == 4 and spec.hparams == {
      "d_learning_rate": [1e-4, 1e-4, 2e-4, 2e-4], "ema_decay": [0.9] * 4}
  c.population.size = 0
  assert members.spec(c).size == 2
  c.population.sweep = ""
  assert members.spec(c) is None  # a single run


@pytest.mark.parametrize("sweep, size, message", [
    ("d_lr", 0, "cannot read 'd_lr'; write NAME=V1,V2"),
    ("d_lr=1e-4,fast", 0, "the values of 'd_lr' must be numbers"),
    ("d_lr=1,2 & g_lr=1", 0, "need as many values each; got d_lr: 2, g_lr: 1"),
    ("d_lr=1; d_lr=2", 0, "names 'd_lr' twice"),
    ("d_lr=1,2,3", 4, "size=4 is not a multiple of the sweep's 3 points"),
    ("k=1,2", 0, "'k' is static (it shapes the compiled step)"),
    ("d_lr=1e-4 & g_eps=1,2", 0, "need as many values each"),
    ("d_momentum=0.5,0.9", 0, "Names this config can sweep: "),
])
def test_a_bad_sweep_is_refused_with_what_to_write(sweep, size, message):
  c = tt.tiny_config()
  c.population.sweep, c.population.size = sweep, size
  with pytest.raises(builders.ConfigError) as e:
    builders.build(c)
  assert message in str(e.value)


def test_pbt_needs_the_scores_of_its_steps():
  c = tt.tiny_config()
  c.population.size, c.population.pbt.every = 4, 10
  with pytest.raises(builders.ConfigError, match="set --config.evaluation.every"
                     " to a divisor of it"):
    builders.build(c)
  c.evaluation.every, c.population.size = 5, 2
  with pytest.raises(builders.ConfigError, match="replaces none"):
    builders.build(c)


# ---------------------------------------------- member i is its single run


@pytest.fixture(scope="module")
def population_and_single_runs(tmp_path_factory):
  """A population of 2 (seeds 3, 4; D's learning rates 1e-4, 4e-4) through
  the command line, and member 1's single run in process."""
  root = tmp_path_factory.mktemp("population")
  args = ("--config.num_steps=4", "--config.checkpoint_every=2",
          "--config.eval_every=4", "--config.log_every=2", "--config.seed=3",
          "--config.population.sweep=d_lr=1e-4,4e-4")
  proc = tt.cli("experiments.train", *tt.TINY_ARGS, *args,
                f"--workdir={root / 'pop'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  single = tt.tiny_config(num_steps=4, seed=4, log_every=2, eval_every=4)
  single.d_optimizer.learning_rate = 4e-4
  tt.run(single, root / "single")
  return root / "pop", root / "single", single


@pytest.mark.xla_default_emitters
def test_member_i_is_the_single_run_with_seed_s_plus_i(
    population_and_single_runs):
  pop_dir, single_dir, single = population_and_single_runs
  pop = resume.load(str(pop_dir), member=1)
  alone = resume.load(str(single_dir))
  assert pop.member == 1 and int(pop.state.step) == 4
  # bit for bit: parameters, batch statistics, optimizer moments, EMA, rng
  for field in ("g_params", "d_params", "g_batch_stats", "d_batch_stats",
                "ema_g_params", "step"):
    assert leaves_equal(getattr(pop.state, field), getattr(alone.state, field)), field
  for player in ("g", "d"):  # Adam's moments (the member's state also
    for moment in ("mu", "nu"):  # holds its injected learning rate)
      assert leaves_equal(*(optax.tree_utils.tree_get(
          getattr(run.state, f"{player}_opt_state"), moment)
                            for run in (pop, alone))), (player, moment)
  np.testing.assert_array_equal(
      np.asarray(pop.population_state.hparams["d_learning_rate"]),
      np.float32([1e-4, 4e-4]))
  # the logs: member 1's records are the single run's
  records = summary.read_jsonl(str(pop_dir))
  mine = [{k: v for k, v in r.items() if k != "member"} for r in records
          if r.get("member") == 1]
  theirs = [{k: v for k, v in r.items() if k != "steps_per_s"}
            for r in summary.read_jsonl(str(single_dir))]
  assert [r["step"] for r in mine] == [2, 4]
  for a, b in zip(mine, theirs):
    assert a == {k: b[k] for k in a}, (a, b)
  population = [r for r in records if "member" not in r and "d_loss" in r]
  m0, m1 = ([r for r in records if r.get("member") == m][-1] for m in (0, 1))
  assert population[-1]["d_loss"] == pytest.approx(
      (m0["d_loss"] + m1["d_loss"]) / 2)
  assert population[-1]["d_loss_std"] == pytest.approx(
      abs(m0["d_loss"] - m1["d_loss"]) / np.sqrt(2))
  assert population[-1]["members_alive"] == 2
  assert os.path.exists(pop_dir / "samples" / "step_000004.png")
  # One fixture, run once (in the fresh interpreter): sampling member 1
  # draws what the single run draws.
  out = pop_dir.parent / "pop.npy"
  proc = tt.cli("experiments.sample", f"--workdir={pop_dir}", "--member=1",
                "--num=6", f"--out={out}", "--grid=0")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "member 1" in proc.stdout
  from experiments import sample  # pylint: disable=g-import-not-at-top
  np.testing.assert_array_equal(np.load(out),
                                sample.draw(alone.experiment, alone.state, 6))
  with pytest.raises(builders.ConfigError, match="--member=2: member 2 does "
                     "not exist: the population has members 0-1"):
    resume.load(str(pop_dir), member=2)
  with pytest.raises(builders.ConfigError, match="holds a single run, not a "
                     "population; leave --member out"):
    resume.load(str(single_dir), member=0)


# ----------------------------------------------------------- PBT, resume


def pbt_config(num_steps):
  c = toy_ring8.get_config()
  c.model = toy_ring8.base.model_config("toy_mlp", hidden=8, depth=1)
  c.batch_size, c.num_steps = 16, num_steps
  c.log_every = c.eval_every = c.checkpoint_every = 2
  c.keep_checkpoints = 10
  c.num_eval_samples = 16
  c.evaluation.every, c.evaluation.num_samples = 2, 64
  c.evaluation.best_metric = "high_quality_fraction"
  c.population.sweep = "d_lr=1e-4,2e-3,3e-3,4e-4"
  c.population.pbt.every = 2
  c.population.pbt.fraction = 0.5
  return c


@pytest.fixture(scope="module")
def pbt_runs(tmp_path_factory):
  """The same PBT run straight to step 6, and stopped at 4 then resumed."""
  root = tmp_path_factory.mktemp("pbt")
  tt.run(pbt_config(6), root / "straight")
  tt.run(pbt_config(4), root / "resumed")
  tt.run(pbt_config(6), root / "resumed")
  return root / "straight", root / "resumed"


def test_resume_in_the_middle_of_pbt_is_the_uninterrupted_run(pbt_runs):
  straight, resumed = pbt_runs
  a, b = resume.load(str(straight), member=0), resume.load(str(resumed),
                                                           member=0)
  assert int(a.step) == int(b.step) == 6
  assert leaves_equal(a.population_state, b.population_state)
  with open(straight / members.LINEAGE_JSONL) as f:
    lines = f.read()
  with open(resumed / members.LINEAGE_JSONL) as f:
    assert f.read() == lines
  assert [json.loads(l)["step"] for l in lines.splitlines()] == [2, 4, 6]


def test_a_run_that_ended_in_the_scoring_of_a_pbt_step_resumes_exactly(
    pbt_runs, tmp_path):
  """A signal (or the end of a grace period) in the scoring of PBT step 4
  leaves the checkpoint of step 4, saved before the scoring, and no lineage
  line of step 4: the resumed run scores step 4 and exploits before it
  trains on, to the uninterrupted run's state and lineage."""
  straight, _ = pbt_runs
  workdir = tmp_path / "w"
  tt.run(pbt_config(4), workdir)
  path = workdir / members.LINEAGE_JSONL
  lines = path.read_text().splitlines(keepends=True)
  path.write_text("".join(l for l in lines if json.loads(l)["step"] < 4))
  tt.run(pbt_config(6), workdir)
  assert leaves_equal(resume.load(str(workdir), member=0).population_state,
                      resume.load(str(straight), member=0).population_state)
  assert path.read_text() == (straight / members.LINEAGE_JSONL).read_text()


def test_the_lineage_file_is_what_happened(pbt_runs):
  straight, _ = pbt_runs
  c = pbt_config(6)
  experiment = builders.build(c)
  with open(straight / members.LINEAGE_JSONL) as f:
    lineage = [json.loads(l) for l in f]
  for line in lineage:
    # The checkpoint of a PBT step holds the members that were scored; the
    # exploit of the run is the one its key, scores and fraction give.
    scored = tt.final_state(straight, c, line["step"])
    key = jax.random.fold_in(gj.streams.run_key(c.seed, gj.streams.PBT),
                             line["step"])
    state, parents = gj.pbt.exploit_explore(
        key, scored, np.float32(line["scores"]), fraction=0.5,
        higher_is_better=True)
    assert [int(p) for p in parents] == line["parents"]
    np.testing.assert_array_equal(
        np.asarray(state.hparams["d_learning_rate"]),
        np.float32(line["hparams"]["d_learning_rate"]))
    replaced = [m for m, p in enumerate(line["parents"]) if m != p]
    assert len(replaced) == 2  # fraction 0.5 of 4
    scores = np.asarray(line["scores"])
    for m in replaced:  # the worst copy the best, bit for bit
      p = line["parents"][m]
      assert scores[p] >= scores[m]
      one, parent = (members.member_state(experiment.population, state, i)
                     for i in (m, p))
      assert leaves_equal((one.g_params, one.d_params, one.g_opt_state),
                          (parent.g_params, parent.d_params,
                           parent.g_opt_state))
      ratio = (line["hparams"]["d_learning_rate"][m]
               / line["hparams"]["d_learning_rate"][p])
      assert ratio == pytest.approx(0.8, rel=1e-5) or ratio == pytest.approx(
          1.2, rel=1e-5)
    for m in set(range(4)) - set(replaced):  # the others keep their values
      assert line["parents"][m] == m


# ------------------------------------------------------------- divergence


def test_a_diverged_member_is_frozen_named_and_the_others_go_on(tmp_path,
                                                                 capsys):
  c = diverge.get_config()  # SGD at 1e30: D overflows within a few steps
  c.num_steps, c.checkpoint_every = 8, 4
  c.population.sweep = "d_lr=1e-3,1e30"
  assert tt.run(c, tmp_path)["steps"] == 8
  err = capsys.readouterr().err
  assert "warning: member 1 diverged at step 2 (d_grad_norm=inf" in err
  assert "the other members go on" in err
  state = tt.final_state(tmp_path, c)
  np.testing.assert_array_equal(np.asarray(state.alive), [True, False])
  np.testing.assert_array_equal(np.asarray(state.members.step), [8, 1])
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.members)
             if np.issubdtype(x.dtype, np.floating))
  last = [r for r in summary.read_jsonl(str(tmp_path)) if "member" not in r
          and "members_alive" in r][-1]
  assert last["members_alive"] == 1


def test_a_population_whose_every_member_diverged_stops_with_code_3(tmp_path):
  proc = tt.cli("experiments.train", "--config=experiments/configs/diverge.py",
                f"--workdir={tmp_path}", "--config.checkpoint_every=1",
                "--config.population.sweep=d_lr=1e30,2e30")
  err = tt.cli_error(proc, 3)
  assert err.startswith("error: training stopped at step 2: every member of "
                        "the population has diverged (member 0 at step 2, "
                        "member 1 at step 2)"), err
  assert "The checkpoint of step 1" in err and "is intact" in err
  assert steps_on_disk(tmp_path) == [1]


def test_evaluate_scores_every_member_with_mean_std_and_interval(
    pbt_runs, capsys):
  from experiments import evaluate  # pylint: disable=g-import-not-at-top
  straight, _ = pbt_runs
  result = evaluate.run(evaluate._parser().parse_args(  # pylint: disable=protected-access
      [f"--workdir={straight}", "--num=200"]))
  assert [r["source"]["member"] for r in result["members"]] == [0, 1, 2, 3]
  one = evaluate.run(evaluate._parser().parse_args(  # pylint: disable=protected-access
      [f"--workdir={straight}", "--num=200", "--member=2"]))
  assert one["metrics"] == result["members"][2]["metrics"]
  values = [r["metrics"]["high_quality_fraction"] for r in result["members"]]
  summary_ = result["population"]["high_quality_fraction"]
  assert summary_["mean"] == pytest.approx(np.mean(values))
  assert summary_["std"] == pytest.approx(np.std(values, ddof=1))
  assert summary_["ci95"] == pytest.approx(  # Student's t, 3 d.o.f.
      3.182 * np.std(values, ddof=1) / 2)
  table = capsys.readouterr().err
  assert "| member | " in table and "| mean ± std (95% CI) |" in table
