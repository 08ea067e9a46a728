"""YOLOv2: Darknet-19, passthrough, anchors from k-means, multi-scale training."""

from kerasdet.models.yolo_v2.yolo_v2 import YOLOv2

__all__ = ["YOLOv2"]
