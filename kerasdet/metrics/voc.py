"""PASCAL VOC detection AP: all-point (VOC2010+) and 11-point (VOC2007), with `difficult` objects.

Follows the VOC devkit (`VOCevaldet.m`, `VOCap.m`; Everingham et al., "The PASCAL Visual Object Classes
(VOC) Challenge", IJCV 2010):

- per class, detections are ranked by score (ties: image order, then order within the image);
- a detection is compared with all ground truths of its class in its image and takes the first one with
  the largest IoU (matched or not, difficult or not); with IoU >= `iou_threshold` it is a true positive
  if that ground truth is not difficult and not yet taken, ignored if it is difficult, and a false
  positive (duplicate) if it was taken; otherwise it is a false positive;
- recall = TP / non-difficult ground truths; precision = TP / (TP + FP);
- all-point AP: area under the monotone precision envelope; 11-point AP (`use_07_metric=True`): mean of
  the best precision at recall >= 0, 0.1, ..., 1.

Boxes are continuous `xyxy` pixels (DESIGN.md §3). `legacy_plus_one=True` reproduces the devkit's
pixel-inclusive arithmetic (widths x2 - x1 + 1), which the published VOC numbers use. The matching
threshold test is ">=", as in the MATLAB devkit (the py-faster-rcnn port uses ">"; they differ only for
an IoU exactly at the threshold). A class without non-difficult ground truth has AP -1 and is left out
of the mean.

Example:
    >>> gts = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    >>> dets = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [0]}]
    >>> voc_evaluate(gts, dets)["mAP"]
    1.0
"""

from __future__ import annotations

import numpy as np

from kerasdet.metrics._coco_match import candidate_pairs


def voc_evaluate(
    ground_truths,
    detections,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    legacy_plus_one: bool = False,
    num_classes: int | None = None,
    class_names=None,
) -> dict:
    """Mean average precision with the PASCAL VOC definitions.

    Args:
        ground_truths: per-image list of dicts `{"boxes": [M, 4] xyxy, "labels": [M] int, "difficult": [M]
            bool (optional)}`, or one batched dict of those arrays with a leading image axis, padded with
            label -1 (DESIGN.md §3 targets).
        detections: per-image list of dicts `{"boxes": [N, 4], "scores": [N], "labels": [N]}` in the same
            image order, or one batched dict (predictions of DESIGN.md §3: label -1 padding,
            `num_detections` optional).
        iou_threshold: minimum IoU of a true positive (0.5 in VOC).
        use_07_metric: 11-point interpolated AP (VOC2007) instead of the all-point AP (VOC2010+).
        legacy_plus_one: pixel-inclusive box sizes (x2 - x1 + 1) as the devkit.
        num_classes: number of classes (labels 0..C-1); default: 1 + the largest label seen.
        class_names: optional C names for the per-class table.

    Returns:
        dict with `mAP` (mean over classes with ground truth; -1 if none), `AP` `[C]` (-1 for classes
        without non-difficult ground truth), `per_class` (list of `{"label", "name", "AP", "num_gt",
        "num_detections"}`) and `recall` / `precision` (per class arrays along the ranked detections).

    Raises:
        ValueError / TypeError: malformed inputs, naming the argument and image.
    """
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"`iou_threshold` must be in [0, 1]; got {iou_threshold}")
    g_img, g_box, g_lab, g_diff, n_img = _read(ground_truths, "ground_truths", "difficult")
    d_img, d_box, d_lab, d_score, n_det_img = _read(detections, "detections", "scores")
    if n_img != n_det_img:
        raise ValueError(f"`ground_truths` has {n_img} images but `detections` has {n_det_img}")
    seen = int(max(g_lab.max(initial=-1), d_lab.max(initial=-1))) + 1
    num_classes = seen if num_classes is None else int(num_classes)
    if num_classes < seen:
        raise ValueError(f"`num_classes` is {num_classes} but label {seen - 1} occurs")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"`class_names` has {len(class_names)} names for {num_classes} classes")
    tp, fp, order = _match(g_img, g_box, g_lab, g_diff, d_img, d_box, d_lab, d_score, num_classes,
                           float(iou_threshold), 1.0 if legacy_plus_one else 0.0)
    npos = np.bincount(g_lab[~g_diff], minlength=num_classes)
    lab_sorted = d_lab[order]
    bounds = np.searchsorted(lab_sorted, np.arange(num_classes + 1))
    aps, recalls, precisions, rows = np.full(num_classes, -1.0), [], [], []
    for c in range(num_classes):
        ctp = np.cumsum(tp[bounds[c] : bounds[c + 1]]).astype(np.float64)
        cfp = np.cumsum(fp[bounds[c] : bounds[c + 1]]).astype(np.float64)
        total = ctp + cfp
        prec = np.where(total > 0, ctp / np.where(total > 0, total, 1.0), 0.0)
        rec = ctp / npos[c] if npos[c] else np.zeros_like(ctp)
        if npos[c]:
            aps[c] = voc_ap(rec, prec, use_07_metric)
        recalls.append(rec)
        precisions.append(prec)
        rows.append({"label": c, "name": str(class_names[c]) if class_names is not None else str(c),
                     "AP": float(aps[c]), "num_gt": int(npos[c]), "num_detections": int(bounds[c + 1] - bounds[c])})
    defined = aps[aps > -1]
    return {"mAP": float(defined.mean()) if len(defined) else -1.0, "AP": aps, "per_class": rows,
            "recall": recalls, "precision": precisions}


