"""A minimal `Detector` family for testing the base class: K candidate boxes per image from a tiny CNN.

Its outputs can be fixed exactly (`set_outputs`), so tests know which detections NMS must return.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kerasdet.models.detector import Detector


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class ToyDetector(Detector):
    """Global features -> `num_boxes` candidates, each a box (sigmoid, in image fractions) and class logits.

    Loss: candidate k is trained towards object k of the padded targets (binary cross-entropy on
    one-hot labels, L1 on the image-normalised box), padding rows are ignored.
    """

    loss_terms = ("class_loss", "box_loss")

    def __init__(self, num_classes, num_boxes=4, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        self.num_boxes = int(num_boxes)
        self.rescale = keras.layers.Rescaling(1.0 / 255.0, name="rescale")
        self.conv = keras.layers.Conv2D(4, 3, strides=4, activation="relu", name="conv")
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.class_out = keras.layers.Dense(self.num_boxes * num_classes, name="class_out")
        self.box_out = keras.layers.Dense(self.num_boxes * 4, name="box_out")

    def call(self, inputs, training=False, targets=None):
        images, _ = self.split_inputs(inputs)
        x = self.pool(self.conv(self.rescale(tf.cast(images, tf.float32))))
        return {
            "logits": tf.reshape(self.class_out(x), [-1, self.num_boxes, self.num_classes]),
            "box_params": tf.reshape(self.box_out(x), [-1, self.num_boxes, 4]),
        }

    def _boxes(self, raw, images):
        p = tf.sigmoid(tf.cast(raw["box_params"], tf.float32))
        size = tf.cast(tf.shape(images)[1:3], tf.float32)
        scale = tf.stack([size[1], size[0], size[1], size[0]])
        xyxy = tf.concat([tf.minimum(p[..., :2], p[..., 2:]), tf.maximum(p[..., :2], p[..., 2:])], axis=-1)
        return xyxy * scale, scale

    def detection_losses(self, images, targets, raw):
        k = self.num_boxes
        labels = tf.cast(targets["labels"][:, :k], tf.int32)
        boxes = tf.cast(targets["boxes"][:, :k], tf.float32)
        missing = k - tf.shape(labels)[1]
        labels = tf.pad(labels, [[0, 0], [0, missing]], constant_values=-1)
        boxes = tf.pad(boxes, [[0, 0], [0, missing], [0, 0]], constant_values=-1.0)
        valid = tf.cast(labels >= 0, tf.float32)
        onehot = tf.one_hot(labels, self.num_classes)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=tf.cast(raw["logits"], tf.float32))
        predicted, scale = self._boxes(raw, images)
        l1 = tf.reduce_sum(tf.abs(predicted - boxes) / scale, axis=-1) * valid
        count = tf.maximum(tf.reduce_sum(valid), 1.0)
        return {"class_loss": tf.reduce_mean(bce), "box_loss": tf.reduce_sum(l1) / count}

    def decode_candidates(self, raw, images):
        boxes, _ = self._boxes(raw, images)
        return boxes, tf.sigmoid(raw["logits"])

    def set_outputs(self, fractions, logits):
        """Makes every image give the same candidates: `fractions` [K, 4] xyxy in (0, 1), `logits` [K, C]."""
        fractions = np.clip(np.asarray(fractions, np.float64), 1e-4, 1 - 1e-4)
        self.box_out.kernel.assign(np.zeros(self.box_out.kernel.shape, np.float32))
        self.box_out.bias.assign(np.log(fractions / (1 - fractions)).reshape(-1).astype(np.float32))
        self.class_out.kernel.assign(np.zeros(self.class_out.kernel.shape, np.float32))
        self.class_out.bias.assign(np.asarray(logits, np.float32).reshape(-1))

    def get_config(self):
        config = super().get_config()
        config["num_boxes"] = self.num_boxes
        return config
