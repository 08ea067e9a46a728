"""Box coders: the R-CNN delta parameterisation and the YOLOv2/v3 grid parameterisation."""

from kerasdet.coders.delta_coder import DeltaCoder
from kerasdet.coders.yolo_coder import YoloCoder

__all__ = ["DeltaCoder", "YoloCoder"]
