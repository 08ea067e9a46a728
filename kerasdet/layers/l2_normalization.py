"""SSD's L2 normalisation of a feature map with a learned per-channel scale (ParseNet)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasdet")
class L2Normalization(keras.layers.Layer):
    """Normalises every position's feature vector to unit L2 norm, then multiplies channel `c` by a learned `gamma_c`.

    `y[..., c] = gamma_c * x[..., c] / max(||x[...]||_2, epsilon)`, the norm taken over the channels of one
    position. SSD applies it to VGG16's conv4_3, whose activations are on a much larger scale than the deeper
    maps', with `gamma` initialised at 20 (Liu et al., 2016, §3.1, after ParseNet: W. Liu, A. Rabinovich,
    A. Berg, "ParseNet: Looking Wider to See Better", 2015). The norm is computed in float32 whatever the
    dtype policy (a bfloat16 sum of 512 squares loses the scale the layer exists to restore).

    Args:
        scale_init: initial value of every `gamma_c` (20 in SSD).
        epsilon: lower bound of the norm (an all-zero position stays zero instead of NaN).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> layer = L2Normalization(scale_init=20.0)
        >>> y = layer(tf.ones([1, 2, 2, 4]))
        >>> float(y[0, 0, 0, 0])            # 20 * 1 / sqrt(4)
        10.0
    """

    def __init__(self, scale_init: float = 20.0, epsilon: float = 1e-10, **kwargs):
        super().__init__(**kwargs)
        if isinstance(scale_init, bool) or not isinstance(scale_init, (int, float)) or not scale_init > 0:
            raise ValueError(f"`scale_init` must be a positive number; got {scale_init!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"`epsilon` must be a positive number; got {epsilon!r}")
        self.scale_init = float(scale_init)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("L2Normalization needs a known channel count (the last axis)")
        self.gamma = self.add_weight(name="gamma", shape=(channels,),
                                     initializer=keras.initializers.Constant(self.scale_init))

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
        y = x / ops.maximum(norm, self.epsilon) * ops.cast(self.gamma, "float32")
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(scale_init=self.scale_init, epsilon=self.epsilon)
        return config
