"""Detection losses (keras.losses.Loss subclasses, float32 inside)."""

from kerasdet.losses.focal import FocalLoss
from kerasdet.losses.giou import GIoULoss
from kerasdet.losses.hierarchical_softmax_loss import HierarchicalSoftmaxLoss
from kerasdet.losses.smooth_l1 import SmoothL1Loss

__all__ = ["FocalLoss", "GIoULoss", "HierarchicalSoftmaxLoss", "SmoothL1Loss"]
