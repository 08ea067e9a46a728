"""COCO bbox evaluation: kerasdet.metrics.coco_evaluate against pycocotools and faster-coco-eval.

All three evaluate the same random set in one process (default 5,000 images x 100 detections, 80
classes, about 7 ground truths per image, 30% of the detections jittered copies of ground truths) and
must agree on the 12 numbers. Timed work:

- ours: `coco_evaluate(gt_dict, results_list)`, everything from the Python dicts on (parsing included);
- pycocotools: `COCOeval(...)` + `evaluate()` + `accumulate()` + `summarize()`; building the COCO
  objects and `loadRes` are done once outside the timing (so the peer is favoured);
- faster-coco-eval: the same calls on its `COCOeval_faster` (one IoU worker thread).

Usage (the full run takes about 10 minutes, nearly all of it pycocotools):
    python benchmarks/coco_eval.py                 # 5,000 images, 3 rounds, writes benchmarks/RESULTS.md
    python benchmarks/coco_eval.py --images 300    # a quick check (does not write RESULTS.md unless --write)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.timing import write_section as write_results_section, Case, compare, machine_description, markdown_table  # noqa: E402
from kerasdet.metrics.coco import DETECTION_STATS, coco_evaluate  # noqa: E402

START, END = "<!-- coco_eval:start -->", "<!-- coco_eval:end -->"
RESULTS = pathlib.Path(__file__).resolve().parent / "RESULTS.md"


def _xywh(rng, count: int, width: int, height: int) -> np.ndarray:
    """`count` random xywh boxes inside a `width x height` image, sides log-uniform from 4 px to 0.9 of its short side."""
    size = np.exp(rng.uniform(np.log(4), np.log(0.9 * min(width, height)), (count, 2)))
    xy = rng.uniform(0, 1, (count, 2)) * (np.array([width, height]) - size)
    return np.concatenate([xy, size], axis=1)


def make_set(num_images: int, dets_per_image: int = 100, num_classes: int = 80, seed: int = 0):
    """A COCO ground-truth dict and results list, like a detector's output on COCO val."""
    rng = np.random.default_rng(seed)
    cat_ids = np.sort(rng.choice(np.arange(1, 91), num_classes, replace=False)).tolist()
    images, anns, dets = [], [], []
    ann_id = 1
    for img_id in range(1, num_images + 1):
        width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": img_id, "width": width, "height": height})
        n = int(rng.poisson(7))
        boxes = _xywh(rng, n, width, height).round(2)
        cats = rng.integers(0, num_classes, n)
        crowd = rng.random(n) < 0.01
        for b, c, cr in zip(boxes, cats, crowd):
            anns.append({"id": ann_id, "image_id": img_id, "category_id": cat_ids[c], "bbox": b.tolist(),
                         "area": float(b[2] * b[3] * rng.uniform(0.5, 1.0)), "iscrowd": int(cr)})
            ann_id += 1
        near = min(n * 4, int(0.3 * dets_per_image))
        src = rng.integers(0, max(n, 1), near)
        d_boxes = boxes[src] + rng.normal(0, 0.1, (near, 4)) * np.tile(boxes[src, 2:], 2)
        d_cats = np.where(rng.random(near) < 0.8, cats[src], rng.integers(0, num_classes, near))
        rest = dets_per_image - near
        d_boxes = np.concatenate([d_boxes, _xywh(rng, rest, width, height)]).round(2)
        d_boxes[:, 2:] = np.maximum(d_boxes[:, 2:], 1.0)
        d_cats = np.concatenate([d_cats, rng.integers(0, num_classes, rest)])
        scores = rng.random(dets_per_image).round(4)
        for b, c, s in zip(d_boxes, d_cats, scores):
            dets.append({"image_id": img_id, "category_id": cat_ids[c], "bbox": b.tolist(), "score": float(s)})
    cats = [{"id": c, "name": f"class_{c}"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def _quiet(fn):
    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            return fn()

    return run


def _stats_run(make_eval):
    """A quiet callable: `make_eval()`, then evaluate + accumulate + summarize; returns the 12 stats."""

    def run():
        ev = make_eval()
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return np.asarray(ev.stats)

    return _quiet(run)


def pycocotools_case(gt, dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        res = coco.loadRes(copy.deepcopy(dets))

    return _stats_run(lambda: COCOeval(coco, res, "bbox"))


def faster_coco_eval_case(gt, dets):
    import logging

    from faster_coco_eval import COCO, COCOeval_faster

    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    coco = COCO(copy.deepcopy(gt))
    res = coco.loadRes(copy.deepcopy(dets))

    return _stats_run(lambda: COCOeval_faster(coco, res, "bbox", print_function=lambda *a, **k: None,
                                              rle_iou_max_workers=1))


def ours_case(gt, dets):
    def run():
        out = coco_evaluate(gt, dets, "bbox")
        return np.array([out[k] for k in DETECTION_STATS])

    return run


def write_section(text: str, path: pathlib.Path = RESULTS) -> None:
    """Replaces (or appends) the coco_eval section of RESULTS.md, leaving the rest of the file alone."""
    write_results_section(path, START, END, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=0,
                        help="extra warm-up runs (the agreement check already runs each implementation once)")
    parser.add_argument("--no-faster-coco-eval", action="store_true")
    parser.add_argument("--write", action="store_true", help="write RESULTS.md (default only for >= 5000 images)")
    args = parser.parse_args(argv)

    gt, dets = make_set(args.images, args.detections)
    ours, peer = ours_case(gt, dets), pycocotools_case(gt, dets)
    ref = peer()
    got = ours()
    diff = float(np.abs(got - ref).max())
    print(f"{args.images} images, {len(dets)} detections, {len(gt['annotations'])} gt; "
          f"max |ours - pycocotools| = {diff:.2e}")
    if diff > 1e-6:
        print("MISMATCH with pycocotools:", ref, got)
        return 1
    size = f"{args.images} images x {args.detections} dets x 80 classes"
    rows = [compare(Case(f"COCO bbox eval, {size}", ours, peer, "pycocotools", limit=0.2,
                         note="peer: evaluate+accumulate+summarize (COCO objects and loadRes built outside the "
                              "timing); ours: coco_evaluate from the dicts, parsing included"),
                    rounds=args.rounds, warmup=args.warmup)]
    if not args.no_faster_coco_eval:
        fast = faster_coco_eval_case(gt, dets)
        fdiff = float(np.abs(fast() - ref).max())
        print(f"max |faster-coco-eval - pycocotools| = {fdiff:.2e}")
        rows.append(compare(Case(f"COCO bbox eval, {size}", ours, fast, "faster-coco-eval",
                                 note="peer: COCOeval_faster evaluate+accumulate+summarize, 1 IoU worker"),
                            rounds=args.rounds, warmup=args.warmup))
    table = markdown_table(rows)
    print(table)
    if args.write or args.images >= 5000:
        text = (f"## COCO evaluation (`benchmarks/coco_eval.py --images {args.images}`)\n\n"
                f"Machine: {machine_description()}; OMP/MKL threads as set in the environment "
                f"({os.environ.get('OMP_NUM_THREADS', 'unset')}); medians of {args.rounds} interleaved rounds.\n"
                f"All three give the same 12 numbers (max difference to pycocotools {diff:.1e}).\n\n{table}\n")
        write_section(text)
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