def voc_ap(recall, precision, use_07_metric: bool = False) -> float:
    """AP from a ranked recall / precision curve (VOCap.m, or the VOC2007 11-point rule).

    Example:
        >>> voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5]))
        0.75
    """
    rec = np.asarray(recall, np.float64).reshape(-1)
    prec = np.asarray(precision, np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"`recall` and `precision` must have one shape; got {rec.shape} and {prec.shape}")
    if use_07_metric:
        ap = 0.0
        for i in range(11):
            above = prec[rec >= i * 0.1]
            ap += (above.max() if len(above) else 0.0) / 11.0
        return float(ap)
    mrec = np.r_[0.0, rec, 1.0]
    mpre = np.maximum.accumulate(np.r_[0.0, prec, 0.0][::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _match(g_img, g_box, g_lab, g_diff, d_img, d_box, d_lab, d_score, num_classes, thr, plus):
    """TP / FP flags of detections in ranked order (by class, then score), and that order."""
    order = np.lexsort((np.arange(len(d_lab)), d_img, -d_score, d_lab))
    g_key = g_img * num_classes + g_lab
    g_order = np.argsort(g_key, kind="stable")
    d_key = (d_img * num_classes + d_lab)[order]
    pd, pg = candidate_pairs(d_key, g_key[g_order])
    a, b = d_box[order][pd], g_box[g_order][pg]
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + plus
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + plus
    union = (a[:, 2] - a[:, 0] + plus) * (a[:, 3] - a[:, 1] + plus) + (b[:, 2] - b[:, 0] + plus) * (
        b[:, 3] - b[:, 1] + plus
    ) - iw * ih
    touch = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ov = np.where(touch, iw * ih / np.where(touch, union, 1.0), -np.inf)
    # best pair per detection: largest overlap, the first ground truth on ties
    best = np.lexsort((pg, -ov, pd))
    first = best[np.r_[True, pd[best][1:] != pd[best][:-1]]] if len(best) else best
    n = len(order)
    ovmax = np.full(n, -np.inf)
    jmax = np.full(n, -1)
    ovmax[pd[first]] = ov[first]
    jmax[pd[first]] = g_order[pg[first]]
    hit = ovmax >= thr
    difficult = hit & np.r_[g_diff, False][jmax]  # jmax -1 reads the padding
    claim = np.flatnonzero(hit & ~difficult)
    # the first (best ranked) claim on a ground truth is the true positive, later ones are duplicates
    _, first_claim = np.unique(jmax[claim], return_index=True)
    tp = np.zeros(n, bool)
    tp[claim[first_claim]] = True
    fp = ~tp & ~difficult
    return tp, fp, order


def _read(data, name: str, extra: str):
    """(image index, boxes [n, 4], labels [n], difficult or scores [n], number of images)."""
    if isinstance(data, dict):
        return _read_batched(data, name, extra)
    if not isinstance(data, (list, tuple)):
        raise TypeError(f"`{name}` must be a list of per-image dicts or one batched dict; got {type(data).__name__}")
    imgs, boxes, labels, extras = [], [], [], []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise TypeError(f"`{name}[{i}]` must be a dict; got {type(item).__name__}")
        for key in ("boxes", "labels") + (("scores",) if extra == "scores" else ()):
            if key not in item:
                raise ValueError(f"`{name}[{i}]` needs {key!r}; it has {sorted(item)}")
        b = np.asarray(item["boxes"], np.float64)
        lab = np.asarray(item["labels"])
        if b.size == 0:
            b = b.reshape(0, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"`{name}[{i}]['boxes']` must have shape [N, 4] (x1, y1, x2, y2); got {b.shape}")
        lab = lab.reshape(-1) if lab.size else np.zeros(0, np.int64)
        if lab.dtype.kind not in "iu" and not (lab.dtype.kind == "f" and np.all(lab == np.round(lab))):
            raise TypeError(f"`{name}[{i}]['labels']` must be integers; got dtype {lab.dtype}")
        if len(lab) != len(b):
            raise ValueError(f"`{name}[{i}]` has {len(b)} boxes but {len(lab)} labels")
        if extra == "scores":
            e = np.asarray(item["scores"], np.float64).reshape(-1)
        else:
            e = np.asarray(item.get("difficult", np.zeros(len(b), bool))).astype(bool).reshape(-1)
        if len(e) != len(b):
            raise ValueError(f"`{name}[{i}]` has {len(b)} boxes but {len(e)} {extra}")
        if len(lab) and lab.min() < -1:
            raise ValueError(f"`{name}[{i}]['labels']` must be >= -1 (-1: padding); got {lab.min()}")
        keep = lab >= 0
        imgs.append(np.full(int(keep.sum()), i, np.int64))
        boxes.append(b[keep])
        labels.append(lab[keep].astype(np.int64))
        extras.append(e[keep])
    return _finish(imgs, boxes, labels, extras, len(data), name, extra)


def _read_batched(data: dict, name: str, extra: str):
    for key in ("boxes", "labels") + (("scores",) if extra == "scores" else ()):
        if key not in data:
            raise ValueError(f"`{name}` needs {key!r}; it has {sorted(data)}")
    b = np.asarray(data["boxes"], np.float64)
    lab = np.asarray(data["labels"])
    if b.ndim != 3 or b.shape[-1] != 4:
        raise ValueError(f"`{name}['boxes']` must have shape [B, N, 4]; got {b.shape}")
    if lab.shape != b.shape[:2]:
        raise ValueError(f"`{name}['labels']` must have shape {b.shape[:2]}; got {lab.shape}")
    if extra == "scores":
        e = np.asarray(data["scores"], np.float64)
    else:
        e = np.asarray(data.get("difficult", np.zeros(lab.shape, bool))).astype(bool)
    if e.shape != lab.shape:
        raise ValueError(f"`{name}[{extra!r}]` must have shape {lab.shape}; got {e.shape}")
    if lab.size and lab.min() < -1:
        raise ValueError(f"`{name}['labels']` must be >= -1 (-1: padding); got {lab.min()}")
    keep = lab >= 0
    if "num_detections" in data:
        nd = np.asarray(data["num_detections"]).reshape(-1)
        if len(nd) != b.shape[0]:
            raise ValueError(f"`{name}['num_detections']` must have shape [{b.shape[0]}]; got {nd.shape}")
        keep &= np.arange(b.shape[1])[None, :] < nd[:, None]
    img = np.broadcast_to(np.arange(b.shape[0])[:, None], lab.shape)
    return _finish([img[keep]], [b[keep]], [lab[keep].astype(np.int64)], [e[keep]], b.shape[0], name, extra)


def _finish(imgs, boxes, labels, extras, n, name, extra):
    img = np.concatenate(imgs) if imgs else np.zeros(0, np.int64)
    box = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    lab = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    e = np.concatenate(extras) if extras else np.zeros(0, bool if extra == "difficult" else np.float64)
    if not np.isfinite(box).all():
        raise ValueError(f"`{name}` boxes must be finite")
    if extra == "scores" and not np.isfinite(e).all():
        raise ValueError(f"`{name}` scores must be finite")
    return img.astype(np.int64), box, lab, e, n
