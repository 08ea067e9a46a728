"""Mask R-CNN's mask head: RoI features -> a small FCN -> one m x m mask logit map per class."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.heads.per_roi import build_stack, conv_stack, per_roi


@keras.saving.register_keras_serializable(package="kerasdet")
class MaskHead(keras.layers.Layer):
    """The mask branch of Mask R-CNN: `conv_dims` 3x3 ReLU convolutions, a 2x2 stride-2 ReLU
    deconvolution of `deconv_dim` channels and a 1x1 convolution giving one mask logit map per class,
    at twice the RoI features' resolution (14x14 RoIAlign -> 28x28 masks in the FPN form; the 7x7 output
    of ResNet's conv5 -> 14x14 in the C4 form, with `conv_dims=()`).

    The loss is the paper's: the mean per-pixel binary cross-entropy of the ground-truth class's map
    only (no competition between classes), over the positive RoIs, against the object's mask cropped by
    RoIAlign to the RoI and binarised at 0.5.

    Reference: K. He, G. Gkioxari, P. Dollar, R. Girshick, "Mask R-CNN", ICCV 2017, §3 and Figure 4.

    Args:
        num_classes: object classes (one map each).
        conv_dims: channels of the 3x3 convolutions (the paper's FPN head: four of 256).
        deconv_dim: channels of the deconvolution.

    Call arguments:
        features: `[B, R, h, w, C]` RoI features.
        training: Keras' training flag.

    Returns:
        float32 logits `[B, R, 2h, 2w, num_classes]`.

    Example:
        >>> head = MaskHead(num_classes=10, conv_dims=(64,) * 4, deconv_dim=64)
        >>> head(tf.zeros([2, 16, 14, 14, 64])).shape
        TensorShape([2, 16, 28, 28, 10])
    """

    def __init__(self, num_classes, conv_dims=(256, 256, 256, 256), deconv_dim=256, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be a positive int; got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.conv_dims = tuple(int(d) for d in conv_dims)
        self.deconv_dim = int(deconv_dim)
        # He (MSRA) initialisation as the paper's code; the predictor starts near 0 (masks near 0.5)
        self.convs = conv_stack(self.conv_dims, "mask_fcn")
        self.deconv = keras.layers.Conv2DTranspose(self.deconv_dim, 2, strides=2, activation="relu",
                                                   kernel_initializer="he_normal", name="mask_deconv")
        self.predictor = keras.layers.Conv2D(self.num_classes, 1, name="mask_logits",
                                             kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))

    def build(self, features_shape):
        shape = build_stack(self.convs, features_shape)
        self.deconv.build(shape)
        self.predictor.build(shape[:1] + (None, None, self.deconv_dim))
        self.built = True

    def call(self, features, training=False):
        return tf.cast(per_roi(self._network, features), tf.float32)

    def _network(self, x):
        for conv in self.convs:
            x = conv(x)
        return self.predictor(self.deconv(x))

    @staticmethod
    def class_maps(logits, labels):
        """`[B, R, m, m]`: each RoI's map of class `labels[b, r]` (label -1 reads class 0)."""
        maps = tf.transpose(logits, [0, 1, 4, 2, 3])
        return tf.gather(maps, tf.maximum(tf.cast(labels, tf.int32), 0), batch_dims=2)

    @staticmethod
    def loss(class_logits, target_masks, weights):
        """Mean per-pixel binary cross-entropy of each RoI's class map against its target mask (binarised at
        0.5), averaged over the RoIs with weight 1 (`weights` `[B, R]`, 0 for RoIs that do not train)."""
        labels = tf.cast(target_masks >= 0.5, tf.float32)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=class_logits)
        per_roi = tf.reduce_mean(bce, axis=[2, 3])
        weights = tf.cast(weights, tf.float32)
        return tf.reduce_sum(per_roi * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, conv_dims=self.conv_dims, deconv_dim=self.deconv_dim)
        return config
