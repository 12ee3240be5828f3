"""Prepares real data sets offline, from files that package registries install.

Usage:
  apt-get update && apt-get install -y dataset-fashion-mnist
  python -m experiments.prepare_data fashion_mnist [--data_dir DIR]

``fashion_mnist``: builds TFDS's ``fashion_mnist`` from the Debian files in
``/usr/share/datasets/fashion-mnist`` (no network; see
``ganjax.data.sources.prepare_tfds_fashion_mnist``) into ``--data_dir``,
default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``. Afterwards
``ganjax.data.pipeline.batches("fashion_mnist", data_dir=DIR)`` loads it with
``download=False``. ``digits`` needs no preparation (it ships in
scikit-learn). User errors print one message and exit with status 2.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

DATASETS = ("fashion_mnist", "digits")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.prepare_data",
      description="Prepare real data sets offline from locally installed files.")
  parser.add_argument("dataset", help=f"one of: {', '.join(DATASETS)}")
  parser.add_argument("--data_dir", default=None,
                      help="TFDS data dir (default $TFDS_DATA_DIR or "
                      "~/tensorflow_datasets)")
  parser.add_argument("--source_dir", default=None,
                      help="folder with the Fashion-MNIST *-ubyte.gz files "
                      "(default /usr/share/datasets/fashion-mnist)")
  args = parser.parse_args(argv)

  from ganjax.data import sources  # pylint: disable=g-import-not-at-top

  if args.dataset not in DATASETS:
    parser.error(f"unknown dataset {args.dataset!r}; known: {', '.join(DATASETS)}")
  if args.dataset == "digits":
    images, _ = sources.load_digits("all")
    print(f"digits: nothing to prepare, {len(images)} images ship with "
          "scikit-learn.")
    return 0

  source_dir = args.source_dir or sources.FASHION_MNIST_DEBIAN_DIR
  start = time.time()
  try:
    data_dir = sources.prepare_tfds_fashion_mnist(args.data_dir, source_dir)
  except (ValueError, OSError) as e:  # missing package, bad files, no write access
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"fashion_mnist prepared in {data_dir} ({time.time() - start:.1f} s); "
        "load it with ganjax.data.pipeline.batches('fashion_mnist'"
        + (f", data_dir={data_dir!r}" if args.data_dir else "") + ").")
  return 0


if __name__ == "__main__":
  sys.exit(main())
