"""VGG16 feature extractor (conv4_3, conv5_3, and SSD's fc6/fc7 as dilated convolutions)."""

from __future__ import annotations

import keras

from kerasdet.backbones._common import (
    FeatureBackbone,
    ImagePreprocessing,
    build_keras_application,
    check_input_shape,
    check_levels,
    check_weights,
)

#: output names and their strides
VGG_LEVEL_STRIDES = {"conv4_3": 8, "conv5_3": 16, "fc7": 16}
_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


@keras.saving.register_keras_serializable(package="kerasdet")
class VGG16(FeatureBackbone):
    """VGG16 (Simonyan and Zisserman, 2015) as a feature extractor with keras.applications' layer names.

    Outputs: `"conv4_3"` (stride 8, 512 channels, the map SSD L2-normalises), `"conv5_3"` (stride 16,
    512 channels, no pool5: the map Fast / Faster R-CNN pool RoIs from) and `"fc7"` (SSD's
    reduced VGG: pool5 3x3 stride 1, fc6 as a 3x3 convolution of 1024 channels dilated by 6, fc7 a 1x1
    convolution of 1024; stride 16). The network stops after the highest requested output.

    Padding: "same" convolutions and 2x2 stride-2 max pooling with "same" padding, so a map of stride
    `k` is `ceil(H / k) x ceil(W / k)`.

    Reference: K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", ICLR 2015; W. Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016 (fc6/fc7).

    Args:
        levels: outputs from `("conv4_3", "conv5_3", "fc7")`.
        width: channel multiplier (1.0 = the paper's).
        weights: None, `"imagenet"` (keras.applications.VGG16 convolutions; fc6/fc7 stay random) or a
            `.weights.h5` path.
        input_shape: `(height, width, 3)`.
        name: model name.

    Example:
        >>> backbone = VGG16(levels=("conv5_3",), width=0.25)
        >>> tuple(backbone(tf.zeros([1, 224, 224, 3]))["conv5_3"].shape)
        (1, 14, 14, 128)
    """

    _config_keys = ("width",)
    level_strides = VGG_LEVEL_STRIDES

    def __init__(self, levels=("conv5_3",), width=1.0, weights=None, input_shape=(None, None, 3), name=None, **kwargs):
        levels = check_levels(levels, allowed=tuple(VGG_LEVEL_STRIDES))
        weights = check_weights(weights)
        input_shape = check_input_shape(input_shape)
        if weights == "imagenet" and width != 1.0:
            raise ValueError(f"`weights='imagenet'` needs `width=1.0`; got width={width}")
        images = keras.Input(shape=input_shape, name="images")
        x = ImagePreprocessing("caffe", name="preprocessing")(images)
        outputs = {}
        for b, (filters, convs) in enumerate(_BLOCKS, start=1):
            if b > 1:
                x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name=f"block{b - 1}_pool")(x)
            for c in range(1, convs + 1):
                x = keras.layers.Conv2D(max(8, int(filters * width)), 3, padding="same", activation="relu",
                                        name=f"block{b}_conv{c}")(x)
            if b == 4:
                outputs["conv4_3"] = x
            if b == 5:
                outputs["conv5_3"] = x
            if levels[-1] == "conv4_3" and b == 4:
                break
        if "fc7" in levels:
            x = keras.layers.MaxPooling2D(3, strides=1, padding="same", name="pool5")(x)
            x = keras.layers.Conv2D(max(8, int(1024 * width)), 3, dilation_rate=6, padding="same", activation="relu",
                                    name="fc6")(x)
            outputs["fc7"] = keras.layers.Conv2D(max(8, int(1024 * width)), 1, activation="relu", name="fc7")(x)
        super().__init__(inputs=images, outputs={k: outputs[k] for k in levels}, name=name or "vgg16", **kwargs)
        self.levels = levels
        self.width = float(width)
        self.input_shape_arg = input_shape
        if weights == "imagenet":
            source = build_keras_application(keras.applications.VGG16, include_top=False, weights="imagenet",
                                             input_shape=(None, None, 3))
            for layer in source.layers:
                if layer.weights and layer.name in {lyr.name for lyr in self.layers}:
                    self.get_layer(layer.name).set_weights(layer.get_weights())
        elif weights is not None:
            self.load_weights(weights)
