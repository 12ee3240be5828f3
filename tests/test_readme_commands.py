"""Every ``python -m experiments.*`` command line of the README runs as written.

The lines of the README's bash blocks, in order (a training line before the
sampling and evaluation of its work directory), with the work directories and
output files moved under a temporary folder and, for training, a few tiny
steps appended (later flags win): what is checked is that each line parses,
builds and trains. Training lines are parsed by the command's own flags
(``train.define_flags``) and, like evaluation (``evaluate.main``), run in
this process, which shares compiled functions between them; sampling runs as
a command.
"""

import json
import pathlib
import re

from absl import flags
import numpy as np
import pytest

from experiments import train
from tests.helpers import cli, evaluate_in_process

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
# The "Your own images" block trains on a folder: tests/test_folder_cli.py
# runs it on a folder of images it writes.
BLOCKS = [block for block in re.findall(r"```bash\n(.*?)```",
                                        README.read_text(), re.S)
          if "--config.dataset=folder:" not in block]
COMMANDS = [line.split("#")[0].split() for block in BLOCKS
            for line in block.splitlines()
            if line.startswith("python -m experiments.")]
TINY = ("--config.num_steps=3", "--config.model.base_features=4",
        "--config.latent_dim=8", "--config.batch_size=8",
        "--config.log_every=1", "--config.eval_every=3",
        "--config.checkpoint_every=3", "--config.num_eval_samples=20")


def test_the_readme_shows_the_runner_commands():
  modules = [c[2] for c in COMMANDS]
  assert {"experiments.train", "experiments.sample",
          "experiments.evaluate"} <= set(modules)
  flags = " ".join(" ".join(c) for c in COMMANDS)
  for option in ("--config.model.aux_classifier=True",
                 "--config.loss_terms.feature_matching",
                 "--config.augment.policy", "--config.compute_dtype=bfloat16"):
    assert option in flags


def test_every_command_line_runs(tmp_path, cache_dir, capsys, monkeypatch):
  monkeypatch.setenv("GANJAX_CACHE_DIR", cache_dir)
  for command in COMMANDS:
    module, args = command[2], [a.replace("=runs/", f"={tmp_path}/runs/")
                                .replace("=samples.npy", f"={tmp_path}/s.npy")
                                for a in command[3:]]
    if module == "experiments.train":
      argv = ["train", *args, *TINY]
      values = flags.FlagValues()
      train.define_flags(values, argv)
      values(argv)
      result = train.train_and_evaluate(values.config, values.workdir,
                                        progress=False)
      assert result["steps"] == 3, command
    elif module == "experiments.evaluate":
      scores = evaluate_in_process(args, capsys)[0]["metrics"]
      assert all(np.isfinite(v) for v in scores.values()), scores
    else:
      proc = cli(module, *args, timeout=600)
      assert proc.returncode == 0, (command, proc.stderr[-3000:])
      assert "Traceback" not in proc.stderr, command
      assert module == "experiments.sample", command
      assert np.load(tmp_path / "s.npy").shape == (10000, 8, 8, 1)
      assert (tmp_path / "s.png").exists()  # the grid of the first samples
  acgan = json.loads((tmp_path / "runs" / "acgan" / "config.json").read_text())
  assert acgan["model"]["aux_classifier"] and acgan["resolved"]["num_classes"] == 10


@pytest.mark.parametrize("config", ["dcgan_digits", "cdcgan_fashion_mnist",
                                    "sngan_cifar10"])
def test_every_model_field_can_be_set_from_the_command_line(config):
  """``base.model_config``: the AC-GAN and feature-matching fields exist in
  every config's model, so the README's lines apply to any of them."""
  module = __import__(f"experiments.configs.{config}", fromlist=["x"])
  model = module.get_config().model
  assert "aux_classifier" in model and "return_features" in model
