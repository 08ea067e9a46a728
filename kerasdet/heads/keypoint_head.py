"""Mask R-CNN's keypoint head: RoI features -> one heatmap per keypoint, trained as a spatial softmax."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.heads.per_roi import build_stack, conv_stack, per_roi


@keras.saving.register_keras_serializable(package="kerasdet")
class KeypointHead(keras.layers.Layer):
    """The keypoint branch of Mask R-CNN: `conv_dims` 3x3 ReLU convolutions, a 4x4 stride-2
    deconvolution to `num_keypoints` maps and a bilinear `upsample`x upsampling: 14x14 RoI features give
    56x56 heatmaps (the paper's 8 convolutions of 512).

    Each keypoint is one class out of the m*m heatmap positions: the loss is the softmax
    cross-entropy over the positions at its one-hot target bin, for the keypoints that are labelled
    (visibility > 0) and inside their RoI, averaged over those keypoints.

    Reference: K. He, G. Gkioxari, P. Dollar, R. Girshick, "Mask R-CNN", ICCV 2017, §5 (keypoint detection).

    Args:
        num_keypoints: keypoints per object (K).
        conv_dims: channels of the 3x3 convolutions.
        upsample: factor of the final bilinear upsampling (2 in the paper; 1 for none).

    Call arguments:
        features: `[B, R, h, w, C]` RoI features.
        training: Keras' training flag.

    Returns:
        float32 heatmap logits `[B, R, 2 * upsample * h, 2 * upsample * w, K]`.

    Example:
        >>> head = KeypointHead(num_keypoints=5, conv_dims=(64,) * 4)
        >>> head(tf.zeros([2, 8, 14, 14, 64])).shape
        TensorShape([2, 8, 56, 56, 5])
    """

    def __init__(self, num_keypoints, conv_dims=(512,) * 8, upsample=2, **kwargs):
        super().__init__(**kwargs)
        if int(num_keypoints) < 1:
            raise ValueError(f"`num_keypoints` must be a positive int; got {num_keypoints!r}")
        if int(upsample) < 1:
            raise ValueError(f"`upsample` must be a positive int; got {upsample!r}")
        self.num_keypoints = int(num_keypoints)
        self.conv_dims = tuple(int(d) for d in conv_dims)
        self.upsample = int(upsample)
        self.convs = conv_stack(self.conv_dims, "keypoint_fcn")
        self.deconv = None  # made in build(): its initial scale depends on the channels it reads

    def build(self, features_shape):
        shape = build_stack(self.convs, features_shape)
        # He initialisation over the deconvolution's inputs (channels x 4 x 4): Keras' "he_normal" would count a
        # Conv2DTranspose kernel's fan-in from its K output maps, starting 5x too large for K = 17
        std = (2.0 / (int(shape[-1]) * 16)) ** 0.5
        self.deconv = keras.layers.Conv2DTranspose(self.num_keypoints, 4, strides=2, padding="same",
                                                   kernel_initializer=keras.initializers.RandomNormal(stddev=std),
                                                   name="keypoint_deconv")
        self.deconv.build(shape)
        self.built = True

    def call(self, features, training=False):
        return per_roi(self._network, features)

    def _network(self, x):
        for conv in self.convs:
            x = conv(x)
        x = tf.cast(self.deconv(x), tf.float32)
        if self.upsample > 1:
            size = tf.shape(x)[1:3] * self.upsample
            x = tf.image.resize(x, size, method="bilinear")  # half-pixel centres, as the paper's upsampling
        return x

    @staticmethod
    def loss(heatmaps, target_indices, valid):
        """Spatial softmax cross-entropy: `heatmaps` `[B, R, S, S, K]` logits, `target_indices` int `[B, R, K]`
        (row * S + column of the target bin), `valid` `[B, R, K]` (which keypoints train); the mean over the
        valid keypoints (0 when none is)."""
        shape = tf.shape(heatmaps)
        flat = tf.transpose(tf.reshape(heatmaps, [shape[0], shape[1], shape[2] * shape[3], shape[4]]), [0, 1, 3, 2])
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(target_indices, tf.int32), logits=flat)
        weights = tf.cast(valid, tf.float32)
        return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(num_keypoints=self.num_keypoints, conv_dims=self.conv_dims, upsample=self.upsample)
        return config
