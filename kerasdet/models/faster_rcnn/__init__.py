"""Faster R-CNN (Ren et al., 2015): region proposal network + RoI box head, trained jointly."""

from kerasdet.models.faster_rcnn.faster_rcnn import FasterRCNN

__all__ = ["FasterRCNN"]
