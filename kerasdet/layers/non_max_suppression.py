"""Keras layer over `kerasdet.ops.nms.batched_non_max_suppression`."""

from __future__ import annotations

import keras

from kerasdet.ops.nms import batched_non_max_suppression, check_nms_options

# the layer's settings: `batched_non_max_suppression`'s keyword arguments and the layer's config
_OPTIONS = (
    "iou_threshold",
    "score_threshold",
    "max_detections",
    "max_detections_per_class",
    "class_agnostic",
    "soft_nms_sigma",
)


@keras.saving.register_keras_serializable(package="kerasdet")
class NonMaxSuppression(keras.layers.Layer):
    """Batched per-class non-maximum suppression with padded outputs, the last step of a detector.

    For every image and class: greedy NMS (score descending, ties by lower box index; a box is
    suppressed when its IoU with a kept box is strictly greater than `iou_threshold`; scores
    `<= score_threshold` dropped first; degenerate boxes never suppress nor are suppressed), at most
    `max_detections_per_class` boxes; then the kept (box, class) pairs of all classes are merged by
    score (ties: lower class, then selection order) and the best `max_detections` are returned,
    padded. Results equal the numpy reference exactly (see `kerasdet.ops.nms`).

    `class_agnostic=True` runs one NMS per image over each box's best class. `soft_nms_sigma > 0`
    uses Gaussian soft-NMS with TensorFlow's convention: weight `exp(-0.5 * iou**2 / sigma)`,
    rescored boxes dropped when `<= score_threshold`, no hard suppression (so `iou_threshold` is
    unused), rescored scores returned.

    The computation is float32 whatever the dtype policy (inputs are not autocast). It runs eagerly
    and in `tf.function`, but not under `jit_compile=True`: TensorFlow's NMS kernels
    (`CombinedNonMaxSuppression`, `NonMaxSuppressionV5`) have no XLA implementation.

    Reference: Girshick et al., "Rich feature hierarchies for accurate object detection and
    semantic segmentation", CVPR 2014 (greedy NMS); Bodla et al., "Soft-NMS -- Improving Object
    Detection With One Line of Code", ICCV 2017.

    Args:
        iou_threshold: number in [0, 1] (default 0.5).
        score_threshold: finite number or -inf (default 0.05); scores `<=` it are dropped.
        max_detections: detections per image D (default 100).
        max_detections_per_class: kept boxes per class and image, None for `max_detections`.
        class_agnostic: one NMS across classes (default False).
        soft_nms_sigma: Gaussian soft-NMS sigma; 0 (default) is hard NMS.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        boxes: `[B, N, 4]` xyxy boxes shared by the classes, or `[B, N, C, 4]` one box per class.
        scores: `[B, N, C]` class scores (probabilities or any monotone score).

    Returns:
        dict with `"boxes"` float32 `[B, D, 4]` (padding -1), `"scores"` float32 `[B, D]`
        (padding 0), `"labels"` int32 `[B, D]` (padding -1) and `"num_detections"` int32 `[B]`.

    Example:
        >>> nms = NonMaxSuppression(iou_threshold=0.5, score_threshold=0.05, max_detections=4)
        >>> boxes = tf.constant([[[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]]], tf.float32)
        >>> scores = tf.constant([[[0.9, 0.1], [0.8, 0.7], [0.2, 0.6]]])
        >>> nms(boxes, scores)["labels"].numpy()
        array([[0, 1, 1, 0]], dtype=int32)
    """

    def __init__(
        self,
        iou_threshold=0.5,
        score_threshold=0.05,
        max_detections=100,
        max_detections_per_class=None,
        class_agnostic=False,
        soft_nms_sigma=0.0,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        # validated once, here; the normalised values are both the call's options and the config
        options = check_nms_options(
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            max_detections=max_detections,
            max_detections_per_class=max_detections_per_class,
            class_agnostic=class_agnostic,
            soft_nms_sigma=soft_nms_sigma,
        )
        for name in _OPTIONS:
            setattr(self, name, options[name])

    def call(self, boxes, scores):
        return batched_non_max_suppression(boxes, scores, **{name: getattr(self, name) for name in _OPTIONS})

    def compute_output_spec(self, boxes, scores):
        batch = scores.shape[0]
        detections = self.max_detections
        return {
            "boxes": keras.KerasTensor((batch, detections, 4), dtype="float32"),
            "scores": keras.KerasTensor((batch, detections), dtype="float32"),
            "labels": keras.KerasTensor((batch, detections), dtype="int32"),
            "num_detections": keras.KerasTensor((batch,), dtype="int32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in _OPTIONS})
        return config
