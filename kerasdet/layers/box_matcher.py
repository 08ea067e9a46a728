"""Keras layer over `kerasdet.ops.matching.match_boxes` (Faster R-CNN / Detectron2 / SSD matching)."""

from __future__ import annotations

import keras

from kerasdet.ops.matching import match_boxes, validate_thresholds


@keras.saving.register_keras_serializable(package="kerasdet")
class BoxMatcher(keras.layers.Layer):
    """Matches anchors (or proposals) to ground-truth boxes by IoU and labels them positive,
    negative or ignored, batched.

    Each anchor's matched box is the valid ground-truth box (label >= 0) with the highest IoU (the
    lowest index on ties); its state is `match_values[i]` for `thresholds[i-1] <= IoU < thresholds[i]`,
    so with the defaults (RPN, Ren et al., 2015, §3.1.2) an anchor is negative (0) below 0.3, ignored
    (-1) in [0.3, 0.7) and positive (1) from 0.7. Padded ground-truth rows (label -1) are ignored.

    Low-quality matches: with `allow_low_quality_matches=True` (Detectron2's rule) every anchor tied
    at a ground-truth box's highest IoU becomes positive (all ties, exact float equality), keeping
    its own best box as matched index; with `force_best_match=True` (SSD's rule, Liu et al., 2016)
    the single best anchor of each box (lowest index on ties) becomes positive and is matched to
    that box, the box of higher index winning when two boxes pick the same anchor. Boxes whose
    highest IoU is 0 force nothing. Anchor rows that are all -1 (padding) come out ignored with index
    -1; an image with no valid ground truth is all `match_values[0]` (negative by default), index -1.

    Typical settings: RPN `((0.3, 0.7), (0, -1, 1))`; Fast R-CNN head `((0.5,), (0, 1))` without
    low-quality matches (`(0.1, 0.5), (-1, 0, 1)` for the paper's [0.1, 0.5) background);
    RetinaNet `((0.4, 0.5), (0, -1, 1))`; SSD `((0.5,), (0, 1))` with `force_best_match=True`.

    The computation is float32 whatever the dtype policy; memory is `B * A * M` IoU values.

    Args:
        thresholds: non-decreasing IoU thresholds in (0, 1].
        match_values: `len(thresholds) + 1` states in {-1, 0, 1}, one per IoU interval.
        allow_low_quality_matches: Detectron2's tie rule (default True).
        force_best_match: SSD's best-anchor rule (default False; requires
            `allow_low_quality_matches=False`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        anchors: `[A, 4]` anchors shared by the batch, or `[B, A, 4]` per image (e.g. proposals padded
            with -1 rows), `xyxy`.
        gt_boxes: `[B, M, 4]` `xyxy` ground-truth boxes, padded (M may be 0).
        gt_labels: `[B, M]` int labels, -1 for padding.

    Returns:
        dict with `"matched_gt_indices"` int32 `[B, A]` (row of the matched box, -1 if none; for
        non-positive anchors the best box, for information), `"match_states"` int32 `[B, A]`
        (1 positive, 0 negative, -1 ignore) and `"matched_ious"` float32 `[B, A]`.

    Example:
        >>> matcher = BoxMatcher()                                  # RPN
        >>> anchors = tf.constant([[0., 0., 10., 10.], [20., 20., 30., 30.]])
        >>> out = matcher(anchors, tf.constant([[[0., 0., 10., 12.]]]), tf.constant([[3]]))
        >>> out["match_states"].numpy()
        array([[1, 0]], dtype=int32)
    """

    def __init__(
        self,
        thresholds=(0.3, 0.7),
        match_values=(0, -1, 1),
        allow_low_quality_matches: bool = True,
        force_best_match: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.thresholds, self.match_values = validate_thresholds(thresholds, match_values)
        for name, flag in (("allow_low_quality_matches", allow_low_quality_matches), ("force_best_match", force_best_match)):
            if not isinstance(flag, bool):
                raise TypeError(f"`{name}` must be a bool; got {type(flag).__name__}")
        if allow_low_quality_matches and force_best_match:
            raise ValueError(
                "set only one of `allow_low_quality_matches` (Detectron2) and `force_best_match` (SSD); "
                "for SSD pass allow_low_quality_matches=False, force_best_match=True"
            )
        self.allow_low_quality_matches = allow_low_quality_matches
        self.force_best_match = force_best_match

    def call(self, anchors, gt_boxes, gt_labels):
        idx, states, ious = match_boxes(
            anchors,
            gt_boxes,
            gt_labels,
            thresholds=self.thresholds,
            match_values=self.match_values,
            allow_low_quality_matches=self.allow_low_quality_matches,
            force_best_match=self.force_best_match,
        )
        return {"matched_gt_indices": idx, "match_states": states, "matched_ious": ious}

    def compute_output_spec(self, anchors, gt_boxes, gt_labels):
        num_anchors = anchors.shape[-2]
        shape = (gt_boxes.shape[0], num_anchors)
        return {
            "matched_gt_indices": keras.KerasTensor(shape, dtype="int32"),
            "match_states": keras.KerasTensor(shape, dtype="int32"),
            "matched_ious": keras.KerasTensor(shape, dtype="float32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "thresholds": self.thresholds,
                "match_values": self.match_values,
                "allow_low_quality_matches": self.allow_low_quality_matches,
                "force_best_match": self.force_best_match,
            }
        )
        return config
