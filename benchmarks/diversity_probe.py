"""Where a recall gap comes from: samples saved by ``seed_study --samples_out``.

  python -m benchmarks.diversity_probe --dataset=fashion_mnist \
      runs/samples_cond runs/samples_uncond

For every ``member_<i>.npz`` (uint8 images and, for conditional samples, the
requested labels) in each folder, in the features of the data set's CNN
against its test split:

- precision and recall (k = 3) and density and coverage (k = 5; Naeem et al.
  2020: the real k-NN balls only, so outlying samples cannot inflate them);
- ``recall_on_manifold``: recall from only the samples inside the real
  manifold (those precision counts). Recall's sample balls have the radius
  of each sample's k-th nearest sample, so an isolated, off-manifold sample
  carries a huge ball; if recall falls far once they are gone, it was
  measuring those outliers, not diversity;
- ``median_radius_ratio``: median k-NN radius of the samples over that of
  the real points (< 1: the samples crowd closer together than the data);
- per class (the requested class for conditional samples, the CNN's class
  otherwise): recall and coverage of the real images of that class by the
  samples of that class, mean over classes;
- with ``--matched=n``: recall and coverage of the first n on-manifold
  samples of each set, so that sets with more off-manifold samples are
  compared on equal counts of good ones (recall's balls, and so recall,
  grow as the count falls).

Prints one Markdown row per folder: mean ± std over its members.
"""

import argparse
import glob
import os

import numpy as np

import ganjax as gj
from ganjax.metrics import real_data


def features(network, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(features [N, d], CNN class [N])`` of uint8 or [0, 1] images."""
  feats, probs = network(images)
  return feats, np.argmax(probs, axis=1)


def probe(real, real_class, fake, fake_class, matched: int = 0,
          real_radii=None) -> dict:
  """Every number of the module docstring for one sample set (with
  ``matched``, also recall and coverage of its first ``matched``
  on-manifold samples: nan when it has fewer). ``real_radii``:
  ``knn_radii(real, (3, 5))``, computed once for every sample set (None:
  computed here)."""
  m = gj.metrics
  if real_radii is None:
    real_radii = m.knn_radii(real, (3, 5))
  r3, r5 = real_radii[:, 0], real_radii[:, 1]
  pr = m.precision_recall(real, fake, k=3, real_radii=r3)
  dc = m.density_coverage(real, fake, k=5, real_radii=r5)
  # Samples inside the real manifold: within some real point's k-NN ball.
  inside = np.asarray(m.in_manifold(real, fake, k=3,
                                    reference_radii=r3))
  on_manifold = fake[inside]
  recall_on = (float(m.precision_recall(real, on_manifold, k=3,
                                        real_radii=r3)["recall"])
               if len(on_manifold) > 3 else float("nan"))
  ratio = float(np.median(m.knn_radii(fake, 3)) / np.median(r3))
  matched_scores = {}
  if matched:
    few = len(on_manifold) < matched
    subset = on_manifold[:matched]
    matched_scores = {
        "recall_matched": float("nan") if few else float(
            m.precision_recall(real, subset, k=3, real_radii=r3)["recall"]),
        "coverage_matched": float("nan") if few else float(
            m.density_coverage(real, subset, k=5, real_radii=r5)["coverage"])}
  per_class_recall, per_class_coverage = [], []
  for c in np.unique(real_class):
    r, f = real[real_class == c], fake[fake_class == c]
    if len(f) <= 5:
      per_class_recall.append(0.0)
      per_class_coverage.append(0.0)
      continue
    per_class_recall.append(float(m.precision_recall(r, f, k=3)["recall"]))
    per_class_coverage.append(float(m.density_coverage(r, f, k=5)["coverage"]))
  return {"precision": float(pr["precision"]), "recall": float(pr["recall"]),
          "density": float(dc["density"]), "coverage": float(dc["coverage"]),
          "recall_on_manifold": recall_on,
          "on_manifold_fraction": float(inside.mean()),
          "median_radius_ratio": ratio,
          "class_recall": float(np.mean(per_class_recall)),
          "class_coverage": float(np.mean(per_class_coverage)),
          **matched_scores}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("folders", nargs="+")
  parser.add_argument("--dataset", default="fashion_mnist")
  parser.add_argument("--matched", type=int, default=0,
                      help="also score this many on-manifold samples of "
                      "each set (equal counts, off-manifold ones left out)")
  args = parser.parse_args()
  network = gj.metrics.cnn_network(args.dataset, verbose=False)
  real_images, real_labels = real_data.load_split(args.dataset, "test")
  real, _ = features(network, real_images)
  real_radii = gj.metrics.knn_radii(real, (3, 5))  # shared by every member
  rows = []
  for folder in args.folders:
    results = []
    for path in sorted(glob.glob(os.path.join(folder, "member_*.npz"))):
      saved = np.load(path)
      fake, fake_class = features(network, saved["images"])
      if saved["labels"].size:  # conditional: the requested class
        fake_class = saved["labels"]
      results.append(probe(real, real_labels, fake, fake_class, args.matched,
                           real_radii))
    rows.append((folder, len(results), {
        key: gj.population.mean_std([r[key] for r in results])
        for key in results[0]}))
  keys = list(rows[0][2])
  print("| samples | members | " + " | ".join(keys) + " |")
  print("|---|---:|" + "---:|" * len(keys))
  for folder, n, values in rows:
    print(f"| {folder} | {n} | " + " | ".join(values[k] for k in keys) + " |")


if __name__ == "__main__":
  main()
