"""The RoI box head of Fast / Faster R-CNN: pooled features -> class scores and class-specific boxes."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.coders.delta_coder import DeltaCoder
from kerasdet.losses.smooth_l1 import SmoothL1Loss
from kerasdet.ops.boxes import clip_boxes


@keras.saving.register_keras_serializable(package="kerasdet")
class RoIBoxHead(keras.layers.Layer):
    """Classifies pooled RoIs into `num_classes + 1` (background last) and regresses one box per class.

    The representation is either `fc_dims` fully connected ReLU layers on the flattened RoI features
    (the 2 fc 4096 of Fast R-CNN with VGG16, 2 fc 1024 of the FPN papers), or a `tower` model applied to
    each RoI (ResNet's conv5 stage in the C4 detectors) followed by global average pooling. Then a
    softmax classifier over `num_classes + 1` and class-specific box deltas encoded with
    `DeltaCoder(box_weights)` (10, 10, 5, 5). Loss: softmax cross-entropy over the sampled RoIs (mean)
    and smooth L1 (`box_loss_beta`) on the ground-truth class's deltas of foreground RoIs, divided by
    the number of sampled RoIs (Detectron's normalisation).

    Args:
        num_classes: object classes (background is added internally, as the last index).
        fc_dims: sizes of the fully connected layers (ignored when `tower` is given).
        tower: optional keras model mapping `[N, ph, pw, C]` to `[N, h, w, D]` (e.g. ResNet conv5).
        box_weights: the coder's weights.
        box_loss_beta: smooth L1 transition (1 as the Fast R-CNN paper; 0 is L1).

    Call arguments:
        pooled: `[B, R, ph, pw, C]` RoI features (from `RoIPool`, `RoIAlign`, `MultiLevelRoIAlign`).

    Returns:
        dict `"class_logits"` float32 `[B, R, num_classes + 1]` and `"box_deltas"` `[B, R, num_classes, 4]`.

    Example:
        >>> head = RoIBoxHead(num_classes=10, fc_dims=(256, 256))
        >>> head(tf.zeros([2, 64, 7, 7, 32]))["box_deltas"].shape
        TensorShape([2, 64, 10, 4])
    """

    def __init__(self, num_classes, fc_dims=(1024, 1024), tower=None, box_weights=(10.0, 10.0, 5.0, 5.0),
                 box_loss_beta=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(tower, dict):
            tower = keras.saving.deserialize_keras_object(tower)
        self.num_classes = int(num_classes)
        self.fc_dims = tuple(int(d) for d in fc_dims)
        self.tower = tower
        self.box_weights = tuple(float(w) for w in box_weights)
        self.box_loss_beta = float(box_loss_beta)
        if tower is None:
            self.fcs = [keras.layers.Dense(d, activation="relu", name=f"fc{i + 6}") for i, d in enumerate(self.fc_dims)]
        else:
            self.fcs = []
            self.pool = keras.layers.GlobalAveragePooling2D(name="roi_pool_avg")
        self.classifier = keras.layers.Dense(
            self.num_classes + 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), name="cls_score")
        self.regressor = keras.layers.Dense(
            self.num_classes * 4, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001), name="bbox_pred")
        self.coder = DeltaCoder(self.box_weights)
        self.box_loss = SmoothL1Loss(beta=self.box_loss_beta, reduction="sum")

    def build(self, pooled_shape):
        if self.tower is None:
            size = pooled_shape[2] * pooled_shape[3] * pooled_shape[4]
            for fc in self.fcs:
                fc.build((None, size))
                size = fc.units
        else:
            size = self.tower.output_shape[-1]
        self.classifier.build((None, size))
        self.regressor.build((None, size))
        self.built = True

    def call(self, pooled, training=False):
        shape = tf.shape(pooled)
        batch, rois = shape[0], shape[1]
        x = tf.reshape(pooled, tf.concat([[batch * rois], shape[2:]], axis=0))
        if self.tower is not None:
            x = self.pool(self.tower(x, training=training))
        else:
            x = tf.reshape(x, [batch * rois, pooled.shape[2] * pooled.shape[3] * pooled.shape[4]])
            for fc in self.fcs:
                x = fc(x)
        logits = tf.cast(self.classifier(x), tf.float32)
        deltas = tf.cast(self.regressor(x), tf.float32)
        return {
            "class_logits": tf.reshape(logits, [batch, rois, self.num_classes + 1]),
            "box_deltas": tf.reshape(deltas, [batch, rois, self.num_classes, 4]),
        }

    def compute_losses(self, outputs, sampled):
        """`{"roi_class_loss", "roi_box_loss"}` from the head's outputs on the `ProposalSampler`'s RoIs."""
        states = sampled["states"]
        valid = tf.cast(states >= 0, tf.float32)
        count = tf.maximum(tf.reduce_sum(valid), 1.0)
        classes = tf.where(states == 1, sampled["labels"], self.num_classes)  # background: the last index
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=classes, logits=outputs["class_logits"])
        class_loss = tf.reduce_sum(ce * valid) / count
        positive = states == 1
        own = tf.gather(outputs["box_deltas"], tf.maximum(sampled["labels"], 0), batch_dims=2)  # [B, S, 4]
        safe_rois = tf.where((states >= 0)[..., None], sampled["rois"], tf.constant([0.0, 0.0, 1.0, 1.0]))
        safe_boxes = tf.where(positive[..., None], sampled["boxes"], safe_rois)
        targets = self.coder.encode(safe_rois, safe_boxes)
        box_loss = self.box_loss(targets, own, sample_weight=tf.cast(positive, tf.float32)) / count
        return {"roi_class_loss": class_loss, "roi_box_loss": box_loss}

    def decode(self, outputs, rois, image_hw):
        """`(boxes [B, R, C, 4], scores [B, R, C])`: class-specific boxes clipped to the image and softmax
        probabilities of the object classes; padding RoIs (rows of -1) score 0."""
        probabilities = tf.nn.softmax(outputs["class_logits"], axis=-1)[..., : self.num_classes]
        padding = tf.reduce_all(tf.equal(rois, -1.0), axis=-1)
        scores = tf.where(padding[..., None], 0.0, probabilities)
        reference = tf.broadcast_to(rois[:, :, None, :], tf.shape(outputs["box_deltas"]))
        boxes = clip_boxes(self.coder.decode(reference, outputs["box_deltas"]), image_hw)
        return boxes, scores

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, fc_dims=self.fc_dims,
                      tower=None if self.tower is None else keras.saving.serialize_keras_object(self.tower),
                      box_weights=self.box_weights, box_loss_beta=self.box_loss_beta)
        return config
