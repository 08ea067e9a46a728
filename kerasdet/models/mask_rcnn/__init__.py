"""Mask R-CNN (He et al., 2017): Faster R-CNN with a mask head and a keypoint head on the boxes it keeps."""

from kerasdet.models.mask_rcnn.mask_rcnn import MaskRCNN

__all__ = ["MaskRCNN"]
