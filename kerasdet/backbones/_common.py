"""Pieces shared by the backbones: in-model ImageNet preprocessing and argument checks."""

from __future__ import annotations

import numbers
import os

import keras
import tensorflow as tf

#: Output names of the backbones and their strides (input pixels per feature-map pixel).
LEVEL_STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}

_MODES = ("caffe", "torch", "tf")
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="kerasdet")
class ImagePreprocessing(keras.layers.Layer):
    """Maps RGB images with values 0..255 to what an ImageNet backbone expects.

    The three conventions of `keras.applications.imagenet_utils.preprocess_input`:

    - `"caffe"` (Keras ResNet50/101/152 weights): RGB -> BGR, then subtract the BGR ImageNet means
      (103.939, 116.779, 123.68); no scaling.
    - `"torch"` (torchvision weights): `(x / 255 - mean) / std`, RGB, mean (0.485, 0.456, 0.406),
      std (0.229, 0.224, 0.225).
    - `"tf"` (MobileNetV2): `x / 127.5 - 1`, values in [-1, 1].

    Always computes in float32 (the layer's dtype is fixed to float32, so under `mixed_float16` the
    next layer casts the result down); any integer or float input dtype is accepted.

    Args:
        mode: `"caffe"`, `"torch"` or `"tf"`.
        **kwargs: `keras.layers.Layer` arguments (`name`...); `dtype` is always float32.

    Call arguments:
        images: `[B, H, W, 3]` RGB, 0..255.

    Returns:
        float32 `[B, H, W, 3]`.

    Example:
        >>> float(ImagePreprocessing("tf")(tf.fill([1, 2, 2, 3], 255.0)).numpy().max())
        1.0
    """

    def __init__(self, mode="caffe", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {_MODES}; got {mode!r}")
        self.mode = mode

    def call(self, images):
        shape = images.shape
        if shape.rank is not None and (shape.rank != 4 or shape[-1] not in (None, 3)):
            raise ValueError(
                f"`images` must have shape [batch, height, width, 3] (RGB, 0..255; convert grayscale or RGBA "
                f"in the input pipeline); got shape {tuple(shape)}"
            )
        x = tf.cast(images, tf.float32)
        if self.mode == "caffe":
            return x[..., ::-1] - tf.constant(_CAFFE_BGR_MEAN, tf.float32)
        if self.mode == "torch":
            return (x / 255.0 - tf.constant(_TORCH_MEAN, tf.float32)) / tf.constant(_TORCH_STD, tf.float32)
        return x / 127.5 - 1.0

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    @property
    def zero_value(self) -> tuple:
        """The RGB pixel (0..255) this preprocessing maps to zero: the value to pad images with, so that padded
        pixels look like the convolutions' own zero padding."""
        if self.mode == "caffe":
            return tuple(float(v) for v in _CAFFE_BGR_MEAN[::-1])
        if self.mode == "torch":
            return tuple(255.0 * v for v in _TORCH_MEAN)
        return (127.5, 127.5, 127.5)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config["mode"] = self.mode
        return config


def zero_input_value(model) -> tuple:
    """The RGB pixel that `model`'s first `ImagePreprocessing` layer maps to zero, or (0, 0, 0) when it has none."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, ImagePreprocessing):
            return layer.zero_value
    return (0.0, 0.0, 0.0)


def check_levels(levels, allowed=tuple(LEVEL_STRIDES)) -> tuple:
    """Validates a backbone's `levels` argument: a non-empty sequence of distinct names from `allowed`."""
    if isinstance(levels, str):
        levels = (levels,)
    if not isinstance(levels, (list, tuple)) or not levels:
        raise ValueError(f"`levels` must be a non-empty sequence of names from {allowed}; got {levels!r}")
    bad = [lvl for lvl in levels if lvl not in allowed]
    if bad or len(set(levels)) != len(levels):
        raise ValueError(f"`levels` must hold distinct names from {allowed}; got {tuple(levels)!r}")
    return tuple(sorted(levels, key=allowed.index))


def check_input_shape(input_shape) -> tuple:
    """Validates `input_shape`: `(height, width, 3)` with positive ints or None for the spatial sizes."""
    ok = isinstance(input_shape, (list, tuple)) and len(input_shape) == 3 and input_shape[2] == 3
    if ok:
        for size in input_shape[:2]:
            if size is not None and (not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 32):
                ok = False
    if not ok:
        raise ValueError(
            f"`input_shape` must be (height, width, 3) with height and width None or integers >= 32 "
            f"(RGB, channels last); got {input_shape!r}"
        )
    return tuple(None if s is None else int(s) for s in input_shape)


def check_positive(value, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number; got {value!r}")
    return float(value)


def check_weights(weights):
    """`None`, `"imagenet"` or the path of an existing weights file."""
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return os.fspath(weights)
    raise ValueError(
        f"`weights` must be None, 'imagenet' or the path of an existing weights file; got {weights!r}"
    )


def build_keras_application(constructor, **kwargs):
    """Calls a `keras.applications` constructor, turning a failed weights download into a clear OSError."""
    try:
        return constructor(**kwargs)
    except Exception as err:  # keras' get_file wraps URL errors in a bare Exception
        if not isinstance(err, OSError) and "URL fetch failure" not in str(err):
            raise
        raise OSError(
            f"could not obtain the ImageNet weights of keras.applications.{constructor.__name__}: {err}. "
            f"Keras downloads them on first use into its cache ($KERAS_HOME/models/, default "
            f"~/.keras/models/); on a machine without network, copy the file there."
        ) from err


class FeatureBackbone(keras.Model):
    """Base of the kerasdet backbones: a functional model whose outputs are the feature maps `levels`.

    Subclasses build the network, set `levels` and `input_shape_arg`, and list their own constructor
    arguments in `_config_keys`; this class gives `feature_strides` and the config round trip.
    """

    _config_keys: tuple = ()
    #: stride of every output name the backbone can return (C2-C5 for ResNet / MobileNetV2)
    level_strides: dict = LEVEL_STRIDES

    def __init__(self, *args, frozen_batch_norm=False, trainable_layers=None, **kwargs):
        """`frozen_batch_norm` / `trainable_layers`: see `kerasdet.backbones.set_backbone_training`; both are
        part of the config, so a rebuilt model (zoo card, `.keras` file) freezes the same layers."""
        from kerasdet.backbones.training_mode import set_backbone_training

        super().__init__(*args, **kwargs)
        set_backbone_training(self, frozen_batch_norm, trainable_layers)

    def stage_of_layer(self, layer_name):
        """The stage (1 to 5, 1 the stem) of one of this backbone's layers, or None for layers outside every
        stage; `trainable_layers` freezes by it. Reads ResNet's (`conv{k}_...`), VGG16's (`block{k}_...`) and
        ZF net's (`conv{k}`) names; backbones named otherwise override it."""
        from kerasdet.backbones.training_mode import stage_from_name

        return stage_from_name(layer_name)

    @property
    def feature_strides(self) -> dict:
        """Stride of each output, e.g. `{"C3": 8, "C4": 16, "C5": 32}` or `{"conv5_3": 16}`."""
        return {level: self.level_strides[level] for level in self.levels}

    def get_config(self):
        # weights are not part of the config: they travel in the saved file, and rebuilding from a
        # config must not download anything
        config = {key: getattr(self, key) for key in self._config_keys}
        config.update(levels=list(self.levels), weights=None, input_shape=list(self.input_shape_arg), name=self.name,
                      trainable=self.trainable, frozen_batch_norm=self.frozen_batch_norm,
                      trainable_layers=self.trainable_layers)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["input_shape"] = tuple(config.get("input_shape", (None, None, 3)))
        return cls(**config)
