"""Feature extractors returning dicts of named maps (`C2`..`C5`, strides 4..32)."""

from kerasdet.backbones.mobilenet import MobileNetV2
from kerasdet.backbones.resnet import ResNet

__all__ = ["MobileNetV2", "ResNet"]
