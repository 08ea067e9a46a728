"""ResNet feature extractors (depths 18, 34, 50, 101, 152) returning the C2..C5 maps."""

from __future__ import annotations

import numbers

import keras

from kerasdet.backbones._common import (
    FeatureBackbone,
    ImagePreprocessing,
    build_keras_application,
    check_input_shape,
    check_levels,
    check_positive,
    check_weights,
)

# depth -> (block type, blocks per stage conv2..conv5)
_ARCHITECTURES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_KERAS_APPLICATIONS = {50: "ResNet50", 101: "ResNet101", 152: "ResNet152"}
_STAGE_FILTERS = (64, 128, 256, 512)
_STAGES = ("C2", "C3", "C4", "C5")


def _scaled(channels: int, width: float) -> int:
    """`channels * width` rounded to a multiple of 8 (at least 8)."""
    return max(8, int(round(channels * width / 8.0)) * 8)


def _bn(x, name, basic):
    # basic blocks: torchvision's BatchNorm (eps 1e-5, momentum 0.1 there = 0.9 here);
    # bottleneck blocks: keras.applications' (eps 1.001e-5, Keras momentum 0.99)
    if basic:
        return keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=name)(x)
    return keras.layers.BatchNormalization(epsilon=1.001e-5, name=name)(x)


def _conv(x, filters, kernel, stride, name, basic):
    """A convolution with torchvision padding (`kernel // 2` on each side) in both layouts."""
    if stride > 1 and kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=name.replace("_conv", "_pad"))(x)
        padding = "valid"
    else:
        padding = "same" if kernel > 1 else "valid"
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=not basic, name=name)(x)


