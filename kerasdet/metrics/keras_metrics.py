"""`COCOMetric`: COCO AP/AR accumulated batch by batch during `model.evaluate`.

The COCO numbers need every prediction of the dataset at once, so the metric keeps what each batch brings
(as compact numpy arrays, masks as RLE) and computes the statistics with
`kerasdet.metrics.coco.coco_evaluate` when `result()` is called outside a compiled function (Keras does
that once at the end of `evaluate`). Inside a compiled step, `update_state` hands the tensors to Python
with `tf.py_function`, and `result()` returns the last computed values (-1 before the first computation),
so progress bars show stale numbers while the final logs are exact. The test step must therefore not be
XLA-compiled (`jit_compile=False`), since `tf.py_function` cannot run under XLA.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kerasdet.metrics import _rle
from kerasdet.metrics.coco import DETECTION_STATS, KEYPOINT_STATS, coco_evaluate

_ABSOLUTE_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw")
_PREFIXES = {"bbox": "", "segm": "mask_", "keypoints": "keypoints_"}


def _to_xywh(boxes: np.ndarray, fmt: str) -> np.ndarray:
    """Absolute boxes in `fmt` -> COCO `[x, y, w, h]`."""
    a, b, c, d = (boxes[..., i] for i in range(4))
    if fmt == "xyxy":
        x, y, w, h = a, b, c - a, d - b
    elif fmt == "yxyx":
        x, y, w, h = b, a, d - b, c - a
    elif fmt == "xywh":
        x, y, w, h = a, b, c, d
    elif fmt == "center_xywh":
        x, y, w, h = a - c / 2, b - d / 2, c, d
    else:  # center_yxhw
        x, y, w, h = b - d / 2, a - c / 2, d, c
    return np.stack([x, y, w, h], axis=-1).astype(np.float64)


def _check_boxes(t: dict, p: dict):
    """Target and prediction arrays with their shapes checked."""
    boxes, labels = np.asarray(t["boxes"], np.float64), np.asarray(t["labels"])
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:2]:
        raise ValueError(
            f"`y_true` must hold boxes [B, M, 4] and labels [B, M]; got {boxes.shape} and {labels.shape}"
        )
    batch = boxes.shape[0]
    pb, ps = np.asarray(p["boxes"], np.float64), np.asarray(p["scores"], np.float64)
    pl, nd = np.asarray(p["labels"]), np.asarray(p["num_detections"]).reshape(-1)
    if pb.ndim != 3 or pb.shape[0] != batch or pb.shape[-1] != 4 or ps.shape != pb.shape[:2] or pl.shape != ps.shape:
        raise ValueError(
            f"`y_pred` must hold boxes [B, N, 4], scores and labels [B, N] with B={batch}; got "
            f"{pb.shape}, {ps.shape}, {pl.shape}"
        )
    if nd.shape != (batch,):
        raise ValueError(f"`y_pred['num_detections']` must have shape [{batch}]; got {nd.shape}")
    return boxes, labels, pb, ps, pl, nd


def _add_masks(gt: dict, dt: dict, t_masks, p_masks, t_keep, p_keep, threshold: float) -> tuple:
    """Masks as COCO RLE (ground-truth area = mask area); returns the image size."""
    tm, pm = np.asarray(t_masks), np.asarray(p_masks)
    if tm.ndim != 4 or tm.shape[:2] != t_keep.shape or pm.shape[:2] != p_keep.shape or pm.shape[2:] != tm.shape[2:]:
        raise ValueError(
            "masks must be [B, M, H, W] (targets) and [B, N, H, W] (predictions) of one image size; "
            f"got {tm.shape} and {pm.shape}"
        )
    gt["rle"] = _rle.rles_from_runs(_rle.runs_from_masks(tm[t_keep] > 0)) if t_keep.any() else []
    dt["rle"] = _rle.rles_from_runs(_rle.runs_from_masks(pm[p_keep] > threshold)) if p_keep.any() else []
    gt["area"] = np.asarray(_rle.area(gt["rle"]), np.float64) if gt["rle"] else np.zeros(0)
    return tuple(tm.shape[2:])


def _add_keypoints(gt: dict, dt: dict, t_kp, p_kp, t_keep, p_keep) -> None:
    tk, pk = np.asarray(t_kp, np.float64), np.asarray(p_kp, np.float64)
    if tk.ndim != 4 or tk.shape[-1] != 3 or tk.shape[:2] != t_keep.shape or pk.shape[:2] != p_keep.shape \
            or pk.shape[2:] != tk.shape[2:]:
        raise ValueError(
            f"keypoints must be [B, M, K, 3] (targets) and [B, N, K, 3] (predictions); got {tk.shape} and {pk.shape}"
        )
    gt["keypoints"] = tk[t_keep].reshape(int(t_keep.sum()), -1)
    dt["keypoints"] = pk[p_keep].reshape(int(p_keep.sum()), -1)


@keras.saving.register_keras_serializable(package="kerasdet")
class COCOMetric(keras.metrics.Metric):
    """Streaming COCO detection / mask / keypoint metric (Lin et al., ECCV 2014) for `model.evaluate`.

    Args:
        bounding_box_format: format of the target and predicted boxes (absolute pixels): "xyxy" (default),
            "yxyx", "xywh", "center_xywh" or "center_yxhw".
        iou_type: "bbox", "segm" (targets need `masks` uint8 `[B, M, H, W]`, predictions `masks` float
            `[B, N, H, W]` pasted to the image) or "keypoints" (targets and predictions `keypoints`
            `[B, *, K, 3]`; targets `(x, y, visibility)`, predictions `(x, y, score)`).
        num_classes: number of classes (labels 0..C-1); default: from `class_names`, else the labels seen.
        class_names: optional class names, used as COCO category names.
        kpt_oks_sigmas: `[K]` OKS sigmas for "keypoints" (default: the COCO person sigmas when K == 17).
        mask_threshold: a predicted mask pixel is foreground when its value is above this.
        prefix: prefix of the result keys; default "" for bbox, "mask_" for segm, "keypoints_" for keypoints.
        name, dtype: as for every Keras metric.

    Call arguments (`update_state`):
        y_true: dict `{"boxes": [B, M, 4], "labels": [B, M]}` padded with label -1 (DESIGN.md §3), plus
            `masks` / `keypoints` as above.
        y_pred: dict `{"boxes": [B, N, 4], "scores": [B, N], "labels": [B, N], "num_detections": [B]}`
            (label -1 padding), plus `masks` / `keypoints`.
        sample_weight: must be None (COCO has no per-sample weights).

    Returns (`result()`):
        dict of the 12 COCO numbers (`AP`, `AP50`, ..., `ARl`; 10 for keypoints), prefixed, as float32
        scalars; -1 where undefined.

    Ground truths are never crowds; their `area` is the box area (the mask area for "segm").

    Example:
        >>> metric = COCOMetric(bounding_box_format="xyxy")
        >>> metric.update_state(y_true, model.predict_on_batch(images))
        >>> metric.result()["AP"]

        With a Detector, `compute_metrics` passes the whole target and prediction dicts:
        `self.coco_metric.update_state(y, y_pred)`.
    """

    def __init__(
        self,
        bounding_box_format: str = "xyxy",
        iou_type: str = "bbox",
        num_classes: int | None = None,
        class_names=None,
        kpt_oks_sigmas=None,
        mask_threshold: float = 0.5,
        prefix: str | None = None,
        name: str = "coco",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        if bounding_box_format not in _ABSOLUTE_FORMATS:
            raise ValueError(
                f"`bounding_box_format` must be one of {_ABSOLUTE_FORMATS} (absolute pixels); "
                f"got {bounding_box_format!r}"
            )
        if iou_type not in _PREFIXES:
            raise ValueError(f"`iou_type` must be one of {tuple(_PREFIXES)}; got {iou_type!r}")
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if num_classes is not None and len(class_names) != num_classes:
                raise ValueError(f"`class_names` has {len(class_names)} names but `num_classes` is {num_classes}")
        if num_classes is not None and int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be >= 1; got {num_classes}")
        if kpt_oks_sigmas is not None:
            kpt_oks_sigmas = [float(s) for s in np.asarray(kpt_oks_sigmas, np.float64).reshape(-1)]
        self.bounding_box_format = bounding_box_format
        self.iou_type = iou_type
        self.num_classes = None if num_classes is None else int(num_classes)
        self.class_names = class_names
        self.kpt_oks_sigmas = kpt_oks_sigmas
        self.mask_threshold = float(mask_threshold)
        self.prefix = _PREFIXES[iou_type] if prefix is None else str(prefix)
        self._stat_names = KEYPOINT_STATS if iou_type == "keypoints" else DETECTION_STATS
        self._stats = [
            self.add_variable(shape=(), initializer=keras.initializers.Constant(-1.0), dtype="float32", name=n)
            for n in self._stat_names
        ]
        self._clear()

    # -- accumulation -------------------------------------------------------------------------------

    def _clear(self) -> None:
        self._gt, self._dt, self._sizes = [], [], []
        self._num_images = 0
        self._dirty = False
        self._last_result = None

    def reset_state(self):
        self._clear()
        for v in self._stats:
            v.assign(-1.0)

    def _keys(self, y_true: dict, y_pred: dict) -> tuple[list, list]:
        extra = {"segm": ["masks"], "keypoints": ["keypoints"], "bbox": []}[self.iou_type]
        true_keys = ["boxes", "labels"] + extra
        pred_keys = ["boxes", "scores", "labels", "num_detections"] + extra
        for arg, value, keys in (("y_true", y_true, true_keys), ("y_pred", y_pred, pred_keys)):
            if not isinstance(value, dict):
                raise TypeError(f"`{arg}` must be a dict with keys {keys}; got {type(value).__name__}")
            missing = [k for k in keys if k not in value]
            if missing:
                raise ValueError(f"`{arg}` lacks {missing} (iou_type={self.iou_type!r}); it has {sorted(value)}")
        return true_keys, pred_keys

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("`sample_weight` is not supported by COCOMetric (COCO weighs every object alike)")
        true_keys, pred_keys = self._keys(y_true, y_pred)
        tensors = [y_true[k] for k in true_keys] + [y_pred[k] for k in pred_keys]
        n_true = len(true_keys)

        def append(*arrays):
            arrays = [np.asarray(a.numpy() if hasattr(a, "numpy") else a) for a in arrays]
            self._append(dict(zip(true_keys, arrays[:n_true])), dict(zip(pred_keys, arrays[n_true:])))
            return []

        if tf.executing_eagerly():
            append(*tensors)
        else:
            tf.py_function(append, [tf.convert_to_tensor(t) for t in tensors], Tout=[])

    def _append(self, t: dict, p: dict) -> None:
        boxes, labels, pb, ps, pl, nd = _check_boxes(t, p)
        batch = boxes.shape[0]
        t_keep = labels >= 0
        p_keep = (pl >= 0) & (np.arange(pl.shape[1])[None, :] < nd[:, None])
        img = np.arange(batch) + self._num_images
        fmt = self.bounding_box_format
        gt = {"image": np.broadcast_to(img[:, None], labels.shape)[t_keep], "label": labels[t_keep].astype(np.int64),
              "box": _to_xywh(boxes[t_keep], fmt)}
        dt = {"image": np.broadcast_to(img[:, None], pl.shape)[p_keep], "label": pl[p_keep].astype(np.int64),
              "box": _to_xywh(pb[p_keep], fmt), "score": ps[p_keep]}
        size = (0, 0)
        if self.iou_type == "segm":
            size = _add_masks(gt, dt, t["masks"], p["masks"], t_keep, p_keep, self.mask_threshold)
        if self.iou_type == "keypoints":
            _add_keypoints(gt, dt, t["keypoints"], p["keypoints"], t_keep, p_keep)
        self._gt.append(gt)
        self._dt.append(dt)
        self._sizes.extend([size] * batch)
        self._num_images += batch
        self._dirty = True

    # -- evaluation ---------------------------------------------------------------------------------

    def _cat(self, parts: list, key: str, width=None):
        if not parts:
            return np.zeros((0,) if width is None else (0, width))
        return np.concatenate([p[key] for p in parts])

    def coco_inputs(self) -> tuple[dict, dict]:
        """The accumulated data as a COCO ground-truth dict and a dict of detection columns."""
        g_lab, d_lab = self._cat(self._gt, "label").astype(np.int64), self._cat(self._dt, "label").astype(np.int64)
        seen = int(max(g_lab.max(initial=-1), d_lab.max(initial=-1))) + 1
        num_classes = self.num_classes or (len(self.class_names) if self.class_names else max(seen, 1))
        if seen > num_classes:
            raise ValueError(f"label {seen - 1} seen but the metric has {num_classes} classes")
        names = self.class_names or [str(c) for c in range(num_classes)]
        cats = [{"id": c, "name": names[c]} for c in range(num_classes)]
        if self.kpt_oks_sigmas is not None:
            for c in cats:
                c["kpt_oks_sigmas"] = self.kpt_oks_sigmas
        images = [{"id": i + 1, "height": int(h), "width": int(w)} for i, (h, w) in enumerate(self._sizes)]
        g_box = self._cat(self._gt, "box", 4)
        g_img = self._cat(self._gt, "image").astype(np.int64)
        area = self._cat(self._gt, "area") if self.iou_type == "segm" else g_box[:, 2] * g_box[:, 3]
        anns = []
        for i in range(len(g_lab)):
            ann = {"id": i + 1, "image_id": int(g_img[i]) + 1, "category_id": int(g_lab[i]),
                   "bbox": g_box[i].tolist(), "area": float(area[i]), "iscrowd": 0}
            anns.append(ann)
        if self.iou_type == "segm":
            for ann, rle in zip(anns, [r for p in self._gt for r in p["rle"]]):
                ann["segmentation"] = rle
        if self.iou_type == "keypoints":
            for ann, kp in zip(anns, self._cat(self._gt, "keypoints", None) if anns else []):
                ann["keypoints"] = kp.tolist()
                ann["num_keypoints"] = int((kp[2::3] > 0).sum())
        dets = {"image_id": self._cat(self._dt, "image").astype(np.int64) + 1, "category_id": d_lab,
                "score": self._cat(self._dt, "score"), "bbox": self._cat(self._dt, "box", 4)}
        if self.iou_type == "segm":
            dets["segmentation"] = [r for p in self._dt for r in p["rle"]]
        if self.iou_type == "keypoints":
            dets["keypoints"] = self._cat(self._dt, "keypoints", None) if len(d_lab) else np.zeros((0, 0))
        return {"images": images, "annotations": anns, "categories": cats}, dets

    def evaluate(self) -> dict:
        """The full `coco_evaluate` output (per-class table and curves) on everything accumulated."""
        gt, dets = self.coco_inputs()
        return coco_evaluate(gt, dets, self.iou_type)

    def result(self):
        if tf.executing_eagerly() and self._dirty:
            stats = self.evaluate()
            for v, n in zip(self._stats, self._stat_names):
                v.assign(stats[n])
            self._dirty = False
        return {self.prefix + n: v.value if hasattr(v, "value") else v for n, v in zip(self._stat_names, self._stats)}

    def get_config(self):
        config = super().get_config()
        config.update(
            bounding_box_format=self.bounding_box_format,
            iou_type=self.iou_type,
            num_classes=self.num_classes,
            class_names=self.class_names,
            kpt_oks_sigmas=self.kpt_oks_sigmas,
            mask_threshold=self.mask_threshold,
            prefix=self.prefix,
        )
        return config
