"""Throughput of the input pipeline alone (no model): images per second.

Usage:
  python -m benchmarks.pipeline_throughput [--data_dir DIR] [--seconds 5]
  (or python benchmarks/pipeline_throughput.py ...)

Fashion-MNIST is read through TFDS, prepared offline from the Debian package
(``apt-get install -y dataset-fashion-mnist``) if it is not yet prepared in
the data dir; digits come from scikit-learn. Each row times ``--seconds`` of
``next()`` calls after the first batch (whose latency, including the shuffle
buffer fill, is reported as "first batch"). Writes a markdown table to
``benchmarks/results/pipeline_throughput.md``.
"""

import argparse
import datetime
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from ganjax.data import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from ganjax.data import tfds_source  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks.machine import cpu_name

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "pipeline_throughput.md")


def measure(source, seconds, **kwargs):
  start = time.perf_counter()
  it = pipeline.batches(source, **kwargs)
  x = next(it)
  first = time.perf_counter() - start
  per_batch = x.shape[0] * x.shape[1]  # k * B
  n = 0
  start = time.perf_counter()
  while time.perf_counter() - start < seconds:
    next(it)
    n += 1
  elapsed = time.perf_counter() - start
  return first, n * per_batch / elapsed, tuple(x.shape)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=None,
                      help="TFDS data dir (default $TFDS_DATA_DIR or "
                      "~/tensorflow_datasets)")
  parser.add_argument("--seconds", type=float, default=5.0)
  parser.add_argument("--out", default=RESULTS)
  args = parser.parse_args(argv)

  data_dir = args.data_dir or tfds_source.default_data_dir()
  try:
    tfds_source.prepare_fashion_mnist(data_dir, progress_bar=False)
  except pipeline.DatasetNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  rows = [
      ("fashion_mnist (TFDS, cached)", "fashion_mnist", dict(batch_size=64, k=1)),
      ("fashion_mnist (TFDS, cached)", "fashion_mnist", dict(batch_size=64, k=5)),
      ("fashion_mnist (TFDS, decode every epoch)", "fashion_mnist",
       dict(batch_size=64, k=1, cache=False)),
      ("digits (numpy)", "digits", dict(batch_size=64, k=1)),
  ]
  results = []
  for label, source, kw in rows:
    extra = {"data_dir": data_dir} if source != "digits" else {}
    first, ips, shape = measure(source, args.seconds, **kw, **extra)
    results.append((label, kw["batch_size"], kw["k"], shape, first, ips))
    print(f"{label:42s} B={kw['batch_size']} k={kw['k']} {shape} "
          f"first batch {first:6.2f} s  {ips:10,.0f} images/s", flush=True)

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  lines = [
      "# Input pipeline throughput (no model)",
      "",
      f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
      f"- machine: {platform.node()}, {cpu_name()}, {os.cpu_count()} CPU cores "
      "visible (shared with other jobs), " f"{platform.system()} "
      f"{platform.machine()}, Python {platform.python_version()}",
      f"- versions: jax {jax.__version__}, tensorflow {tf.__version__}, "
      f"tensorflow-datasets {tfds.__version__}",
      f"- command: `python benchmarks/pipeline_throughput.py --seconds "
      f"{args.seconds:g}`; each row times {args.seconds:g} s of `next()` after "
      "the first batch; images/s counts k*B images per yielded array; value "
      "range (-1, 1), float32.",
      "",
      "| source | B | k | batch shape | first batch (s) | images/s |",
      "|---|---:|---:|---|---:|---:|",
  ]
  for label, b, k, shape, first, ips in results:
    lines.append(f"| {label} | {b} | {k} | {list(shape)} | {first:.2f} | "
                 f"{ips:,.0f} |")
  lines += ["", "\"cached\": decoded uint8 images cached in memory, whole-split "
            "shuffle buffer (the default for splits up to 1 GiB decoded); the "
            "first batch waits for the buffer to fill (60k images).", ""]
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    f.write("\n".join(lines))
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
