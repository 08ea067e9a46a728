"""Pure functions on tensors: box arithmetic, NMS, RoI feature extraction, instance masks, keypoint heatmaps,
matching and sampling.

Usable eagerly and inside `tf.function`; semantics in DESIGN.md §4.
"""

from kerasdet.ops.boxes import area, clip_boxes, convert_format, giou, iou
from kerasdet.ops.keypoints import heatmaps_to_keypoints, keypoint_heatmap_targets
from kerasdet.ops.masks import crop_masks, paste_masks
from kerasdet.ops.matching import match_boxes
from kerasdet.ops.nms import batched_non_max_suppression, non_max_suppression
from kerasdet.ops.roi import (
    assign_fpn_levels,
    multilevel_roi_align,
    ps_roi_align,
    ps_roi_pool,
    roi_align,
    roi_pool,
    spatial_pyramid_pool,
)
from kerasdet.ops.sampling import hard_negative_mask, random_keys, sample_balanced

__all__ = [
    "area",
    "assign_fpn_levels",
    "batched_non_max_suppression",
    "clip_boxes",
    "convert_format",
    "crop_masks",
    "giou",
    "hard_negative_mask",
    "heatmaps_to_keypoints",
    "iou",
    "keypoint_heatmap_targets",
    "match_boxes",
    "multilevel_roi_align",
    "non_max_suppression",
    "paste_masks",
    "ps_roi_align",
    "ps_roi_pool",
    "random_keys",
    "roi_align",
    "roi_pool",
    "sample_balanced",
    "spatial_pyramid_pool",
]
