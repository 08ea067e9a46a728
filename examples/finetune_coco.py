"""Fine-tune a zoo model on your own COCO-format folder (other classes), and compare with training from scratch.

    .venv/bin/python examples/finetune_coco.py --make-demo-data data/shapes3      # a 200-image COCO folder
    .venv/bin/python examples/finetune_coco.py --annotations data/shapes3/annotations.json --epochs 4

The class head of the zoo model is rebuilt for the folder's classes (`kerasdet.zoo.load(name,
num_classes=K)`); everything else starts from the trained weights. The same budget (epochs, batch,
learning rate) trains a model of the same architecture from random initialisation; both are scored with
COCO AP on the held-out images. The demo data relabels the embedded shapes into three coarser classes
(round, convex polygon, concave polygon) on images from a seed the zoo model never saw.
"""

from __future__ import annotations

import argparse
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasdet  # noqa: E402
from kerasdet.data import CocoDataset, prepare, synthetic, write_coco  # noqa: E402

SUPERCLASSES = ("round", "convex_polygon", "concave_polygon")


def demo_samples(num_images=200, image_size=256, seed=4004):
    """`num_images` synthetic (image, targets) samples relabelled into SUPERCLASSES."""
    names, parents = synthetic.hierarchy()
    to_super = []
    for name in synthetic.class_names():
        node = names.index(name)
        while names[node] not in SUPERCLASSES:
            node = parents[node]
        to_super.append(SUPERCLASSES.index(names[node]))
    to_super = np.asarray(to_super, np.int32)
    samples = []
    for i in range(num_images):
        image, targets = synthetic.render(i, image_size=image_size, seed=seed)
        samples.append((image, {"boxes": targets["boxes"], "labels": to_super[targets["labels"]]}))
    return samples


def make_demo_voc(folder, num_images=200, image_size=256, seed=4004, val_fraction=0.25):
    """The demo samples as a Pascal VOC folder with `train` and `val` image sets; returns the folder."""
    from kerasdet.data import write_voc

    samples = demo_samples(num_images, image_size, seed)
    n_val = max(1, int(round(num_images * val_fraction)))
    ids = [f"{i + 1:06d}" for i in range(num_images)]
    write_voc(samples[n_val:], str(folder), list(SUPERCLASSES), split="train", image_ids=ids[n_val:])
    write_voc(samples[:n_val], str(folder), list(SUPERCLASSES), split="val", image_ids=ids[:n_val])
    return pathlib.Path(folder)


def make_demo_data(folder, num_images=200, image_size=256, seed=4004):
    """Writes `num_images` synthetic images relabelled into SUPERCLASSES as a COCO folder; returns the json path."""
    samples = demo_samples(num_images, image_size, seed)
    folder = pathlib.Path(folder)
    path = folder / "annotations.json"
    write_coco(samples, str(path), list(SUPERCLASSES), image_dir=str(folder / "images"))
    return path


def _split(reader, val_fraction):
    ds = reader.dataset()
    n = sum(1 for _ in ds)
    n_val = max(1, int(round(n * val_fraction)))
    return ds.skip(n_val), ds.take(n_val), n - n_val, n_val


def _evaluate(model, val, image_size, class_names):
    from kerasdet.metrics import coco_evaluate

    gt = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]}
    results = []
    for i, (x, y) in enumerate(prepare(val, 1, image_size)):
        det = model.predict_on_batch(x)
        gt["images"].append({"id": i + 1, "height": image_size, "width": image_size})
        for b, l in zip(np.asarray(y["boxes"][0]), np.asarray(y["labels"][0])):
            if l < 0:
                continue
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": int(l) + 1,
                                      "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h, "iscrowd": 0})
        k = int(det["num_detections"][0])
        for b, s, l in zip(det["boxes"][0][:k], det["scores"][0][:k], det["labels"][0][:k]):
            results.append({"image_id": i + 1, "category_id": int(l) + 1, "score": float(s),
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    return coco_evaluate(gt, results)


def finetune(annotations, image_root=None, from_zoo="retinanet_resnet18_shapes", epochs=4, batch_size=8,
             learning_rate=5e-4, val_fraction=0.25, seed=0, verbose=2):
    """Trains on a COCO folder starting from `from_zoo` (or from scratch when None); returns COCO stats on held-out images."""
    keras.utils.set_random_seed(seed)
    reader = CocoDataset(annotations, image_root or str(pathlib.Path(annotations).parent / "images"),
                         with_masks=False, with_keypoints=False)
    class_names = list(reader.class_names)
    name = from_zoo or "retinanet_resnet18_shapes"
    image_size = kerasdet.zoo.card(name)["image_size"]
    train, val, n_train, n_val = _split(reader, val_fraction)
    model = kerasdet.zoo.load(name, weights="default" if from_zoo else None, num_classes=len(class_names))
    model.class_names = class_names
    augmenter = kerasdet.data.DetectionAugmenter(scale_range=(0.75, 1.25), output_size=image_size, seed=seed)
    batches = prepare(train.cache(), batch_size, image_size, augmenter=augmenter, shuffle_buffer=n_train,
                      drop_remainder=True, seed=seed)
    model.compile(learning_rate=learning_rate)
    model.fit(batches, epochs=epochs, verbose=verbose)
    return _evaluate(model, val, image_size, class_names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-demo-data", metavar="FOLDER", help="write the 200-image demo COCO folder and stop")
    parser.add_argument("--annotations", help="COCO json of the folder to fine-tune on")
    parser.add_argument("--images", help="image folder (default: images/ beside the json)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if args.make_demo_data:
        print(f"wrote {make_demo_data(args.make_demo_data)}")
        return 0
    if not args.annotations:
        parser.error("give --annotations (or --make-demo-data FOLDER first)")
    tuned = finetune(args.annotations, args.images, epochs=args.epochs, batch_size=args.batch_size)
    scratch = finetune(args.annotations, args.images, from_zoo=None, epochs=args.epochs, batch_size=args.batch_size)
    print(f"fine-tuned from the zoo: AP50 {tuned['AP50']:.3f}  AP {tuned['AP']:.3f}")
    print(f"from scratch (same budget): AP50 {scratch['AP50']:.3f}  AP {scratch['AP']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
