"""Detector families; `Detector` is their common base, `families` the table the CLI and the zoo read."""

from kerasdet.models.detector import Detector
from kerasdet.models.faster_rcnn import FasterRCNN
from kerasdet.models.mask_rcnn import MaskRCNN
from kerasdet.models.retinanet import RetinaNet

__all__ = ["Detector", "FasterRCNN", "MaskRCNN", "RetinaNet"]