def _basic_block(x, filters, stride, name):
    """Two 3x3 convolutions (ResNet-18/34) with a projection shortcut when the shape changes."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(x, filters, 1, stride, f"{name}_0_conv", True)
        shortcut = _bn(shortcut, f"{name}_0_bn", True)
    y = _conv(x, filters, 3, stride, f"{name}_1_conv", True)
    y = _bn(y, f"{name}_1_bn", True)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = _conv(y, filters, 3, 1, f"{name}_2_conv", True)
    y = _bn(y, f"{name}_2_bn", True)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def _bottleneck_block(x, filters, stride, name):
    """1x1 (stride here, as Keras' ResNet v1) - 3x3 - 1x1 x4, layer names as in keras.applications."""
    shortcut = x
    if stride != 1 or x.shape[-1] != 4 * filters:
        shortcut = _conv(x, 4 * filters, 1, stride, f"{name}_0_conv", False)
        shortcut = _bn(shortcut, f"{name}_0_bn", False)
    y = _conv(x, filters, 1, stride, f"{name}_1_conv", False)
    y = _bn(y, f"{name}_1_bn", False)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = _conv(y, filters, 3, 1, f"{name}_2_conv", False)
    y = _bn(y, f"{name}_2_bn", False)
    y = keras.layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = _conv(y, 4 * filters, 1, 1, f"{name}_3_conv", False)
    y = _bn(y, f"{name}_3_bn", False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def _resnet_features(x, depth, width, last_stage):
    """Stem and stages conv2..`last_stage`; returns {"C2": ..., ...} up to `last_stage`."""
    kind, blocks = _ARCHITECTURES[depth]
    basic = kind == "basic"
    block_fn = _basic_block if basic else _bottleneck_block
    x = _conv(x, _scaled(64, width), 7, 2, "conv1_conv", basic)
    x = _bn(x, "conv1_bn", basic)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    features = {}
    for i, level in enumerate(_STAGES[: _STAGES.index(last_stage) + 1]):
        filters = _scaled(_STAGE_FILTERS[i], width)
        for b in range(blocks[i]):
            stride = 2 if (b == 0 and i > 0) else 1
            x = block_fn(x, filters, stride, f"conv{i + 2}_block{b + 1}")
        features[level] = x
    return features


@keras.saving.register_keras_serializable(package="kerasdet")
class ResNet(FeatureBackbone):
    """ResNet v1 feature extractor: a functional model from RGB images to a dict of C-level maps.

    `C2`, `C3`, `C4`, `C5` are the outputs of the stages conv2_x .. conv5_x, at strides 4, 8, 16, 32
    (`LEVEL_STRIDES`). Ask for `levels=("C2", "C3", "C4", "C5")` (or `("C3", "C4", "C5")`) to feed a
    `FeaturePyramid`, or `levels=("C4",)` for the single stride-16 map of C4 detectors (Faster R-CNN /
    R-FCN with a ResNet-C4 trunk); the model then stops after conv4_x.

    Images come in as RGB 0..255 (DESIGN.md §3) and are preprocessed inside the model by a first
    `ImagePreprocessing` layer: `"caffe"` (BGR, ImageNet means subtracted) for depths 50/101/152, as the
    Keras ImageNet weights expect; `"torch"` (`(x / 255 - mean) / std`) for depths 18/34.

    Architectures: depths 50, 101 and 152 use bottleneck blocks with the exact layer names, layout
    (convolution biases, stride on the first 1x1 convolution, BatchNorm epsilon 1.001e-5) of
    `keras.applications.ResNet50/101/152`; depths 18 and 34 use basic blocks in torchvision's layout
    (no convolution biases, BatchNorm epsilon 1e-5, momentum 0.9, symmetric padding).

    Feature sizes: every stride-2 step maps a size `s` to `ceil(s / 2)`, so a level of stride `k` has
    `ceil(H / k) x ceil(W / k)` pixels (exactly `H / k` when `H` and `W` are multiples of 32).

    Reference: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
    CVPR 2016.

    Args:
        depth: 18, 34, 50, 101 or 152.
        levels: the outputs to return, names from `("C2", "C3", "C4", "C5")`.
        width: channel multiplier for every layer (1.0 = the paper's widths); channel counts are
            rounded to multiples of 8. Use 0.25..0.5 for a compact model that trains on a CPU
            (e.g. `ResNet(18, width=0.25)`).
        weights: None (random), `"imagenet"` or the path of a `.weights.h5` file saved from the same
            configuration. `"imagenet"` needs `depth` in (50, 101, 152) and `width=1.0`: it builds
            `keras.applications.ResNet{depth}(weights="imagenet")`, which fetches the weights through
            `keras.utils.get_file` (network on first use, then the Keras cache `$KERAS_HOME/models/`),
            and copies them layer by layer. No Keras ImageNet weights exist for ResNet-18/34.
        input_shape: `(height, width, 3)`; None sizes (default) accept any image size >= 32.
        name: model name, default `"resnet{depth}"`.
        **kwargs: `keras.Model` arguments (`trainable`...).

    Call arguments:
        images: `[B, H, W, 3]` RGB 0..255, any float or integer dtype.

    Returns:
        dict level name -> `[B, ceil(H / stride), ceil(W / stride), C]`.

    Example:
        >>> backbone = ResNet(18, levels=("C3", "C4", "C5"), width=0.25)
        >>> {k: tuple(v.shape) for k, v in backbone(tf.zeros([1, 256, 256, 3])).items()}
        {'C3': (1, 32, 32, 32), 'C4': (1, 16, 16, 64), 'C5': (1, 8, 8, 128)}
    """

    _config_keys = ("depth", "width")

    def __init__(
        self,
        depth=50,
        levels=("C2", "C3", "C4", "C5"),
        width=1.0,
        weights=None,
        input_shape=(None, None, 3),
        name=None,
        **kwargs,
    ):
        if not isinstance(depth, numbers.Integral) or isinstance(depth, bool) or depth not in _ARCHITECTURES:
            raise ValueError(f"`depth` must be one of {tuple(_ARCHITECTURES)}; got {depth!r}")
        depth = int(depth)
        levels = check_levels(levels)
        width = check_positive(width, "width")
        weights = check_weights(weights)
        input_shape = check_input_shape(input_shape)
        if weights == "imagenet" and depth not in _KERAS_APPLICATIONS:
            raise ValueError(
                f"`weights='imagenet'` is not available for ResNet-{depth}: keras.applications has no "
                f"ResNet-{depth} (no Keras ImageNet weights exist); use depth 50, 101 or 152, or weights=None"
            )
        if weights == "imagenet" and width != 1.0:
            raise ValueError(f"`weights='imagenet'` needs `width=1.0` (the ImageNet model's widths); got width={width}")

        basic = _ARCHITECTURES[depth][0] == "basic"
        images = keras.Input(shape=input_shape, name="images")
        x = ImagePreprocessing("torch" if basic else "caffe", name="preprocessing")(images)
        features = _resnet_features(x, depth, width, levels[-1])
        outputs = {level: features[level] for level in levels}
        super().__init__(inputs=images, outputs=outputs, name=name or f"resnet{depth}", **kwargs)

        self.depth = depth
        self.levels = levels
        self.width = width
        self.input_shape_arg = input_shape
        if weights == "imagenet":
            _copy_keras_applications_weights(self, depth)
        elif weights is not None:
            self.load_weights(weights)


def _copy_keras_applications_weights(model, depth):
    """Loads keras.applications' ImageNet ResNet and copies its weights into `model` by layer name."""
    constructor = getattr(keras.applications, _KERAS_APPLICATIONS[depth])
    source = build_keras_application(constructor, include_top=False, weights="imagenet", input_shape=(None, None, 3))
    source_layers = {layer.name: layer for layer in source.layers}
    for layer in model.layers:
        if not layer.weights:
            continue
        values = source_layers[layer.name].get_weights()
        for variable, value in zip(layer.weights, values):
            if tuple(variable.shape) != value.shape:
                raise ValueError(
                    f"ImageNet weight for layer {layer.name!r} has shape {value.shape}; "
                    f"the model expects {tuple(variable.shape)}"
                )
        layer.set_weights(values)
