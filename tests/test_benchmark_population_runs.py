"""``benchmarks/population_runs.py``: the command lines it runs, and how its
table is made from the processes' wall times and rates (processes faked)."""

from absl import flags

from benchmarks import population_runs
from experiments import train


def test_its_command_lines_parse_as_the_runner_reads_them(tmp_path):
  for members in (None, 4):
    args = population_runs.train_args(
        population_runs.CONFIGS["dcgan_digits"], 500, str(tmp_path), seed=2,
        members=members)
    argv = ["train", *args[3:]]
    values = flags.FlagValues()
    train.define_flags(values, argv)
    values(argv)
    c = values.config
    assert (c.num_steps, c.seed, c.evaluation.every) == (500, 2, 0)
    assert c.checkpoint_every == c.eval_every == 500
    assert c.population.size == (members or 0)


def test_separate_runs_are_summed_then_extrapolated_and_rates_compared(
    monkeypatch, tmp_path):
  walls = iter([99.0,                       # the untimed warm-up
                40.0, 30.0, 60.0, 34.0])    # pop 1, seed 0, pop 4, seed 1
  rates = iter([None, 80.0, 100.0, 30.0, 120.0])
  calls = []

  def fake_run(args):
    calls.append(args)
    return dict(wall=next(walls), steps_per_s=next(rates))

  monkeypatch.setattr(population_runs, "timed_run", fake_run)
  rows = population_runs.measure("m", ["--config=x.py"], [1, 4], 500, 2,
                                 str(tmp_path))
  assert [a[-1] for a in calls[1:]] == [
      "--config.population.size=1", f"--workdir={tmp_path}/m_seed0",
      "--config.population.size=4", f"--workdir={tmp_path}/m_seed1"]
  one, four = rows
  assert one["measured"] and one["one_by_one"] == 30.0
  assert one["speedup"] == 30.0 / 40.0
  assert one["single_rate"] == 110.0            # median of 100 and 120
  assert one["rate_ratio"] == 80.0 / 110.0
  assert not four["measured"] and four["one_by_one"] == 4 * 32.0
  assert four["member_rate"] == 4 * 30.0
  text = population_runs.render(rows, [], "t0", "0 0 0", 500)
  assert "| m | 4 | 128.0* | 60.0 | 2.13x | 110.0 | 120.0 | 1.09x |" in text
