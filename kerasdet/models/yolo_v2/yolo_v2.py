"""YOLOv2 (Redmon and Farhadi, 2017): Darknet-19, passthrough, k-means anchors in grid units, direct location
prediction, objectness with an ignore threshold, and the prior-pull term of the first images."""

from __future__ import annotations


import keras
import numpy as np
import tensorflow as tf

from kerasdet.backbones.darknet import Darknet19, darknet_conv
from kerasdet.coders.yolo_coder import YoloCoder
from kerasdet.heads.grid_targets import slot_owners
from kerasdet.layers.anchor_generator import YOLO_V2_COCO_ANCHORS, YOLO_V2_VOC_ANCHORS
from kerasdet.layers.space_to_depth import ORDERS, SpaceToDepth
from kerasdet.models.detector import Detector, check_finite_scales
from kerasdet.ops.boxes import clip_boxes, iou

#: the released VOC and COCO models' anchors (darknet's cfgs), in grid units of stride 32
VOC_ANCHORS, COCO_ANCHORS = YOLO_V2_VOC_ANCHORS, YOLO_V2_COCO_ANCHORS
#: the compact model's: `kmeans_anchors(synthetic.dataset("train", 2000), k=5, stride=16)` on the embedded
#: training boxes at 256 px (mean IoU with the best anchor 0.717), rounded to 3 decimals
SHAPES_ANCHORS_STRIDE16 = ((0.824, 0.829), (1.95, 1.959), (4.133, 4.13), (6.52, 6.585), (9.512, 9.459))


