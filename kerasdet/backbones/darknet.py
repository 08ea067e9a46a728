"""Darknet-19 (YOLOv2's backbone): 3x3 and 1x1 convolutions with batch norm and leaky ReLU, five max pools."""

from __future__ import annotations

import re

import keras

from kerasdet.backbones._common import (
    FeatureBackbone,
    ImagePreprocessing,
    check_input_shape,
    check_levels,
    check_positive,
    check_weights,
)

_STAGE_NAME = re.compile(r"^conv(\d)_")
DARKNET_LEVEL_STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}
#: Darknet-19's convolutions after each max pool (Redmon and Farhadi, 2017, Table 6): (filters, kernel) per stage,
#: stage 1 at stride 1, stage k at stride 2**(k-1); C2..C5 are the last layers of stages 3..6
DARKNET19_STAGES = (
    ((32, 3),),
    ((64, 3),),
    ((128, 3), (64, 1), (128, 3)),
    ((256, 3), (128, 1), (256, 3)),
    ((512, 3), (256, 1), (512, 3), (256, 1), (512, 3)),
    ((1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3)),
)


def darknet_conv(filters, kernel, name):
    """Darknet's convolutional block as one layer: a "same" convolution without bias, batch norm, leaky ReLU
    (slope 0.1). Darknet-19 and the YOLO heads are built of it."""
    return keras.Sequential([
        keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv"),
        keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.99, name=f"{name}_bn"),
        keras.layers.LeakyReLU(negative_slope=0.1, name=f"{name}_leaky"),
    ], name=name)


@keras.saving.register_keras_serializable(package="kerasdet")
class Darknet19(FeatureBackbone):
    """Darknet-19 as a feature extractor: outputs `"C2"`..`"C5"` (strides 4 .. 32; 128, 256, 512, 1024 channels).

    Every convolution is "same"-padded, without bias, followed by batch norm and leaky ReLU (0.1); 2x2 stride-2
    max pools ("same") separate the six stages of Table 6 of the YOLO9000 paper. The classifier's final 1x1
    convolution is not part of it. `"C4"` is the 26x26x512 map at 416 px that YOLOv2's passthrough reads,
    `"C5"` the 13x13x1024 map it detects on. The network stops after the highest requested level.
    Inputs are scaled to [-1, 1] (darknet scales to [0, 1]; with batch norm after the first convolution the two
    differ only by the first batch norm's statistics, which an import of darknet `.weights` would have to fold).

    Reference: J. Redmon, A. Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017, §3 and Table 6.

    Args:
        levels: outputs from `("C2", "C3", "C4", "C5")`.
        width: channel multiplier (1.0 = the paper's; at least 8 channels per layer).
        weights: None or a `.weights.h5` path (no ImageNet weights exist for Keras).
        input_shape: `(height, width, 3)`.
        name: model name.

    Example:
        >>> backbone = Darknet19(levels=("C4", "C5"), width=0.25)
        >>> {k: tuple(v.shape) for k, v in backbone(tf.zeros([1, 416, 416, 3])).items()}
        {'C4': (1, 26, 26, 128), 'C5': (1, 13, 13, 256)}
    """

    _config_keys = ("width",)
    level_strides = DARKNET_LEVEL_STRIDES

    def __init__(self, levels=("C4", "C5"), width=1.0, weights=None, input_shape=(None, None, 3), name=None,
                 **kwargs):
        levels = check_levels(levels, allowed=tuple(DARKNET_LEVEL_STRIDES))
        width = check_positive(width, "width")
        weights = check_weights(weights)
        if weights == "imagenet":
            raise ValueError("`weights='imagenet'` is not available for Darknet-19 (no Keras ImageNet weights exist)")
        input_shape = check_input_shape(input_shape)
        images = keras.Input(shape=input_shape, name="images")
        x = ImagePreprocessing("tf", name="preprocessing")(images)
        outputs = {}
        last_stage = 1 + max(int(level[1]) for level in levels)  # C_k ends stage k + 1
        for stage, convs in enumerate(DARKNET19_STAGES[:last_stage], start=1):
            if stage > 1:
                x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name=f"pool{stage - 1}")(x)
            for i, (filters, kernel) in enumerate(convs, start=1):
                x = darknet_conv(max(8, int(round(filters * width))), kernel, name=f"conv{stage}_{i}")(x)
            if stage >= 3:
                outputs[f"C{stage - 1}"] = x
        super().__init__(inputs=images, outputs={k: outputs[k] for k in levels}, name=name or "darknet19", **kwargs)
        self.levels = levels
        self.width = width
        self.input_shape_arg = input_shape
        if weights is not None:
            self.load_weights(weights)

    def stage_of_layer(self, layer_name):
        """Darknet-19's first two stages (strides 1 and 2) are the stem, stage 1; `conv{k}_...` for k >= 3 ends
        at C{k-1} and is stage k - 1."""
        m = _STAGE_NAME.match(layer_name)
        return None if m is None else max(int(m.group(1)) - 1, 1)
