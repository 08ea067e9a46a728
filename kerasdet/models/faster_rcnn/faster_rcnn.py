"""Faster R-CNN (Ren et al., 2015): a region proposal network and a RoI box head on shared features."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.backbones.resnet import ResNet
from kerasdet.backbones.training_mode import reapply_training_modes
from kerasdet.heads.proposal_sampler import ProposalSampler
from kerasdet.heads.region_proposal_network import RegionProposalNetwork
from kerasdet.heads.roi_box_head import RoIBoxHead
from kerasdet.layers.feature_pyramid import FeaturePyramid
from kerasdet.layers.multi_level_roi_align import MultiLevelRoIAlign
from kerasdet.layers.roi_align import RoIAlign
from kerasdet.layers.roi_pool import RoIPool
from kerasdet.models.detector import Detector, with_layer_config

_SINGLE_MAP_POOLERS = (RoIPool, RoIAlign)


def _deserialize(value):
    return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value


def _map_strides(backbone, feature_pyramid):
    """{map name: stride} of the maps the model computes, or None when the backbone does not say."""
    if feature_pyramid is not None:
        return {f"P{k}": 2 ** k for k in range(feature_pyramid.min_level, feature_pyramid.max_level + 1)}
    strides = getattr(backbone, "feature_strides", None)
    return dict(strides) if strides is not None else None


def _check_feature_names(backbone, feature_pyramid, rpn, rpn_features, roi_pooler, roi_features):
    """ValueError naming the argument when the RPN or the RoI pooler would read a map the model does not make,
    or at a stride other than the map's."""
    strides = _map_strides(backbone, feature_pyramid)
    if strides is None:
        return
    missing = [k for k in rpn_features if k not in strides]
    if missing:
        raise ValueError(f"`rpn_features` names maps {missing} the model does not compute; it has {sorted(strides)}")
    wrong = [(k, s, strides[k]) for k, s in zip(rpn_features, rpn.strides) if strides[k] != s]
    if wrong:
        raise ValueError(f"the RPN's strides disagree with the maps of `rpn_features`: (map, rpn stride, map stride) {wrong}")
    if isinstance(roi_pooler, MultiLevelRoIAlign):
        pooled = roi_pooler.strides if isinstance(roi_pooler.strides, dict) else {}
        bad = [k for k, s in pooled.items() if strides.get(k) != s]
        if bad:
            raise ValueError(f"`roi_pooler` reads maps {bad} that the model does not compute at those strides; "
                             f"it has {strides}")
    else:
        if roi_features not in strides:
            raise ValueError(f"`roi_features` {roi_features!r} is not a map the model computes; it has {sorted(strides)}")
        if abs(roi_pooler.spatial_scale * strides[roi_features] - 1.0) > 1e-6:
            raise ValueError(f"`roi_pooler` has spatial_scale {roi_pooler.spatial_scale}, but `roi_features` "
                             f"{roi_features!r} has stride {strides[roi_features]} (expected 1/{strides[roi_features]})")


