"""COCO detection, instance segmentation and keypoint evaluation (the 12 / 10 COCO summary numbers).

`coco_evaluate` reproduces `pycocotools`' `COCOeval.evaluate()`, `accumulate()` and `summarize()`
(Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014; the definitions of its reference
toolbox): IoU thresholds 0.50:0.05:0.95, 101 recall points, area ranges from each ground truth's `area`
field, crowd regions (a detection's overlap with a crowd is intersection / detection area, and a crowd
can absorb any number of detections), at most `maxDets` detections per image and category, and -1 where
a number is undefined (no ground truth). It is vectorised across images and categories (see
`kerasdet.metrics._coco_match`), so it is much faster than the reference on large sets while giving the
same numbers.

Example:
    >>> gt = {"images": [{"id": 1, "height": 100, "width": 100}],
    ...       "categories": [{"id": 1, "name": "cat"}],
    ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20],
    ...                        "area": 400, "iscrowd": 0}]}
    >>> dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    >>> round(coco_evaluate(gt, dets)["AP"], 6)   # pycocotools' precision tp / (tp + fp + eps): 1 - 2e-16
    1.0
"""

from __future__ import annotations

import numpy as np

from kerasdet.metrics import _coco_data, _coco_match, _rle

DETECTION_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

# pycocotools' Params: linspace avoids arange's drift so that .5 and .75 are found exactly
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_DET_AREAS = {"all": (0**2, 1e5**2), "small": (0**2, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e5**2)}
_KP_AREAS = {"all": (0**2, 1e5**2), "medium": (32**2, 96**2), "large": (96**2, 1e5**2)}

# (name, is AP, IoU threshold or None for the mean, area label, maxDets position)
_DET_SUMMARY = (
    ("AP", True, None, "all", -1), ("AP50", True, 0.5, "all", -1), ("AP75", True, 0.75, "all", -1),
    ("APs", True, None, "small", -1), ("APm", True, None, "medium", -1), ("APl", True, None, "large", -1),
    ("AR1", False, None, "all", 0), ("AR10", False, None, "all", 1), ("AR100", False, None, "all", 2),
    ("ARs", False, None, "small", -1), ("ARm", False, None, "medium", -1), ("ARl", False, None, "large", -1),
)
_KP_SUMMARY = (
    ("AP", True, None, "all", -1), ("AP50", True, 0.5, "all", -1), ("AP75", True, 0.75, "all", -1),
    ("APm", True, None, "medium", -1), ("APl", True, None, "large", -1),
    ("AR", False, None, "all", -1), ("AR50", False, 0.5, "all", -1), ("AR75", False, 0.75, "all", -1),
    ("ARm", False, None, "medium", -1), ("ARl", False, None, "large", -1),
)


