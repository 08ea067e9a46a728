"""MobileNetV2 feature extractor over keras.applications, returning the C2..C5 maps."""

from __future__ import annotations

import re
import warnings

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

# the keras.applications.MobileNetV2 layer giving each level
_LEVEL_LAYERS = {"C2": "block_2_add", "C3": "block_5_add", "C4": "block_12_add", "C5": "out_relu"}
_IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
#: the first keras.applications block of each stage 2..5 (the block that halves the resolution)
_FIRST_BLOCK_OF_STAGE = ((13, 5), (6, 4), (3, 3), (1, 2))
_BLOCK_NUMBER = re.compile(r"^block_(\d+)_")


@keras.saving.register_keras_serializable(package="kerasdet")
class MobileNetV2(FeatureBackbone):
    """MobileNetV2 feature extractor: a functional model from RGB images to a dict of C-level maps.

    Wraps `keras.applications.MobileNetV2(include_top=False)` and returns the outputs of its layers
    `block_2_add` (C2, stride 4, 24·alpha channels), `block_5_add` (C3, stride 8, 32·alpha),
    `block_12_add` (C4, stride 16, 96·alpha) and `out_relu` (C5, stride 32, 1280 channels for
    alpha <= 1) - the last block of each resolution (channel counts rounded to multiples of 8 as
    Keras does). Only the layers up to the highest requested level are part of the model.

    Images come in as RGB 0..255 (DESIGN.md §3); a first `ImagePreprocessing("tf")` layer maps them
    to [-1, 1] as the ImageNet weights expect.

    Feature sizes: for `H`, `W` multiples of 32 a level of stride `k` is exactly `H / k x W / k`.
    Otherwise Keras' stride-2 blocks pad for an even size, so with a dynamic `input_shape` an odd
    size `s` becomes `floor(s / 2)` (with a fixed `input_shape`, `ceil(s / 2)`); `FeaturePyramid`
    accepts either.

    Reference: M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2: Inverted
    Residuals and Linear Bottlenecks", CVPR 2018.

    Args:
        alpha: width multiplier (Keras' `alpha`); 0.35 gives a compact model that trains on a CPU.
            ImageNet weights exist for 0.35, 0.5, 0.75, 1.0, 1.3 and 1.4.
        levels: the outputs to return, names from `("C2", "C3", "C4", "C5")`.
        weights: None (random), `"imagenet"` or the path of a `.weights.h5` file saved from the same
            configuration. `"imagenet"` is passed to `keras.applications.MobileNetV2`, which fetches
            the 224x224 no-top file through `keras.utils.get_file` (network on first use, then the
            Keras cache `$KERAS_HOME/models/`).
        input_shape: `(height, width, 3)`; None sizes (default) accept any image size >= 32.
        name: model name, default `"mobilenet_v2"`.
        **kwargs: `keras.Model` arguments (`trainable`...).

    Call arguments:
        images: `[B, H, W, 3]` RGB 0..255, any float or integer dtype.

    Returns:
        dict level name -> `[B, H / stride, W / stride, C]`.

    Example:
        >>> backbone = MobileNetV2(alpha=0.35, levels=("C3", "C4", "C5"))
        >>> {k: tuple(v.shape) for k, v in backbone(tf.zeros([1, 256, 256, 3])).items()}
        {'C3': (1, 32, 32, 16), 'C4': (1, 16, 16, 32), 'C5': (1, 8, 8, 1280)}
    """

    _config_keys = ("alpha",)

    def __init__(
        self,
        alpha=1.0,
        levels=("C2", "C3", "C4", "C5"),
        weights=None,
        input_shape=(None, None, 3),
        name=None,
        **kwargs,
    ):
        alpha = check_positive(alpha, "alpha")
        levels = check_levels(levels)
        weights = check_weights(weights)
        input_shape = check_input_shape(input_shape)
        if weights == "imagenet" and alpha not in _IMAGENET_ALPHAS:
            raise ValueError(f"`weights='imagenet'` needs `alpha` in {_IMAGENET_ALPHAS}; got alpha={alpha}")

        images = keras.Input(shape=input_shape, name="images")
        x = ImagePreprocessing("tf", name="preprocessing")(images)
        with warnings.catch_warnings():
            # dynamic or non-square inputs: Keras notes that it loads the 224x224 weights, as intended
            warnings.filterwarnings("ignore", message=".*input_shape.*undefined or non-square.*")
            network = build_keras_application(
                keras.applications.MobileNetV2,
                input_tensor=x,
                include_top=False,
                alpha=alpha,
                weights="imagenet" if weights == "imagenet" else None,
            )
        outputs = {level: network.get_layer(_LEVEL_LAYERS[level]).output for level in levels}
        super().__init__(inputs=images, outputs=outputs, name=name or "mobilenet_v2", **kwargs)

        self.alpha = alpha
        self.levels = levels
        self.input_shape_arg = input_shape
        if weights not in (None, "imagenet"):
            self.load_weights(weights)

    def stage_of_layer(self, layer_name):
        """Stages by the stride a block ends at: the stem (`Conv1`, `expanded_conv`) 1, `block_1`-`block_2` 2,
        `block_3`-`block_5` 3, `block_6`-`block_12` 4, `block_13`-`block_16` and `Conv_1` 5."""
        if layer_name.startswith(("Conv1", "bn_Conv1", "expanded_conv")):
            return 1
        if layer_name.startswith(("Conv_1", "out_relu")):
            return 5
        m = _BLOCK_NUMBER.match(layer_name)
        if m is None:
            return None
        block = int(m.group(1))
        return next(stage for first, stage in _FIRST_BLOCK_OF_STAGE if block >= first)

