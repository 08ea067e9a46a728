"""Reading COCO ground truth and results into flat numpy arrays, with the COCO API's conventions.

The rules follow `pycocotools` (`COCO.loadRes` and `COCOeval._prepare`) so that the numbers agree:

- Images are those listed in `gt["images"]`, categories those in `gt["categories"]`, both sorted by id;
  ground-truth annotations of other images or categories are not evaluated.
- A ground truth is ignored when it is a crowd (`iscrowd`), and for keypoints also when it has no
  labelled keypoint (`num_keypoints == 0`); its `area` field (not its box) decides its area range.
- What a result's `area` is depends on the first result, as in `loadRes`: when it has a non-empty
  `bbox`, every result's area is its box `w * h` (also for `segm`), otherwise when it has a
  `segmentation`, the mask area, otherwise the extent of its keypoints.

Unlike `pycocotools`, inputs are never modified, missing optional fields get defaults (`iscrowd` 0,
`area` the box area, `id` 1-based positions) and mistakes raise `ValueError`/`TypeError` naming the entry.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from kerasdet.metrics import _rle

# COCO person keypoint sigmas (pycocotools' `Params.kpt_oks_sigmas`)
COCO_PERSON_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0

IOU_TYPES = ("bbox", "segm", "keypoints")


@dataclasses.dataclass
class Dataset:
    """Images and categories of a ground-truth dict, sorted by id."""

    image_ids: list
    heights: np.ndarray
    widths: np.ndarray
    category_ids: list
    category_names: list
    categories: list  # the category dicts, in category_ids order


@dataclasses.dataclass
class Instances:
    """Ground truths or detections as flat arrays (one row per instance)."""

    image: np.ndarray  # image index into Dataset.image_ids
    category: np.ndarray  # category index into Dataset.category_ids
    box: np.ndarray  # [n, 4] xywh
    area: np.ndarray
    score: np.ndarray | None = None  # detections
    crowd: np.ndarray | None = None  # ground truth
    ignore: np.ndarray | None = None  # ground truth
    id_is_zero: np.ndarray | None = None  # ground truth whose id is 0 (pycocotools counts its matches as misses)
    runs: _rle.Runs | None = None  # segm
    keypoints: np.ndarray | None = None  # [n, K, 3] keypoints, K the largest of the categories (NaN padded)

    def __len__(self) -> int:
        return len(self.image)

    def take(self, keep: np.ndarray) -> "Instances":
        """The instances where `keep` is true (not for masks)."""
        if self.runs is not None:
            raise ValueError("Instances with masks cannot be subset")
        pick = lambda v: None if v is None else v[keep]  # noqa: E731
        return Instances(
            self.image[keep], self.category[keep], self.box[keep], self.area[keep], score=pick(self.score),
            crowd=pick(self.crowd), ignore=pick(self.ignore), id_is_zero=pick(self.id_is_zero),
            keypoints=pick(self.keypoints),
        )


def _require_list(value, name: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"`{name}` must be a list of dicts; got {type(value).__name__}")
    return list(value)


def _field(items: Sequence[dict], key: str, name: str, default: Any = KeyError) -> list:
    """`[item[key] for item in items]`, with an error naming the first item that lacks it."""
    try:
        if default is KeyError:
            return [item[key] for item in items]
        return [item.get(key, default) for item in items]
    except (KeyError, TypeError, AttributeError):
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise TypeError(f"`{name}[{i}]` must be a dict; got {type(item).__name__}") from None
            if key not in item:
                raise ValueError(f"`{name}[{i}]` has no {key!r} field") from None
        raise


def _numbers(values, name: str, key: str) -> np.ndarray:
    try:
        arr = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1:
        for i, v in enumerate(values):
            if not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"`{name}[{i}][{key!r}]` must be a number; got {type(v).__name__}")
        raise TypeError(f"`{name}[*][{key!r}]` must be numbers")
    if not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"`{name}[{i}][{key!r}]` must be finite; got {values[i]}")
    return arr


def _boxes(values: list, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != 4:
        for i, v in enumerate(values):
            if np.shape(v) != (4,):
                raise ValueError(f"`{name}[{i}]['bbox']` must be [x, y, w, h]; got {v!r}")
        raise ValueError(f"`{name}[*]['bbox']` must be [x, y, w, h] lists")
    if not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"`{name}[{i}]['bbox']` must be finite; got {values[i]}")
    return arr.reshape(-1, 4)


def _lookup(ids: list, table: list, name: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `ids` in the sorted id list `table`: (index, found)."""
    try:
        arr = np.asarray(ids)
        tab = np.asarray(table)
        if arr.dtype.kind in "iu" and tab.dtype.kind in "iu" and arr.ndim == 1:
            pos = np.searchsorted(tab, arr) if len(tab) else np.zeros(len(arr), np.int64)
            pos = np.minimum(pos, max(len(tab) - 1, 0))
            found = tab[pos] == arr if len(tab) else np.zeros(len(arr), bool)
            return pos.astype(np.int64), found
    except (TypeError, ValueError):
        pass
    index = {v: i for i, v in enumerate(table)}
    try:
        pos = np.fromiter((index.get(v, -1) for v in ids), np.int64, len(ids))
    except TypeError:
        i = next(i for i, v in enumerate(ids) if not isinstance(v, (int, str, np.integer)))
        raise TypeError(f"`{name}[{i}][{key!r}]` must be an int or str id; got {type(ids[i]).__name__}") from None
    return np.maximum(pos, 0), pos >= 0


