"""Feature extractors returning dicts of named maps (`C2`..`C5` for ResNet and the MobileNets,
`conv4_3` / `conv5_3` / `fc7` for VGG16, `conv5` for ZF net) and the ResNet conv5 RoI head."""

from kerasdet.backbones.darknet import Darknet19
from kerasdet.backbones.mobilenet import MobileNetV2
from kerasdet.backbones.mobilenet_v3 import MobileNetV3Large
from kerasdet.backbones.resnet import ResNet
from kerasdet.backbones.resnet_stage import ResNetStage
from kerasdet.backbones.training_mode import set_backbone_training
from kerasdet.backbones.vgg import VGG16
from kerasdet.backbones.zf import ZFNet

__all__ = ["Darknet19", "MobileNetV2", "MobileNetV3Large", "ResNet", "ResNetStage", "VGG16", "ZFNet", "set_backbone_training"]
