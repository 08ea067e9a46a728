"""ZF net (Zeiler and Fergus, 2014): the small backbone of the Faster R-CNN paper."""

from __future__ import annotations

import keras

from kerasdet.backbones._common import (
    FeatureBackbone,
    ImagePreprocessing,
    check_input_shape,
    check_levels,
    check_weights,
)

ZF_LEVEL_STRIDES = {"conv5": 16}


@keras.saving.register_keras_serializable(package="kerasdet")
class ZFNet(FeatureBackbone):
    """The five convolutional layers of ZF net as used by Faster R-CNN, returning `"conv5"` (stride 16).

    conv1 96 7x7 stride 2 -> 3x3 stride-2 max pool -> conv2 256 5x5 stride 2 -> 3x3 stride-2 max pool
    -> conv3 384 3x3 -> conv4 384 3x3 -> conv5 256 3x3, ReLU after each, "same" padding (the Caffe
    model's local response normalisation after conv1 and conv2 is left out: it is a no-op for
    detection quality in later work and has no Keras layer). No public Keras ImageNet weights exist.

    Reference: M. D. Zeiler, R. Fergus, "Visualizing and Understanding Convolutional Networks",
    ECCV 2014; S. Ren et al., "Faster R-CNN", NIPS 2015 (its ZF model).

    Args:
        levels: `("conv5",)`.
        width: channel multiplier.
        weights: None or a `.weights.h5` path.
        input_shape: `(height, width, 3)`.
        name: model name.

    Example:
        >>> tuple(ZFNet()(tf.zeros([1, 224, 224, 3]))["conv5"].shape)
        (1, 14, 14, 256)
    """

    _config_keys = ("width",)
    level_strides = ZF_LEVEL_STRIDES

    def __init__(self, levels=("conv5",), width=1.0, weights=None, input_shape=(None, None, 3), name=None, **kwargs):
        levels = check_levels(levels, allowed=tuple(ZF_LEVEL_STRIDES))
        weights = check_weights(weights)
        if weights == "imagenet":
            raise ValueError("`weights='imagenet'` is not available for ZF net (no Keras ImageNet weights exist)")
        input_shape = check_input_shape(input_shape)

        def channels(c):
            return max(8, int(c * width))

        images = keras.Input(shape=input_shape, name="images")
        x = ImagePreprocessing("caffe", name="preprocessing")(images)
        x = keras.layers.Conv2D(channels(96), 7, strides=2, padding="same", activation="relu", name="conv1")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
        x = keras.layers.Conv2D(channels(256), 5, strides=2, padding="same", activation="relu", name="conv2")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
        x = keras.layers.Conv2D(channels(384), 3, padding="same", activation="relu", name="conv3")(x)
        x = keras.layers.Conv2D(channels(384), 3, padding="same", activation="relu", name="conv4")(x)
        x = keras.layers.Conv2D(channels(256), 3, padding="same", activation="relu", name="conv5")(x)
        super().__init__(inputs=images, outputs={"conv5": x}, name=name or "zf", **kwargs)
        self.levels = levels
        self.width = float(width)
        self.input_shape_arg = input_shape
        if weights is not None:
            self.load_weights(weights)
