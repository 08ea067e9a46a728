"""YOLO (v1) and Fast YOLO: grid cells, no anchors, fully connected output."""

from kerasdet.models.yolo_v1.fast_yolo import FastYOLO
from kerasdet.models.yolo_v1.yolo_v1 import YOLOv1

__all__ = ["FastYOLO", "YOLOv1"]