def coco_evaluate(gt: dict, detections, iou_type: str = "bbox", kpt_oks_sigmas=None) -> dict:
    """Evaluates detections against COCO ground truth with the COCO definitions.

    Args:
        gt: COCO ground-truth dict with `images` (`id`; `height`/`width` for "segm"), `categories` (`id`,
            `name`) and `annotations` (`id`, `image_id`, `category_id`, `bbox` `[x, y, w, h]`, `area`,
            `iscrowd`, and `segmentation` (polygons or RLE) for "segm", `keypoints` `[x, y, v] * K` and
            `num_keypoints` for "keypoints"). Missing `iscrowd` reads 0, a missing `area` the box area.
        detections: list of COCO result dicts (`image_id`, `category_id`, `score`, and `bbox` /
            `segmentation` (RLE) / `keypoints`), or, faster for large sets, a dict of equal-length columns
            with the same keys (`bbox` an `[N, 4]` array, `segmentation` a list of RLE dicts, `keypoints`
            `[N, 3K]`). Every `image_id` must be in `gt["images"]` and every `category_id` in
            `gt["categories"]`.
        iou_type: "bbox", "segm" (mask IoU) or "keypoints" (object keypoint similarity).
        kpt_oks_sigmas: for "keypoints", the per-keypoint OKS sigmas: one sequence for every category, or
            a dict `{category_id: sigmas}`. When None, a category's own `kpt_oks_sigmas` field is used,
            else the COCO person sigmas for a 17-keypoint category (what pycocotools always uses).
            Categories without keypoints (no sigmas and no `keypoints` in their annotations) are left
            out of a keypoint evaluation (their numbers are -1).

    Returns:
        dict with the summary numbers as floats (-1 where undefined) - for "bbox"/"segm" `AP, AP50, AP75,
        APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl`; for "keypoints" `AP, AP50, AP75, APm, APl, AR,
        AR50, AR75, ARm, ARl` -, and
        - `per_class`: list of `{"category_id", "name", "AP", "AP50", "AP75", "num_gt"}` (AP over IoU
          0.50:0.95, all areas, the largest maxDets; `num_gt` counts non-crowd ground truths),
        - `precision` `[T, R, K, A, M]` and `recall` `[T, K, A, M]` arrays as `COCOeval.eval`, with
          `iou_thresholds`, `recall_thresholds`, `area_ranges` (labels), `max_dets` and `category_ids`
          naming the axes (used by `kerasdet.metrics.plots`).

    Raises:
        ValueError / TypeError: malformed inputs, naming the offending entry.

    Example:
        >>> stats = coco_evaluate(gt, dets, iou_type="bbox")
        >>> stats["AP50"], stats["per_class"][0]["name"]
    """
    if iou_type not in _coco_data.IOU_TYPES:
        raise ValueError(f"`iou_type` must be one of {_coco_data.IOU_TYPES}; got {iou_type!r}")
    ds = _coco_data.read_dataset(gt, iou_type)
    gts, gt_anns = _coco_data.read_ground_truth(gt, ds, iou_type)
    k_of = np.zeros(len(ds.category_ids), np.int64)
    sigmas = None
    if iou_type == "keypoints":
        sigmas, k_of = _coco_data.keypoint_sigmas(ds, gt_anns, gts, kpt_oks_sigmas)
        _read_gt_keypoints(gts, gt_anns, k_of)
    dts = _coco_data.read_detections(detections, ds, iou_type, k_of)
    if iou_type == "keypoints":  # categories without keypoints are not part of a keypoint evaluation
        gts, dts = gts.take(k_of[gts.category] > 0), dts.take(k_of[dts.category] > 0)
        _check_sigmas(ds, sigmas, gts, dts)
    areas = _KP_AREAS if iou_type == "keypoints" else _DET_AREAS
    max_dets = (20,) if iou_type == "keypoints" else (1, 10, 100)
    precision, recall = _evaluate(gts, dts, len(ds.image_ids), len(ds.category_ids), iou_type, sigmas, areas, max_dets)
    summary = _KP_SUMMARY if iou_type == "keypoints" else _DET_SUMMARY
    out = {name: _summarize(precision, recall, list(areas), max_dets, *spec) for name, *spec in summary}
    out["per_class"] = _per_class(precision, ds, gts)
    out.update(
        precision=precision,
        recall=recall,
        iou_thresholds=IOU_THRESHOLDS.copy(),
        recall_thresholds=RECALL_THRESHOLDS.copy(),
        area_ranges=list(areas),
        max_dets=list(max_dets),
        category_ids=list(ds.category_ids),
    )
    return out


def _read_gt_keypoints(gts: _coco_data.Instances, anns: list, k_of: np.ndarray) -> None:
    """Ground-truth keypoints (zeros when absent) and the keypoint ignore rule (`num_keypoints == 0`)."""
    k_max = int(k_of.max()) if len(k_of) else 0
    values = [a.get("keypoints") if a.get("keypoints") is not None else [0.0] * (3 * k_of[c])
              for a, c in zip(anns, gts.category)]
    gts.keypoints = _coco_data.read_keypoints(values, k_of[gts.category], k_max, "gt['annotations']")
    labelled = np.nansum(gts.keypoints[..., 2] > 0, axis=1) if len(gts) else np.zeros(0)
    num = np.array([a.get("num_keypoints", n) for a, n in zip(anns, labelled)], np.float64)
    gts.ignore = gts.crowd | (num == 0)


