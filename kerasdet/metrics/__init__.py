"""Evaluation with pycocotools' and the VOC devkit's definitions, vectorised: COCO, VOC, a Keras metric, plots."""

from kerasdet.metrics.coco import DETECTION_STATS, KEYPOINT_STATS, coco_evaluate, format_summary
from kerasdet.metrics.keras_metrics import COCOMetric
from kerasdet.metrics.plots import plot_precision_recall
from kerasdet.metrics.voc import voc_ap, voc_evaluate

__all__ = [
    "COCOMetric",
    "DETECTION_STATS",
    "KEYPOINT_STATS",
    "coco_evaluate",
    "format_summary",
    "plot_precision_recall",
    "voc_ap",
    "voc_evaluate",
]
