"""RetinaNet (Lin et al., 2017): a one-stage detector with a feature pyramid and the focal loss."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from kerasdet.backbones.resnet import ResNet
from kerasdet.coders.delta_coder import DeltaCoder
from kerasdet.heads.anchor_targets import assign_anchor_targets
from kerasdet.heads.dense_head import conv_tower, per_level_outputs
from kerasdet.layers.anchor_generator import AnchorGenerator
from kerasdet.layers.box_matcher import BoxMatcher
from kerasdet.layers.feature_pyramid import FeaturePyramid
from kerasdet.losses.focal import FocalLoss
from kerasdet.losses.giou import GIoULoss
from kerasdet.losses.smooth_l1 import SmoothL1Loss
from kerasdet.models.detector import Detector
from kerasdet.ops.boxes import clip_boxes

_LEVEL_STRIDES = {3: 8, 4: 16, 5: 32, 6: 64, 7: 128}


@keras.saving.register_keras_serializable(package="kerasdet")
class RetinaNet(Detector):
    """RetinaNet: backbone -> FPN P3-P7 -> shared class and box subnets on every level, focal loss.

    Nine anchors per location (three sizes `base * {2^0, 2^(1/3), 2^(2/3)}` times aspect ratios
    0.5, 1, 2); anchors are matched at IoU >= 0.5 (positive) / < 0.4 (negative), between ignored,
    with each object's best anchors forced positive (Detectron2's low-quality matches). The class subnet
    ends in `num_classes` sigmoid outputs per anchor whose bias starts at `-log((1 - p) / p)` with
    prior probability `p = 0.01`; the classification loss is the sigmoid focal loss (alpha 0.25,
    gamma 2) over all non-ignored anchors, the box loss smooth L1 on `DeltaCoder` deltas (weights
    1, 1, 1, 1) or GIoU on decoded boxes, over positive anchors; both are divided by the number of
    positive anchors in the batch (at least 1). Prediction: sigmoid scores, deltas decoded and clipped
    to the image, per-class NMS at `nms_iou_threshold` (0.5), `max_detections` (100) per image.

    Reference: T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár, "Focal Loss for Dense Object
    Detection", ICCV 2017.

    Args:
        num_classes: object classes.
        backbone: a feature extractor returning a dict with "C3", "C4", "C5" (a kerasdet backbone);
            None builds `ResNet(50, levels=("C3", "C4", "C5"))`.
        fpn_channels: channels of the pyramid maps (256 in the paper).
        head_depth: 3x3 conv layers in each subnet before its output layer (4 in the paper).
        head_channels: channels of those layers (256 in the paper).
        anchor_base_sizes: anchor size of each level P3..P7 at scale 1 (32..512 in the paper).
        anchor_scales: scale multipliers per location.
        aspect_ratios: height / width ratios per location.
        box_loss: a `SmoothL1Loss` (default, beta 0.1, on deltas) or a `GIoULoss` (on decoded boxes),
            with `reduction="sum"` (the sum is divided by the number of positive anchors).
        focal_alpha, focal_gamma: focal loss parameters.
        prior_probability: initial foreground probability of the class subnet.
        class_names, score_threshold, nms_iou_threshold, max_detections: see `Detector`.
        **kwargs: `keras.Model` arguments.

    Call arguments:
        inputs: `[B, H, W, 3]` RGB in 0..255 (uint8 or float); H and W multiples of 128 keep every
            level aligned (other sizes work, rounded up per level).
        training: Keras' training flag.
        targets: unused (a one-stage detector matches anchors in the loss).

    Returns (`call`):
        dict `{"class_logits": [B, A, num_classes], "box_deltas": [B, A, 4], "anchors": [A, 4]}`;
        `predict` / `detect` return the detections dict (DESIGN.md §3).

    Example:
        >>> model = RetinaNet.compact(num_classes=10)
        >>> model.compile()
        >>> model.fit(kerasdet.data.prepare(kerasdet.data.synthetic.dataset("train", 512), 8, 256), epochs=1)
        >>> model.predict(images)["boxes"].shape
        (B, 100, 4)
    """

    loss_terms = ("class_loss", "box_loss")
    trains_on_replicas = True

    def __init__(
        self,
        num_classes,
        backbone=None,
        fpn_channels=256,
        head_depth=4,
        head_channels=256,
        anchor_base_sizes=(32, 64, 128, 256, 512),
        anchor_scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
        aspect_ratios=(0.5, 1.0, 2.0),
        box_loss=None,
        focal_alpha=0.25,
        focal_gamma=2.0,
        prior_probability=0.01,
        class_names=None,
        score_threshold=0.05,
        nms_iou_threshold=0.5,
        max_detections=100,
        **kwargs,
    ):
        super().__init__(num_classes=num_classes, class_names=class_names, score_threshold=score_threshold,
                         nms_iou_threshold=nms_iou_threshold, max_detections=max_detections, **kwargs)
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        if backbone is None:
            backbone = ResNet(50, levels=("C3", "C4", "C5"))
        if not isinstance(backbone, keras.Model):
            raise TypeError(f"`backbone` must be a keras.Model returning C3-C5 maps; got {type(backbone).__name__}")
        if isinstance(box_loss, dict):
            box_loss = keras.saving.deserialize_keras_object(box_loss)
        if box_loss is None:
            box_loss = SmoothL1Loss(beta=0.1, reduction="sum")
        if not isinstance(box_loss, (SmoothL1Loss, GIoULoss)):
            raise TypeError(f"`box_loss` must be a SmoothL1Loss or GIoULoss; got {type(box_loss).__name__}")
        if box_loss.reduction != "sum":
            raise ValueError(f"`box_loss` must have reduction='sum' (RetinaNet divides the sum by the number of "
                             f"positive anchors); got {type(box_loss).__name__}(reduction={box_loss.reduction!r})")
        if len(anchor_base_sizes) != 5:
            raise ValueError(f"`anchor_base_sizes` needs one size per level P3-P7 (5); got {anchor_base_sizes}")
        if not 0.0 < prior_probability < 1.0:
            raise ValueError(f"`prior_probability` must be in (0, 1); got {prior_probability}")
        for name, value in (("fpn_channels", fpn_channels), ("head_depth", head_depth),
                            ("head_channels", head_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "head_depth" else 1):
                least = "an int >= 0" if name == "head_depth" else "a positive int"
                raise ValueError(f"`{name}` must be {least}; got {value!r}")
        self.backbone = backbone
        self.fpn_channels = int(fpn_channels)
        self.head_depth = int(head_depth)
        self.head_channels = int(head_channels)
        self.anchor_base_sizes = tuple(float(s) for s in anchor_base_sizes)
        self.anchor_scales = tuple(float(s) for s in anchor_scales)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.box_loss = box_loss
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.prior_probability = float(prior_probability)
        self.num_anchors = len(self.anchor_scales) * len(self.aspect_ratios)

        self.fpn = FeaturePyramid(min_level=3, max_level=7, num_channels=self.fpn_channels, name="fpn")
        bias = -math.log((1.0 - self.prior_probability) / self.prior_probability)
        self.class_head = conv_tower(self.head_depth, self.head_channels, self.num_anchors * num_classes,
                                     keras.initializers.Constant(bias), "class_head")
        self.box_head = conv_tower(self.head_depth, self.head_channels, self.num_anchors * 4, "zeros", "box_head")
        self.anchor_generator = AnchorGenerator(
            sizes=[[b * s for s in self.anchor_scales] for b in self.anchor_base_sizes],
            aspect_ratios=self.aspect_ratios,
            strides=[_LEVEL_STRIDES[level] for level in range(3, 8)],
            name="anchors",
        )
        self.matcher = BoxMatcher(thresholds=(0.4, 0.5), match_values=(0, -1, 1), allow_low_quality_matches=True,
                                  name="matcher")
        self.coder = DeltaCoder((1.0, 1.0, 1.0, 1.0))
        self.focal_loss = FocalLoss(alpha=self.focal_alpha, gamma=self.focal_gamma, from_logits=True, reduction="sum")

    # -- configurations -------------------------------------------------------------------------------

    @classmethod
    def paper_config(cls, backbone="resnet50", num_classes=80, backbone_weights=None, **kwargs):
        """The paper's RetinaNet: ResNet-50/101-FPN, 256-channel pyramid and subnets of depth 4, anchors 32-512.

        Args:
            backbone: "resnet50" or "resnet101".
            num_classes: 80 for COCO.
            backbone_weights: None or "imagenet" (through keras.applications; needs the network once).
        """
        depths = {"resnet50": 50, "resnet101": 101}
        if backbone not in depths:
            raise ValueError(f"`backbone` must be one of {sorted(depths)}; got {backbone!r}")
        trunk = ResNet(depths[backbone], levels=("C3", "C4", "C5"), weights=backbone_weights)
        return cls(num_classes=num_classes, backbone=trunk, **kwargs)

    @classmethod
    def compact(cls, num_classes, width=0.5, **kwargs):
        """A RetinaNet that trains on 2 CPU cores: ResNet-18 at `width`, 64-channel FPN, subnets of depth 2,
        anchors 16-256 (for 256x256 images with objects from 8 px)."""
        trunk = ResNet(18, levels=("C3", "C4", "C5"), width=width)
        defaults = dict(fpn_channels=64, head_depth=2, head_channels=64, anchor_base_sizes=(16, 32, 64, 128, 256))
        defaults.update(kwargs)
        return cls(num_classes=num_classes, backbone=trunk, **defaults)

    # -- forward --------------------------------------------------------------------------------------

    @property
    def size_divisor(self) -> int:
        """The stride of the coarsest pyramid level (P7: 128)."""
        return 2 ** self.fpn.max_level

    def call(self, inputs, training=False, targets=None):
        images, _ = self.split_inputs(inputs)
        features = self.backbone(images, training=training)
        pyramid = self.fpn(features, training=training)
        maps = [pyramid[f"P{level}"] for level in range(3, 8)]
        return {
            "class_logits": per_level_outputs(self.class_head, maps, self.num_classes, training=training),
            "box_deltas": per_level_outputs(self.box_head, maps, 4, training=training),
            "anchors": self.anchor_generator(images, *maps),
        }

    # -- loss and decoding ----------------------------------------------------------------------------

    def detection_losses(self, images, targets, raw):
        anchors = raw["anchors"]
        assigned = assign_anchor_targets(self.matcher, anchors, targets)
        num_positive = assigned["num_positive"]
        class_loss = self.focal_loss.sum_over_labels(assigned["labels"], raw["class_logits"], assigned["valid"])
        # non-positive anchors carry their own box as target (weight 0): finite deltas, no NaN gradients
        if isinstance(self.box_loss, GIoULoss):
            box_loss = self.box_loss(assigned["boxes"], self.coder.decode(anchors, raw["box_deltas"]),
                                     sample_weight=assigned["positive"])
        else:
            box_loss = self.box_loss(self.coder.encode(anchors, assigned["boxes"]), raw["box_deltas"],
                                     sample_weight=assigned["positive"])
        return {"class_loss": class_loss / num_positive, "box_loss": box_loss / num_positive}

    def decode_candidates(self, raw, images):
        boxes = self.coder.decode(raw["anchors"], raw["box_deltas"])
        shape = tf.cast(tf.shape(images)[1:3], tf.float32)
        boxes = clip_boxes(boxes, shape)
        return boxes, tf.sigmoid(raw["class_logits"])

    # -- config ---------------------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            fpn_channels=self.fpn_channels,
            head_depth=self.head_depth,
            head_channels=self.head_channels,
            anchor_base_sizes=self.anchor_base_sizes,
            anchor_scales=self.anchor_scales,
            aspect_ratios=self.aspect_ratios,
            box_loss=keras.saving.serialize_keras_object(self.box_loss),
            focal_alpha=self.focal_alpha,
            focal_gamma=self.focal_gamma,
            prior_probability=self.prior_probability,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
