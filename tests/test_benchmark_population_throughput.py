"""``benchmarks/population_throughput.py``: model FLOPs from XLA's count of
one member's step, the MFU column, and the model choice (no timing here)."""

import chex
import jax
import pytest

import ganjax as gj
from benchmarks import population_throughput as pt


def test_step_flops_count_the_step_and_grow_with_the_batch():
  gan = gj.GAN(*gj.models.toy_mlp(2, hidden=16, depth=1), latent_dim=4)
  flops = []
  for batch_size in (32, 64):
    batch = jax.numpy.zeros((1, batch_size, 2))
    flops.append(pt.step_flops(gan, gan.init(jax.random.key(0), batch),
                               batch))
  # G and D forward and backward: more than the layers' 2 * B * 4 * 16
  # multiply-adds of G's first layer alone, and about linear in B.
  assert flops[0] > 2 * 32 * 4 * 16
  assert 1.8 < flops[1] / flops[0] < 2.2


def test_the_table_gives_model_tflops_and_mfu_against_a_peak():
  row = dict(model="m", members=8, candidate="population, auto (map)",
             ms=2.0, low=1.9, high=2.1, member_steps=4000.0, vs_loop=1.1,
             tflops=2.5)
  text = pt.render([row], ["--peak_tflops=50"], "start", "1 1 1", 50.0)
  assert "| MFU |" in text and "| 4,000.0 | 1.10x | 2.5 | 5.00% |" in text
  text = pt.render([row], [], "start", "1 1 1")
  assert "MFU" not in text and text.splitlines()[-3].endswith("| 2.5 |")


def test_an_unknown_model_is_refused_with_the_choices(capsys):
  with pytest.raises(SystemExit):
    pt.main(["--models=dcgan_digits,resnet"])
  assert "unknown --models resnet; choose from dcgan_digits, small_mlp, " \
         "dcgan28" in capsys.readouterr().err


def test_the_other_formulations_step_every_member_as_its_own_step():
  gan = gj.GAN(*gj.models.toy_mlp(2, hidden=8, depth=1), latent_dim=4)
  batch = jax.random.normal(jax.random.key(1), (1, 16, 2))
  keys = jax.random.split(jax.random.key(0), 2)
  members = jax.vmap(lambda key: gan.init(key, batch))(keys)
  step = jax.jit(gan.step)
  want = [step(jax.tree.map(lambda x: x[i], members), batch)
          for i in range(2)]
  for name, fn in pt.formulations(gan, 2).items():
    got = jax.jit(fn)(members, batch)  # (states, metrics), stacked
    for i in range(2):
      chex.assert_trees_all_close(
          jax.tree.map(lambda x: x[i], got), want[i], atol=1e-6,
          custom_message=name)
