"""MobileNetV3-Large feature extractor (torchvision's layout, with its reduced tail), returning C2..C5 and the
expansion that SSDLite reads."""

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

#: every output the backbone can return and its stride; "C4_expansion" is the 1x1 expansion of the first stride-32
#: block, still at stride 16 (where the MobileNetV3 paper, §6.3, and torchvision's SSDLite attach the first map)
MOBILENET_V3_LEVEL_STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C4_expansion": 16, "C5": 32}

#: Table 1 of the paper (MobileNetV3-Large): (kernel, expansion, output, squeeze-and-excite, activation, stride);
#: "RE" ReLU, "HS" hard-swish. With `reduced_tail` the last three blocks have half the expansion and output.
LARGE_BLOCKS = (
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)
#: the output named by the stride of the blocks it ends
_LEVEL_BEFORE_STRIDE_2 = {4: "C2", 8: "C3", 16: "C4"}
#: stage of each block (1-based), by the stride its output has: 2 -> 1 (with the stem), 4 -> 2 ... 32 -> 5
_STAGE_OF_BLOCK = {}
_stride = 2
for _index, _spec in enumerate(LARGE_BLOCKS, start=1):
    _stride *= _spec[-1]
    _STAGE_OF_BLOCK[_index] = _stride.bit_length() - 1
del _stride, _index, _spec
_BLOCK_NUMBER = re.compile(r"^block(\d+)_")
_BN = dict(epsilon=1e-3, momentum=0.97)  # torchvision's SSDLite: eps 0.001, momentum 0.03 (PyTorch's convention)


