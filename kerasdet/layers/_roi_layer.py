"""RoILayerBase: what the RoI feature-extraction layers share (private; the layers are the public names)."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.ops._checks import output_size_pair, positive_scale
from kerasdet.ops._roi_align import _check_sampling

# default of the base's arguments that a subclass does not take (None would be a user's mistake to report)
_NOT_TAKEN = object()


class RoILayerBase(keras.layers.Layer):
    """Base of the layers that pool `features [B, H, W, C]` over `rois [B, R, 4]` with an op of `kerasdet.ops`.

    A subclass names its op in `_roi_op` and the attributes that are both the op's keyword arguments
    and the layer's `get_config` entries in `_config_keys`, and its `__init__` checks and stores them:
    `output_size` and `spatial_scale` when passed on to the base's `__init__`, RoIAlign's sampling
    options with `_set_sampling`. The base then provides:

    - inputs kept as given by Keras (no autocast), then cast by `call` itself: the features to the
      compute dtype, the rois to float32 whatever the dtype policy;
    - `call`: `_roi_op(features, rois, **{key: getattr(self, key) for key in _config_keys})`;
    - `compute_output_shape` for `[B, R, ph, pw, depth]` outputs: `depth = C`, or `C // (ph * pw)`
      for position-sensitive layers (`_position_sensitive = True`);
    - `get_config`: the base config plus the `_config_keys` attributes.
    """

    _roi_op = None
    _config_keys = ("output_size", "spatial_scale")
    _position_sensitive = False

    def __init__(self, output_size=_NOT_TAKEN, spatial_scale=_NOT_TAKEN, **kwargs):
        """Checks and stores `output_size` (an int as given, a pair as a tuple `(ph, pw)`) and
        `spatial_scale` (as a float), each only where the subclass passes it on."""
        super().__init__(**kwargs)
        if output_size is not _NOT_TAKEN:
            ph, pw = output_size_pair(output_size)
            self.output_size = output_size if isinstance(output_size, int) else (ph, pw)
        if spatial_scale is not _NOT_TAKEN:
            self.spatial_scale = positive_scale(spatial_scale)
        # rois must reach the op in float32: keep Keras from autocasting them to float16 (and from
        # rejecting numpy inputs, which it would convert); `call` casts each input itself
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    def _set_sampling(self, sampling_ratio, aligned):
        """Checks and stores RoIAlign's `sampling_ratio` and `aligned`, and sets `supports_jit = False`.

        The bilinear sampling runs on `tf.image.crop_and_resize`, which has no XLA kernel, so that
        `model.compile(jit_compile="auto")` leaves models holding the layer un-jitted.
        """
        _check_sampling(sampling_ratio, aligned)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.supports_jit = False

    @staticmethod
    def _batch_dim(features_shape, rois_shape):
        """The static batch size of the output: the rois' where known, else the features'."""
        return rois_shape[0] if rois_shape[0] is not None else features_shape[0]

    def call(self, features, rois):
        features = tf.cast(features, self.compute_dtype)
        rois = tf.cast(rois, tf.float32)
        return self._roi_op(features, rois, **{key: getattr(self, key) for key in self._config_keys})

    def compute_output_shape(self, features_shape, rois_shape):
        ph, pw = output_size_pair(self.output_size)
        depth = features_shape[-1]
        if self._position_sensitive and depth is not None:
            if depth % (ph * pw) != 0:
                raise ValueError(
                    f"`features` must have a multiple of ph * pw = {ph * pw} channels (divisible into one group "
                    f"per bin) for {type(self).__name__}; got features shape {tuple(features_shape)}"
                )
            depth //= ph * pw
        return (self._batch_dim(features_shape, rois_shape), rois_shape[1], ph, pw, depth)

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self._config_keys})
        return config