def _check_anchors(anchors):
    try:
        a = np.asarray(anchors, np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.ndim != 2 or a.shape[1] != 2 or len(a) < 1 or not np.all(np.isfinite(a)) or not np.all(a > 0):
        raise ValueError(f"`anchors` must be (width, height) pairs of positive numbers in grid units; got {anchors!r}")
    return tuple((float(w), float(h)) for w, h in a)


@keras.saving.register_keras_serializable(package="kerasdet")
class YOLOv2(Detector):
    """YOLOv2: one prediction per anchor and grid cell of the backbone's last map, with fine-grained passthrough.

    Network: the backbone's `feature_level` map (Darknet-19's C5, stride 32) through `head_convs` 3x3 darknet
    convolutions of `head_channels`; the `passthrough_level` map (C4, twice the resolution) through a 1x1
    convolution of `passthrough_channels` and a 2x2 `SpaceToDepth` (darknet's reorg order by default),
    concatenated before them (darknet's route order), one more 3x3 convolution, and a 1x1 convolution giving, for
    each of the `A` anchors of a cell, `(t_x, t_y, t_w, t_h, t_o)` and `num_classes` class logits.

    Boxes (direct location prediction, §2): cell `(c_x, c_y)` and anchor `(p_w, p_h)` in grid units give the
    centre `b_x = (sigmoid(t_x) + c_x) * stride`, the width `p_w exp(t_w) * stride` (in pixels), and the
    objectness `sigmoid(t_o)`; the class-specific score is `sigmoid(t_o) * softmax(classes)`.

    Loss (darknet's region layer, as the released model trains; the paper does not spell it out), summed over
    predictions and averaged over images:

    - each object is the responsibility of the anchor, in the cell holding its centre, whose shape (both
      centred) has the highest IoU with the object's (the last object wins when two pick one prediction);
      for it: `coord_scale * (2 - w h / (W H)) * [(sigmoid(t_x) - x*)^2 + (sigmoid(t_y) - y*)^2 +
      (t_w - log(w / p_w))^2 + (t_h - log(h / p_h))^2]`, `object_scale * (sigmoid(t_o) - IoU)^2` where IoU is
      that of the predicted box with the object (not differentiated), and the class cross-entropy
      (`class_scale`; darknet's delta on the softmax is this loss's gradient);
    - every other prediction whose best IoU with any object is at most `ignore_threshold` (0.6):
      `noobject_scale * sigmoid(t_o)^2`; above it, no objectness loss;
    - while fewer than `prior_pull_images` (12,800) training images have been seen, every prediction that is
      no object's also gets `prior_pull_scale * [(sigmoid(t_x) - 0.5)^2 + (sigmoid(t_y) - 0.5)^2 + t_w^2 +
      t_h^2]`, pulling it to its anchor (the count `images_seen` is a model variable: it is saved and resumes).

    Scales are the released yolo-voc.cfg's: object 5, no-object 1, class 1, coordinates 1.

    Reference: J. Redmon, A. Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017.

    Args:
        num_classes: object classes.
        backbone: a kerasdet feature backbone with `feature_level` and `passthrough_level`; None builds Darknet-19.
        feature_level: the map predictions are made on.
        passthrough_level: the map at twice its resolution that the passthrough reads (None: no passthrough).
        anchors: `(width, height)` per anchor, in units of the `feature_level` map's stride.
        head_channels, head_convs, passthrough_channels: the detection head's widths and depth.
        reorg_order: the passthrough's `SpaceToDepth` order, "darknet" or "tensorflow".
        ignore_threshold, object_scale, noobject_scale, class_scale, coord_scale: the loss's (see above).
        prior_pull_images, prior_pull_scale: the prior-pull term's duration in images and weight.
        class_names, score_threshold, nms_iou_threshold, max_detections: see `Detector` (darknet's evaluation
            uses 0.005 and 0.45).
        **kwargs: `keras.Model` arguments.

    Call arguments:
        inputs: `[B, H, W, 3]` RGB, 0..255 (padded to multiples of the `feature_level` stride).
        training: Keras' training flag.
        targets: unused.

    Returns (`call`):
        dict `{"predictions": [B, H / s, W / s, A, 5 + num_classes]}` (`s` the stride), per anchor
        `(t_x, t_y, t_w, t_h, t_o)` and the class logits.

    Example:
        >>> model = YOLOv2.compact(num_classes=10)
        >>> model.compile()
        >>> model.fit(kerasdet.data.prepare(kerasdet.data.synthetic.dataset("train", 512), 8, 256), epochs=1)
        >>> YOLOv2.paper_config(num_classes=20).predict(images)["boxes"].shape
        (B, 100, 4)
    """

    loss_terms = ("coord_loss", "object_loss", "noobject_loss", "class_loss", "prior_loss")

    def __init__(
        self,
        num_classes,
        backbone=None,
        feature_level="C5",
        passthrough_level="C4",
        anchors=VOC_ANCHORS,
        head_channels=1024,
        head_convs=2,
        passthrough_channels=64,
        reorg_order="darknet",
        ignore_threshold=0.6,
        object_scale=5.0,
        noobject_scale=1.0,
        class_scale=1.0,
        coord_scale=1.0,
        prior_pull_images=12800,
        prior_pull_scale=0.01,
        class_names=None,
        score_threshold=0.005,
        nms_iou_threshold=0.45,
        max_detections=100,
        **kwargs,
    ):
        super().__init__(num_classes=num_classes, class_names=class_names, score_threshold=score_threshold,
                         nms_iou_threshold=nms_iou_threshold, max_detections=max_detections, **kwargs)
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        if backbone is None:
            backbone = Darknet19(levels=("C4", "C5"))
        if not isinstance(backbone, keras.Model):
            raise TypeError(f"`backbone` must be a kerasdet feature backbone; got {type(backbone).__name__}")
        available = tuple(getattr(backbone, "levels", ()))
        for name, level in (("feature_level", feature_level), ("passthrough_level", passthrough_level)):
            if (level is not None or name == "feature_level") and level not in available:
                raise ValueError(f"`{name}` {level!r} must name an output of the backbone, which has {available}")
        strides = backbone.level_strides
        if passthrough_level is not None and strides[passthrough_level] * 2 != strides[feature_level]:
            raise ValueError(f"`passthrough_level` {passthrough_level!r} (stride {strides[passthrough_level]}) must "
                             f"have half the stride of `feature_level` {feature_level!r} ({strides[feature_level]})")
        if reorg_order not in ORDERS:
            raise ValueError(f"`reorg_order` must be one of {ORDERS}; got {reorg_order!r}")
        for name, value in (("head_channels", head_channels), ("head_convs", head_convs),
                            ("passthrough_channels", passthrough_channels), ("prior_pull_images", prior_pull_images)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "head_channels" else 0):
                raise ValueError(f"`{name}` must be a non-negative int (head_channels positive); got {value!r}")
        if passthrough_level is not None and passthrough_channels % 4:
            raise ValueError(f"`passthrough_channels` must be a multiple of 4 (the reorg); got {passthrough_channels}")
        check_finite_scales(object_scale=object_scale, noobject_scale=noobject_scale, class_scale=class_scale,
                            coord_scale=coord_scale, prior_pull_scale=prior_pull_scale)
        if isinstance(ignore_threshold, bool) or not isinstance(ignore_threshold, (int, float)) \
                or not 0 <= ignore_threshold <= 1:
            raise ValueError(f"`ignore_threshold` must be in [0, 1]; got {ignore_threshold!r}")
        self.backbone = backbone
        self.feature_level = feature_level
        self.passthrough_level = passthrough_level
        self.anchors = _check_anchors(anchors)
        self.head_channels = head_channels
        self.head_convs = head_convs
        self.passthrough_channels = passthrough_channels
        self.reorg_order = reorg_order
        self.ignore_threshold = float(ignore_threshold)
        self.object_scale = float(object_scale)
        self.noobject_scale = float(noobject_scale)
        self.class_scale = float(class_scale)
        self.coord_scale = float(coord_scale)
        self.prior_pull_images = prior_pull_images
        self.prior_pull_scale = float(prior_pull_scale)
        self.stride = int(strides[feature_level])
        self.coder = YoloCoder(self.stride, anchor_units="cells")

        self.head = [darknet_conv(head_channels, 3, f"head{i + 1}") for i in range(head_convs)]
        if passthrough_level is not None:
            self.passthrough_conv = darknet_conv(passthrough_channels, 1, "passthrough")
            self.reorg = SpaceToDepth(2, order=reorg_order, name="reorg")
        self.fuse = darknet_conv(head_channels, 3, "fuse")
        self.predictor = keras.layers.Conv2D(len(self.anchors) * (5 + self.class_outputs), 1, name="predictor",
                                             kernel_initializer=self._predictor_initializer())
        # training images seen so far (drives the prior-pull term); saved with the weights, so a resumed run goes on
        self.images_seen = self.add_weight(name="images_seen", shape=(), initializer="zeros", trainable=False,
                                           dtype="float32")
        self._training_loss = False

    # -- configurations -------------------------------------------------------------------------------

    @classmethod
    def paper_config(cls, num_classes=20, anchors=None, width=1.0, **kwargs):
        """The paper's YOLOv2 on Darknet-19 (416 px: a 13x13 grid, passthrough from the 26x26 map), with the
        released VOC anchors (`COCO_ANCHORS` for COCO: pass `anchors=`)."""
        trunk = Darknet19(levels=("C4", "C5"), width=width)
        defaults = dict(feature_level="C5", passthrough_level="C4", anchors=VOC_ANCHORS if anchors is None else anchors,
                        head_channels=max(8, int(round(1024 * width))),
                        passthrough_channels=max(4, 4 * int(round(16 * width))))
        defaults.update(kwargs)
        return cls(num_classes=num_classes, backbone=trunk, **defaults)

    @classmethod
    def compact(cls, num_classes, width=0.5, **kwargs):
        """A YOLOv2 that trains on 2 CPU cores at 256 px: Darknet-19 (width 0.5) up to its stride-16 map, which
        it detects on (a 16x16 grid at 256 px, the paper's 13x13 at 416 scaled), the passthrough reading the
        stride-8 map, with half the paper's head width relative to the trunk (256 channels at width 0.5: the head
        costs more than the trunk at this grid); anchors from k-means (k = 5) on the embedded training boxes."""
        trunk = Darknet19(levels=("C3", "C4"), width=width)
        defaults = dict(feature_level="C4", passthrough_level="C3", anchors=SHAPES_ANCHORS_STRIDE16,
                        head_channels=max(8, int(round(512 * width))),
                        passthrough_channels=max(4, 4 * int(round(16 * width))))
        defaults.update(kwargs)
        return cls(num_classes=num_classes, backbone=trunk, **defaults)

    # -- forward --------------------------------------------------------------------------------------

    @property
    def size_divisor(self) -> int:
        return self.stride

    @property
    def class_outputs(self) -> int:
        """Class logits per anchor: `num_classes` (YOLO9000: one per WordTree node)."""
        return self.num_classes

    def _predictor_initializer(self):
        """The 1x1 predictor's kernel initializer (YOLO9000 starts its class logits at zero)."""
        return "glorot_uniform"

    def call(self, inputs, training=False, targets=None):
        images, _ = self.split_inputs(inputs)
        features = self.backbone(images, training=training)
        x = features[self.feature_level]
        for conv in self.head:
            x = conv(x, training=training)
        if self.passthrough_level is not None:
            fine = self.reorg(self.passthrough_conv(features[self.passthrough_level], training=training))
            x = keras.ops.concatenate([fine, x], axis=-1)
        out = self.predictor(self.fuse(x, training=training))
        shape = tf.shape(out)
        grid = [shape[0], shape[1], shape[2], len(self.anchors), 5 + self.class_outputs]
        return {"predictions": tf.reshape(tf.cast(out, tf.float32), grid)}

    def _flat_boxes(self, predictions):
        """Decoded xyxy pixel boxes `[B, K, 4]` of predictions `[B, H, W, A, 5 + C]` (`YoloCoder`)."""
        boxes = self.coder.decode(predictions[..., :4], self.anchors)
        return tf.reshape(boxes, [tf.shape(boxes)[0], -1, 4])

    # -- loss and decoding ----------------------------------------------------------------------------

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        self._training_loss = bool(training)  # read while tracing: the prior pull belongs to training steps only
        try:
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        finally:
            self._training_loss = False

    def train_step(self, data):
        logs = super().train_step(data)
        x = keras.utils.unpack_x_y_sample_weight(data)[0]
        self.images_seen.assign_add(tf.cast(tf.shape(self.split_inputs(x)[0])[0], tf.float32))
        return logs

    def responsibilities(self, targets, grid_hw):
        """Which prediction each object is the responsibility of: int32 `[B, M]` indices into the
        `K = H * W * A` predictions in (row, column, anchor) order (-1 for padding and crowd rows), from the
        objects' centre cells on the `grid_hw` (int `[2]`) grid and their best anchor shapes."""
        s = float(self.stride)
        boxes, labels = targets["boxes"], targets["labels"]
        valid = labels >= 0
        crowd = targets.get("is_crowd")
        if crowd is not None:
            valid &= ~crowd
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        size = tf.maximum(boxes[..., 2:] - boxes[..., :2], 1e-6)
        col = tf.clip_by_value(tf.cast(tf.floor(centre[..., 0] / s), tf.int32), 0, grid_hw[1] - 1)
        row = tf.clip_by_value(tf.cast(tf.floor(centre[..., 1] / s), tf.int32), 0, grid_hw[0] - 1)
        anchors = tf.constant(self.anchors, tf.float32) * s
        inter = (tf.minimum(size[..., None, 0], anchors[:, 0]) * tf.minimum(size[..., None, 1], anchors[:, 1]))
        shape_iou = inter / (size[..., None, 0] * size[..., None, 1] + anchors[:, 0] * anchors[:, 1] - inter)
        best = tf.argmax(shape_iou, axis=-1, output_type=tf.int32)
        index = (row * grid_hw[1] + col) * len(self.anchors) + best
        return tf.where(valid, index, -1)

    def detection_losses(self, images, targets, raw):
        grid = raw["predictions"]
        shape = tf.shape(grid)
        hw = tf.cast(tf.shape(images)[1:3], tf.float32)
        batch, num_anchors = shape[0], len(self.anchors)
        num_predictions = shape[1] * shape[2] * num_anchors
        predictions = tf.reshape(grid, [batch, num_predictions, 5 + self.class_outputs])
        boxes, labels = targets["boxes"], targets["labels"]
        pred_boxes = self._flat_boxes(grid)
        objectness = tf.sigmoid(predictions[..., 4])
        xy = tf.sigmoid(predictions[..., 0:2])
        wh = predictions[..., 2:4]

        # which object (the last, as darknet) each prediction is responsible for: -1 for none
        owner = slot_owners(self.responsibilities(targets, shape[1:3]), num_predictions)       # [B, K]
        responsible = owner >= 0
        owner = tf.maximum(owner, 0)
        truth = tf.gather(boxes, owner, batch_dims=1)                                           # [B, K, 4]
        # images that train the detection terms (YOLO9000's classification-only images do not)
        detecting = self._detection_images(targets, batch)[:, None]
        resp = tf.cast(responsible, tf.float32) * detecting

        # objectness: the best IoU with any object (crowd regions included) decides whether a non-responsible
        # prediction is a negative
        overlaps = iou(pred_boxes, boxes)                                                        # [B, K, M]
        overlaps = tf.where((labels >= 0)[:, None, :], overlaps, 0.0)
        best_iou = tf.stop_gradient(tf.reduce_max(tf.pad(overlaps, [[0, 0], [0, 0], [0, 1]]), -1))  # 0 with no object
        negative = tf.cast(~responsible & (best_iou <= self.ignore_threshold), tf.float32) * detecting
        noobject_loss = self.noobject_scale * tf.reduce_sum(negative * tf.square(objectness))
        rescore = tf.stop_gradient(iou(pred_boxes, truth, aligned=True))
        object_loss = self.object_scale * tf.reduce_sum(resp * tf.square(objectness - rescore))

        # coordinates of the responsible predictions (`YoloCoder.encode`: sigmoid(t_x), sigmoid(t_y), t_w, t_h);
        # the others get their own anchor as target (sigmoid 0.5, log-scale 0), used by the prior pull
        cells = tf.range(num_predictions) // num_anchors
        cells = tf.cast(tf.stack([cells % shape[2], cells // shape[2]], -1), tf.float32)          # (c_x, c_y)
        anchors = tf.tile(tf.constant(self.anchors, tf.float32), [shape[1] * shape[2], 1])
        safe_truth = tf.where(responsible[..., None], truth, tf.constant([0.0, 0.0, 1.0, 1.0]))
        encoded = self.coder.encode(safe_truth, cells, anchors)
        target_xy = tf.where(responsible[..., None], encoded[..., :2], 0.5)
        target_wh = tf.where(responsible[..., None], encoded[..., 2:], 0.0)
        truth_wh = safe_truth[..., 2:] - safe_truth[..., :2]
        weight = self.coord_scale * (2.0 - truth_wh[..., 0] * truth_wh[..., 1] / (hw[0] * hw[1]))
        squared = tf.reduce_sum(tf.square(xy - target_xy) + tf.square(wh - target_wh), -1)
        coord_loss = tf.reduce_sum(resp * weight * squared)
        prior_loss = tf.constant(0.0)
        if self._training_loss and self.prior_pull_images > 0 and self.prior_pull_scale > 0:
            pulling = tf.cast(self.images_seen < float(self.prior_pull_images), tf.float32)
            prior_loss = pulling * self.prior_pull_scale * tf.reduce_sum((1.0 - resp) * detecting * squared)

        class_loss = self.class_scale * tf.reduce_sum(resp * self._class_term(predictions[..., 5:], targets, owner))
        images_in_batch = tf.cast(batch, tf.float32)
        return {name: value / images_in_batch for name, value in (
            ("coord_loss", coord_loss), ("object_loss", object_loss), ("noobject_loss", noobject_loss),
            ("class_loss", class_loss), ("prior_loss", prior_loss))}

    def _detection_images(self, targets, batch):
        """Float `[B]`: 1 for the images whose predictions train the detection terms (all of them here)."""
        return tf.ones([batch], tf.float32)

    def _class_term(self, class_logits, targets, owner):
        """Per prediction `[B, K]`: the class loss against the target row `owner` `[B, K]` (softmax cross-entropy
        of its label; only responsible predictions count)."""
        labels = tf.gather(targets["labels"], owner, batch_dims=1)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(labels, 0), class_logits)

    def decode_candidates(self, raw, images):
        grid = raw["predictions"]
        predictions = tf.reshape(grid, [tf.shape(grid)[0], -1, 5 + self.class_outputs])
        boxes = clip_boxes(self._flat_boxes(grid), tf.cast(tf.shape(images)[1:3], tf.float32))
        scores = tf.sigmoid(predictions[..., 4:5]) * tf.nn.softmax(predictions[..., 5:], axis=-1)
        return boxes, scores

    # -- config ---------------------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            feature_level=self.feature_level,
            passthrough_level=self.passthrough_level,
            anchors=self.anchors,
            head_channels=self.head_channels,
            head_convs=self.head_convs,
            passthrough_channels=self.passthrough_channels,
            reorg_order=self.reorg_order,
            ignore_threshold=self.ignore_threshold,
            object_scale=self.object_scale,
            noobject_scale=self.noobject_scale,
            class_scale=self.class_scale,
            coord_scale=self.coord_scale,
            prior_pull_images=self.prior_pull_images,
            prior_pull_scale=self.prior_pull_scale,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