def make_divisible(value, divisor=8):
    """The channel rounding of the MobileNets: the nearest multiple of `divisor` (at least `divisor`), never more
    than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _activation(kind, name):
    if kind == "RE":
        return keras.layers.ReLU(name=name)
    return keras.layers.Activation("hard_swish", name=name)


def _squeeze_excite(x, channels, name):
    """Global average, a layer to `make_divisible(channels / 4)` with ReLU, one back with hard sigmoid, times x
    (torchvision's 1x1 convolutions on the pooled 1x1 map, as dense layers: the same parameters, less overhead)."""
    scale = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    scale = keras.layers.Dense(make_divisible(channels // 4), activation="relu", name=f"{name}_reduce")(scale)
    scale = keras.layers.Dense(channels, activation="hard_sigmoid", name=f"{name}_expand")(scale)
    scale = keras.layers.Reshape((1, 1, channels), name=f"{name}_gate")(scale)
    return keras.layers.Multiply(name=f"{name}_scale")([x, scale])


@keras.saving.register_keras_serializable(package="kerasdet")
class MobileNetV3Large(FeatureBackbone):
    """MobileNetV3-Large as a feature extractor: a functional model from RGB images to a dict of maps.

    The stem (3x3 stride-2 convolution, 16 channels, hard-swish), the 15 inverted-residual blocks of the paper's
    Table 1 (1x1 expansion when it widens, depthwise k x k, squeeze-and-excite where marked, linear 1x1
    projection, a residual connection when stride 1 keeps the width) and the last 1x1 convolution to 6x the last
    block's width (960, or 480 with `reduced_tail`), with batch norm after every convolution but the
    squeeze-and-excite ones. Convolutions are "same"-padded. Channels scale with `width` (rounded to multiples of 8).

    Outputs: `"C2"` .. `"C4"` the last block of strides 4, 8 and 16 (24, 40, 112 channels), `"C4_expansion"` the
    1x1 expansion (with its activation) of the first stride-32 block, still at stride 16 (672 channels: where
    SSDLite attaches its first map, paper §6.3), and `"C5"` the last convolution (stride 32). The network stops
    at the deepest requested output (Keras keeps only the layers that lead to an output).

    `reduced_tail` halves the last three blocks and the last convolution (the paper's §6.1.1 reduction for
    detection; torchvision's `ssdlite320_mobilenet_v3_large` uses it when it starts without ImageNet weights).
    Inputs are scaled to [-1, 1] (torchvision's SSDLite normalises with mean and std 0.5).

    Reference: A. Howard et al., "Searching for MobileNetV3", ICCV 2019.

    Args:
        width: channel multiplier.
        reduced_tail: halve the tail (see above).
        levels: outputs from `("C2", "C3", "C4", "C4_expansion", "C5")`.
        weights: None or a `.weights.h5` path (no ImageNet weights of this layout exist for Keras).
        input_shape: `(height, width, 3)`.
        name: model name, default `"mobilenet_v3_large"`.
        **kwargs: `keras.Model` arguments.

    Call arguments:
        images: `[B, H, W, 3]` RGB 0..255, any float or integer dtype.

    Returns:
        dict output name -> `[B, H / stride, W / stride, C]`.

    Example:
        >>> backbone = MobileNetV3Large(reduced_tail=True, levels=("C4_expansion", "C5"))
        >>> {k: tuple(v.shape) for k, v in backbone(tf.zeros([1, 320, 320, 3])).items()}
        {'C4_expansion': (1, 20, 20, 672), 'C5': (1, 10, 10, 480)}
    """

    _config_keys = ("width", "reduced_tail")
    level_strides = MOBILENET_V3_LEVEL_STRIDES

    def __init__(self, width=1.0, reduced_tail=False, levels=("C2", "C3", "C4", "C5"), weights=None,
                 input_shape=(None, None, 3), name=None, **kwargs):
        width = check_positive(width, "width")
        if not isinstance(reduced_tail, bool):
            raise ValueError(f"`reduced_tail` must be True or False; got {reduced_tail!r}")
        levels = check_levels(levels, allowed=tuple(MOBILENET_V3_LEVEL_STRIDES))
        weights = check_weights(weights)
        if weights == "imagenet":
            raise ValueError("`weights='imagenet'`: no ImageNet weights of this MobileNetV3 exist for Keras; "
                             "use None or a .weights.h5 file")
        input_shape = check_input_shape(input_shape)
        blocks = [list(spec) for spec in LARGE_BLOCKS]
        if reduced_tail:
            for spec in blocks[-3:]:
                spec[1] = spec[1] // 2 if spec[1] != 672 else spec[1]
                spec[2] //= 2

        images = keras.Input(shape=input_shape, name="images")
        x = ImagePreprocessing("tf", name="preprocessing")(images)
        x = keras.layers.Conv2D(make_divisible(16 * width), 3, strides=2, padding="same", use_bias=False,
                                name="stem_conv")(x)
        x = keras.layers.BatchNormalization(**_BN, name="stem_bn")(x)
        x = _activation("HS", "stem_act")(x)
        found = {}
        stride = 2
        channels = make_divisible(16 * width)
        for index, (kernel, expansion, out, se, act, step) in enumerate(blocks, start=1):
            prefix = f"block{index}"
            expansion, out = make_divisible(expansion * width), make_divisible(out * width)
            if step == 2 and stride in _LEVEL_BEFORE_STRIDE_2:  # the last block of a stride: its output is a level
                found[_LEVEL_BEFORE_STRIDE_2[stride]] = x
            inputs = x
            if expansion != channels:
                x = keras.layers.Conv2D(expansion, 1, use_bias=False, name=f"{prefix}_expand")(x)
                x = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_expand_bn")(x)
                x = _activation(act, f"{prefix}_expand_act")(x)
            if step == 2 and stride == 16:
                found["C4_expansion"] = x
            x = keras.layers.DepthwiseConv2D(kernel, strides=step, padding="same", use_bias=False,
                                             name=f"{prefix}_depthwise")(x)
            x = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_depthwise_bn")(x)
            x = _activation(act, f"{prefix}_depthwise_act")(x)
            if se:
                x = _squeeze_excite(x, expansion, f"{prefix}_se")
            x = keras.layers.Conv2D(out, 1, use_bias=False, name=f"{prefix}_project")(x)
            x = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_project_bn")(x)
            if step == 1 and channels == out:
                x = keras.layers.Add(name=f"{prefix}_add")([inputs, x])
            channels, stride = out, stride * step
        if "C5" in levels:
            x = keras.layers.Conv2D(6 * channels, 1, use_bias=False, name="last_conv")(x)
            x = keras.layers.BatchNormalization(**_BN, name="last_bn")(x)
            found["C5"] = _activation("HS", "last_act")(x)
        super().__init__(inputs=images, outputs={level: found[level] for level in levels},
                         name=name or "mobilenet_v3_large", **kwargs)
        self.width = width
        self.reduced_tail = reduced_tail
        self.levels = levels
        self.input_shape_arg = input_shape
        if weights is not None:
            self.load_weights(weights)

    def stage_of_layer(self, layer_name):
        """Stages by the stride a block ends at: the stem and `block1` 1, `block2`-`block3` 2, `block4`-`block6` 3,
        `block7`-`block12` 4, `block13`-`block15` and the last convolution 5 (torchvision's stages of the same
        network start at the same blocks)."""
        if layer_name.startswith("stem_"):
            return 1
        if layer_name.startswith("last_"):
            return 5
        m = _BLOCK_NUMBER.match(layer_name)
        return None if m is None else _STAGE_OF_BLOCK.get(int(m.group(1)))