def _sorted_unique_ids(ids: list, name: str) -> list:
    try:
        out = sorted(set(ids))
    except TypeError:
        raise TypeError(f"`{name}` ids must all be ints or all be strs") from None
    if len(out) != len(ids):
        seen, dup = set(), None
        for v in ids:
            if v in seen:
                dup = v
                break
            seen.add(v)
        raise ValueError(f"`{name}` has the id {dup!r} more than once")
    return out


def read_dataset(gt: dict, iou_type: str) -> Dataset:
    """Images and categories of a COCO ground-truth dict."""
    if not isinstance(gt, dict):
        raise TypeError(f"`gt` must be a COCO ground-truth dict; got {type(gt).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise ValueError(f"`gt` must have an {key!r} list; it has keys {sorted(gt)}")
    images = _require_list(gt["images"], "gt['images']")
    cats = _require_list(gt["categories"], "gt['categories']")
    image_ids = _sorted_unique_ids(_field(images, "id", "gt['images']"), "gt['images']")
    by_id = {img["id"]: img for img in images}
    heights = np.zeros(len(image_ids), np.int64)
    widths = np.zeros(len(image_ids), np.int64)
    if iou_type == "segm":
        for i, img_id in enumerate(image_ids):
            img = by_id[img_id]
            if "height" not in img or "width" not in img:
                raise ValueError(f"gt image {img_id!r} needs `height` and `width` for iou_type='segm'")
            heights[i], widths[i] = int(img["height"]), int(img["width"])
    cat_ids = _sorted_unique_ids(_field(cats, "id", "gt['categories']"), "gt['categories']")
    cat_by_id = {c["id"]: c for c in cats}
    names = [str(cat_by_id[c].get("name", c)) for c in cat_ids]
    return Dataset(image_ids, heights, widths, cat_ids, names, [cat_by_id[c] for c in cat_ids])


def read_keypoints(values: list, k_of: np.ndarray, k_max: int, name: str) -> np.ndarray:
    """[n, k_max, 3] keypoints (NaN beyond each instance's category size), checking each length."""
    out = np.full((len(values), k_max, 3), np.nan)
    for i, v in enumerate(values):
        arr = np.asarray(v if v is not None else [], np.float64).reshape(-1)
        if k_of[i] == 0 and len(arr):
            raise ValueError(
                f"`{name}[{i}]` has keypoints but its category has no keypoint count or OKS sigmas: pass "
                "`kpt_oks_sigmas` or give the category a `kpt_oks_sigmas` field"
            )
        if len(arr) != 3 * k_of[i]:
            raise ValueError(
                f"`{name}[{i}]['keypoints']` must hold 3 * {k_of[i]} numbers (x, y, v per keypoint of its "
                f"category); got {len(arr)}"
            )
        out[i, : k_of[i]] = arr.reshape(-1, 3)
    return out


def read_ground_truth(gt: dict, ds: Dataset, iou_type: str) -> tuple[Instances, list]:
    """Ground-truth annotations of the evaluated images and categories, in file order.

    Returns:
        (instances, the annotation dicts kept, in the same order)
    """
    anns = _require_list(gt["annotations"], "gt['annotations']")
    name = "gt['annotations']"
    if anns:
        ids = _field(anns, "id", name, default=None)
        if any(v is None for v in ids):
            ids = list(range(1, len(anns) + 1))
        else:
            _sorted_unique_ids(ids, name)
        img, img_ok = _lookup(_field(anns, "image_id", name), ds.image_ids, name, "image_id")
        cat, cat_ok = _lookup(_field(anns, "category_id", name), ds.category_ids, name, "category_id")
        keep = np.flatnonzero(img_ok & cat_ok)
    else:
        ids, keep = [], np.zeros(0, np.int64)
        img = cat = np.zeros(0, np.int64)
    anns = [anns[i] for i in keep]
    ids = [ids[i] for i in keep]
    img, cat = img[keep], cat[keep]
    box = _boxes(_field(anns, "bbox", name), name) if anns else np.zeros((0, 4))
    area_field = _field(anns, "area", name, default=None)
    area = np.array([box[i, 2] * box[i, 3] if a is None else a for i, a in enumerate(area_field)], np.float64)
    crowd = np.array([bool(c) for c in _field(anns, "iscrowd", name, default=0)], bool)
    id_zero = np.array([v == 0 for v in ids], bool)
    inst = Instances(img, cat, box, area, crowd=crowd, ignore=crowd.copy(), id_is_zero=id_zero)
    if iou_type == "segm":
        segs = _field(anns, "segmentation", name, default=None)
        missing = [i for i, s in enumerate(segs) if s is None]
        if missing:
            raise ValueError(f"gt annotation {ids[missing[0]]!r} has no `segmentation` (needed for iou_type='segm')")
        inst.runs = _rle.runs_from_segmentations(segs, ds.heights[img], ds.widths[img], "gt segmentation")
    return inst, anns


def result_mode(dets: list) -> str:
    """Which field decides a result's area: 'bbox', 'segmentation' or 'keypoints' (pycocotools' loadRes)."""
    first = dets[0]
    if not isinstance(first, dict):
        raise TypeError(f"`detections[0]` must be a dict; got {type(first).__name__}")
    if "bbox" in first and not (isinstance(first["bbox"], list) and first["bbox"] == []):
        return "bbox"
    if "segmentation" in first:
        return "segmentation"
    if "keypoints" in first:
        return "keypoints"
    raise ValueError("`detections[0]` needs a 'bbox', 'segmentation' or 'keypoints' field")


class _Columns:
    """Uniform access to detections given as a list of dicts or as a dict of columns."""

    def __init__(self, dets):
        self.columnar = isinstance(dets, dict)
        if self.columnar:
            for key in ("image_id", "category_id", "score"):
                if key not in dets:
                    raise ValueError(f"`detections` given as a dict of columns needs {key!r}; it has {sorted(dets)}")
            self.n = len(dets["image_id"])
            for key, col in dets.items():
                if len(col) != self.n:
                    raise ValueError(f"`detections[{key!r}]` has {len(col)} rows but 'image_id' has {self.n}")
            self.mode = next((m for m in ("bbox", "segmentation", "keypoints") if m in dets), None)
            if self.mode is None:
                raise ValueError("`detections` needs a 'bbox', 'segmentation' or 'keypoints' column")
        else:
            dets = _require_list(dets, "detections")
            self.n = len(dets)
            self.mode = result_mode(dets) if dets else "bbox"
        self.dets = dets

    def required(self, key: str) -> list:
        if self.columnar:
            if key not in self.dets:
                raise ValueError(f"`detections` needs a {key!r} column; it has {sorted(self.dets)}")
            return self.dets[key]
        return _field(self.dets, key, "detections")

    def optional(self, key: str) -> list:
        if self.columnar:
            return list(self.dets[key]) if key in self.dets else [None] * self.n
        return [d.get(key) for d in self.dets]


def _box_polygon(box: np.ndarray) -> list:
    x, y, w, h = (float(v) for v in box)
    return [[x, y, x, y + h, x + w, y + h, x + w, y]]


def read_detections(dets, ds: Dataset, iou_type: str, k_of_category: np.ndarray) -> Instances:
    """Results of the detector: a list of COCO result dicts, or a dict of columns (see `coco_evaluate`)."""
    cols = _Columns(dets)
    n, name = cols.n, "detections"
    k_max = int(k_of_category.max()) if len(k_of_category) else 0
    if n == 0:
        z = np.zeros(0, np.int64)
        inst = Instances(z, z.copy(), np.zeros((0, 4)), np.zeros(0), score=np.zeros(0))
        inst.runs = _rle.empty_runs([], []) if iou_type == "segm" else None
        inst.keypoints = np.zeros((0, k_max, 3)) if iou_type == "keypoints" else None
        return inst
    img_ids = cols.required("image_id")
    img, ok = _lookup(img_ids, ds.image_ids, name, "image_id")
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise ValueError(f"`{name}[{i}]` is for image_id {img_ids[i]!r}, which is not in gt['images']")
    cat_ids = cols.required("category_id")
    cat, ok = _lookup(cat_ids, ds.category_ids, name, "category_id")
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        shown = ds.category_ids[:10] + (["..."] if len(ds.category_ids) > 10 else [])
        raise ValueError(f"`{name}[{i}]` has category_id {cat_ids[i]!r}, which is not in gt['categories'] {shown}")
    inst = Instances(img, cat, np.zeros((n, 4)), np.zeros(n), score=_numbers(cols.required("score"), name, "score"))
    if cols.mode == "bbox":
        inst.box = _boxes(cols.required("bbox"), name)
        inst.area = inst.box[:, 2] * inst.box[:, 3]
    if iou_type == "segm" or cols.mode == "segmentation":
        _read_masks(inst, cols, ds, iou_type)
    if iou_type == "keypoints":
        inst.keypoints = read_keypoints(cols.required("keypoints"), k_of_category[cat], k_max, name)
    if cols.mode == "keypoints":  # loadRes: box and area from the extent of all keypoints
        if inst.keypoints is not None:
            xs, ys = inst.keypoints[..., 0], inst.keypoints[..., 1]
            x0, x1, y0, y1 = np.nanmin(xs, 1), np.nanmax(xs, 1), np.nanmin(ys, 1), np.nanmax(ys, 1)
        else:
            flat = [np.asarray(v, np.float64).reshape(-1) for v in cols.required("keypoints")]
            x0, x1 = np.array([v[0::3].min() for v in flat]), np.array([v[0::3].max() for v in flat])
            y0, y1 = np.array([v[1::3].min() for v in flat]), np.array([v[1::3].max() for v in flat])
        inst.area = (x1 - x0) * (y1 - y0)
        inst.box = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    return inst


def _read_masks(inst: Instances, cols: _Columns, ds: Dataset, iou_type: str) -> None:
    """Masks of the detections (`segm`), or only their areas and boxes when the first result has no box."""
    name = "detections"
    if cols.mode == "bbox":  # loadRes gives a result without a mask its box as a polygon
        segs = [s if s is not None else _box_polygon(inst.box[i]) for i, s in enumerate(cols.optional("segmentation"))]
    else:
        segs = list(cols.required("segmentation"))
    if iou_type == "segm":
        heights, widths = ds.heights[inst.image], ds.widths[inst.image]
    else:  # only the area is needed: masks are RLEs of their own size
        sizes = [_rle.size_of(s, f"`{name}[{i}]['segmentation']`") for i, s in enumerate(segs)]
        heights, widths = np.array(sizes, np.int64).reshape(-1, 2).T
    runs = _rle.runs_from_segmentations(segs, heights, widths, f"{name} segmentation")
    if cols.mode == "segmentation":
        inst.area = _rle.runs_area(runs).astype(np.float64)
        boxes = _rle.runs_bbox(runs)
        for i, b in enumerate(cols.optional("bbox")):
            if b is not None:
                boxes[i] = np.asarray(b, np.float64).reshape(4)
        inst.box = boxes
    if iou_type == "segm":
        inst.runs = runs


def keypoint_sigmas(ds: Dataset, gt_anns: list, gt: Instances, kpt_oks_sigmas) -> tuple[np.ndarray, np.ndarray]:
    """Per-category OKS sigmas: ([K_categories, k_max] NaN padded, keypoints per category).

    Sigmas come from `kpt_oks_sigmas` (one array for all categories or a dict by category id), else a
    category's own `kpt_oks_sigmas` field, else the COCO person sigmas for a 17-keypoint category.
    """
    n_cat = len(ds.category_ids)
    counts = np.full(n_cat, -1, np.int64)
    for i, ann in enumerate(gt_anns):
        kp = ann.get("keypoints")
        k = 0 if kp is None else len(kp) // 3
        c = gt.category[i]
        if kp is not None and len(kp) % 3:
            raise ValueError(f"gt annotation {ann.get('id')!r}: `keypoints` length {len(kp)} is not a multiple of 3")
        if kp is not None:
            if counts[c] >= 0 and counts[c] != k:
                raise ValueError(
                    f"gt annotations of category {ds.category_ids[c]!r} have {counts[c]} and {k} keypoints; "
                    "one category has one keypoint count"
                )
            counts[c] = k
    sig = {}
    for c, cid in enumerate(ds.category_ids):
        s = None
        if isinstance(kpt_oks_sigmas, dict):
            s = kpt_oks_sigmas.get(cid)
        elif kpt_oks_sigmas is not None:
            s = kpt_oks_sigmas
        if s is None:
            s = ds.categories[c].get("kpt_oks_sigmas")
        if s is None:
            names = ds.categories[c].get("keypoints")
            k = counts[c] if counts[c] >= 0 else (len(names) if names is not None else -1)
            if k == 17:
                s = COCO_PERSON_SIGMAS
        if s is not None:
            s = np.asarray(s, np.float64).reshape(-1)
            if counts[c] >= 0 and len(s) != counts[c]:
                raise ValueError(
                    f"`kpt_oks_sigmas` for category {cid!r} has {len(s)} values but its annotations have "
                    f"{counts[c]} keypoints"
                )
            if (s <= 0).any() or not np.isfinite(s).all():
                raise ValueError(f"`kpt_oks_sigmas` for category {cid!r} must be positive; got {s}")
            sig[c] = s
    k_of = np.array([len(sig[c]) if c in sig else max(counts[c], 0) for c in range(n_cat)], np.int64)
    k_max = int(k_of.max()) if n_cat else 0
    table = np.full((n_cat, k_max), np.nan)
    for c, s in sig.items():
        table[c, : len(s)] = s
    return table, k_of
