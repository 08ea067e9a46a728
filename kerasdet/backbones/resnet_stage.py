"""ResNet's conv5 stage as a model of its own: the RoI head of the C4 detectors (ResNet paper, R-FCN)."""

from __future__ import annotations

import keras

from kerasdet.backbones._common import build_keras_application, check_positive
from kerasdet.backbones.training_mode import set_backbone_training
from kerasdet.backbones.resnet import _ARCHITECTURES, _KERAS_APPLICATIONS, _STAGE_FILTERS, _basic_block, \
    _bottleneck_block, _scaled


@keras.saving.register_keras_serializable(package="kerasdet")
class ResNetStage(keras.Model):
    """The conv5_x stage of a ResNet applied to pooled RoI features (`[N, 14, 14, C4 channels]` ->
    `[N, 7, 7, C5 channels]`, stride 2 in its first block), with keras.applications' layer names so that
    `weights="imagenet"` copies the ImageNet conv5 weights (depths 50, 101, 152).

    Reference: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
    CVPR 2016 (Faster R-CNN with ResNet: conv5 on RoIs, Appendix A).

    Args:
        depth: 18, 34, 50, 101 or 152.
        width: channel multiplier (as `ResNet`).
        stride: stride of the first block (2 as the paper; 1 keeps 14x14).
        weights: None or "imagenet".
        frozen_batch_norm: batch norm layers keep their statistics and scale (`set_backbone_training`).
        name: model name.

    Example:
        >>> head = ResNetStage(50, width=0.25)
        >>> tuple(head(tf.zeros([3, 14, 14, 256])).shape)
        (3, 7, 7, 512)
    """

    def __init__(self, depth=50, width=1.0, stride=2, weights=None, frozen_batch_norm=False, name=None, **kwargs):
        if depth not in _ARCHITECTURES:
            raise ValueError(f"`depth` must be one of {tuple(_ARCHITECTURES)}; got {depth!r}")
        width = check_positive(width, "width")
        if weights not in (None, "imagenet"):
            raise ValueError(f"`weights` must be None or 'imagenet'; got {weights!r}")
        if weights == "imagenet" and (depth not in _KERAS_APPLICATIONS or width != 1.0):
            raise ValueError("`weights='imagenet'` needs depth 50, 101 or 152 and width 1.0")
        kind, blocks = _ARCHITECTURES[depth]
        basic = kind == "basic"
        in_channels = _scaled(_STAGE_FILTERS[2], width) * (1 if basic else 4)
        inputs = keras.Input(shape=(None, None, in_channels), name="roi_features")
        x = inputs
        block = _basic_block if basic else _bottleneck_block
        filters = _scaled(_STAGE_FILTERS[3], width)
        for b in range(blocks[3]):
            x = block(x, filters, stride if b == 0 else 1, f"conv5_block{b + 1}")
        super().__init__(inputs=inputs, outputs=x, name=name or f"resnet{depth}_conv5", **kwargs)
        self.depth, self.width, self.stride = int(depth), float(width), int(stride)
        set_backbone_training(self, frozen_batch_norm)
        if weights == "imagenet":
            constructor = getattr(keras.applications, _KERAS_APPLICATIONS[depth])
            source = build_keras_application(constructor, include_top=False, weights="imagenet",
                                             input_shape=(None, None, 3))
            for layer in self.layers:
                if layer.weights:
                    layer.set_weights(source.get_layer(layer.name).get_weights())

    def get_config(self):
        return {"depth": self.depth, "width": self.width, "stride": self.stride, "weights": None,
                "frozen_batch_norm": self.frozen_batch_norm, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