@keras.saving.register_keras_serializable(package="kerasdet")
class FasterRCNN(Detector):
    """Faster R-CNN: backbone (optionally + FPN) -> RPN proposals -> RoI pooling -> box head -> per-class NMS.

    Training is approximate joint training (the default of the paper's released code): one forward
    pass computes the RPN's outputs and proposals, samples the proposals against the targets
    (`ProposalSampler`, ground truth added), pools them and runs the box head; the loss is the sum of
    the RPN's objectness and box terms and the head's class and box terms. No gradient flows through the
    proposal coordinates. At test time the RPN's test budget of proposals (300 by default) is pooled,
    classified into `num_classes + 1` (softmax, background internal), each class's box decoded
    (`DeltaCoder` 10, 10, 5, 5) and clipped, and per-class NMS keeps `max_detections`.

    Reference: S. Ren, K. He, R. Girshick, J. Sun, "Faster R-CNN: Towards Real-Time Object Detection
    with Region Proposal Networks", NIPS 2015; T.-Y. Lin et al., "Feature Pyramid Networks for Object
    Detection", CVPR 2017 (the FPN form).

    Args:
        num_classes: object classes.
        backbone: a kerasdet backbone returning a dict of maps; None builds ResNet-50 C4.
        feature_pyramid: a `FeaturePyramid` on the backbone's maps, or None (single-map detectors).
        rpn: a `RegionProposalNetwork` (None: the paper's, 9 anchors (128, 256, 512) x (0.5, 1, 2), stride 16).
        rpn_features: names of the maps the RPN reads, finest first (e.g. `("C4",)` or `("P2", ..., "P6")`).
        roi_pooler: `RoIPool` / `RoIAlign` on one map, or `MultiLevelRoIAlign` over a dict of maps
            (None: `RoIPool(7, 1/16)` as in the paper).
        roi_features: the map a single-map pooler reads (e.g. `"C4"`); unused by `MultiLevelRoIAlign`.
        box_head: a `RoIBoxHead` (None: 2 fc 1024).
        proposal_sampler: a `ProposalSampler` (None: 512 RoIs per image, 25% foreground).
        class_names, score_threshold, nms_iou_threshold, max_detections, bounding_box_format: see `Detector`.

    Call arguments:
        inputs: `[B, H, W, 3]` RGB images in 0..255.
        training: Keras' training flag.
        targets: padded training targets (given by the training step; the proposals are sampled against them).

    Returns (`call`):
        dict with the RPN's outputs (`objectness`, `deltas`, `anchors`, `proposals`...), the `features`
        maps, the pooled `rois` `[B, R, 4]` and the head's `class_logits` `[B, R, C + 1]` and `box_deltas` `[B, R, C, 4]`
        (plus `sampled` and `rpn_sampled` when targets are given); `predict` / `detect` return the
        detections dict (DESIGN.md §3).

    Example:
        >>> model = FasterRCNN.compact(num_classes=10)
        >>> model.compile()
        >>> model.fit(train_ds, epochs=1)               # (images, {"boxes", "labels"}) batches
        >>> model.predict(images)["boxes"].shape
        (B, 100, 4)
    """

    supports_xla_forward = False  # its forward pass runs the RPN's NMS and RoI pooling

    loss_terms = ("rpn_objectness_loss", "rpn_box_loss", "roi_class_loss", "roi_box_loss")
    takes_image_sizes = True  # proposals are clipped to (and anchors chosen inside) each image before padding
    #: the stages of the paper's 4-step alternating training and the loss terms each trains
    STAGE_TERMS = {
        "joint": loss_terms,
        "rpn": ("rpn_objectness_loss", "rpn_box_loss"),
        "detector": ("roi_class_loss", "roi_box_loss"),
    }

    def __init__(self, num_classes, backbone=None, feature_pyramid=None, rpn=None, rpn_features=("C4",),
                 roi_pooler=None, roi_features="C4", box_head=None, proposal_sampler=None, class_names=None,
                 score_threshold=0.05, nms_iou_threshold=0.5, max_detections=100, bounding_box_format="xyxy",
                 **kwargs):
        super().__init__(num_classes=num_classes, class_names=class_names, score_threshold=score_threshold,
                         nms_iou_threshold=nms_iou_threshold, max_detections=max_detections,
                         bounding_box_format=bounding_box_format, **kwargs)
        backbone = _deserialize(backbone) or ResNet(50, levels=("C4",))
        if not isinstance(backbone, keras.Model):
            raise TypeError(f"`backbone` must be a keras.Model returning a dict of maps; got {type(backbone).__name__}")
        feature_pyramid = _deserialize(feature_pyramid)
        if feature_pyramid is not None and not isinstance(feature_pyramid, FeaturePyramid):
            raise TypeError(f"`feature_pyramid` must be a FeaturePyramid or None; got {type(feature_pyramid).__name__}")
        rpn = _deserialize(rpn) or RegionProposalNetwork(name="rpn")
        if not isinstance(rpn, RegionProposalNetwork):
            raise TypeError(f"`rpn` must be a RegionProposalNetwork; got {type(rpn).__name__}")
        rpn_features = (rpn_features,) if isinstance(rpn_features, str) else tuple(rpn_features)
        if len(rpn_features) != len(rpn.strides):
            raise ValueError(f"`rpn_features` {rpn_features} must name one map per RPN level (strides {rpn.strides})")
        roi_pooler = _deserialize(roi_pooler) or RoIPool(7, spatial_scale=1.0 / 16, name="roi_pool")
        if not isinstance(roi_pooler, _SINGLE_MAP_POOLERS + (MultiLevelRoIAlign,)):
            raise TypeError(f"`roi_pooler` must be a RoIPool, RoIAlign or MultiLevelRoIAlign; got {type(roi_pooler).__name__}")
        box_head = _deserialize(box_head) or RoIBoxHead(num_classes, name="box_head")
        if not isinstance(box_head, RoIBoxHead) or box_head.num_classes != num_classes:
            raise ValueError(f"`box_head` must be a RoIBoxHead for num_classes={num_classes}")
        proposal_sampler = _deserialize(proposal_sampler) or ProposalSampler(name="proposal_sampler")
        if not isinstance(proposal_sampler, ProposalSampler):
            raise TypeError(f"`proposal_sampler` must be a ProposalSampler; got {type(proposal_sampler).__name__}")
        _check_feature_names(backbone, feature_pyramid, rpn, rpn_features, roi_pooler, roi_features)
        self.backbone = backbone
        self.fpn = feature_pyramid
        self.rpn = rpn
        self.rpn_features = rpn_features
        self.roi_pooler = roi_pooler
        self.roi_features = roi_features
        self.box_head = box_head
        self.proposal_sampler = proposal_sampler
        # training-time state of the alternating scheme (not part of the config): see `set_training_stage`
        object.__setattr__(self, "training_stage", "joint")
        object.__setattr__(self, "proposal_model", None)

    def set_training_stage(self, stage, trainable=("backbone", "fpn", "rpn", "box_head"), proposal_model=None):
        """Prepares one step of the paper's 4-step alternating training (Ren et al., 2015, §3.2).

        Args:
            stage: "joint" (all four loss terms, the default approximate joint training), "rpn" (the RPN's
                terms only) or "detector" (the RoI head's terms only).
            trainable: the parts whose weights train in this step (others are frozen): names among
                "backbone", "fpn", "rpn", "box_head".
            proposal_model: a trained FasterRCNN whose RPN gives the proposals (step 2 trains a detector on
                the proposals of step 1's network); None uses this model's own RPN.

        Steps: (1) `("rpn", all)` from ImageNet weights; (2) a fresh model `("detector", all,
        proposal_model=step 1)`; (3) step 2's model `("rpn", trainable=("rpn",))`; (4) `("detector",
        trainable=("box_head",))`. Recompile after each call (trainable weights change).
        """
        if stage not in self.STAGE_TERMS:
            raise ValueError(f"`stage` must be one of {sorted(self.STAGE_TERMS)}; got {stage!r}")
        parts = {"backbone": self.backbone, "fpn": self.fpn, "rpn": self.rpn, "box_head": self.box_head}
        unknown = [t for t in trainable if t not in parts]
        if unknown:
            raise ValueError(f"`trainable` names unknown parts {unknown}; choose from {sorted(parts)}")
        if proposal_model is not None and not isinstance(proposal_model, FasterRCNN):
            raise TypeError(f"`proposal_model` must be a FasterRCNN; got {type(proposal_model).__name__}")
        for name, part in parts.items():
            if part is not None:
                part.trainable = name in trainable  # recursive in Keras 3: unfreezes every layer below
                if part.trainable:
                    reapply_training_modes(part)  # what the backbones froze themselves (batch norm, early stages)
        if proposal_model is not None:
            proposal_model.trainable = False
        object.__setattr__(self, "training_stage", stage)
        object.__setattr__(self, "proposal_model", proposal_model)
        return self

    # -- configurations -------------------------------------------------------------------------------

    @classmethod
    def compact(cls, num_classes, width=0.5, **kwargs):
        """A Faster R-CNN that trains on 2 CPU cores at 256 px: ResNet-18 at `width` with a 64-channel FPN
        P3-P7 (the compact RetinaNet's trunk, so its weights can start one), an RPN with 9 anchors per
        location (sizes 16-256 x 2^(0, 1/3, 2/3), ratios 0.5, 1, 2), RoIAlign 7x7 over P3-P5, 2 fc 512,
        256 sampled RoIs per image with background IoU in [0, 0.5)."""
        scales = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
        defaults = dict(
            backbone=ResNet(18, levels=("C3", "C4", "C5"), width=width),
            feature_pyramid=FeaturePyramid(min_level=3, max_level=7, num_channels=64, name="fpn"),
            rpn=RegionProposalNetwork(sizes=[[b * s for s in scales] for b in (16, 32, 64, 128, 256)],
                                      strides=(8, 16, 32, 64, 128), channels=64, train_pre_nms_topk=1000,
                                      train_post_nms_topk=1000, test_pre_nms_topk=1000, test_post_nms_topk=300,
                                      border_tolerance=None, name="rpn"),
            rpn_features=("P3", "P4", "P5", "P6", "P7"),
            roi_pooler=MultiLevelRoIAlign(7, strides={"P3": 8, "P4": 16, "P5": 32}, sampling_ratio=2, name="roi_align"),
            box_head=RoIBoxHead(num_classes, fc_dims=(512, 512), name="box_head"),
            proposal_sampler=ProposalSampler(num_samples=256, positive_fraction=0.25, background_iou_low=0.0,
                                             name="proposal_sampler"),
        )
        defaults.update(kwargs)
        return cls(num_classes=num_classes, **defaults)

    @classmethod
    def paper_config(cls, name="vgg16", num_classes=80, backbone_weights=None, roi_pooling=None,
                     trainable_backbone_layers=None, **kwargs):
        """The published Faster R-CNN networks (random weights, or ImageNet backbones through keras.applications).

        - `"zf"`, `"vgg16"` (Ren et al., 2015): the stride-16 map (ZF conv5 / VGG16 conv5_3), RPN of 9 anchors
          (128, 256, 512) x (0.5, 1, 2) with a 256 / 512-channel 3x3 conv, anchors crossing the border ignored
          in training (after matching, as Detectron's boundary rule), proposals under 16 px dropped, RoIPool 7x7
          (6x6 for ZF), 2 fc 4096, 128 RoIs per image at 25% foreground with background IoU [0.1, 0.5) and
          2000 / 300 proposals; VGG16's conv1-conv2 frozen as in the paper's code.
        - `"resnet50_c4"`, `"resnet101_c4"` (He et al., 2016): RPN and RoI pooling (14x14) on C4, conv5 on each
          RoI (stride 2 -> 7x7), average pooling; frozen batch norm.
        - `"resnet50_fpn"`, `"resnet101_fpn"` (Lin et al., 2017): FPN P2-P6 with 256 channels (P6 = P5
          subsampled, for the RPN only), one anchor size
          per level (32..512) x 3 ratios, MultiLevelRoIAlign 7x7 over P2-P5, 2 fc 1024, 512 RoIs per image;
          frozen batch norm.
        - `"mobilenet_v2"`: MobileNetV2 with FPN P3-P6 of 256 channels (the FPN recipe on a mobile trunk).

        Args:
            name: one of the names above.
            num_classes: 80 for COCO (20 for VOC).
            backbone_weights: None or "imagenet" (not for ZF net).
            roi_pooling: "roi_pool" or "roi_align" to override the configuration's pooling on single-map
                configurations (the FPN ones always use MultiLevelRoIAlign).
            trainable_backbone_layers: None (the configuration's choice: VGG16's conv1-conv2 frozen, every
                other trunk trained) or 0-5, the trunk's stages that train counted from the last (torchvision's
                option, `kerasdet.backbones.set_backbone_training`; every trunk. In the C4 configurations stage 5
                is the box head's conv5, which always trains, as in Detectron's FREEZE_AT: there 0 and 1 agree).
            **kwargs: other constructor arguments (`class_names`, `max_detections`...).

        Example:
            >>> model = FasterRCNN.paper_config("vgg16", num_classes=20)
        """
        from kerasdet.backbones import MobileNetV2, ResNetStage, VGG16, ZFNet

        single = {"zf": ("conv5", 256, 6), "vgg16": ("conv5_3", 512, 7)}
        resnets = {"resnet50_c4": 50, "resnet101_c4": 101, "resnet50_fpn": 50, "resnet101_fpn": 101}
        if name not in single and name not in resnets and name != "mobilenet_v2":
            raise ValueError(f"`name` must be one of {sorted(list(single) + list(resnets) + ['mobilenet_v2'])}; got {name!r}")
        if roi_pooling not in (None, "roi_pool", "roi_align"):
            raise ValueError(f"`roi_pooling` must be None, 'roi_pool' or 'roi_align'; got {roi_pooling!r}")

        def pooler(size, default):
            kind = roi_pooling or default
            if kind == "roi_pool":
                return RoIPool(size, spatial_scale=1.0 / 16, name="roi_pool")
            return RoIAlign(size, spatial_scale=1.0 / 16, sampling_ratio=2, name="roi_align")

        paper_anchors = dict(sizes=[[128.0, 256.0, 512.0]], strides=(16,), train_pre_nms_topk=12000,
                             train_post_nms_topk=2000, test_pre_nms_topk=6000, test_post_nms_topk=300,
                             border_tolerance=0.0, box_loss_beta=1.0 / 9.0, min_size=16.0 if name in single else 0.0,
                             name="rpn")
        if name in single:
            level, channels, pooled = single[name]
            # the paper's code keeps VGG16's conv1-conv2 fixed (ZF net trains every layer) and drops proposals
            # under 16 px
            trunk = (ZFNet(weights=backbone_weights, trainable_layers=trainable_backbone_layers) if name == "zf"
                     else VGG16(levels=("conv5_3",), weights=backbone_weights,
                                trainable_layers=3 if trainable_backbone_layers is None else trainable_backbone_layers))
            config = dict(
                backbone=trunk, rpn=RegionProposalNetwork(channels=channels, **paper_anchors), rpn_features=(level,),
                roi_pooler=pooler(pooled, "roi_pool"), roi_features=level,
                box_head=RoIBoxHead(num_classes, fc_dims=(4096, 4096), name="box_head"),
                proposal_sampler=ProposalSampler(num_samples=128, positive_fraction=0.25, background_iou_low=0.1,
                                                 name="proposal_sampler"),
            )
        elif name.endswith("_c4"):
            depth = resnets[name]
            trunk = ResNet(depth, levels=("C4",), weights=backbone_weights, frozen_batch_norm=True,
                           trainable_layers=trainable_backbone_layers)
            conv5 = ResNetStage(depth, weights=backbone_weights, frozen_batch_norm=True)
            config = dict(
                backbone=trunk, rpn=RegionProposalNetwork(channels=1024, **paper_anchors), rpn_features=("C4",),
                roi_pooler=pooler(14, "roi_align"), roi_features="C4",
                box_head=RoIBoxHead(num_classes, tower=conv5, name="box_head"),
                proposal_sampler=ProposalSampler(num_samples=512, positive_fraction=0.25, background_iou_low=0.0,
                                                 name="proposal_sampler"),
            )
        else:
            if name == "mobilenet_v2":
                trunk = MobileNetV2(levels=("C3", "C4", "C5"), weights=backbone_weights,
                                    trainable_layers=trainable_backbone_layers)
                levels, pyramid = (3, 4, 5, 6), FeaturePyramid(3, 6, 256, extra_from="subsample", name="fpn")
            else:
                trunk = ResNet(resnets[name], levels=("C2", "C3", "C4", "C5"), weights=backbone_weights,
                               frozen_batch_norm=True, trainable_layers=trainable_backbone_layers)
                levels, pyramid = (2, 3, 4, 5, 6), FeaturePyramid(2, 6, 256, extra_from="subsample", name="fpn")
            config = dict(
                backbone=trunk, feature_pyramid=pyramid,
                rpn=RegionProposalNetwork(sizes=[[2.0 ** (level + 3)] for level in levels],
                                          strides=[2 ** level for level in levels], channels=256,
                                          train_pre_nms_topk=2000, train_post_nms_topk=2000, test_pre_nms_topk=1000,
                                          test_post_nms_topk=1000, border_tolerance=None, name="rpn"),
                rpn_features=tuple(f"P{level}" for level in levels),
                roi_pooler=MultiLevelRoIAlign(7, strides={f"P{k}": 2 ** k for k in levels[:-1] if k <= 5},
                                              sampling_ratio=2, name="roi_align"),
                box_head=RoIBoxHead(num_classes, fc_dims=(1024, 1024), name="box_head"),
                proposal_sampler=ProposalSampler(num_samples=512, positive_fraction=0.25, background_iou_low=0.0,
                                                 name="proposal_sampler"),
            )
        config.update(kwargs)
        return cls(num_classes=num_classes, **config)

    @property
    def size_divisor(self) -> int:
        """The largest stride of the maps the model computes (the RPN's coarsest level, or the pooled map)."""
        strides = list((_map_strides(self.backbone, self.fpn) or {}).values()) + [int(s) for s in self.rpn.strides]
        return max(strides)

    # -- forward --------------------------------------------------------------------------------------

    def _features(self, images, training):
        features = self.backbone(images, training=training)
        if self.fpn is not None:
            features = self.fpn(features, training=training)
        return features

    def pool_rois(self, features, rois, pooler=None):
        """`[B, R, ph, pw, C]` features of `rois` from `pooler`'s map(s) (the box head's pooler by default; a
        single-map pooler reads `roi_features`)."""
        pooler = self.roi_pooler if pooler is None else pooler
        if isinstance(pooler, MultiLevelRoIAlign):
            return pooler(features, rois)
        return pooler(features[self.roi_features], rois)

    def call(self, inputs, training=False, targets=None, image_sizes=None):
        images, _ = self.split_inputs(inputs)
        features = self._features(images, training)
        if self.proposal_model is None:
            out = dict(self.rpn([features[k] for k in self.rpn_features], images, training=training,
                                image_sizes=image_sizes))
        else:  # step 2 of the alternating scheme: another network's proposals (no gradient, no RPN loss)
            source = self.proposal_model
            out = dict(source.rpn([source._features(images, False)[k] for k in source.rpn_features], images,
                                  training=training, image_sizes=image_sizes))
            out = tf.nest.map_structure(tf.stop_gradient, out)
        rois = out["proposals"]
        uses_rpn_terms = any(t.startswith("rpn_") for t in self.STAGE_TERMS[self.training_stage])
        if targets is not None and uses_rpn_terms:
            out["rpn_sampled"] = self.rpn.sample_targets(out, targets, images, training=training)
        if targets is not None:
            out["sampled"] = self.proposal_sampler(rois, targets, training=training)
            rois = out["sampled"]["rois"]
        out.update(self.box_head(self.pool_rois(features, rois), training=training))
        out["rois"] = rois
        out["features"] = features  # for heads that run on the boxes NMS keeps (Mask R-CNN)
        return out

    # -- loss and decoding ----------------------------------------------------------------------------

    def detection_losses(self, images, targets, raw):
        if "sampled" not in raw:
            raise ValueError("FasterRCNN.detection_losses needs the outputs of `call(inputs, targets=...)`")
        terms = self.rpn.compute_losses(raw, raw["rpn_sampled"]) if "rpn_sampled" in raw else {}
        terms.update(self.box_head.compute_losses(raw, raw["sampled"]))
        return {k: v for k, v in terms.items() if k in self.STAGE_TERMS[self.training_stage]}

    def decode_candidates(self, raw, images):
        return self.box_head.decode(raw, raw["rois"], tf.cast(tf.shape(images)[1:3], tf.float32))

    # -- config ---------------------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            backbone=serialize(self.backbone),
            feature_pyramid=None if self.fpn is None else serialize(self.fpn),
            rpn=serialize(self.rpn),
            rpn_features=self.rpn_features,
            roi_pooler=serialize(self.roi_pooler),
            roi_features=self.roi_features,
            box_head=serialize(self.box_head),
            proposal_sampler=serialize(self.proposal_sampler),
        )
        return config

    @classmethod
    def config_for_num_classes(cls, config, num_classes):
        """As `Detector.config_for_num_classes`, with the box head's class count too."""
        config = super().config_for_num_classes(config, num_classes)
        config["box_head"] = with_layer_config(config["box_head"], num_classes=int(num_classes))
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
