"""Mask R-CNN (He et al., 2017): Faster R-CNN plus a mask head and a keypoint head on the boxes it keeps."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from kerasdet.backbones.resnet import ResNet
from kerasdet.heads.keypoint_head import KeypointHead
from kerasdet.heads.mask_head import MaskHead
from kerasdet.heads.per_roi import per_roi
from kerasdet.ops._checks import output_size_pair
from kerasdet.layers.feature_pyramid import FeaturePyramid
from kerasdet.layers.multi_level_roi_align import MultiLevelRoIAlign
from kerasdet.layers.roi_align import RoIAlign
from kerasdet.layers.roi_pool import RoIPool
from kerasdet.models.detector import StandardTargets, with_layer_config
from kerasdet.models.faster_rcnn.faster_rcnn import FasterRCNN, _deserialize
from kerasdet.ops.keypoints import heatmaps_to_keypoints, keypoint_heatmap_targets
from kerasdet.ops.masks import crop_masks, paste_masks

_POOLERS = (RoIPool, RoIAlign, MultiLevelRoIAlign)
MASK_OUTPUTS = ("pasted", "roi")


def _serialize(value):
    return None if value is None else keras.saving.serialize_keras_object(value)


def _pad_rows(tensor, rows):
    """Pads axis 1 of `tensor` with zeros up to `rows`."""
    missing = rows - tf.shape(tensor)[1]
    paddings = tf.concat([[[0, 0], [0, missing]], tf.zeros([tf.rank(tensor) - 2, 2], tf.int32)], axis=0)
    return tf.pad(tensor, paddings)


@keras.saving.register_keras_serializable(package="kerasdet")
class MaskRCNN(FasterRCNN):
    """Mask R-CNN: a Faster R-CNN whose positive RoIs also train a mask head (and optionally a keypoint
    head), and whose kept detections get a mask (and keypoints) at test time.

    Training: the box part trains as `FasterRCNN`; the positive sampled RoIs (up to
    `num_samples * positive_fraction` per image) are pooled again (`mask_pooler`, 14x14 RoIAlign) for the
    mask head, whose target is the matched object's mask cropped by RoIAlign to the RoI (28x28) and
    binarised at 0.5, and whose loss is the mean binary cross-entropy of the ground-truth class's map.
    With keypoints, positive RoIs whose object has labelled keypoints inside the RoI (enlarged by
    `keypoint_box_scale`) train the keypoint head (56x56 heatmaps, spatial softmax cross-entropy at the one-hot
    target bin).

    Prediction: after per-class NMS, the heads run on the kept boxes (only as many rows as the image with
    the most detections needs): `masks` are the class's 28x28 sigmoid maps pasted into the image with
    bilinear resampling (`mask_output="pasted"`, float32 `[B, N, H, W]` in 0..1, or uint8 0/1 when
    `mask_threshold` is set), or the 28x28 maps themselves (`mask_output="roi"`, `[B, N, 28, 28]`, paste
    them with `kerasdet.ops.paste_masks`); `keypoints` `[B, N, K, 3]` hold (x, y, score) from each heatmap's
    maximum refined to sub-bin precision. Padding rows are 0.

    Targets: `{"boxes", "labels"}` plus `"masks"` uint8 `[B, M, H, W]` (the image's size) when the model has a
    mask head, and `"keypoints"` float `[B, M, K, 3]` (x, y, COCO visibility) when it has keypoints.

    Reference: K. He, G. Gkioxari, P. Dollar, R. Girshick, "Mask R-CNN", ICCV 2017.

    Args:
        num_classes: object classes.
        with_masks: build and train the mask head.
        num_keypoints: keypoints per object (0: no keypoint head).
        mask_head: a `MaskHead` (None: the paper's 4 conv 256 + deconv, or deconv only on a box tower).
        mask_pooler: `RoIAlign` / `RoIPool` / `MultiLevelRoIAlign` for the mask head (None: 14x14 RoIAlign on the
            box pooler's maps; with a box head `tower` (the C4 form), None shares the box head's pooler and
            tower, as the paper's ResNet-C4 Mask R-CNN does).
        keypoint_head: a `KeypointHead` (None: the paper's 8 conv 512).
        keypoint_pooler: the keypoint head's pooler (None: 14x14 RoIAlign on the box pooler's maps).
        keypoint_classes: labels whose detections carry keypoints (None: every class); other detections'
            keypoints are 0.
        keypoint_rois_per_image: RoIs per image that train the keypoint head, those with labelled keypoints
            first (None: every positive RoI row).
        keypoint_box_scale: number >= 1: the keypoint head sees each RoI (in training) and each kept box (in
            prediction) enlarged by this factor about its centre, so that keypoints outside the box (occluded
            parts of an object whose box covers what is visible) can be trained and predicted; 1 is the paper's.
            The heatmaps then cover the enlarged box (coarser bins by the same factor).
        mask_output: "pasted" or "roi" (see above).
        mask_threshold: None for probabilities, or a threshold in (0, 1) giving uint8 binary pasted masks.
        **kwargs: the `FasterRCNN` arguments (backbone, rpn, roi_pooler, box_head, proposal_sampler...).

    Example:
        >>> model = MaskRCNN.compact(num_classes=10, num_keypoints=5, keypoint_classes=[7])
        >>> model.compile()
        >>> model.fit(train_ds, epochs=1)          # targets with "masks" and "keypoints"
        >>> out = model.predict(images)
        >>> out["masks"].shape, out["keypoints"].shape
        ((B, 100, H, W), (B, 100, 5, 3))
    """

    def __init__(self, num_classes, with_masks=True, num_keypoints=0, mask_head=None, mask_pooler=None,
                 keypoint_head=None, keypoint_pooler=None, keypoint_classes=None, keypoint_rois_per_image=None,
                 keypoint_box_scale=1.0, mask_output="pasted", mask_threshold=None, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        if not isinstance(with_masks, bool):
            raise TypeError(f"`with_masks` must be a bool; got {with_masks!r}")
        if isinstance(num_keypoints, bool) or not isinstance(num_keypoints, int) or num_keypoints < 0:
            raise ValueError(f"`num_keypoints` must be an int >= 0; got {num_keypoints!r}")
        if not with_masks and num_keypoints == 0:
            raise ValueError("a MaskRCNN needs a mask head (`with_masks=True`) or keypoints (`num_keypoints` > 0); "
                             "for boxes alone use FasterRCNN")
        if mask_output not in MASK_OUTPUTS:
            raise ValueError(f"`mask_output` must be one of {MASK_OUTPUTS}; got {mask_output!r}")
        if mask_threshold is not None:
            if not 0.0 < float(mask_threshold) < 1.0:
                raise ValueError(f"`mask_threshold` must be None or in (0, 1); got {mask_threshold!r}")
            if mask_output != "pasted":
                raise ValueError("`mask_threshold` binarises pasted masks; with mask_output='roi' paste the "
                                 "probabilities first (kerasdet.ops.paste_masks) and threshold after")
            mask_threshold = float(mask_threshold)
        if keypoint_classes is not None:
            keypoint_classes = [int(c) for c in keypoint_classes]
            bad = [c for c in keypoint_classes if not 0 <= c < num_classes]
            if bad or not keypoint_classes:
                raise ValueError(f"`keypoint_classes` must be a non-empty list of labels in [0, {num_classes}); "
                                 f"got {keypoint_classes}")
        if keypoint_rois_per_image is not None and (not isinstance(keypoint_rois_per_image, int)
                                                    or keypoint_rois_per_image < 1):
            raise ValueError(f"`keypoint_rois_per_image` must be None or a positive int; got {keypoint_rois_per_image!r}")
        self.with_masks = with_masks
        if (isinstance(keypoint_box_scale, bool) or not isinstance(keypoint_box_scale, (int, float))
                or not math.isfinite(keypoint_box_scale) or keypoint_box_scale < 1):
            raise ValueError(f"`keypoint_box_scale` must be a finite number >= 1; got {keypoint_box_scale!r}")
        self.num_keypoints = num_keypoints
        self.keypoint_classes = keypoint_classes
        self.keypoint_rois_per_image = keypoint_rois_per_image
        self.keypoint_box_scale = float(keypoint_box_scale)
        self.mask_output = mask_output
        self.mask_threshold = mask_threshold
        shares_box_tower = self.box_head.tower is not None
        self.mask_head = self.mask_pooler = self.keypoint_head = self.keypoint_pooler = None
        if with_masks:
            mask_pooler = _deserialize(mask_pooler)
            if mask_pooler is None and not shares_box_tower:
                mask_pooler = self._default_pooler("mask_roi_align")
            if mask_pooler is not None and not isinstance(mask_pooler, _POOLERS):
                raise TypeError(f"`mask_pooler` must be a RoIAlign, RoIPool or MultiLevelRoIAlign; got "
                                f"{type(mask_pooler).__name__}")
            default_convs = () if mask_pooler is None else (256,) * 4
            mask_head = _deserialize(mask_head) or MaskHead(num_classes, conv_dims=default_convs, name="mask_head")
            if not isinstance(mask_head, MaskHead) or mask_head.num_classes != num_classes:
                raise ValueError(f"`mask_head` must be a MaskHead for num_classes={num_classes}")
            self.mask_pooler, self.mask_head = mask_pooler, mask_head
        if num_keypoints:
            keypoint_pooler = _deserialize(keypoint_pooler) or self._default_pooler("keypoint_roi_align")
            if not isinstance(keypoint_pooler, _POOLERS):
                raise TypeError(f"`keypoint_pooler` must be a RoIAlign, RoIPool or MultiLevelRoIAlign; got "
                                f"{type(keypoint_pooler).__name__}")
            keypoint_head = _deserialize(keypoint_head) or KeypointHead(num_keypoints, name="keypoint_head")
            if not isinstance(keypoint_head, KeypointHead) or keypoint_head.num_keypoints != num_keypoints:
                raise ValueError(f"`keypoint_head` must be a KeypointHead for num_keypoints={num_keypoints}")
            self.keypoint_pooler, self.keypoint_head = keypoint_pooler, keypoint_head

    def _default_pooler(self, name):
        """14x14 RoIAlign on the maps the box pooler reads."""
        if isinstance(self.roi_pooler, MultiLevelRoIAlign):
            return MultiLevelRoIAlign(14, strides=self.roi_pooler.strides, sampling_ratio=2, name=name)
        return RoIAlign(14, spatial_scale=self.roi_pooler.spatial_scale, sampling_ratio=2, name=name)

    # -- declared outputs and losses -----------------------------------------------------------------

    @property
    def extra_output_keys(self):
        return ("masks",) * self.with_masks + ("keypoints",) * bool(self.num_keypoints)

    def output_signature(self):
        """The base outputs plus `masks` `[N, H, W]` (pasted: the image's size; "roi": the head's maps) and
        `keypoints` `[N, K, 3]`."""
        n, out = self.max_detections, super().output_signature()
        if self.with_masks:
            pasted_binary = self.mask_output == "pasted" and self.mask_threshold is not None
            out["masks"] = tf.TensorSpec([n, None, None], tf.uint8 if pasted_binary else tf.float32)
        if self.num_keypoints:
            out["keypoints"] = tf.TensorSpec([n, self.num_keypoints, 3], tf.float32)
        return out

    @property
    def loss_terms(self):
        return FasterRCNN.loss_terms + ("mask_loss",) * self.with_masks + ("keypoint_loss",) * bool(self.num_keypoints)

    # -- configurations ------------------------------------------------------------------------------

    @classmethod
    def compact(cls, num_classes, width=0.5, with_masks=True, num_keypoints=0, **kwargs):
        """The compact Faster R-CNN (`FasterRCNN.compact`: ResNet-18 at `width`, RPN on FPN P3-P7 of 64 channels) with
        the FPN extended down to P2 (stride 4) for the RoI heads, as the FPN paper's Mask R-CNN pools RoIs from
        P2-P5 (a star of 20 px spans 2.5 cells of P3, too few to place its tips to a pixel): the box head pools 7x7,
        the mask head (4 conv 64 + deconv 64, 28x28 masks) and, with `num_keypoints`, the keypoint head (4 conv 64,
        56x56 heatmaps, trained on up to 16 RoIs per image) pool 14x14, all over P2-P5."""
        strides = {"P2": 4, "P3": 8, "P4": 16, "P5": 32}
        defaults = dict(
            with_masks=with_masks, num_keypoints=num_keypoints,
            backbone=ResNet(18, levels=("C2", "C3", "C4", "C5"), width=width),
            feature_pyramid=FeaturePyramid(min_level=2, max_level=7, num_channels=64, name="fpn"),
            roi_pooler=MultiLevelRoIAlign(7, strides=strides, sampling_ratio=2, name="roi_align"),
        )
        if with_masks:
            defaults.update(mask_head=MaskHead(num_classes, conv_dims=(64,) * 4, deconv_dim=64, name="mask_head"),
                            mask_pooler=MultiLevelRoIAlign(14, strides=strides, sampling_ratio=2, name="mask_roi_align"))
        if num_keypoints:
            defaults.update(keypoint_head=KeypointHead(num_keypoints, conv_dims=(64,) * 4, name="keypoint_head"),
                            keypoint_pooler=MultiLevelRoIAlign(14, strides=strides, sampling_ratio=2,
                                                               name="keypoint_roi_align"),
                            keypoint_rois_per_image=16)
        defaults.update(kwargs)
        return super().compact(num_classes, width=width, **defaults)

    @classmethod
    def paper_config(cls, name="resnet50_fpn", num_classes=80, backbone_weights=None, with_masks=True,
                     num_keypoints=0, trainable_backbone_layers=None, **kwargs):
        """The published Mask R-CNN networks (random weights, or ImageNet backbones through keras.applications).

        - `"resnet50_fpn"`, `"resnet101_fpn"`: the FPN Faster R-CNN (`FasterRCNN.paper_config`) with the mask head
          of 4 conv 3x3 256 + 2x2 deconvolution 256 on 14x14 `MultiLevelRoIAlign` (28x28 masks), and with
          `num_keypoints` (17 for COCO persons) the keypoint head of 8 conv 3x3 512 on 14x14 RoIAlign (56x56).
        - `"resnet50_c4"`: the C4 Faster R-CNN with RoIAlign 14x14 on C4 and conv5 on each RoI; the mask head is a
          2x2 deconvolution of 256 on conv5's 7x7 output (14x14 masks), sharing the box head's conv5.

        Args:
            name: one of the names above.
            num_classes: 80 for COCO (1 for a person-keypoint model).
            backbone_weights: None or "imagenet".
            with_masks: include the mask head (False with `num_keypoints` gives the keypoint-only model).
            num_keypoints: 0, or the keypoints per object for the keypoint head.
            trainable_backbone_layers: see `FasterRCNN.paper_config`.
            **kwargs: other constructor arguments.

        Example:
            >>> model = MaskRCNN.paper_config("resnet50_fpn", num_classes=80)
            >>> person_keypoints = MaskRCNN.paper_config("resnet50_fpn", num_classes=1, with_masks=False,
            ...                                          num_keypoints=17)
        """
        names = ("resnet50_fpn", "resnet101_fpn", "resnet50_c4")
        if name not in names:
            raise ValueError(f"`name` must be one of {names}; got {name!r}")
        if name.endswith("_c4") and num_keypoints:
            raise ValueError("the keypoint head is defined on the FPN configurations (He et al., 2017, §5)")
        defaults = dict(with_masks=with_masks, num_keypoints=num_keypoints)
        if name.endswith("_c4"):
            kwargs.setdefault("roi_pooling", "roi_align")
        defaults.update(kwargs)
        return super().paper_config(name, num_classes=num_classes, backbone_weights=backbone_weights,
                                    trainable_backbone_layers=trainable_backbone_layers, **defaults)

    # -- targets -------------------------------------------------------------------------------------

    def standardize_targets(self, targets, images):
        """`FasterRCNN`'s targets plus `"masks"` (uint8 `[B, M, H, W]` of the images' size) and `"keypoints"`
        (float32 `[B, M, K, 3]`), each padded by the extra row the base class adds; ValueError naming the key
        when the model's heads need a key the targets lack or when its shape is wrong."""
        if isinstance(targets, StandardTargets):
            return targets
        if isinstance(targets, dict):
            self._check_head_targets(targets, images)
        out = super().standardize_targets(targets, images)
        if self.with_masks:
            out["masks"] = tf.pad(tf.cast(targets["masks"], tf.uint8), [[0, 0], [0, 1], [0, 0], [0, 0]])
        if self.num_keypoints:
            out["keypoints"] = tf.pad(tf.cast(targets["keypoints"], tf.float32), [[0, 0], [0, 1], [0, 0], [0, 0]])
        return out

    def _check_head_targets(self, targets, images):
        labels = targets.get("labels", targets.get("classes"))
        rows = None if labels is None or getattr(labels, "shape", None) is None else labels.shape
        if self.with_masks:
            if "masks" not in targets:
                raise ValueError("this MaskRCNN has a mask head, which trains on instance masks: the targets need "
                                 "y['masks'] uint8 [B, M, H, W] (one mask per box, the image's size). The dataset has "
                                 "none (VOC detection data has no masks; COCO json needs `segmentation`): build the "
                                 "model with with_masks=False, or train a FasterRCNN")
            masks = targets["masks"]
            shape = tuple(getattr(masks, "shape", ()))
            if len(shape) != 4:
                raise ValueError(f"`y['masks']` must have shape [B, M, H, W]; got {shape or type(masks).__name__}")
            if rows is not None and len(rows) == 2 and None not in (rows[1], shape[1]) and rows[1] != shape[1]:
                raise ValueError(f"`y['masks']` {shape} must hold one mask per row of `y['labels']` {tuple(rows)}")
            hw = tuple(images.shape[1:3])
            if None not in hw and None not in shape[2:] and tuple(shape[2:]) != hw:
                raise ValueError(f"`y['masks']` {shape} must have the images' height and width {hw}")
        if self.num_keypoints:
            if "keypoints" not in targets:
                raise ValueError(f"this MaskRCNN has a keypoint head ({self.num_keypoints} keypoints): the targets need "
                                 "y['keypoints'] [B, M, K, 3] (x, y, visibility; zero rows for objects without "
                                 "keypoints); build the model with num_keypoints=0 to train without them")
            shape = tuple(getattr(targets["keypoints"], "shape", ()))
            if len(shape) != 4 or shape[-1] != 3 or shape[2] not in (None, self.num_keypoints):
                raise ValueError(f"`y['keypoints']` must have shape [B, M, {self.num_keypoints}, 3]; got {shape}")

    # -- forward -------------------------------------------------------------------------------------

    def _mask_features(self, features, rois, training):
        if self.mask_pooler is not None:
            return self.pool_rois(features, rois, self.mask_pooler)
        # the C4 form: the box head's pooling and its conv5 tower, shared
        return per_roi(self.box_head.tower, self.pool_rois(features, rois), training=training)

    def call(self, inputs, training=False, targets=None, image_sizes=None):
        out = super().call(inputs, training=training, targets=targets, image_sizes=image_sizes)
        if targets is None or self.training_stage == "rpn":
            return out
        features, sampled = out["features"], out["sampled"]
        # positives come first in the sample: the first num_samples * positive_fraction rows hold them all, and
        # the heads run on as many rows as the image with the most positives has
        rows = max(int(self.proposal_sampler.num_samples * self.proposal_sampler.positive_fraction), 1)
        most = tf.reduce_max(tf.reduce_sum(tf.cast(sampled["states"][:, :rows] == 1, tf.int32), axis=1))
        rows = tf.maximum(most, 1)
        states, gt_rows = sampled["states"][:, :rows], sampled["gt_indices"][:, :rows]
        positive = states == 1
        rois = tf.where(positive[..., None], sampled["rois"][:, :rows], -1.0)
        if self.with_masks:
            logits = self.mask_head(self._mask_features(features, rois, training), training=training)
            out["mask_train"] = {"logits": MaskHead.class_maps(logits, sampled["labels"][:, :rows]), "rois": rois,
                                 "gt_indices": gt_rows, "positive": positive}
        if self.num_keypoints:
            out["keypoint_train"] = self._keypoint_training_outputs(features, targets, rois, gt_rows, positive,
                                                                    training)
        return out

    def _keypoint_boxes(self, boxes, valid):
        """`boxes` `[B, N, 4]` as the keypoint head sees them: enlarged by `keypoint_box_scale` about their centres
        where `valid`, padding rows (-1) kept."""
        if self.keypoint_box_scale == 1.0:
            return boxes
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2.0
        half = (boxes[..., 2:] - boxes[..., :2]) * (self.keypoint_box_scale / 2.0)
        return tf.where(valid[..., None], tf.concat([centre - half, centre + half], axis=-1), boxes)

    def _keypoint_training_outputs(self, features, targets, rois, gt_rows, positive, training):
        keypoints = tf.gather(targets["keypoints"], tf.maximum(gt_rows, 0), batch_dims=1)      # [B, P, K, 3]
        rois = self._keypoint_boxes(rois, positive)
        if self.keypoint_rois_per_image is not None:
            # the rows whose object has labelled keypoints inside the RoI first, then the rest in order
            size = self._heatmap_size()
            _, valid = keypoint_heatmap_targets(keypoints, rois, size)
            useful = tf.reduce_any(valid, axis=-1) & positive
            count = tf.shape(rois)[1]
            rank = tf.cast(useful, tf.float32) * 2.0 - tf.cast(tf.range(count), tf.float32) / tf.cast(count, tf.float32)
            # as many rows as the image with the most useful RoIs has, at most keypoint_rois_per_image
            most = tf.reduce_max(tf.reduce_sum(tf.cast(useful, tf.int32), axis=1))
            keep = tf.math.top_k(rank, k=tf.clip_by_value(most, 1, tf.minimum(self.keypoint_rois_per_image, count))).indices
            rois = tf.gather(rois, keep, batch_dims=1)
            keypoints = tf.gather(keypoints, keep, batch_dims=1)
            positive = tf.gather(positive, keep, batch_dims=1)
        heatmaps = self.keypoint_head(self.pool_rois(features, rois, self.keypoint_pooler), training=training)
        indices, valid = keypoint_heatmap_targets(keypoints, rois, self._heatmap_size())
        return {"heatmaps": heatmaps, "indices": indices, "valid": valid & positive[..., None]}

    def _heatmap_size(self):
        height, width = output_size_pair(self.keypoint_pooler.output_size)
        if height != width:
            raise ValueError(f"the keypoint pooler's output must be square; got {(height, width)}")
        return height * 2 * self.keypoint_head.upsample

    def detection_losses(self, images, targets, raw):
        terms = super().detection_losses(images, targets, raw)
        if "mask_train" in raw:
            t = raw["mask_train"]
            size = t["logits"].shape[2:4]
            crops = crop_masks(targets["masks"], t["rois"], t["gt_indices"], tuple(size), sampling_ratio=2)
            terms["mask_loss"] = MaskHead.loss(t["logits"], crops, t["positive"])
        if "keypoint_train" in raw:
            t = raw["keypoint_train"]
            terms["keypoint_loss"] = KeypointHead.loss(t["heatmaps"], t["indices"], t["valid"])
        return terms

    # -- prediction ----------------------------------------------------------------------------------

    def refine_detections(self, detections, raw, inputs):
        images, _ = self.split_inputs(inputs)
        features = raw["features"]
        labels = detections["labels"]
        total = tf.shape(labels)[1]
        # detections are padded at the end: the heads run on as many rows as the fullest image has
        rows = tf.maximum(tf.reduce_max(detections["num_detections"]), 1)
        kept_labels = labels[:, :rows]
        valid = kept_labels >= 0
        boxes = tf.where(valid[..., None], detections["boxes"][:, :rows], -1.0)
        out = dict(detections)
        if self.with_masks:
            logits = self.mask_head(self._mask_features(features, boxes, False), training=False)
            probabilities = tf.where(valid[..., None, None], tf.sigmoid(MaskHead.class_maps(logits, kept_labels)), 0.0)
            if self.mask_output == "roi":
                masks = probabilities
            else:
                masks = paste_masks(probabilities, boxes, tf.shape(images)[1:3])
                if self.mask_threshold is not None:
                    masks = tf.cast(masks >= self.mask_threshold, tf.uint8)
            out["masks"] = _pad_rows(masks, total)
        if self.num_keypoints:
            keypoint_boxes = self._keypoint_boxes(boxes, valid)
            heatmaps = self.keypoint_head(self.pool_rois(features, keypoint_boxes, self.keypoint_pooler),
                                          training=False)
            keypoints = heatmaps_to_keypoints(heatmaps, keypoint_boxes)
            carries = valid
            if self.keypoint_classes is not None:
                carries &= tf.reduce_any(kept_labels[..., None] == tf.constant(self.keypoint_classes), axis=-1)
            out["keypoints"] = _pad_rows(tf.where(carries[..., None, None], keypoints, 0.0), total)
        return out

    def build(self, input_shape=None):
        """Creates every variable, the heads on kept boxes included, by detecting on a zero image once."""
        super().build(input_shape)
        if isinstance(input_shape, dict):
            input_shape = input_shape.get("images")
        h, w = (input_shape[1], input_shape[2]) if input_shape is not None and len(input_shape) == 4 else (None, None)
        self._detect(self.example_inputs(h or 256, w or 256))

    # -- config --------------------------------------------------------------------------------------

    @classmethod
    def config_for_num_classes(cls, config, num_classes):
        """As `FasterRCNN.config_for_num_classes`, with the mask head's class count; `keypoint_classes` name labels of
        the old classes, so a model with another class count puts keypoints on every class (set them again for the
        new classes)."""
        changed = int(num_classes) != config.get("num_classes")
        config = super().config_for_num_classes(config, num_classes)
        config["mask_head"] = with_layer_config(config.get("mask_head"), num_classes=int(num_classes))
        if changed:
            config["keypoint_classes"] = None
        return config

    def get_config(self):
        config = super().get_config()
        config.update(
            with_masks=self.with_masks,
            num_keypoints=self.num_keypoints,
            mask_head=_serialize(self.mask_head),
            mask_pooler=_serialize(self.mask_pooler),
            keypoint_head=_serialize(self.keypoint_head),
            keypoint_pooler=_serialize(self.keypoint_pooler),
            keypoint_classes=self.keypoint_classes,
            keypoint_rois_per_image=self.keypoint_rois_per_image,
            keypoint_box_scale=self.keypoint_box_scale,
            mask_output=self.mask_output,
            mask_threshold=self.mask_threshold,
        )
        return config
