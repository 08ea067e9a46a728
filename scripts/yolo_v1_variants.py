"""Short trainings of compact Fast YOLO / YOLO (v1) under variants meant to get its fully connected predictor to
learn from scratch; prints the loss terms and the val AP50 after every epoch. docs/decisions.md records what each
gave (session of 2026-12-06, third): none left the constant prediction in 2,000 images x 3 epochs.

    .venv/bin/python scripts/yolo_v1_variants.py                                   # AdamW 1e-3, the recipe's
    .venv/bin/python scripts/yolo_v1_variants.py --pretrain-images 1500 --pretrain-epochs 8 --lr 1e-4
    .venv/bin/python scripts/yolo_v1_variants.py --lr 2e-5
    .venv/bin/python scripts/yolo_v1_variants.py --cell-local-init
    .venv/bin/python scripts/yolo_v1_variants.py --equalised --optimizer sgd --lr 1e-2

- `--pretrain-images N`: first the trunk + global average pooling + a softmax over the classes, trained on the
  objects of N embedded images (seed 77) cropped with 25% context to `--crop` px (the paper's ImageNet stage in
  miniature);
- `--cell-local-init`: the predictor starts with cell k's outputs reading only position k's channels (one shared
  Glorot block on the diagonal, zeros elsewhere);
- `--equalised`: the flattened features times 1 / sqrt(fan-in) before the predictor, whose weights start N(0, 1);
- `--optimizer sgd`: momentum 0.9, decay 5e-4, no gradient clipping (AdamW keeps the recipe's decay 1e-4 and
  global clipnorm 10). Either way 300 warm-up steps, then cosine decay.
Detection: the embedded training split without augmentation, batch 8; val: 150 images of the val split.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasdet.data import synthetic  # noqa: E402
from kerasdet.metrics import coco_evaluate  # noqa: E402
from kerasdet.models.yolo_v1 import FastYOLO, YOLOv1  # noqa: E402

SIZE = 256


def padded_targets(coco, count):
    boxes = -np.ones((count, 32, 4), np.float32)
    labels = -np.ones((count, 32), np.int32)
    filled = np.zeros(count, int)
    for a in coco["annotations"]:
        i = a["image_id"] - 1
        x, y, w, h = a["bbox"]
        boxes[i, filled[i]] = [x, y, x + w, y + h]
        labels[i, filled[i]] = a["category_id"] - 1
        filled[i] += 1
    return boxes, labels


def object_crops(count, crop, seed=77, context=0.25):
    images, coco = synthetic.generate(count, SIZE, seed=seed)
    crops, classes = [], []
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        margin = context * max(w, h)
        x0, y0 = int(max(0, x - margin)), int(max(0, y - margin))
        x1, y1 = int(min(SIZE, x + w + margin + 1)), int(min(SIZE, y + h + margin + 1))
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        crops.append(cv2.resize(images[a["image_id"] - 1][y0:y1, x0:x1], (crop, crop)))
        classes.append(a["category_id"] - 1)
    return np.stack(crops).astype(np.float32), np.array(classes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=("fast", "yolo"), default="fast")
    parser.add_argument("--images", type=int, default=2000, help="detection training images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    parser.add_argument("--pretrain-images", type=int, default=0)
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--cell-local-init", action="store_true")
    parser.add_argument("--equalised", action="store_true")
    args = parser.parse_args(argv)
    start = time.time()
    tf.keras.utils.set_random_seed(0)
    model = (FastYOLO if args.arch == "fast" else YOLOv1).compact(num_classes=len(synthetic.class_names()))
    if args.equalised:
        dense = model.network.pop()
        last_conv = [layer for layer in model.network.layers if isinstance(layer, keras.layers.Conv2D)][-1]
        fan_in = model.grid_size ** 2 * last_conv.filters if model.hidden_units is None else model.hidden_units
        model.network.add(keras.layers.Rescaling(1.0 / np.sqrt(fan_in), name="predictor_scale"))
        model.network.add(keras.layers.Dense(dense.units, name="predictor",
                                             kernel_initializer=keras.initializers.RandomNormal(stddev=1.0)))
    model.build_for_size(SIZE)
    if args.cell_local_init:
        if model.hidden_units is not None:
            parser.error("--cell-local-init needs a predictor on the last map (Fast YOLO)")
        dense = model.network.get_layer("predictor")
        kernel, bias = dense.get_weights()
        cells = model.grid_size ** 2
        channels, per_cell = kernel.shape[0] // cells, kernel.shape[1] // cells
        limit = np.sqrt(6.0 / (channels + per_cell))
        block = np.random.default_rng(0).uniform(-limit, limit, (channels, per_cell)).astype(np.float32)
        kernel = np.zeros_like(kernel)
        for cell in range(cells):
            kernel[cell * channels:(cell + 1) * channels, cell * per_cell:(cell + 1) * per_cell] = block
        dense.set_weights([kernel, bias])
    if args.pretrain_images:
        crops, classes = object_crops(args.pretrain_images, args.crop)
        trunk = [layer for layer in model.network.layers if layer.name.startswith(("preprocessing", "conv", "pool"))]
        classifier = keras.Sequential(trunk + [keras.layers.GlobalAveragePooling2D(),
                                               keras.layers.Dense(len(synthetic.class_names()))])
        classifier.compile(keras.optimizers.AdamW(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           metrics=["accuracy"])
        history = classifier.fit(crops, classes, batch_size=32, epochs=args.pretrain_epochs, verbose=0,
                                 validation_split=0.1).history
        print(f"pre-training on {len(crops)} crops x {args.pretrain_epochs} epochs: accuracy "
              f"{history['accuracy'][-1]:.3f}, held out {history['val_accuracy'][-1]:.3f} ({time.time() - start:.0f} s)",
              flush=True)
    images, coco = synthetic.generate(args.images, SIZE, seed=synthetic.split_seed("train"))
    boxes, labels = padded_targets(coco, args.images)
    val_images, val_coco = synthetic.generate(150, SIZE, seed=synthetic.split_seed("val"))
    steps = args.epochs * (args.images // 8)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(steps - 300, 1), warmup_target=args.lr,
                                                      warmup_steps=300)
    optimizer = (keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=5e-4) if args.optimizer == "sgd"
                 else keras.optimizers.AdamW(schedule, weight_decay=1e-4, global_clipnorm=10.0))
    model.compile(optimizer=optimizer)

    class Score(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            out = model.predict(val_images.astype(np.float32), batch_size=16, verbose=0)
            detections = []
            for i in range(len(val_images)):
                for k in range(int(out["num_detections"][i])):
                    b = out["boxes"][i, k]
                    detections.append({"image_id": i + 1, "category_id": int(out["labels"][i, k]) + 1,
                                       "score": float(out["scores"][i, k]),
                                       "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
            result = coco_evaluate(val_coco, detections)
            terms = ", ".join(f"{k} {v:.2f}" for k, v in logs.items())
            print(f"epoch {epoch + 1}: {terms} | val AP50 {result['AP50']:.3f}, AP {result['AP']:.3f} "
                  f"({time.time() - start:.0f} s)", flush=True)

    model.fit(images.astype(np.float32), {"boxes": boxes, "labels": labels}, batch_size=8, epochs=args.epochs,
              verbose=0, callbacks=[Score()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
