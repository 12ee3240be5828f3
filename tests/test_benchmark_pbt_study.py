"""``benchmarks/pbt_study.py``: the PBT-against-fixed table from two population workdirs."""

import json

import pytest

from benchmarks import pbt_study
from experiments import members


def _workdir(path, fids, lineage=()):
  """A population workdir's records: ``fids[step]`` per member, a training
  record and the population's aggregate (neither has per-member FID)."""
  path.mkdir()
  records = []
  for step, values in fids.items():
    records.append({"step": step, "d_loss": 1.0})
    records.append({"step": step, "fid1k_digits_cnn": sum(values) / len(values),
                    "fid1k_digits_cnn_std": 0.0})
    records += [{"step": step, "member": m, "fid1k_digits_cnn": v,
                 "fid1k_digits_cnn_std": 9.0, "recall1k_digits_cnn": 0.5}
                for m, v in enumerate(values)]
  (path / "metrics.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in records))
  (path / members.LINEAGE_JSONL).write_text(
      "".join(json.dumps(r) + "\n" for r in lineage))
  return str(path)


def test_the_table_gives_each_arms_mean_std_best_and_the_exploits(tmp_path):
  fixed = _workdir(tmp_path / "fixed", {500: [10.0, 20.0, 30.0],
                                        1000: [8.0, 12.0, 40.0]})
  pbt = _workdir(tmp_path / "pbt", {500: [10.0, 20.0, 30.0],
                                    1000: [7.0, 9.0, 8.0]}, lineage=[
      {"step": 500, "metric": "fid", "scores": [10.0, 20.0, 30.0],
       "parents": [0, 1, 0],
       "hparams": {"g_learning_rate": [1e-4, 2e-4, 1.2e-4]}},
      {"step": 1000, "metric": "fid", "scores": [7.0, 9.0, 8.0],
       "parents": [0, 1, 2], "hparams": {"g_learning_rate": [1, 2, 3]}}])
  assert pbt_study.member_scores(pbt, "fid") == {500: [10.0, 20.0, 30.0],
                                                 1000: [7.0, 9.0, 8.0]}
  table = pbt_study.render(fixed, pbt).splitlines()
  # mean ± std (ddof 1) over members, and the lowest FID
  assert table[2] == "| 500 | 20.00 ± 10.00 | 10.00 | 20.00 ± 10.00 | 10.00 |"
  assert table[3] == "| 1,000 | 20.00 ± 17.44 | 8.00 | 8.00 ± 1.00 | 7.00 |"
  assert "fixed 8.00, 12.00, 40.00; PBT 7.00, 9.00, 8.00" in table[5]
  assert "| 500 | 2 <- 0 | 2: g_learning_rate 0.00012 |" in table
  assert "| 1,000 | none |  |" in table
  # recall: higher is better, so the best member is the highest
  assert "| 0.50 ± 0.00 | 0.50 |" in pbt_study.render(fixed, pbt, "recall")
  with pytest.raises(ValueError, match="no step with per-member 'kid'"):
    pbt_study.render(fixed, pbt, "kid")
