"""Compile time of ``GAN.init``: per key, and for a population under ``jax.vmap``.

    python -m benchmarks.init_time [--members 4] [--out benchmarks/results/init_time.md]

``GAN.init`` draws the initial parameters from ``rbg`` keys, which XLA:CPU
compiles faster than threefry ones, and maps over the keys one by one under
``jax.vmap`` so that member i equals ``init`` of key i (``ganjax.backend``).
Measured for each model: ``jax.jit(gan.init)`` as shipped; the same with
threefry keys (``backend.initializer_key`` replaced by the identity: what
``vmap`` consistency would cost without the per-key map); and
``jax.jit(jax.vmap(gan.init))`` over ``--members`` keys. Each is the wall
time of tracing, compiling and running once, with JAX's caches cleared
before it (``jax.clear_caches``). The machines are shared: compare the ratios within one run.
"""

import argparse
import datetime
import os
import time
from unittest import mock

import jax
import jax.numpy as jnp

import ganjax as gj
from benchmarks.machine import cpu_name
from ganjax import backend

# name: (models, latent_dim, example shape)
MODELS = {
    "dcgan 28x28": (lambda: gj.models.dcgan(image_shape=(28, 28, 1),
                                            latent_dim=100), 100, (28, 28, 1)),
    "goodfellow_mlp 28x28": (lambda: gj.models.goodfellow_mlp((28, 28, 1)),
                             100, (28, 28, 1)),
    "resnet 32x32": (lambda: gj.models.resnet(image_shape=(32, 32, 3),
                                              latent_dim=128), 128, (32, 32, 3)),
}


def _seconds(fn, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def measure(name: str, members: int) -> dict:
  """Seconds to compile and run ``init`` three ways."""
  make, latent_dim, shape = MODELS[name]
  gan = gj.GAN(*make(), latent_dim=latent_dim)
  example = jnp.zeros((2,) + shape, jnp.float32)
  key = jax.random.key(0)
  keys = jax.random.split(key, members)
  init = lambda k: gan.init(k, example)
  jax.clear_caches()
  out = {"rbg": _seconds(jax.jit(init), key)}
  jax.clear_caches()
  with mock.patch.object(backend, "initializer_key", lambda k: k):
    out["threefry"] = _seconds(jax.jit(init), key)
  jax.clear_caches()
  out["vmap"] = _seconds(jax.jit(jax.vmap(init)), keys)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--members", type=int, default=4)
  parser.add_argument("--out", default=os.path.join(
      os.path.dirname(__file__), "results", "init_time.md"))
  args = parser.parse_args()
  rows, times = [], []
  for name in MODELS:
    t = measure(name, args.members)
    times.append(t)
    rows.append(f"| {name} | {t['rbg']:.2f} | {t['threefry']:.2f} | "
                f"{t['threefry'] / t['rbg']:.1f}x | {t['vmap']:.2f} |")
    print(rows[-1], flush=True)
  text = "\n".join([
      "# GAN.init compile time: rbg keys, threefry keys, a vmapped population",
      "",
      f"{datetime.date.today()}, jax {jax.__version__}, "
      f"{jax.default_backend()}, {cpu_name()}. Reproduce: "
      f"`python -m benchmarks.init_time --members {args.members}`.",
      "",
      "Seconds to trace, compile and run `jax.jit(gan.init)` once (caches "
      "cleared before each). `init` as shipped draws from rbg keys "
      "and, under `jax.vmap`, maps over the keys one by one, so that member i "
      "is bit-exactly `init` of key i; threefry keys would give that without "
      "the map, at the compile time of the threefry column.",
      "",
      f"| model | init, rbg (shipped) | init, threefry | threefry / rbg | "
      f"vmap(init), {args.members} members |",
      "|---|---:|---:|---:|---:|",
      *rows, "",
      f"A vmapped population of {args.members} compiles in "
      f"{min(t['vmap'] / t['rbg'] for t in times):.1f}x-"
      f"{max(t['vmap'] / t['rbg'] for t in times):.1f}x the time of one "
      f"`init`; threefry keys would cost up to "
      f"{max(t['threefry'] / t['rbg'] for t in times):.1f}x per `init`. The "
      f"machines are shared: wall times are noisy, compare ratios.", ""])
  with open(args.out, "w") as f:
    f.write(text)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
