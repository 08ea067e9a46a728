"""The YOLO family: YOLO (v1), Fast YOLO and YOLOv2."""

from kerasdet.models.yolo.fast_yolo import FastYOLO
from kerasdet.models.yolo.yolo_v1 import YOLOv1
from kerasdet.models.yolo.yolo_v2 import YOLOv2

__all__ = ["FastYOLO", "YOLOv1", "YOLOv2"]
