"""Random COCO-style ground truth / detection sets that stress the evaluation rules, and pycocotools runs.

Each set mixes: crowd regions, tiny and huge boxes, `area` fields away from the box area (and exactly on
the 32^2 / 96^2 borders), images with no objects, categories without ground truth, more than 100
detections on an image (also in a single category), detections on images without ground truth, tied
scores, integer boxes (exact IoU ties), duplicated detections, non-contiguous and unsorted ids.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np

KEYPOINTS = 5  # keypoints per category in the keypoint sets
SIGMAS = np.array([0.26, 0.79, 0.5, 1.07, 0.35]) / 10.0


def _polygon_in_box(rng, box, points=None):
    """A star-shaped polygon inside `box` (xywh)."""
    x, y, w, h = box
    k = points or int(rng.integers(3, 9))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = rng.uniform(0.3, 0.5, k)
    px = x + w / 2 + np.cos(ang) * rad * w
    py = y + h / 2 + np.sin(ang) * rad * h
    return np.stack([px, py], 1).reshape(-1).round(2).tolist()


def _random_box(rng, width, height):
    kind = rng.random()
    if kind < 0.2:  # tiny
        w, h = rng.uniform(0.5, 7, 2)
    elif kind < 0.35:  # huge
        w, h = rng.uniform(0.6, 1.0) * width, rng.uniform(0.6, 1.0) * height
    else:
        w, h = rng.uniform(4, 0.6 * width), rng.uniform(4, 0.6 * height)
    x, y = rng.uniform(-2, width - w + 2), rng.uniform(-2, height - h + 2)
    box = np.array([x, y, w, h])
    if rng.random() < 0.3:  # integer boxes make exact IoU ties
        box = np.maximum(np.round(box), [-2, -2, 1, 1])
    return box


def _crowd_rle(rng, box, height, width):
    """Uncompressed RLE (list counts) of a ragged crowd region, as COCO stores crowd annotations."""
    m = np.zeros((height, width), np.uint8)
    x, y, w, h = box
    x0, y0 = int(max(0, np.floor(x))), int(max(0, np.floor(y)))
    x1, y1 = int(min(width, np.ceil(x + w))), int(min(height, np.ceil(y + h)))
    m[y0:y1, x0:x1] = rng.random((max(y1 - y0, 0), max(x1 - x0, 0))) < 0.7
    flat = m.T.reshape(-1)
    runs = np.diff(np.r_[0, np.flatnonzero(flat[1:] != flat[:-1]) + 1, len(flat)])
    if flat[0]:
        runs = np.r_[0, runs]
    return {"size": [height, width], "counts": runs.tolist()}


def _keypoints_in_box(rng, box, labelled=True):
    x, y, w, h = box
    kp = np.stack([x + rng.uniform(0, 1, KEYPOINTS) * w, y + rng.uniform(0, 1, KEYPOINTS) * h,
                   rng.choice([0, 1, 2], KEYPOINTS, p=[0.25, 0.25, 0.5]) if labelled else np.zeros(KEYPOINTS)], 1)
    kp[kp[:, 2] == 0, :2] = 0
    return kp.reshape(-1).round(2).tolist()


def make_set(seed: int, iou_type: str = "bbox", num_images: int = 16, num_classes: int = 6):
    """A random (gt dict, results list) pair; iou_type decides which fields are filled."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    image_ids = rng.choice(np.arange(1, 10 * num_images), num_images, replace=False).tolist()
    cat_ids = rng.choice(np.arange(1, 5 * num_classes), num_classes, replace=False).tolist()
    used_cats = cat_ids[: max(1, num_classes - 2)]  # the last categories have no ground truth
    images, anns, dets = [], [], []
    next_id = 0 if seed % 4 == 0 else int(rng.integers(1, 5))  # id 0: pycocotools reads its matches as misses
    for img_id in image_ids:
        big = rng.random() < 0.4
        width, height = (int(rng.integers(110, 200)), int(rng.integers(110, 180))) if big else (
            int(rng.integers(24, 100)), int(rng.integers(24, 100)))
        images.append({"id": img_id, "height": height, "width": width, "file_name": f"{img_id}.jpg"})
        n_gt = 0 if rng.random() < 0.2 else int(rng.integers(1, 12))
        img_gts = []
        for _ in range(n_gt):
            box = _random_box(rng, width, height)
            cat = int(rng.choice(used_cats))
            crowd = int(rng.random() < 0.1)
            area = float(box[2] * box[3] * rng.uniform(0.4, 1.0))
            if rng.random() < 0.08:
                area = float(rng.choice([32**2, 96**2]))
            ann = {"id": next_id, "image_id": img_id, "category_id": cat, "bbox": box.round(3).tolist(),
                   "area": area, "iscrowd": crowd}
            next_id += int(rng.integers(1, 3))
            if iou_type == "segm":
                if crowd:
                    ann["segmentation"] = _crowd_rle(rng, box, height, width)
                else:
                    parts = [_polygon_in_box(rng, box)]
                    if rng.random() < 0.2:
                        parts.append(_polygon_in_box(rng, box * [1, 1, 0.5, 0.5]))
                    ann["segmentation"] = parts
            if iou_type == "keypoints":
                ann["keypoints"] = _keypoints_in_box(rng, box, labelled=rng.random() > 0.15)
                ann["num_keypoints"] = int(np.sum(np.asarray(ann["keypoints"][2::3]) > 0))
            img_gts.append(ann)
            anns.append(ann)
        many = rng.random() < 0.15
        n_dt = int(rng.integers(101, 140)) if many else int(rng.integers(0, 25))
        one_class = many and rng.random() < 0.5
        for _ in range(n_dt):
            g = None
            if img_gts and rng.random() < 0.6:
                g = img_gts[int(rng.integers(len(img_gts)))]
                box = np.array(g["bbox"]) + rng.normal(0, 0.08, 4) * np.r_[g["bbox"][2:], g["bbox"][2:]]
                if rng.random() < 0.15:
                    box = np.array(g["bbox"])  # exact copy: IoU 1 and ties
                cat = g["category_id"] if rng.random() < 0.85 else int(rng.choice(cat_ids))
            else:
                box = _random_box(rng, width, height)
                cat = int(rng.choice(cat_ids))
            if one_class:
                cat = used_cats[0]
            box[2:] = np.maximum(box[2:], 0.2)
            score = float(rng.random())
            if rng.random() < 0.3:
                score = round(score, 1)  # ties
            det = {"image_id": img_id, "category_id": cat, "bbox": box.round(3).tolist(), "score": score}
            if iou_type == "segm":
                if g is not None and isinstance(g["segmentation"], list) and rng.random() < 0.8:
                    shift = rng.normal(0, 1.5, 2)
                    polys = [(np.asarray(p).reshape(-1, 2) + shift).reshape(-1).tolist() for p in g["segmentation"]]
                else:
                    polys = [_polygon_in_box(rng, box)]
                m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, height, width)))
                if rng.random() < 0.1:
                    m[:] = 0  # empty mask
                rle = mask_utils.encode(np.asfortranarray(m))
                rle["counts"] = rle["counts"].decode("ascii")
                det["segmentation"] = rle
            if iou_type == "keypoints":
                if img_gts and rng.random() < 0.7:
                    g = img_gts[int(rng.integers(len(img_gts)))]
                    kp = np.asarray(g["keypoints"], float).reshape(-1, 3)
                    kp[:, :2] += rng.normal(0, rng.uniform(0.2, 4), (KEYPOINTS, 2))
                    kp[:, 2] = 1
                    det["keypoints"] = kp.reshape(-1).round(2).tolist()
                    det["category_id"] = g["category_id"] if not one_class else cat
                else:
                    det["keypoints"] = _keypoints_in_box(rng, box)
                del det["bbox"]
            dets.append(det)
    order = rng.permutation(len(images))
    cats = [{"id": c, "name": f"class_{c}", "supercategory": "thing"} for c in cat_ids]
    if iou_type == "keypoints":
        for c in cats:
            c["keypoints"] = [f"k{i}" for i in range(KEYPOINTS)]
    if not dets:  # pycocotools cannot load an empty result list
        dets.append({"image_id": image_ids[0], "category_id": cat_ids[0], "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.5})
        if iou_type == "segm":
            h, w = images[0]["height"], images[0]["width"]
            rle = mask_utils.encode(np.asfortranarray(np.ones((h, w), np.uint8)))
            dets[0]["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        if iou_type == "keypoints":
            dets[0]["keypoints"] = [2.0, 2.0, 1.0] * KEYPOINTS
            del dets[0]["bbox"]
    gt = {"images": [images[i] for i in order], "annotations": anns, "categories": cats}
    return gt, dets


def pycocotools_eval(gt: dict, dets: list, iou_type: str = "bbox", sigmas=None):
    """pycocotools' stats and eval dict (on deep copies: pycocotools modifies its inputs)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        res = coco.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco, res, iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats), ev.eval
