"""SSD (Liu et al., 2016): default boxes on several feature maps, multibox matching, hard negative mining."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from kerasdet.backbones._common import LEVEL_STRIDES
from kerasdet.backbones.mobilenet import MobileNetV2
from kerasdet.backbones.mobilenet_v3 import MobileNetV3Large
from kerasdet.backbones.resnet import ResNet
from kerasdet.backbones.vgg import VGG16
from kerasdet.coders.delta_coder import DeltaCoder
from kerasdet.heads.anchor_targets import assign_anchor_targets
from kerasdet.heads.dense_head import flatten_levels
from kerasdet.layers.anchor_generator import SSD300_ASPECT_RATIOS, SSD512_ASPECT_RATIOS, AnchorGenerator
from kerasdet.layers.box_matcher import BoxMatcher
from kerasdet.layers.hard_negative_miner import HardNegativeMiner
from kerasdet.layers.l2_normalization import L2Normalization
from kerasdet.losses.smooth_l1 import SmoothL1Loss
from kerasdet.models.detector import Detector
from kerasdet.ops.boxes import clip_boxes

#: the paper's extra layers after fc7, `(1x1 channels, output channels, kernel, stride, padding)` each, as the released
#: Caffe models (conv8_1/conv8_2 ... conv11_2 for SSD300; up to conv12_2, a 4x4 kernel, for SSD512)
SSD300_EXTRA_LAYERS = ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 1, 0), (128, 256, 3, 1, 0))
SSD512_EXTRA_LAYERS = ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1),
                       (128, 256, 4, 1, 1))
#: default-box sizes in pixels, one per map plus the last map's upper bound, as the released models: 0.1 of the
#: image on conv4_3, then 0.2 .. 0.9 (SSD300) / 0.04, then 0.1 .. 0.9 (SSD512), rounded to the released values
SSD300_BOX_SIZES = (30.0, 60.0, 111.0, 162.0, 213.0, 264.0, 315.0)
SSD512_BOX_SIZES = (20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72)
#: the compact model's sizes at 256 px: 12 px on the stride-8 map (the embedded data has objects from 8 px)
COMPACT_BOX_SIZES = (12.0, 32.0, 72.0, 112.0, 152.0, 192.0)


def _check_extras(extra_layers):
    out = []
    for i, spec in enumerate(extra_layers):
        if (not isinstance(spec, (list, tuple)) or len(spec) != 5
                or any(isinstance(v, bool) or not isinstance(v, int) for v in spec)
                or min(spec[:4]) < 1 or spec[4] < 0):
            raise ValueError(f"`extra_layers[{i}]` must be (1x1 channels, channels, kernel, stride, padding) as "
                             f"positive ints (padding >= 0); got {spec!r}")
        out.append(tuple(int(v) for v in spec))
    return tuple(out)


@keras.saving.register_keras_serializable(package="kerasdet")
class SSD(Detector):
    """SSD: class and box predictors on several feature maps of decreasing resolution, softmax over classes + background.

    Feature maps: the backbone's `feature_levels` (SSD: VGG16's conv4_3, L2-normalised with a learned scale
    initialised at 20, and fc7), then `extra_layers` computed from the last of them, each a 1x1 convolution
    and a `kernel` x `kernel` convolution of `stride` with `padding` zero pixels per side (the released models'
    layers; SSD300's last two are unpadded, giving the paper's maps 38, 19, 10, 5, 3, 1 at 300 px). Each map
    has its own 3x3 class predictor (`num_classes + 1` scores per default box, index 0 background) and box
    predictor; with `separable` (SSDLite, Sandler et al., 2018), the predictors and the extras' spatial layers
    are depthwise-separable.

    Default boxes: on map `k`, a box of size `box_sizes[k]`, an extra one of size
    `sqrt(box_sizes[k] * box_sizes[k + 1])`, and for every `a` in `aspect_ratios[k]` the boxes
    `box_sizes[k] * (sqrt(a), 1 / sqrt(a))` and its transpose. Sizes are in **pixels** (the paper's fractions of
    the 300 or 512 px training size, times that size), so that a model keeps finding an object of a given size
    in pixels at any input size (the paper's fractions would stretch the boxes with the image). Cell `x` of a map
    of stride `s` is centred at `(x + o) * s`: `o` = 0.5 on the backbone's maps (exact for VGG16's same-padded
    layers; for ResNet and MobileNetV2, whose first cells sit elsewhere, the convention the other families use),
    moved through each extra layer's kernel, stride and padding.

    Training: default boxes matched at IoU >= `match_threshold` (0.5), plus each object's best default box matched to
    that object (`BoxMatcher(force_best_match=True)`);
    offsets encoded with variances 0.1 / 0.2 (`DeltaCoder((10, 10, 5, 5))`); the loss is
    `(softmax cross-entropy + alpha * smooth L1) / N`, `N` the matched boxes in the batch, over the positives
    and, with hard negative mining (`neg_pos_ratio`, 3), the negatives of highest confidence loss at
    3 negatives per positive in each image; `neg_pos_ratio=None` weights every negative equally instead (the
    ablation of the paper's §2.2). Prediction: softmax scores, boxes decoded and clipped, per-class NMS at
    `nms_iou_threshold` (0.45), `max_detections` (200) per image.

    Reference: W. Liu, D. Anguelov, D. Erhan, C. Szegedy, S. Reed, C.-Y. Fu, A. C. Berg, "SSD: Single Shot
    MultiBox Detector", ECCV 2016.

    Args:
        num_classes: object classes (background is added internally).
        backbone: a kerasdet feature backbone returning a dict that holds `feature_levels`; None builds the
            paper's VGG16 with fc6/fc7.
        feature_levels: backbone outputs used as prediction maps, finest first.
        l2_norm_levels: those of them that are L2-normalised (conv4_3 in SSD).
        extra_layers: `(1x1 channels, channels, kernel, stride, padding)` per extra map.
        box_sizes: default-box sizes in pixels, one per map plus one (the last map's upper bound).
        aspect_ratios: per map, the ratios `a > 1` that add the boxes `a` and `1 / a`.
        separable: SSDLite's depthwise-separable predictors and extras.
        neg_pos_ratio: hard negative mining ratio (3); None keeps every negative with weight 1.
        match_threshold: IoU at or above which a default box is matched.
        box_loss_weight: alpha (1).
        size_divisor: images are padded to multiples of this; None takes 1 on a VGG16 and the largest map stride
            otherwise (needed where the backbone's stride-2 layers pad differently for odd sizes, as Keras'
            MobileNetV2 and ResNet); 1 on VGG16 because VGG16's "same" convolutions and ceil-mode pools keep cell `j`'s centre at
            `(j + 0.5) * stride` from the top-left at any size, and give the paper's 8732 boxes at 300 px.
        class_names, score_threshold, nms_iou_threshold, max_detections: see `Detector` (SSD's 0.01, 0.45, 200).
        **kwargs: `keras.Model` arguments.

    Call arguments:
        inputs: `[B, H, W, 3]` RGB in 0..255 (padded to `size_divisor`, and to `min_input_size` when smaller).
        training: Keras' training flag.
        targets: unused (default boxes are matched in the loss).

    Returns (`call`):
        dict `{"class_logits": [B, A, num_classes + 1], "box_deltas": [B, A, 4], "anchors": [A, 4]}`;
        `predict` / `detect` return the detections dict (DESIGN.md §3).

    Example:
        >>> model = SSD.compact(num_classes=10)
        >>> model.compile()
        >>> model.fit(kerasdet.data.prepare(kerasdet.data.synthetic.dataset("train", 512), 8, 256), epochs=1)
        >>> SSD.paper_config(300).predict(images)["boxes"].shape
        (B, 200, 4)
    """

    loss_terms = ("class_loss", "box_loss")
    trains_on_replicas = True

    def __init__(
        self,
        num_classes,
        backbone=None,
        feature_levels=("conv4_3", "fc7"),
        l2_norm_levels=("conv4_3",),
        extra_layers=SSD300_EXTRA_LAYERS,
        box_sizes=SSD300_BOX_SIZES,
        aspect_ratios=SSD300_ASPECT_RATIOS,
        separable=False,
        neg_pos_ratio=3.0,
        match_threshold=0.5,
        box_loss_weight=1.0,
        size_divisor=None,
        class_names=None,
        score_threshold=0.01,
        nms_iou_threshold=0.45,
        max_detections=200,
        **kwargs,
    ):
        super().__init__(num_classes=num_classes, class_names=class_names, score_threshold=score_threshold,
                         nms_iou_threshold=nms_iou_threshold, max_detections=max_detections, **kwargs)
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        if backbone is None:
            backbone = VGG16(levels=("conv4_3", "fc7"))
        if not isinstance(backbone, keras.Model):
            raise TypeError(f"`backbone` must be a kerasdet feature backbone; got {type(backbone).__name__}")
        feature_levels = tuple(feature_levels)
        available = tuple(getattr(backbone, "levels", ()))
        missing = [f for f in feature_levels if f not in available]
        if not feature_levels or missing:
            raise ValueError(f"`feature_levels` {feature_levels} must name outputs of the backbone, which has {available}")
        l2_norm_levels = tuple(l2_norm_levels or ())
        if any(f not in feature_levels for f in l2_norm_levels):
            raise ValueError(f"`l2_norm_levels` {l2_norm_levels} must be among `feature_levels` {feature_levels}")
        extra_layers = _check_extras(extra_layers)
        num_maps = len(feature_levels) + len(extra_layers)
        if (not isinstance(aspect_ratios, (list, tuple))
                or not all(isinstance(level, (list, tuple)) for level in aspect_ratios)):
            raise ValueError(f"`aspect_ratios` must hold one sequence of ratios per prediction map ({num_maps}), e.g. "
                             f"((2.0,), (2.0, 3.0), ...); got {aspect_ratios!r}")
        if not isinstance(box_sizes, (list, tuple)):
            raise ValueError(f"`box_sizes` must be a sequence of {num_maps + 1} sizes in pixels; got {box_sizes!r}")
        aspect_ratios = tuple(tuple(float(a) for a in level) for level in aspect_ratios)
        if len(aspect_ratios) != num_maps:
            raise ValueError(f"`aspect_ratios` needs one sequence per prediction map ({num_maps}); got {len(aspect_ratios)}")
        if any(a <= 1.0 for level in aspect_ratios for a in level):
            raise ValueError(f"`aspect_ratios` hold the ratios a > 1 (each adds a and 1/a); got {aspect_ratios}")
        box_sizes = tuple(float(s) for s in box_sizes)
        if len(box_sizes) != num_maps + 1 or not all(0 < s < math.inf for s in box_sizes):
            raise ValueError(f"`box_sizes` needs {num_maps + 1} positive sizes in pixels (one per map plus the last "
                             f"map's upper bound); got {box_sizes}")
        if neg_pos_ratio is not None and (isinstance(neg_pos_ratio, bool) or not neg_pos_ratio >= 0):
            raise ValueError(f"`neg_pos_ratio` must be a number >= 0, or None for every negative; got {neg_pos_ratio!r}")
        if not 0.0 < match_threshold <= 1.0:
            raise ValueError(f"`match_threshold` must be in (0, 1]; got {match_threshold}")
        self.backbone = backbone
        self.feature_levels = feature_levels
        self.l2_norm_levels = l2_norm_levels
        self.extra_layers = extra_layers
        self.box_sizes = box_sizes
        self.aspect_ratios = aspect_ratios
        self.separable = bool(separable)
        self.neg_pos_ratio = None if neg_pos_ratio is None else float(neg_pos_ratio)
        self.match_threshold = float(match_threshold)
        self.box_loss_weight = float(box_loss_weight)
        if size_divisor is not None and (isinstance(size_divisor, bool) or not isinstance(size_divisor, int)
                                         or size_divisor < 1):
            raise ValueError(f"`size_divisor` must be a positive int or None; got {size_divisor!r}")
        if size_divisor is None and isinstance(backbone, VGG16):
            size_divisor = 1  # VGG16's "same" layers keep the cells' centres at any size (see `size_divisor`)
        self._size_divisor = size_divisor

        strides, offsets = self._map_geometry()
        self.map_strides, self.map_offsets = tuple(strides), tuple(offsets)
        self._min_input_size = self._smallest_input()  # raises now for extras that leave no cell at any size
        self.l2_norms = [L2Normalization(20.0, name=f"{name}_l2_norm") for name in l2_norm_levels]
        self.extras = [self._extra_block(i, *spec) for i, spec in enumerate(extra_layers)]
        self.anchor_generator = AnchorGenerator.ssd(aspect_ratios=aspect_ratios, scales=box_sizes, units="pixels",
                                                    strides=strides, offset=offsets, name="anchors")
        per_cell = self.anchor_generator.num_anchors_per_location(num_maps)
        self.class_heads = [self._predictor(n * (num_classes + 1), f"class_head{k}") for k, n in enumerate(per_cell)]
        self.box_heads = [self._predictor(n * 4, f"box_head{k}") for k, n in enumerate(per_cell)]
        # the paper's rule: each object's single best default box is matched to that object (MultiBox's bipartite
        # step), whatever its IoU with other objects
        self.matcher = BoxMatcher(thresholds=(self.match_threshold,), match_values=(0, 1),
                                  allow_low_quality_matches=False, force_best_match=True, name="matcher")
        self.coder = DeltaCoder((10.0, 10.0, 5.0, 5.0))
        self.miner = None if self.neg_pos_ratio is None else HardNegativeMiner(self.neg_pos_ratio, name="miner")
        self.smooth_l1 = SmoothL1Loss(beta=1.0, reduction="sum")

    # -- architecture ---------------------------------------------------------------------------------

    def _map_geometry(self):
        """Stride and centre offset (in cells) of every prediction map, from the backbone's strides and the
        extras' kernels, strides and paddings: cell `j` of a layer (kernel k, stride s, padding p) is centred on
        input cell `j * s - p + (k - 1) / 2`."""
        level_strides = getattr(self.backbone, "level_strides", LEVEL_STRIDES)
        strides = [float(level_strides[f]) for f in self.feature_levels]
        offsets = [0.5] * len(strides)
        stride, offset = strides[-1], offsets[-1]
        for _, _, kernel, step, pad in self.extra_layers:
            offset = (offset + (kernel - 1) / 2 - pad) / step
            stride *= step
            if offset < 0:
                raise ValueError(f"`extra_layers` {self.extra_layers}: padding larger than half the kernel puts a "
                                 "map's first cell outside the image")
            strides.append(stride)
            offsets.append(offset)
        return strides, offsets

    def _extra_block(self, index, channels_1x1, channels, kernel, stride, pad):
        name = f"extra{index + 1}"
        layers = [keras.layers.Conv2D(channels_1x1, 1, activation="relu", name=f"{name}_1")]
        if pad:
            layers.append(keras.layers.ZeroPadding2D(pad, name=f"{name}_pad"))
        if self.separable:
            layers += [keras.layers.DepthwiseConv2D(kernel, strides=stride, activation="relu", name=f"{name}_dw"),
                       keras.layers.Conv2D(channels, 1, activation="relu", name=f"{name}_2")]
        else:
            layers.append(keras.layers.Conv2D(channels, kernel, strides=stride, activation="relu", name=f"{name}_2"))
        return keras.Sequential(layers, name=name)

    def _predictor(self, outputs, name):
        if self.separable:
            return keras.layers.SeparableConv2D(outputs, 3, padding="same", name=name)
        return keras.layers.Conv2D(outputs, 3, padding="same", name=name)

    # -- configurations -------------------------------------------------------------------------------

    @classmethod
    def paper_config(cls, size=300, num_classes=80, width=1.0, backbone_weights=None, **kwargs):
        """The paper's SSD300 or SSD512 on the reduced VGG16 (fc6/fc7 convolutional, fc6 dilated by 6, pool5
        3x3 stride 1), with the released models' extra layers and default-box sizes.

        Args:
            size: 300 or 512.
            num_classes: 80 for COCO (20 for VOC).
            width: VGG16 channel multiplier (1.0 = the paper's).
            backbone_weights: None or "imagenet" (keras.applications' VGG16 convolutions; network on first use).
        """
        if size not in (300, 512):
            raise ValueError(f"`size` must be 300 or 512; got {size!r}")
        trunk = VGG16(levels=("conv4_3", "fc7"), width=width, weights=backbone_weights)
        defaults = dict(extra_layers=SSD300_EXTRA_LAYERS, box_sizes=SSD300_BOX_SIZES, aspect_ratios=SSD300_ASPECT_RATIOS)
        if size == 512:
            defaults = dict(extra_layers=SSD512_EXTRA_LAYERS, box_sizes=SSD512_BOX_SIZES,
                            aspect_ratios=SSD512_ASPECT_RATIOS)
        defaults.update(kwargs)
        defaults.setdefault("size_divisor", 1)
        return cls(num_classes=num_classes, backbone=trunk, feature_levels=("conv4_3", "fc7"),
                   l2_norm_levels=("conv4_3",), **defaults)

    @classmethod
    def ssdlite(cls, num_classes=80, size=320, width=1.0, backbone="mobilenet_v2", **kwargs):
        """SSDLite (Sandler et al., 2018, §6.2) as torchvision's `ssdlite320_mobilenet_v3_large` lays it out: two
        maps from the trunk, four depthwise-separable extras (512, 256, 256, 128 channels, stride 2), 6 default
        boxes per cell (ratios 2 and 3, plus the extra box) with sizes 0.2 .. 0.95 of `size` (3,234 boxes at 320 px,
        as torchvision's); images padded to multiples of 32.

        Args:
            backbone: `"mobilenet_v2"` (the SSDLite paper's trunk, alpha `width`; maps from its stride-16 block C4
                and last layer C5) or `"mobilenet_v3_large"` (torchvision's: MobileNetV3-Large with the reduced
                tail, maps from the expansion of the first stride-32 block, still at stride 16, and the last
                convolution: MobileNetV3 paper §6.3).

        Example:
            >>> SSD.ssdlite(num_classes=90, backbone="mobilenet_v3_large").build_for_size(320)
        """
        if backbone == "mobilenet_v2":
            trunk, levels = MobileNetV2(alpha=width, levels=("C4", "C5")), ("C4", "C5")
        elif backbone == "mobilenet_v3_large":
            levels = ("C4_expansion", "C5")
            trunk = MobileNetV3Large(width=width, reduced_tail=True, levels=levels)
        else:
            raise ValueError(f"`backbone` must be 'mobilenet_v2' or 'mobilenet_v3_large'; got {backbone!r}")
        scales = [0.2 + (0.95 - 0.2) * k / 5 for k in range(6)] + [1.0]
        defaults = dict(feature_levels=levels, l2_norm_levels=(),
                        extra_layers=((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (64, 128, 3, 2, 1)),
                        box_sizes=tuple(round(s * size, 2) for s in scales), aspect_ratios=((2.0, 3.0),) * 6,
                        separable=True, size_divisor=32)
        defaults.update(kwargs)
        return cls(num_classes=num_classes, backbone=trunk, **defaults)

    @classmethod
    def compact(cls, num_classes, backbone="mobilenet_v2", width=None, **kwargs):
        """An SSD that trains on 2 CPU cores at 256 px: SSDLite-style (depthwise-separable predictors and extras)
        on MobileNetV2 (alpha `width`, 0.5 by default) C3-C5, or with `backbone="resnet18"` plain 3x3 predictors
        on ResNet-18 (width 0.5) C3-C5; two extra maps (strides 64 and 128), default boxes 12-192 px."""
        if backbone == "mobilenet_v2":
            trunk = MobileNetV2(alpha=width or 0.5, levels=("C3", "C4", "C5"))
            separable = True
        elif backbone == "resnet18":
            trunk = ResNet(18, levels=("C3", "C4", "C5"), width=width or 0.5)
            separable = False
        else:
            raise ValueError(f"`backbone` must be 'mobilenet_v2' or 'resnet18'; got {backbone!r}")
        defaults = dict(feature_levels=("C3", "C4", "C5"), l2_norm_levels=(),
                        extra_layers=((64, 128, 3, 2, 1), (64, 128, 3, 2, 1)), box_sizes=COMPACT_BOX_SIZES,
                        aspect_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,)), separable=separable)
        defaults.update(kwargs)
        return cls(num_classes=num_classes, backbone=trunk, **defaults)

    # -- forward --------------------------------------------------------------------------------------

    @property
    def size_divisor(self) -> int:
        """The constructor's `size_divisor`, or the largest stride of the prediction maps."""
        return int(max(self.map_strides)) if self._size_divisor is None else self._size_divisor

    @property
    def min_input_size(self) -> int:
        """The smallest padded side for which every map has a cell (SSD300's unpadded extras need 257 px)."""
        return self._min_input_size

    def _smallest_input(self) -> int:
        divisor = self.size_divisor
        level_strides = getattr(self.backbone, "level_strides", LEVEL_STRIDES)
        last = level_strides[self.feature_levels[-1]]
        for side in range(divisor, 8193, divisor):
            cells = -(-side // last)
            for _, _, kernel, stride, pad in self.extra_layers:
                cells = (cells + 2 * pad - kernel) // stride + 1
                if cells < 1:
                    break
            else:
                return side
        raise ValueError(f"`extra_layers` {self.extra_layers} leave no cell at any input size up to 8192 px")

    def call(self, inputs, training=False, targets=None):
        images, _ = self.split_inputs(inputs)
        features = self.backbone(images, training=training)
        norms = dict(zip(self.l2_norm_levels, self.l2_norms))
        maps = [norms[name](features[name]) if name in norms else features[name] for name in self.feature_levels]
        x = features[self.feature_levels[-1]]
        for block in self.extras:
            x = block(x, training=training)
            maps.append(x)
        return {
            "class_logits": flatten_levels([h(m) for h, m in zip(self.class_heads, maps)], self.num_classes + 1),
            "box_deltas": flatten_levels([h(m) for h, m in zip(self.box_heads, maps)], 4),
            "anchors": self.anchor_generator(images, *maps),
        }

    # -- loss and decoding ----------------------------------------------------------------------------

    def detection_losses(self, images, targets, raw):
        anchors = raw["anchors"]
        assigned = assign_anchor_targets(self.matcher, anchors, targets)
        states = assigned["states"]
        positive = assigned["positive"]
        # class 0 is background: a positive's target is its label + 1
        class_targets = tf.where(states == 1, assigned["labels"] + 1, 0)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(class_targets, raw["class_logits"])
        if self.miner is None:
            negatives = tf.cast(tf.equal(states, 0), tf.float32)
        else:  # for a negative the cross-entropy is its loss as background: the miner ranks by it
            negatives = self.miner(tf.stop_gradient(cross_entropy), states)
        num_positive = assigned["num_positive"]
        class_loss = tf.reduce_sum(cross_entropy * (positive + negatives)) / num_positive
        # non-positive boxes carry their own default box as target (weight 0): finite deltas, no NaN gradients
        box_loss = self.smooth_l1(self.coder.encode(anchors, assigned["boxes"]), raw["box_deltas"],
                                  sample_weight=positive)
        return {"class_loss": class_loss, "box_loss": self.box_loss_weight * box_loss / num_positive}

    def decode_candidates(self, raw, images):
        boxes = self.coder.decode(raw["anchors"], raw["box_deltas"])
        boxes = clip_boxes(boxes, tf.cast(tf.shape(images)[1:3], tf.float32))
        return boxes, tf.nn.softmax(raw["class_logits"], axis=-1)[..., 1:]

    # -- config ---------------------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            feature_levels=self.feature_levels,
            l2_norm_levels=self.l2_norm_levels,
            extra_layers=self.extra_layers,
            box_sizes=self.box_sizes,
            aspect_ratios=self.aspect_ratios,
            separable=self.separable,
            neg_pos_ratio=self.neg_pos_ratio,
            match_threshold=self.match_threshold,
            box_loss_weight=self.box_loss_weight,
            size_divisor=self._size_divisor,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