def _check_sigmas(ds, sigmas, gts, dts) -> None:
    used = np.union1d(gts.category, dts.category).astype(np.int64)
    missing = [ds.category_ids[c] for c in used if sigmas.shape[1] == 0 or np.isnan(sigmas[c]).all()]
    if missing:
        raise ValueError(
            f"no OKS sigmas for category {missing[0]!r}: pass `kpt_oks_sigmas` (a sequence, or a dict by "
            "category id) or give the category a `kpt_oks_sigmas` field"
        )


def _evaluate(gts, dts, num_images, num_cats, iou_type, sigmas, areas, max_dets):
    """Precision and recall arrays (pycocotools' `eval['precision']`, `eval['recall']`)."""
    gt_group = gts.image * num_cats + gts.category
    gt_order = np.argsort(gt_group, kind="stable")
    dt_group = dts.image * num_cats + dts.category
    dt_order, dt_rank = _coco_match.rank_detections(dt_group, dts.score, max(max_dets))
    pair_dt, pair_gt = _coco_match.candidate_pairs(dt_group[dt_order], gt_group[gt_order])
    sim = _similarity(gts, dts, gt_order[pair_gt], dt_order[pair_dt], iou_type, sigmas)
    bounds = np.array(list(areas.values()), np.float64)  # [A, 2]
    g_area = gts.area[gt_order]
    gt_ignore = gts.ignore[gt_order][None] | (g_area[None] < bounds[:, :1]) | (g_area[None] > bounds[:, 1:])
    candidates, match = _coco_match.greedy_match(
        pair_dt, pair_gt, sim, dt_group[dt_order], gt_ignore, gts.crowd[gt_order], IOU_THRESHOLDS
    )
    d_area = dts.area[dt_order]
    dt_outside = (d_area[None] < bounds[:, :1]) | (d_area[None] > bounds[:, 1:])
    return _coco_match.accumulate(
        candidates,
        match,
        dts.category[dt_order],
        dts.image[dt_order],
        dt_rank,
        dts.score[dt_order],
        dt_outside,
        gts.category[gt_order],
        gt_ignore,
        gts.id_is_zero[gt_order],
        num_cats,
        max_dets,
        RECALL_THRESHOLDS,
    )


def _similarity(gts, dts, gi, di, iou_type, sigmas) -> np.ndarray:
    if iou_type == "bbox":
        return box_iou_pairs(dts.box[di], gts.box[gi], gts.crowd[gi])
    if iou_type == "segm":
        return _rle.pair_iou(dts.runs, gts.runs, di, gi, gts.crowd[gi])
    return oks_pairs(dts.keypoints[di], gts.keypoints[gi], gts.box[gi], gts.area[gi], sigmas[gts.category[gi]])


