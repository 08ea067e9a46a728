"""Diagnosis of compact YOLO (v1) / Fast YOLO: train on a few embedded images without augmentation, then score
AP on those same images with batch norm in inference mode (moving statistics) and in training mode (batch
statistics). A detector should nearly memorise them; docs/decisions.md records what this gave.

    .venv/bin/python scripts/yolo_v1_overfit.py --arch fast --images 32 --steps 480 --lr 0.001
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasdet.data.synthetic import generate  # noqa: E402
from kerasdet.metrics import coco_evaluate  # noqa: E402
from kerasdet.models.yolo_v1 import FastYOLO, YOLOv1  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=("fast", "yolo"), default="fast")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--steps", type=int, default=480)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=5, help="the embedded generator's seed")
    args = parser.parse_args(argv)
    images, coco = generate(args.images, 256, seed=args.seed)
    boxes = -np.ones((args.images, 32, 4), np.float32)
    labels = -np.ones((args.images, 32), np.int32)
    count = np.zeros(args.images, int)
    for a in coco["annotations"]:
        i = a["image_id"] - 1
        x, y, w, h = a["bbox"]
        boxes[i, count[i]] = [x, y, x + w, y + h]
        labels[i, count[i]] = a["category_id"] - 1
        count[i] += 1
    tf.keras.utils.set_random_seed(0)
    model = (FastYOLO if args.arch == "fast" else YOLOv1).compact(num_classes=10)
    model.build_for_size(256)
    model.compile(learning_rate=args.lr)
    epochs = max(1, args.steps * args.batch_size // args.images)
    start = time.time()
    history = model.fit(images.astype(np.float32), {"boxes": boxes, "labels": labels}, batch_size=args.batch_size,
                        epochs=epochs, verbose=0).history
    print(f"trained {epochs} epochs of {args.images} images in {time.time() - start:.0f} s")
    for term in model.loss_terms:
        values = history[term]
        print(f"  {term}: " + ", ".join(f"{values[i]:.3f}" for i in (0, len(values) // 4, len(values) // 2, -1)))

    def score(training):
        detections = []
        for first in range(0, args.images, args.batch_size):
            x = tf.constant(images[first:first + args.batch_size].astype(np.float32))
            out = {k: v.numpy() for k, v in model.decode_and_suppress(model(x, training=training), x).items()}
            for i in range(len(x)):
                for k in range(int(out["num_detections"][i])):
                    b = out["boxes"][i, k]
                    detections.append({"image_id": first + i + 1, "category_id": int(out["labels"][i, k]) + 1,
                                       "score": float(out["scores"][i, k]),
                                       "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
        result = coco_evaluate(coco, detections)
        return f"AP {result['AP']:.3f}, AP50 {result['AP50']:.3f}"

    def losses(training):
        totals = {}
        for first in range(0, args.images, args.batch_size):
            x = tf.constant(images[first:first + args.batch_size].astype(np.float32))
            y = {"boxes": boxes[first:first + args.batch_size], "labels": labels[first:first + args.batch_size]}
            got = model.detection_losses(x, model.standardize_targets(y, x), model(x, training=training))
            for k, v in got.items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(x) / args.images
        return ", ".join(f"{k} {v:.3f}" for k, v in totals.items())

    for training, mode in ((False, "inference mode"), (True, f"training mode (batches of {args.batch_size})")):
        print(f"batch norm in {mode}: {score(training)}; losses on these images: {losses(training)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
