"""Skeletons of the detector shapes still to come, built on the `Detector` base and `kerasdet.heads` to show
the model layer fits them (issue "Two-stage core"); each family issue replaces its skeleton with the real family
(Mask R-CNN's is now `kerasdet.models.MaskRCNN`, SSD's `SSD`, YOLO v1's `YOLOv1`, each tested by its own module).

- `ExternalRoISkeleton` (Fast R-CNN): external `rois` as input, sampled against the targets in training;
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.heads import ProposalSampler, RoIBoxHead
from kerasdet.layers import RoIPool
from kerasdet.models.detector import Detector


def _trunk(name, strides=3, channels=16):
    """A few stride-2 convolutions on images rescaled to [0, 1]."""
    layers = [keras.layers.Rescaling(1.0 / 255.0)]
    layers += [keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu") for _ in range(strides)]
    return keras.Sequential(layers, name=name)


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
