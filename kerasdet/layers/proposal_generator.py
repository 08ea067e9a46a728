"""Region proposals from RPN outputs: decode, clip, filter, top-k, NMS, top-k (Faster R-CNN, FPN)."""

from __future__ import annotations

import math
import numbers

import keras
import tensorflow as tf

from kerasdet.coders.delta_coder import DEFAULT_SCALE_CLAMP, DeltaCoder
from kerasdet.ops._checks import as_float_tensor, check_last_dim, check_rank
from kerasdet.ops.boxes import clip_boxes
from kerasdet.ops.nms import batched_non_max_suppression


def _positive_int(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}")
    return int(value)


def _as_list(value):
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


@keras.saving.register_keras_serializable(package="kerasdet")
class ProposalGenerator(keras.layers.Layer):
    """Turns RPN objectness logits and box deltas into padded, NMS-filtered proposals per image.

    Per image (Ren et al., 2015, §3.1 and §3.3; the order follows Detectron2's
    `find_top_rpn_proposals`):

    1. per level, keep the `pre_nms_topk` anchors with the highest logits (ties: lower index) among those
       whose centre lies inside the image (`0 <= x < W`, `0 <= y < H`): an anchor centred in the padding
       of a smaller image in a batch is no candidate, so an image's proposals do not depend on its batch
       mates;
    2. decode their deltas against the anchors with `DeltaCoder` weights (1, 1, 1, 1) and the
       log(1000/16) clamp on dw, dh (`scale_clamp`);
    3. clip to the image (`[0, W] x [0, H]`);
    4. drop boxes whose clipped width or height is not greater than `min_size` (the default 0 drops
       only empty boxes), and boxes or logits that are not finite;
    5. greedy NMS at `nms_iou_threshold` (`kerasdet.ops.nms` semantics), separately per level;
    6. keep the `post_nms_topk` best survivors of all levels by logit (ties: lower level first, then
       NMS order).

    Several levels (FPN, Lin et al., 2017) are passed as lists: top-k per level as in Detectron2.
    Gradients do not flow into proposals (the inputs are wrapped in `stop_gradient`). Computed in
    float32 whatever the dtype policy.

    The layer cannot run under `jit_compile=True`: TensorFlow's NMS kernels, used by
    `kerasdet.ops.nms`, have no XLA implementation. It runs eagerly and in `tf.function`.

    A model that wants Detectron2's separate training and test budgets (12000/2000 and 6000/1000
    with FPN) builds two generators.

    Args:
        pre_nms_topk: candidates kept per level (and image) before NMS.
        post_nms_topk: proposals returned per image (the padded output size).
        nms_iou_threshold: IoU above which NMS suppresses, in [0, 1].
        min_size: minimum width and height in pixels (boxes must be strictly larger), >= 0.
        scale_clamp: upper bound of the decoded log-scale deltas.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        objectness: float `[B, A]` logits (A anchors, in the order of `anchors`), or a list of
            `[B, A_l]`, one per level.
        deltas: float `[B, A, 4]` (t_x, t_y, t_w, t_h), or a list of `[B, A_l, 4]`.
        anchors: float `[A, 4]` `xyxy` pixels (e.g. from `AnchorGenerator`), or a list of `[A_l, 4]`.
        images: `[B, H, W, C]` images (only H and W are read), or the image sizes as `[B, 2]` or
            `[2]` (height, width) to clip each image to its own size.

    Returns:
        dict with `"rois"` float32 `[B, post_nms_topk, 4]` `xyxy` pixels (padding rows -1),
        `"scores"` float32 `[B, post_nms_topk]` objectness probabilities sigmoid(logit) (padding 0),
        sorted by decreasing score, and `"num_rois"` int32 `[B]`.

    Example:
        >>> images = tf.zeros([2, 64, 96, 3])
        >>> anchors = AnchorGenerator(strides=8)(images, tf.zeros([2, 8, 12, 256]))   # [864, 4]
        >>> logits, deltas = tf.random.normal([2, 864]), tf.zeros([2, 864, 4])     # RPN head outputs
        >>> out = ProposalGenerator(pre_nms_topk=600, post_nms_topk=100)(logits, deltas, anchors, images)
        >>> out["rois"].shape
        TensorShape([2, 100, 4])
    """

    def __init__(
        self,
        pre_nms_topk: int = 6000,
        post_nms_topk: int = 1000,
        nms_iou_threshold: float = 0.7,
        min_size: float = 0.0,
        scale_clamp: float = DEFAULT_SCALE_CLAMP,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.pre_nms_topk = _positive_int(pre_nms_topk, "pre_nms_topk")
        self.post_nms_topk = _positive_int(post_nms_topk, "post_nms_topk")
        if isinstance(nms_iou_threshold, bool) or not isinstance(nms_iou_threshold, numbers.Real) or not (
            0.0 <= nms_iou_threshold <= 1.0
        ):
            raise ValueError(f"`nms_iou_threshold` must be a number in [0, 1]; got {nms_iou_threshold!r}")
        if isinstance(min_size, bool) or not isinstance(min_size, numbers.Real) or not (
            0.0 <= min_size < math.inf
        ):
            raise ValueError(f"`min_size` must be a finite number >= 0; got {min_size!r}")
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.min_size = float(min_size)
        self.coder = DeltaCoder(weights=(1.0, 1.0, 1.0, 1.0), scale_clamp=scale_clamp)
        self.scale_clamp = self.coder.scale_clamp

    # -- input handling ---------------------------------------------------------------------------

    @staticmethod
    def _levels(objectness, deltas, anchors):
        obj = _as_list(objectness)
        dlt = _as_list(deltas)
        anc = _as_list(anchors)
        if not (len(obj) == len(dlt) == len(anc)) or not obj:
            raise ValueError(
                "`objectness`, `deltas` and `anchors` must have the same number of levels; "
                f"got {len(obj)}, {len(dlt)} and {len(anc)}"
            )
        levels = []
        for i, (o, d, a) in enumerate(zip(obj, dlt, anc)):
            suffix = f"[{i}]" if len(obj) > 1 else ""
            o = as_float_tensor(o, f"objectness{suffix}")
            d = as_float_tensor(d, f"deltas{suffix}")
            a = as_float_tensor(a, f"anchors{suffix}")
            check_rank(o, f"objectness{suffix}", 2, "[B, A] logits")
            check_rank(d, f"deltas{suffix}", 3, "[B, A, 4]")
            check_last_dim(d, f"deltas{suffix}", 4, "[B, A, 4]")
            check_rank(a, f"anchors{suffix}", 2, "[A, 4]")
            check_last_dim(a, f"anchors{suffix}", 4, "[A, 4]")
            dims = [o.shape[1], d.shape[1], a.shape[0]]
            known = {x for x in dims if x is not None}
            if len(known) > 1:
                raise ValueError(
                    f"`objectness{suffix}` {tuple(o.shape)}, `deltas{suffix}` {tuple(d.shape)} and "
                    f"`anchors{suffix}` {tuple(a.shape)} disagree on the number of anchors"
                )
            if o.shape[0] is not None and d.shape[0] is not None and o.shape[0] != d.shape[0]:
                raise ValueError(
                    f"`objectness{suffix}` {tuple(o.shape)} and `deltas{suffix}` {tuple(d.shape)} disagree on the batch size"
                )
            levels.append((tf.stop_gradient(o), tf.stop_gradient(d), a))
        return levels

    @staticmethod
    def _image_sizes(images, batch):
        """float32 [B, 2] (height, width) from images [B, H, W, C], sizes [B, 2] or a size [2]."""
        t = tf.convert_to_tensor(images)
        rank = t.shape.rank
        if rank == 4:
            hw = tf.cast(tf.shape(t)[1:3], tf.float32)
            return tf.broadcast_to(hw[None], tf.stack([batch, 2]))
        if rank in (1, 2) and t.shape[-1] in (None, 2) and (t.dtype.is_floating or t.dtype.is_integer):
            hw = tf.cast(t, tf.float32)
            return tf.broadcast_to(hw if rank == 2 else hw[None], tf.stack([batch, 2]))
        raise ValueError(
            f"`images` must be images [B, H, W, C] or image sizes [B, 2] / [2] (height, width); got shape {tuple(t.shape)}"
        )

    # -- computation ------------------------------------------------------------------------------

    def _level_candidates(self, logits, deltas, anchors, sizes, level):
        centre = (anchors[None, :, :2] + anchors[None, :, 2:]) / 2.0
        inside = tf.reduce_all((centre >= 0.0) & (centre < sizes[:, None, ::-1]), axis=-1)
        logits = tf.where(inside, logits, float("-inf"))  # never kept: `keep` below needs a finite logit
        num_anchors = logits.shape[1]
        if num_anchors is not None:
            k = min(self.pre_nms_topk, num_anchors)
        else:
            k = tf.minimum(self.pre_nms_topk, tf.shape(logits)[1])
        top_logits, top_idx = tf.math.top_k(logits, k=k, sorted=True)
        top_deltas = tf.gather(deltas, top_idx, batch_dims=1)
        top_anchors = tf.gather(anchors, top_idx)
        boxes = clip_boxes(self.coder.decode(top_anchors, top_deltas), sizes[:, None, :])
        width = boxes[..., 2] - boxes[..., 0]
        height = boxes[..., 3] - boxes[..., 1]
        keep = (
            (width > self.min_size)
            & (height > self.min_size)
            & tf.reduce_all(tf.math.is_finite(boxes), axis=-1)
            & tf.math.is_finite(top_logits)
        )
        labels = tf.where(keep, level, -1)
        boxes = tf.where(keep[..., None], boxes, 0.0)
        return boxes, top_logits, labels

    def call(self, objectness, deltas, anchors, images):
        levels = self._levels(objectness, deltas, anchors)
        batch = tf.shape(levels[0][0])[0]
        sizes = self._image_sizes(images, batch)
        parts = [self._level_candidates(o, d, a, sizes, i) for i, (o, d, a) in enumerate(levels)]
        boxes = tf.concat([p[0] for p in parts], axis=1)
        logits = tf.concat([p[1] for p in parts], axis=1)
        labels = tf.concat([p[2] for p in parts], axis=1)
        # dropped candidates (label -1, their logits possibly non-finite) score -inf in the NMS, which
        # pads its outputs (boxes -1, scores 0) after the `num_detections` valid rows and pins static shapes
        nms = batched_non_max_suppression(
            boxes,
            logits,
            labels,
            iou_threshold=self.nms_iou_threshold,
            score_threshold=float("-inf"),
            max_detections=self.post_nms_topk,
            max_detections_per_class=self.post_nms_topk,
            class_agnostic=False,
        )
        valid = tf.range(self.post_nms_topk)[None, :] < nms["num_detections"][:, None]
        scores = tf.where(valid, tf.sigmoid(nms["scores"]), 0.0)  # padding: 0, not sigmoid(0)
        return {"rois": nms["boxes"], "scores": scores, "num_rois": nms["num_detections"]}

    def compute_output_spec(self, objectness, deltas, anchors, images):
        batch = _as_list(objectness)[0].shape[0]
        return {
            "rois": keras.KerasTensor((batch, self.post_nms_topk, 4), dtype="float32"),
            "scores": keras.KerasTensor((batch, self.post_nms_topk), dtype="float32"),
            "num_rois": keras.KerasTensor((batch,), dtype="int32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pre_nms_topk": self.pre_nms_topk,
                "post_nms_topk": self.post_nms_topk,
                "nms_iou_threshold": self.nms_iou_threshold,
                "min_size": self.min_size,
                "scale_clamp": self.scale_clamp,
            }
        )
        return config
