"""The YOLO family: YOLOv2 (and, on it, YOLO9000)."""

from kerasdet.models.yolo.yolo_v2 import YOLOv2

__all__ = ["YOLOv2"]
