"""Image folders: decode-and-cache throughput, and a run's first step on a cached folder vs numpy.

Usage:
  python -m benchmarks.folder_data [--num 10000 --size 64 --dir DIR]

1. Writes ``--num`` PNGs of ``--size`` x ``--size`` RGB into ``DIR/images``
   (smooth random pictures: noise upsampled 8x, so they compress like
   photographs rather than like noise), then times, with a fresh cache root:
   the first ``load_split`` (listing, decoding every file, writing the cache:
   images/s), a second one with the in-process copy dropped (listing +
   reading the cache), decoding with a resize (``--size`` -> ``--size //
   2``), and Pillow's decoding of every file alone (one thread).
2. Times ``experiments.train`` (in this process, 1 step, a small DCGAN at
   ``--size``) from the start of ``train_and_evaluate`` to the end of its
   first step, on the cached folder and on the same uint8 arrays given as
   numpy (the runner's ``builders.data_source`` returning them), each after
   one warm-up run, with a persistent compilation cache: the timed runs load
   their compiled step, so what differs is how the data arrive.

Writes a markdown table to ``benchmarks/results/folder_data.md``.
"""

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import PIL.Image  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks.machine import cpu_name, load_average  # pylint: disable=wrong-import-position
from ganjax.data import folder as folder_lib  # pylint: disable=wrong-import-position
from ganjax.data import image_cache  # pylint: disable=wrong-import-position

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "folder_data.md")


def write_pngs(root: str, num: int, size: int) -> float:
  """``num`` smooth random RGB PNGs; returns the bytes per file."""
  os.makedirs(root, exist_ok=True)
  rng = np.random.default_rng(0)
  small = max(1, size // 8)
  for i in range(num):
    coarse = rng.integers(0, 256, (small, small, 3), dtype=np.uint8)
    PIL.Image.fromarray(coarse).resize((size, size), PIL.Image.BILINEAR).save(
        os.path.join(root, f"{i:06d}.png"))
  return sum(e.stat().st_size for e in os.scandir(root)) / num


def timed_load(source) -> tuple:
  image_cache._MEMO.clear()  # pylint: disable=protected-access
  start = time.perf_counter()
  data = source.decoded("train")
  return time.perf_counter() - start, data


def first_step_seconds(config, workdir: str) -> float:
  from experiments import train  # pylint: disable=g-import-not-at-top
  shutil.rmtree(workdir, ignore_errors=True)
  start = time.perf_counter()
  train.train_and_evaluate(config, workdir, progress=False)
  return time.perf_counter() - start


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num", type=int, default=10_000)
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--dir", default=None, help="scratch folder (default: "
                      "a temporary one, removed at the end)")
  parser.add_argument("--out", default=RESULTS)
  args = parser.parse_args(argv)
  scratch = args.dir or tempfile.mkdtemp(prefix="ganjax-folder-bench-")
  images_dir = os.path.join(scratch, "images")
  cache_dir = os.path.join(scratch, "cache")
  os.environ["GANJAX_CACHE_DIR"] = cache_dir
  shutil.rmtree(cache_dir, ignore_errors=True)

  start = time.perf_counter()
  file_bytes = write_pngs(images_dir, args.num, args.size)
  write_s = time.perf_counter() - start
  source = folder_lib.ImageFolder(images_dir, verbose=False)
  cold_s, data = timed_load(source)
  warm_s, _ = timed_load(source)
  half = args.size // 2
  resized_s, _ = timed_load(source.at_size((half, half)))
  from ganjax.data import decode  # pylint: disable=g-import-not-at-top
  read_start = time.perf_counter()
  for entry in sorted(os.scandir(images_dir), key=lambda e: e.name):
    decode.read(entry.path)
  read_s = time.perf_counter() - read_start
  listing_start = time.perf_counter()
  source.listing()
  listing_s = time.perf_counter() - listing_start
  cache_mb = os.path.getsize(data.path) / 2 ** 20

  # A run's first step: cached folder vs the same arrays as numpy.
  from experiments import builders  # pylint: disable=g-import-not-at-top
  from experiments.configs import dcgan_folder  # pylint: disable=g-import-not-at-top
  config = dcgan_folder.get_config()
  config.dataset = f"folder:{images_dir}"
  config.update_from_flattened_dict({
      "image_size": args.size, "num_steps": 1, "batch_size": 64,
      "model.base_features": 16, "log_every": 1, "eval_every": 1000,
      "checkpoint_every": 1000, "steps_per_call": 1})
  arrays = data.images
  real_source = builders.data_source
  jax.config.update("jax_compilation_cache_dir", os.path.join(scratch, "xla"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  first = {}
  for name in ("folder", "numpy", "folder", "numpy"):  # warm-up, then timed
    builders.data_source = (real_source if name == "folder"
                            else lambda c: arrays)
    image_cache._MEMO.clear()  # pylint: disable=protected-access
    first[name] = first_step_seconds(config, os.path.join(scratch, "run"))
  builders.data_source = real_source

  rows = [
      ("decode + cache (first load: list, decode, write)",
       f"{cold_s:.2f}", f"{args.num / cold_s:,.0f}"),
      (f"decode + resize to {half}x{half} + cache", f"{resized_s:.2f}",
       f"{args.num / resized_s:,.0f}"),
      ("Pillow decoding alone (`decode.read` of every file, nothing kept)",
       f"{read_s:.2f}", f"{args.num / read_s:,.0f}"),
      ("cached (list the folder, read the cache)", f"{warm_s:.2f}",
       f"{args.num / warm_s:,.0f}"),
      ("listing alone (scandir + stat)", f"{listing_s:.3f}", "-"),
  ]
  now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
  text = "\n".join([
      "# Image folders: decode-and-cache throughput, first step",
      "",
      f"- date: {now}",
      f"- machine: {cpu_name()}, {os.cpu_count()} CPU cores visible (shared "
      f"with other jobs; load average {load_average()}), {platform.system()} "
      f"{platform.machine()}, Python {platform.python_version()}",
      f"- versions: jax {jax.__version__}, Pillow {PIL.__version__}",
      f"- command: `python -m benchmarks.folder_data --num {args.num} --size "
      f"{args.size}`",
      f"- data: {args.num:,} RGB PNGs of {args.size}x{args.size} "
      f"({file_bytes / 1024:.1f} KiB each; written in {write_s:.0f} s), one "
      f"split, no labels; cache file {cache_mb:.0f} MiB (uint8, uncompressed "
      "npz)",
      "",
      "| what | seconds | images/s |",
      "|---|---:|---:|",
      *[f"| {a} | {b} | {c} |" for a, b, c in rows],
      "",
      "A run's first step (`experiments.train`, DCGAN with base_features 16 at "
      f"{args.size}x{args.size}, batch 64, 1 step, data on the device; from "
      "the call of `train_and_evaluate` to its return, the second of two runs "
      "each, so both read the same persistent compilation cache):",
      "",
      "| data | seconds to the first step |",
      "|---|---:|",
      f"| cached folder (`folder:PATH`) | {first['folder']:.2f} |",
      f"| the same uint8 arrays from numpy | {first['numpy']:.2f} |",
      "",
  ])
  with open(args.out, "w") as f:
    f.write(text)
  print(text)
  if not args.dir:
    shutil.rmtree(scratch, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
