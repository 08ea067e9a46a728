"""Detector families; `Detector` is their common base."""

from kerasdet.models.detector import Detector
from kerasdet.models.retinanet import RetinaNet

__all__ = ["Detector", "RetinaNet"]
