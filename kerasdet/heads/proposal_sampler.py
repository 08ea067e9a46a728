"""Sampling proposals against the ground truth for the RoI head (Fast / Faster R-CNN training)."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.heads.anchor_targets import assign_anchor_targets
from kerasdet.layers.box_matcher import BoxMatcher
from kerasdet.layers.roi_sampler import RoISampler


@keras.saving.register_keras_serializable(package="kerasdet")
class ProposalSampler(keras.layers.Layer):
    """Picks the RoIs the box head trains on: foreground IoU >= `foreground_iou`, background in
    `[background_iou_low, foreground_iou)`, `num_samples` per image with up to `positive_fraction`
    foreground (Girshick, 2015, §2.3: 128 RoIs at 25%, background [0.1, 0.5)).

    The ground-truth boxes are appended to the proposals first (so every object has a perfect
    foreground RoI, as Detectron does); crowd regions are never matched, and RoIs they cover are
    never background. Proposals are constants here (no gradient flows into them).

    Args:
        num_samples: RoIs per image.
        positive_fraction: the largest foreground share.
        foreground_iou: IoU from which a RoI is foreground (0.5).
        background_iou_low: lowest IoU of a background RoI (0.1 in the papers, 0 in Detectron2).
        add_ground_truth: append the ground-truth boxes to the proposals.
        seed: sampling seed.

    Call arguments:
        proposals: `[B, P, 4]` xyxy pixels, padding rows -1.
        targets: standardised targets ("boxes" float32 `[B, M, 4]`, "labels" int32 `[B, M]`, optional "is_crowd").
        training: True draws a fresh sample per call; False a fixed one.

    Returns:
        dict `"rois"` `[B, S, 4]` (padding rows -1), `"labels"` int32 `[B, S]` (class for
        foreground, -1 for background and padding), `"gt_indices"` int32 `[B, S]` (the matched target row
        of foreground RoIs, -1 otherwise; e.g. to crop their masks), `"states"` int32 `[B, S]`
        (1 foreground, 0 background, -1 padding), `"boxes"` `[B, S, 4]` (the matched box of foreground
        RoIs, the RoI itself otherwise).

    Example:
        >>> sampler = ProposalSampler(num_samples=64)
        >>> out = sampler(proposals, {"boxes": boxes, "labels": labels}, training=True)
    """

    def __init__(self, num_samples=512, positive_fraction=0.25, foreground_iou=0.5, background_iou_low=0.1,
                 add_ground_truth=True, seed=None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if not 0.0 <= float(background_iou_low) < float(foreground_iou) <= 1.0:
            raise ValueError("need 0 <= `background_iou_low` < `foreground_iou` <= 1; got "
                             f"{background_iou_low!r} and {foreground_iou!r}")
        self.num_samples = int(num_samples)
        self.positive_fraction = float(positive_fraction)
        self.foreground_iou = float(foreground_iou)
        self.background_iou_low = float(background_iou_low)
        self.add_ground_truth = bool(add_ground_truth)
        self.seed = seed
        if self.background_iou_low > 0:
            thresholds, values = (self.background_iou_low, self.foreground_iou), (-1, 0, 1)
        else:
            thresholds, values = (self.foreground_iou,), (0, 1)
        self.matcher = BoxMatcher(thresholds=thresholds, match_values=values, allow_low_quality_matches=False,
                                  name="roi_matcher")
        self.sampler = RoISampler(num_samples=self.num_samples, positive_fraction=self.positive_fraction, seed=seed,
                                  name="roi_sampler")

        self.built = True  # no variables of its own: built from the start (the model's optimizer is made eagerly)

    def call(self, proposals, targets, training=None):
        proposals = tf.stop_gradient(tf.cast(proposals, tf.float32))
        if self.add_ground_truth:
            gt = tf.where((targets["labels"] >= 0)[..., None], targets["boxes"], -1.0)
            proposals = tf.concat([proposals, gt], axis=1)
        assigned = assign_anchor_targets(self.matcher, proposals, targets)
        padding = tf.reduce_all(tf.equal(proposals, -1.0), axis=-1)
        states = tf.where(padding, -1, assigned["states"])
        sample = self.sampler(states, training=training)
        index = tf.maximum(sample["indices"], 0)
        kept = sample["states"]
        rois = tf.where((kept >= 0)[..., None], tf.gather(proposals, index, batch_dims=1), -1.0)
        return {
            "rois": tf.stop_gradient(rois),
            "labels": tf.where(kept == 1, tf.gather(assigned["labels"], index, batch_dims=1), -1),
            "gt_indices": tf.where(kept == 1, tf.gather(assigned["indices"], index, batch_dims=1), -1),
            "states": kept,
            "boxes": tf.where((kept == 1)[..., None], tf.gather(assigned["boxes"], index, batch_dims=1),
                              tf.where((kept >= 0)[..., None], rois, 0.0)),
        }

    def get_config(self):
        config = super().get_config()
        config.update(num_samples=self.num_samples, positive_fraction=self.positive_fraction,
                      foreground_iou=self.foreground_iou, background_iou_low=self.background_iou_low,
                      add_ground_truth=self.add_ground_truth, seed=self.seed)
        return config
