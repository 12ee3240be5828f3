"""Prepares data sets ahead of training: TFDS's Fashion-MNIST offline, or a folder of images.

Usage:
  python -m experiments.prepare_data PATH --image_size=64 [--fit=pad --channels=3]
  apt-get update && apt-get install -y dataset-fashion-mnist
  python -m experiments.prepare_data fashion_mnist [--data_dir DIR]

``PATH`` (an image folder or StyleGAN zip, as ``--config.dataset`` takes it:
``folder:PATH``, ``zip:PATH`` or a path; see ``ganjax.data.folder``): decodes
every split once, with a progress bar, into the cache that training reads
(``ganjax.data.image_cache``: ``$GANJAX_CACHE_DIR/data`` or
``~/.cache/ganjax/data``; ``--cache_dir`` for another root, then also set
``$GANJAX_CACHE_DIR`` for training), and prints what it skipped and where the
cache is. ``--image_size``, ``--fit`` and ``--channels`` must be those of the
training run (``--config.image_size``, ``--config.image_fit``,
``--config.channels``), or training decodes again.

``fashion_mnist``: builds TFDS's ``fashion_mnist`` from the Debian files in
``/usr/share/datasets/fashion-mnist`` (no network; see
``ganjax.data.tfds_source.prepare_fashion_mnist``) into ``--data_dir``,
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


def _folder(args) -> int:
  from ganjax.data import folder  # pylint: disable=g-import-not-at-top
  try:
    images = folder.ImageFolder(
        args.dataset, image_size=args.image_size and (args.image_size,) * 2,
        fit=args.fit, channels=args.channels, cache_dir=args.cache_dir)
    for split in images.splits():
      data = images.decoded(split)
      print(f"{split}: {len(data.images)} images of "
            f"{'x'.join(map(str, data.shape))}"
            + (f", {len(data.classes)} classes" if data.classes else "")
            + f"; cache {data.path}")
  except (ValueError, OSError) as e:  # DataError, DatasetNotFoundError, ...
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.prepare_data",
      description="Prepare data sets ahead of training: an image folder or "
      "StyleGAN zip into the decoded cache, or Fashion-MNIST for TFDS from "
      "locally installed files.")
  parser.add_argument("dataset", help=f"an image folder or zip (PATH, "
                      f"folder:PATH, zip:PATH), or one of: {', '.join(DATASETS)}")
  parser.add_argument("--image_size", type=int, default=0,
                      help="folders: the training resolution N (N x N); 0: "
                      "the images' own size")
  parser.add_argument("--fit", default="center_crop",
                      choices=("center_crop", "pad"),
                      help="folders: how images of another aspect ratio are "
                      "fitted to image_size")
  parser.add_argument("--channels", type=int, default=0, choices=(0, 1, 3),
                      help="folders: 1 grayscale, 3 RGB, 0 inferred")
  parser.add_argument("--cache_dir", default=None,
                      help="folders: cache root (default $GANJAX_CACHE_DIR or "
                      "~/.cache/ganjax)")
  parser.add_argument("--data_dir", default=None,
                      help="TFDS data dir (default $TFDS_DATA_DIR or "
                      "~/tensorflow_datasets)")
  parser.add_argument("--source_dir", default=None,
                      help="folder with the Fashion-MNIST *-ubyte.gz files "
                      "(default /usr/share/datasets/fashion-mnist)")
  args = parser.parse_args(argv)

  from ganjax.data import folder, sources, tfds_source  # pylint: disable=g-import-not-at-top

  if folder.is_path(args.dataset):
    return _folder(args)
  if args.dataset not in DATASETS:
    parser.error(f"unknown dataset {args.dataset!r}; known: "
                 f"{', '.join(DATASETS)}, or an image folder or zip")
  if args.dataset == "digits":
    images, _ = sources.load_digits("all")
    print(f"digits: nothing to prepare, {len(images)} images ship with "
          "scikit-learn.")
    return 0

  source_dir = args.source_dir or sources.FASHION_MNIST_DEBIAN_DIR
  start = time.time()
  try:
    data_dir = tfds_source.prepare_fashion_mnist(args.data_dir, source_dir)
  except (ValueError, OSError) as e:  # missing package, bad files, no write access
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"fashion_mnist prepared in {data_dir} ({time.time() - start:.1f} s); "
        "load it with ganjax.data.pipeline.batches('fashion_mnist'"
        + (f", data_dir={data_dir!r}" if args.data_dir else "") + ").")
  return 0


if __name__ == "__main__":
  sys.exit(main())
