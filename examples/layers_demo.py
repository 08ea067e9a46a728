"""kerasdet's building blocks on the embedded dataset.

    .venv/bin/python examples/layers_demo.py --out out/layers_demo [--images 8] [--size 256]

On validation images of the embedded synthetic dataset it
1. lays RetinaNet's anchors (P3-P7, 9 per location) and matches them to the ground truth;
2. simulates a noisy detector around the ground truth (jittered boxes, wrong classes, false
   positives), cleans its output with kerasdet's batched per-class NMS and scores it with
   kerasdet's COCO evaluation (printed as a table, with pycocotools' definitions);
3. crops every object with RoIAlign and RoIPool into a montage;
4. writes annotated PNGs: `out/demo/detections_*.png` (NMS output over the ground truth in white),
   `out/demo/roi_crops.png`, and `out/demo/pr_curve.png`.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasdet import visualize  # noqa: E402
from kerasdet.data import synthetic  # noqa: E402
from kerasdet.layers import AnchorGenerator, BoxMatcher, NonMaxSuppression, RoIAlign, RoIPool  # noqa: E402
from kerasdet.metrics import coco_evaluate, plot_precision_recall  # noqa: E402


def simulate_detector(rng, boxes, labels, num_classes, size, per_object=12, false_positives=15):
    """Noisy candidates around each object, as a weak detector would give before NMS."""
    cand_boxes, cand_scores = [], []
    for box, label in zip(boxes, labels):
        w, h = box[2] - box[0], box[3] - box[1]
        for _ in range(per_object):
            jitter = rng.normal(0, 0.12, 4) * np.array([w, h, w, h])
            b = np.clip(box + jitter, 0, size)
            scores = rng.uniform(0, 0.04, num_classes)
            cls = label if rng.uniform() < 0.85 else rng.integers(num_classes)
            scores[cls] = rng.uniform(0.4, 0.95)
            cand_boxes.append(b)
            cand_scores.append(scores)
    for _ in range(false_positives):
        xy = rng.uniform(0, size * 0.8, 2)
        wh = rng.uniform(8, size * 0.3, 2)
        cand_boxes.append(np.concatenate([xy, np.minimum(xy + wh, size)]))
        fp = rng.uniform(0, 0.04, num_classes)
        fp[rng.integers(num_classes)] = rng.uniform(0.05, 0.5)
        cand_scores.append(fp)
    return np.asarray(cand_boxes, np.float32), np.asarray(cand_scores, np.float32)


def pad(arrays, fill):
    n = max(len(a) for a in arrays)
    out = np.full((len(arrays), n) + arrays[0].shape[1:], fill, arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="kerasdet building blocks on the embedded dataset")
    parser.add_argument("--out", default="out/demo", help="folder for the PNGs (created)")
    parser.add_argument("--images", type=int, default=8, help="validation images to use (default 8)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    args = parser.parse_args()
    if args.images < 1:
        parser.error("--images must be >= 1")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = synthetic.class_names()
    num_classes = len(names)
    t0 = time.perf_counter()

    print(f"[demo] generating {args.images} validation images of {args.size}x{args.size}", flush=True)
    images, gt = synthetic.generate(args.images, image_size=args.size, seed=synthetic.split_seed("val"))
    per_image = {img["id"]: ([], []) for img in gt["images"]}
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        per_image[ann["image_id"]][0].append([x, y, x + w, y + h])
        per_image[ann["image_id"]][1].append(ann["category_id"] - 1)
    gt_boxes = [np.asarray(per_image[i + 1][0], np.float32).reshape(-1, 4) for i in range(args.images)]
    gt_labels = [np.asarray(per_image[i + 1][1], np.int32) for i in range(args.images)]
    print(f"[demo] {len(gt['annotations'])} objects of {num_classes} classes: {', '.join(names)}")

    # 1. anchors and matching
    anchors = AnchorGenerator.retinanet()
    maps = [tf.zeros([1, args.size // s, args.size // s, 1]) for s in (8, 16, 32, 64, 128)]
    anchor_boxes = anchors(tf.zeros([1, args.size, args.size, 3]), *maps)
    matcher = BoxMatcher(thresholds=[0.4, 0.5], match_values=[0, -1, 1])
    matched = matcher(anchor_boxes, pad(gt_boxes, -1.0), pad(gt_labels, -1))
    positives = np.asarray(tf.reduce_sum(tf.cast(matched["match_states"] == 1, tf.int32), axis=1))
    print(f"[demo] RetinaNet anchors: {anchor_boxes.shape[0]} per image; positives per image: {positives.tolist()}")

    # 2. a simulated detector, NMS, COCO evaluation
    rng = np.random.default_rng(0)
    cands = [simulate_detector(rng, b, l, num_classes, args.size) for b, l in zip(gt_boxes, gt_labels)]
    nms = NonMaxSuppression(iou_threshold=0.5, score_threshold=0.05, max_detections=100)
    det = nms(pad([c[0] for c in cands], 0.0), pad([c[1] for c in cands], 0.0))
    det = {k: np.asarray(v) for k, v in det.items()}
    print(f"[demo] NMS kept {det['num_detections'].tolist()} of {[len(c[0]) for c in cands]} candidate boxes")
    results = []
    for i in range(args.images):
        for b, s, l in zip(*(det[k][i, : det["num_detections"][i]] for k in ("boxes", "scores", "labels"))):
            results.append({"image_id": i + 1, "category_id": int(l) + 1, "score": float(s),
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    stats = coco_evaluate(gt, results, iou_type="bbox")
    print("[demo] COCO evaluation of the simulated detector after NMS (kerasdet.metrics.coco_evaluate):")
    print("  " + " | ".join(f"{k} {stats[k]:.3f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")))
    print("  " + " | ".join(f"{k} {stats[k]:.3f}" for k in ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl")))
    plot_precision_recall(stats, out / "pr_curve.png")

    for i in range(args.images):
        n = det["num_detections"][i]
        img = visualize.draw_detections(images[i], gt_boxes[i], np.zeros(len(gt_boxes[i]), int),
                                        colour=(255, 255, 255), scale=2, class_names=["gt"])
        img = visualize.draw_detections(
            img, det["boxes"][i, :n] * 2, det["labels"][i, :n], det["scores"][i, :n], names, thickness=2)
        visualize.save_png(out / f"detections_{i:02d}.png", img)

    # 3. RoIAlign and RoIPool crops of every object
    rois = pad(gt_boxes, -1.0)
    feats = tf.cast(images, tf.float32)
    aligned = np.asarray(RoIAlign(output_size=32, sampling_ratio=2)(feats, rois))
    pooled = np.asarray(RoIPool(output_size=32)(feats, rois))
    tiles = []
    for i in range(args.images):
        for j in range(len(gt_boxes[i])):
            tiles.append(np.concatenate([aligned[i, j], pooled[i, j]], axis=0))
    tiles = tiles[:48]
    cols = 12
    rows = -(-len(tiles) // cols)
    grid = np.zeros((rows * 66, cols * 34, 3), np.float32)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * 66 : r * 66 + 64, c * 34 : c * 34 + 32] = t
    visualize.save_png(out / "roi_crops.png", np.clip(grid, 0, 255).astype(np.uint8))
    print(f"[demo] RoIAlign (top) and RoIPool (bottom) 32x32 crops of {len(tiles)} objects -> {out / 'roi_crops.png'}")
    print(f"[demo] wrote {args.images} annotated images to {out}/ in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
