"""Skeletons of the detector shapes still to come, built on the `Detector` base and `kerasdet.heads` to show
the model layer fits them (issue "Two-stage core"); each family issue replaces its skeleton with the real family
(Mask R-CNN's is now `kerasdet.models.MaskRCNN`, tested by tests/models/test_mask_rcnn.py).

- `GridSkeleton` (YOLO v1): per-cell outputs, the responsible predictor per cell, no anchors;
- `MultiboxSkeleton` (SSD): default boxes on two maps, best-match + IoU matching, hard negative mining 3:1;
- `ExternalRoISkeleton` (Fast R-CNN): external `rois` as input, sampled against the targets in training;
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.coders.delta_coder import DeltaCoder
from kerasdet.heads import ProposalSampler, RoIBoxHead, assign_anchor_targets, conv_tower, per_level_outputs
from kerasdet.layers import AnchorGenerator, BoxMatcher, HardNegativeMiner, RoIPool
from kerasdet.losses.smooth_l1 import SmoothL1Loss
from kerasdet.models.detector import Detector
from kerasdet.ops import iou
from kerasdet.ops.boxes import clip_boxes


def _trunk(name, strides=3, channels=16):
    """A few stride-2 convolutions on images rescaled to [0, 1]."""
    layers = [keras.layers.Rescaling(1.0 / 255.0)]
    layers += [keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu") for _ in range(strides)]
    return keras.Sequential(layers, name=name)


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class GridSkeleton(Detector):
    """YOLO v1's shape: an S x S grid, `boxes_per_cell` boxes (x, y, sqrt w, sqrt h, confidence) and C class
    probabilities per cell; the predictor of highest IoU in the object's cell is responsible."""

    loss_terms = ("coord_loss", "object_loss", "noobject_loss", "class_loss")

    def __init__(self, num_classes, grid=4, boxes_per_cell=2, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        self.grid, self.boxes_per_cell = grid, boxes_per_cell
        self.trunk = _trunk("trunk")
        self.pool = keras.layers.Resizing(grid, grid, interpolation="bilinear")
        self.out = keras.layers.Conv2D(boxes_per_cell * 5 + num_classes, 1, name="grid_out")

    def call(self, inputs, training=False, targets=None):
        images, _ = self.split_inputs(inputs)
        y = tf.cast(self.out(self.pool(self.trunk(tf.cast(images, tf.float32)))), tf.float32)
        return {"grid": y}

    def _boxes(self, raw, images):
        s, b = self.grid, self.boxes_per_cell
        hw = tf.cast(tf.shape(images)[1:3], tf.float32)
        p = tf.reshape(raw["grid"][..., : b * 5], [-1, s, s, b, 5])
        cy, cx = tf.meshgrid(tf.range(s, dtype=tf.float32), tf.range(s, dtype=tf.float32), indexing="ij")
        x = (tf.sigmoid(p[..., 0]) + cx[..., None]) / s * hw[1]
        y = (tf.sigmoid(p[..., 1]) + cy[..., None]) / s * hw[0]
        w = tf.square(tf.sigmoid(p[..., 2])) * hw[1]
        h = tf.square(tf.sigmoid(p[..., 3])) * hw[0]
        boxes = tf.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=-1)
        return boxes, tf.sigmoid(p[..., 4]), p

    def detection_losses(self, images, targets, raw):
        s, b = self.grid, self.boxes_per_cell
        hw = tf.cast(tf.shape(images)[1:3], tf.float32)
        boxes, confidence, p = self._boxes(raw, images)                       # [B, S, S, b, 4]
        gt, labels = targets["boxes"], targets["labels"]
        centre = (gt[..., :2] + gt[..., 2:]) / 2
        col = tf.clip_by_value(tf.cast(centre[..., 0] / hw[1] * s, tf.int32), 0, s - 1)
        row = tf.clip_by_value(tf.cast(centre[..., 1] / hw[0] * s, tf.int32), 0, s - 1)
        valid = labels >= 0
        cell = tf.where(valid, row * s + col, -1)                              # [B, M]
        flat = tf.reshape(boxes, [-1, s * s, b, 4])
        owner = tf.one_hot(cell, s * s)                                        # [B, M, S*S]
        # per cell: the last object whose centre falls in it (one object per cell, as the paper)
        has = tf.reduce_max(owner, axis=1) > 0                                 # [B, S*S]
        which = tf.argmax(owner * tf.cast(tf.range(1, tf.shape(cell)[1] + 1), tf.float32)[None, :, None], axis=1)
        cell_gt = tf.gather(gt, which, batch_dims=1)                           # [B, S*S, 4]
        cell_label = tf.gather(labels, which, batch_dims=1)
        overlaps = iou(flat, cell_gt[:, :, None, :], aligned=True)             # [B, S*S, b]
        responsible = tf.one_hot(tf.argmax(overlaps, axis=-1), b) * tf.cast(has, tf.float32)[..., None]
        conf = tf.reshape(confidence, [-1, s * s, b])
        object_loss = tf.reduce_sum(responsible * tf.square(conf - tf.stop_gradient(overlaps)))
        noobject_loss = 0.5 * tf.reduce_sum((1 - responsible) * tf.square(conf))
        pred = tf.reshape(p, [-1, s * s, b, 5])
        size = tf.stack([hw[1], hw[0]])
        gt_sqrt = tf.sqrt(tf.maximum(cell_gt[..., 2:] - cell_gt[..., :2], 0.0) / size)
        gt_xy = tf.math.floormod((cell_gt[..., :2] + cell_gt[..., 2:]) / 2 / size * s, 1.0)
        coord = tf.reduce_sum(tf.square(tf.sigmoid(pred[..., :2]) - gt_xy[:, :, None]), -1) + \
            tf.reduce_sum(tf.square(tf.sigmoid(pred[..., 2:4]) - gt_sqrt[:, :, None]), -1)
        coord_loss = 5.0 * tf.reduce_sum(responsible * coord)
        logits = tf.reshape(raw["grid"][..., b * 5:], [-1, s * s, self.num_classes])
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(cell_label, 0), logits=logits)
        class_loss = tf.reduce_sum(ce * tf.cast(has, tf.float32))
        n = tf.cast(tf.shape(images)[0], tf.float32)
        return {"coord_loss": coord_loss / n, "object_loss": object_loss / n,
                "noobject_loss": noobject_loss / n, "class_loss": class_loss / n}

    def decode_candidates(self, raw, images):
        s, b = self.grid, self.boxes_per_cell
        boxes, confidence, _ = self._boxes(raw, images)
        classes = tf.nn.softmax(tf.reshape(raw["grid"][..., b * 5:], [-1, s, s, 1, self.num_classes]), axis=-1)
        scores = tf.reshape(confidence[..., None] * classes, [-1, s * s * b, self.num_classes])
        hw = tf.cast(tf.shape(images)[1:3], tf.float32)
        return clip_boxes(tf.reshape(boxes, [-1, s * s * b, 4]), hw), scores

    def get_config(self):
        return dict(super().get_config(), grid=self.grid, boxes_per_cell=self.boxes_per_cell)


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class MultiboxSkeleton(Detector):
    """SSD's shape: default boxes on two maps, each object's best box plus IoU >= 0.5 positive, softmax
    over C + 1, hard negative mining at 3:1, smooth L1 on variance-encoded offsets, all divided by N."""

    loss_terms = ("class_loss", "box_loss")

    def __init__(self, num_classes, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        self.trunk = _trunk("trunk", strides=3)
        self.down = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="extra")
        self.anchors = AnchorGenerator(sizes=[[24.0, 34.0], [48.0, 68.0]], aspect_ratios=(1.0, 2.0), strides=[8, 16])
        self.class_head = conv_tower(0, 16, 4 * (num_classes + 1), name="class_head")
        self.box_head = conv_tower(0, 16, 4 * 4, name="box_head")
        self.matcher = BoxMatcher(thresholds=(0.5,), match_values=(0, 1), allow_low_quality_matches=False,
                                  force_best_match=True)
        self.miner = HardNegativeMiner(neg_pos_ratio=3.0)
        self.coder = DeltaCoder.from_variances((0.1, 0.1, 0.2, 0.2))
        self.box_loss = SmoothL1Loss(beta=1.0, reduction="sum")

    def call(self, inputs, training=False, targets=None):
        images, _ = self.split_inputs(inputs)
        c3 = self.trunk(tf.cast(images, tf.float32))
        maps = [c3, self.down(c3)]
        return {"class_logits": per_level_outputs(self.class_head, maps, self.num_classes + 1, training=training),
                "box_deltas": per_level_outputs(self.box_head, maps, 4, training=training),
                "anchors": self.anchors(images, *maps)}

    def detection_losses(self, images, targets, raw):
        assigned = assign_anchor_targets(self.matcher, raw["anchors"], targets)
        classes = tf.where(assigned["positive"] > 0, assigned["labels"], self.num_classes)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=classes, logits=raw["class_logits"])
        negatives = self.miner(tf.stop_gradient(ce), assigned["states"])
        n = assigned["num_positive"]
        class_loss = tf.reduce_sum(ce * (assigned["positive"] + negatives)) / n
        box_loss = self.box_loss(self.coder.encode(raw["anchors"], assigned["boxes"]), raw["box_deltas"],
                                 sample_weight=assigned["positive"]) / n
        return {"class_loss": class_loss, "box_loss": box_loss}

    def decode_candidates(self, raw, images):
        boxes = clip_boxes(self.coder.decode(raw["anchors"], raw["box_deltas"]), tf.cast(tf.shape(images)[1:3], tf.float32))
        return boxes, tf.nn.softmax(raw["class_logits"], axis=-1)[..., : self.num_classes]


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class ExternalRoISkeleton(Detector):
    """Fast R-CNN's shape: inputs `{"images", "rois"}`; in training the given rois are sampled against the
    targets (ground truth added), RoIPool 4x4 on a stride-8 map, the shared RoI box head."""

    loss_terms = ("roi_class_loss", "roi_box_loss")
    needs_rois = True

    def __init__(self, num_classes, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        self.trunk = _trunk("trunk", strides=3)
        self.pooler = RoIPool(4, spatial_scale=1.0 / 8)
        self.sampler = ProposalSampler(num_samples=16, positive_fraction=0.25, background_iou_low=0.0, seed=0)
        self.box_head = RoIBoxHead(num_classes, fc_dims=(32,), name="box_head")

    def call(self, inputs, training=False, targets=None):
        images, rois = self.split_inputs(inputs)
        features = self.trunk(tf.cast(images, tf.float32))
        out = {}
        if targets is not None:
            out["sampled"] = self.sampler(rois, targets, training=training)
            rois = out["sampled"]["rois"]
        out.update(self.box_head(self.pooler(features, rois), training=training))
        out["rois"] = rois
        return out

    def detection_losses(self, images, targets, raw):
        return self.box_head.compute_losses(raw, raw["sampled"])

    def decode_candidates(self, raw, images):
        return self.box_head.decode(raw, raw["rois"], tf.cast(tf.shape(images)[1:3], tf.float32))