def box_iou_pairs(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO box IoU of aligned `xywh` pairs (crowd: intersection / detection area), as pycocotools' bbIou."""
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    overlap = (w > 0) & (h > 0)
    inter = w * h
    da, ga = d[:, 2] * d[:, 3], g[:, 2] * g[:, 3]
    union = np.where(crowd, da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def oks_pairs(dk, gk, g_box, g_area, sigmas) -> np.ndarray:
    """Object keypoint similarity of aligned pairs, as pycocotools' `computeOks`.

    Args:
        dk, gk: `[P, K, 3]` detection / ground-truth keypoints (NaN beyond a category's keypoints).
        g_box: `[P, 4]` ground-truth `xywh`; g_area `[P]`; sigmas `[P, K]` (NaN padded).

    When the ground truth has no labelled keypoint, the distance is measured to a box twice the size of
    the ground-truth box, as pycocotools does.
    """
    valid = ~np.isnan(sigmas)
    variances = (np.where(valid, sigmas, 1.0) * 2) ** 2
    vg = np.where(valid, gk[..., 2], 0.0)
    labelled = vg > 0
    k1 = labelled.sum(axis=1)
    x0 = (g_box[:, 0] - g_box[:, 2])[:, None]
    x1 = (g_box[:, 0] + g_box[:, 2] * 2)[:, None]
    y0 = (g_box[:, 1] - g_box[:, 3])[:, None]
    y1 = (g_box[:, 1] + g_box[:, 3] * 2)[:, None]
    xd, yd = dk[..., 0], dk[..., 1]
    near = (k1 > 0)[:, None]
    dx = np.where(near, xd - gk[..., 0], np.maximum(0, x0 - xd) + np.maximum(0, xd - x1))
    dy = np.where(near, yd - gk[..., 1], np.maximum(0, y0 - yd) + np.maximum(0, yd - y1))
    with np.errstate(invalid="ignore"):
        e = (dx**2 + dy**2) / variances / (g_area[:, None] + np.spacing(1)) / 2
    use = np.where(near, labelled, valid)
    total = np.where(use, np.exp(-np.where(use, e, 0.0)), 0.0).sum(axis=1)
    count = use.sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _summarize(precision, recall, area_labels, max_dets, is_ap, iou, area, m) -> float:
    """One summary number: the mean of the defined (> -1) entries, or -1 (pycocotools' `_summarize`)."""
    a = area_labels.index(area)
    m = m % len(max_dets)
    if is_ap:
        s = precision[..., a, m]
        if iou is not None:
            s = s[np.where(IOU_THRESHOLDS == iou)[0]]
    else:
        s = recall[..., a, m]
        if iou is not None:
            s = s[np.where(IOU_THRESHOLDS == iou)[0]]
    s = s[s > -1]
    return float(np.mean(s)) if s.size else -1.0


def _per_class(precision, ds, gts) -> list[dict]:
    num_gt = np.bincount(gts.category[~gts.crowd], minlength=len(ds.category_ids))
    t50 = np.where(IOU_THRESHOLDS == 0.5)[0]
    t75 = np.where(IOU_THRESHOLDS == 0.75)[0]
    rows = []
    for k, (cid, name) in enumerate(zip(ds.category_ids, ds.category_names)):
        p = precision[:, :, k, 0, -1]
        rows.append(
            {
                "category_id": cid,
                "name": name,
                "AP": _mean_defined(p),
                "AP50": _mean_defined(p[t50]),
                "AP75": _mean_defined(p[t75]),
                "num_gt": int(num_gt[k]),
            }
        )
    return rows


def _mean_defined(s: np.ndarray) -> float:
    s = s[s > -1]
    return float(np.mean(s)) if s.size else -1.0


def format_summary(stats: dict) -> str:
    """The summary numbers and the per-class table as text (as `COCOeval.summarize` prints, plus classes).

    Example:
        >>> print(format_summary(coco_evaluate(gt, dets)))
    """
    if not isinstance(stats, dict) or "AP" not in stats:
        raise TypeError("`stats` must be the dict returned by `coco_evaluate`")
    names = KEYPOINT_STATS if "AR50" in stats else DETECTION_STATS
    lines = [f"{n:>6s} = {stats[n]:.3f}" for n in names]
    rows = stats.get("per_class", [])
    if rows:
        width = max(8, max(len(r["name"]) for r in rows))
        lines += ["", f"{'class':<{width}s}  {'AP':>6s}  {'AP50':>6s}  {'AP75':>6s}  {'num_gt':>6s}"]
        lines += [
            f"{r['name']:<{width}s}  {r['AP']:6.3f}  {r['AP50']:6.3f}  {r['AP75']:6.3f}  {r['num_gt']:6d}" for r in rows
        ]
    return "\n".join(lines)
