"""YOLOv2: Darknet-19, passthrough, anchors from k-means, multi-scale training."""

from kerasdet.models.yolo_v2.yolo9000 import YOLO9000
from kerasdet.models.yolo_v2.yolo_v2 import YOLOv2

__all__ = ["YOLO9000", "YOLOv2"]
