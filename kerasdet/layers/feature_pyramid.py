"""Feature Pyramid Network: P-level maps from a backbone's C-level maps, with RetinaNet's P6/P7."""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf

_EXTRA_FROM = ("backbone", "pyramid", "subsample")


def _level_of(key) -> int | None:
    if isinstance(key, str) and len(key) >= 2 and key[0] == "C" and key[1:].isdigit():
        return int(key[1:])
    return None


def _upsample_like(coarse, lateral):
    """Nearest-neighbour resize of `coarse` to the height and width of `lateral`.

    When `lateral` is exactly twice as large this is the plain 2x nearest upsampling of the paper
    (half-pixel centres: output pixel `i` reads input pixel `i // 2`).
    """
    static = coarse.shape[1:3].as_list() + lateral.shape[1:3].as_list()
    if None not in static and static[2] == 2 * static[0] and static[3] == 2 * static[1]:
        return tf.repeat(tf.repeat(coarse, 2, axis=1), 2, axis=2)
    size = tf.shape(lateral)[1:3]
    return tf.image.resize(coarse, size, method="nearest")


@keras.saving.register_keras_serializable(package="kerasdet")
class FeaturePyramid(keras.layers.Layer):
    """Feature Pyramid Network (Lin et al. 2017) with RetinaNet's extra coarse levels.

    For every backbone level `l` from `min_level` up to the highest available one (at most
    `max_level`): a 1x1 lateral convolution of `C_l` to `num_channels`, plus the nearest-neighbour
    upsampled merged map from level `l + 1` (top-down pathway), then a 3x3 output convolution gives
    `P_l`. Levels above the backbone's are extra levels: the first is a 3x3 stride-2 convolution of the
    highest backbone map (`extra_from="backbone"`, e.g. P6 from C5 as in the RetinaNet paper) or of the
    highest pyramid map (`extra_from="pyramid"`, P6 from P5 as in torchvision and FCOS); each next one
    is a 3x3 stride-2 convolution of the ReLU of the previous (P7 = conv(relu(P6))). With the defaults,
    C3-C5 give RetinaNet's P3-P7, all with 256 channels.

    Sizes: `P_l` has the height and width of `C_l`. The top-down map is resized (nearest neighbour,
    `tf.image.resize` half-pixel centres) to the lateral's size, which is plain 2x upsampling when the
    input size is a multiple of the coarsest stride (e.g. 32 for C5) and, otherwise, stays aligned with
    whatever rounding the backbone used (`ceil` for ResNet). Extra levels use "same" padding:
    `ceil(size / 2)` per level.

    Computations follow the layer's dtype policy (float16 under `mixed_float16`).

    Reference: T.-Y. Lin, P. Dollár, R. Girshick, K. He, B. Hariharan, S. Belongie, "Feature Pyramid
    Networks for Object Detection", CVPR 2017; T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár,
    "Focal Loss for Dense Object Detection", ICCV 2017 (P6, P7).

    Args:
        min_level: the finest output level (3 for RetinaNet, 2 for Mask R-CNN's FPN).
        max_level: the coarsest output level (7 for RetinaNet, 5 or 6 for Faster/Mask R-CNN).
        num_channels: channels of every output map.
        extra_from: `"backbone"` or `"pyramid"`: the input of the first extra level (see above); or
            `"subsample"`: each extra level is the previous one subsampled with stride 2 (no parameters;
            the FPN paper's P6 for the RPN, as torchvision and Detectron2).
        kernel_initializer: initializer of every convolution kernel (biases start at 0).
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`...).

    Call arguments:
        features: dict `{"C3": [B, H3, W3, c3], "C4": ..., "C5": ...}`; keys `C{l}` for every level
            from `min_level` to `min(max_level, highest key)` must be there; other keys are ignored.

    Returns:
        dict `{"P{l}": [B, H_l, W_l, num_channels]}` for `l` in `min_level..max_level`.

    Example:
        >>> fpn = FeaturePyramid(min_level=3, max_level=7, num_channels=64)
        >>> c = {"C3": tf.zeros([1, 32, 32, 32]), "C4": tf.zeros([1, 16, 16, 64]), "C5": tf.zeros([1, 8, 8, 128])}
        >>> {k: tuple(v.shape) for k, v in fpn(c).items()}
        {'P3': (1, 32, 32, 64), 'P4': (1, 16, 16, 64), 'P5': (1, 8, 8, 64), 'P6': (1, 4, 4, 64), 'P7': (1, 2, 2, 64)}
    """

    def __init__(
        self,
        min_level=3,
        max_level=7,
        num_channels=256,
        extra_from="backbone",
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg, value in (("min_level", min_level), ("max_level", max_level), ("num_channels", num_channels)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{arg}` must be a positive integer; got {value!r}")
        if max_level < min_level:
            raise ValueError(f"`max_level` ({max_level}) must be >= `min_level` ({min_level})")
        if extra_from not in _EXTRA_FROM:
            raise ValueError(f"`extra_from` must be one of {_EXTRA_FROM}; got {extra_from!r}")
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.num_channels = int(num_channels)
        self.extra_from = extra_from
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    # ---------------------------------------------------------------- structure

    def _backbone_levels(self, features) -> list:
        """The C levels used, checked against the `features` dict (keys or shapes)."""
        if not isinstance(features, dict):
            raise TypeError(
                f"`features` must be a dict of feature maps keyed 'C{self.min_level}', 'C{self.min_level + 1}', "
                f"...; got {type(features).__name__}"
            )
        available = sorted(lvl for lvl in map(_level_of, features) if lvl is not None)
        if not available or available[-1] < self.min_level:
            raise ValueError(
                f"`features` must hold 'C{self.min_level}' and the levels above it; got keys {sorted(features)}"
            )
        top = min(available[-1], self.max_level)
        levels = list(range(self.min_level, top + 1))
        missing = [f"C{lvl}" for lvl in levels if lvl not in available]
        if missing:
            raise ValueError(
                f"`features` lacks {missing} (needed for P{self.min_level}..P{top}); got keys {sorted(features)}"
            )
        for lvl in levels:
            shape = tuple(features[f"C{lvl}"].shape if hasattr(features[f"C{lvl}"], "shape") else features[f"C{lvl}"])
            if len(shape) != 4 or shape[-1] is None:
                raise ValueError(
                    f"`features['C{lvl}']` must have shape [batch, height, width, channels] with known channels; "
                    f"got shape {shape}"
                )
        return levels

    def _conv(self, kernel, stride, name):
        return keras.layers.Conv2D(
            self.num_channels,
            kernel,
            strides=stride,
            padding="same",
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, features_shape):
        levels = self._backbone_levels(features_shape)
        self._levels = levels
        self.lateral_convs = []
        self.output_convs = []
        for lvl in levels:
            shape = tuple(features_shape[f"C{lvl}"])
            lateral = self._conv(1, 1, f"lateral_P{lvl}")
            lateral.build(shape)
            output = self._conv(3, 1, f"output_P{lvl}")
            output.build(shape[:-1] + (self.num_channels,))
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)
        self.extra_convs = []
        in_channels = (
            features_shape[f"C{levels[-1]}"][-1] if self.extra_from == "backbone" else self.num_channels
        )
        for lvl in range(levels[-1] + 1, self.max_level + 1):
            if self.extra_from == "subsample":
                break  # parameter-free extra levels
            extra = self._conv(3, 2, f"extra_P{lvl}")
            extra.build((None, None, None, in_channels))
            self.extra_convs.append(extra)
            in_channels = self.num_channels
        self.built = True

    # ---------------------------------------------------------------- call

    def call(self, features):
        levels = self._backbone_levels(features)
        if levels != self._levels:
            raise ValueError(
                f"`features` has levels C{levels[0]}..C{levels[-1]} but the layer was built for "
                f"C{self._levels[0]}..C{self._levels[-1]}"
            )
        features = {f"C{lvl}": features[f"C{lvl}"] for lvl in levels}
        batch = features[f"C{levels[0]}"].shape[0]
        if batch is not None:
            return self._pyramid(features, levels) if batch > 0 else self._empty(features, levels)
        # TF 2.21's CPU (oneDNN) Conv2D returns its input unchanged for an empty batch: branch around it
        return tf.cond(
            tf.shape(features[f"C{levels[0]}"])[0] > 0,
            lambda: self._pyramid(features, levels),
            lambda: self._empty(features, levels),
        )

    def _pyramid(self, features, levels):
        laterals = [conv(features[f"C{lvl}"]) for conv, lvl in zip(self.lateral_convs, levels)]
        merged = laterals[-1]
        outputs = {}
        for i in range(len(levels) - 1, -1, -1):
            if i < len(levels) - 1:
                merged = laterals[i] + _upsample_like(merged, laterals[i])
            outputs[f"P{levels[i]}"] = self.output_convs[i](merged)
        if self.extra_from == "subsample":
            x = outputs[f"P{levels[-1]}"]
            for lvl in range(levels[-1] + 1, self.max_level + 1):
                x = tf.nn.max_pool2d(x, 1, 2, "SAME")  # stride-2 subsampling (FPN paper's P6; "same": ceil(size / 2))
                outputs[f"P{lvl}"] = x
            return {f"P{lvl}": outputs[f"P{lvl}"] for lvl in range(self.min_level, self.max_level + 1)}
        x = features[f"C{levels[-1]}"] if self.extra_from == "backbone" else outputs[f"P{levels[-1]}"]
        for j, conv in enumerate(self.extra_convs):
            x = conv(x if j == 0 else tf.nn.relu(x))
            outputs[f"P{levels[-1] + 1 + j}"] = x
        return {f"P{lvl}": outputs[f"P{lvl}"] for lvl in range(self.min_level, self.max_level + 1)}

    def _empty(self, features, levels):
        """The outputs for an empty batch: zeros of the right shapes."""
        outputs = {}
        for lvl in levels:
            shape = tf.shape(features[f"C{lvl}"])
            outputs[f"P{lvl}"] = tf.zeros(tf.stack([0, shape[1], shape[2], self.num_channels]), self.compute_dtype)
        height, width = tf.shape(features[f"C{levels[-1]}"])[1], tf.shape(features[f"C{levels[-1]}"])[2]
        for lvl in range(levels[-1] + 1, self.max_level + 1):
            height, width = (height + 1) // 2, (width + 1) // 2
            outputs[f"P{lvl}"] = tf.zeros(tf.stack([0, height, width, self.num_channels]), self.compute_dtype)
        return {f"P{lvl}": outputs[f"P{lvl}"] for lvl in range(self.min_level, self.max_level + 1)}

    def compute_output_shape(self, features_shape):
        levels = self._backbone_levels(features_shape)
        shapes = {}
        for lvl in levels:
            shape = tuple(features_shape[f"C{lvl}"])
            shapes[f"P{lvl}"] = shape[:-1] + (self.num_channels,)
        batch, height, width = shapes[f"P{levels[-1]}"][:3]
        for lvl in range(levels[-1] + 1, self.max_level + 1):
            height = None if height is None else (height + 1) // 2
            width = None if width is None else (width + 1) // 2
            shapes[f"P{lvl}"] = (batch, height, width, self.num_channels)
        return shapes

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "min_level": self.min_level,
                "max_level": self.max_level,
                "num_channels": self.num_channels,
                "extra_from": self.extra_from,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
