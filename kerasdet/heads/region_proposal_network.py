"""The region proposal network of Faster R-CNN: head, anchors, training targets, loss and proposals."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.coders.delta_coder import DeltaCoder
from kerasdet.heads.anchor_targets import assign_anchor_targets
from kerasdet.heads.dense_head import flatten_levels
from kerasdet.layers.anchor_generator import AnchorGenerator
from kerasdet.layers.box_matcher import BoxMatcher
from kerasdet.layers.proposal_generator import ProposalGenerator
from kerasdet.layers.roi_sampler import RoISampler
from kerasdet.losses.smooth_l1 import SmoothL1Loss

_OBJECTNESS = ("softmax", "sigmoid")


@keras.saving.register_keras_serializable(package="kerasdet")
class RegionProposalNetwork(keras.layers.Layer):
    """Region proposal network (Ren et al., 2015): objectness and box deltas for k anchors per location.

    A 3x3 convolution (`channels`, ReLU) shared by every level, then two sibling 1x1 convolutions:
    objectness (`2k` logits with a two-way softmax per anchor, as in the paper, or `k` sigmoid logits
    with `objectness="sigmoid"`) and `4k` box deltas (`DeltaCoder` weights 1, 1, 1, 1). Anchors come
    from an `AnchorGenerator` (`sizes` per level times `aspect_ratios`). Proposals: `ProposalGenerator`
    (per-level pre-NMS top-k, NMS at `nms_iou_threshold`, post-NMS top-k), with separate training and
    test budgets. Training targets: anchors with IoU > 0.7 positive, < 0.3 negative, each object's
    best anchors positive; anchors beyond the image by more than `border_tolerance` pixels ignored
    (None keeps them, as Detectron2); crowd regions never negatives; `batch_size_per_image` anchors
    sampled with up to `positive_fraction` positives. Loss: cross-entropy over the sampled anchors
    and smooth L1 (`box_loss_beta`) over the sampled positives, both divided by the number sampled.

    Reference: S. Ren, K. He, R. Girshick, J. Sun, "Faster R-CNN: Towards Real-Time Object Detection
    with Region Proposal Networks", NIPS 2015.

    Args:
        sizes: anchor sizes (pixels) per level, e.g. `[[128, 256, 512]]` for one stride-16 map or
            `[[32], [64], [128], [256], [512]]` for FPN P2-P6.
        aspect_ratios: height / width ratios (0.5, 1, 2).
        strides: stride of each level.
        channels: channels of the shared 3x3 convolution.
        objectness: "softmax" (2k outputs, the paper) or "sigmoid" (k outputs).
        train_pre_nms_topk, train_post_nms_topk, test_pre_nms_topk, test_post_nms_topk: proposal budgets.
        nms_iou_threshold: proposal NMS threshold (0.7).
        batch_size_per_image, positive_fraction: anchor sampling (256, 0.5).
        border_tolerance: None or pixels (0 in the paper). Applied after matching (Detectron's order: an
            object whose best anchor crosses the border keeps only its other positive anchors).
        box_loss_beta: smooth L1 transition (1/9 as Detectron; 1 for the paper's definition).
        min_size: proposals whose width or height is not above this many pixels are dropped (16 in the paper).
        seed: sampling seed (None: unpredictable).

    Call arguments:
        maps: list of `[B, H_l, W_l, C]` feature maps, one per level (finest first).
        images: the `[B, H, W, 3]` images (their size places the anchors and, by default, clips the proposals).
        training: Keras' training flag: picks the proposal budget.
        image_sizes: optional int `[B, 2]` (height, width) of each image before it was padded into the batch:
            proposals are clipped to it and anchors centred outside it are no candidates.

    Returns:
        dict `"objectness"` float32 `[B, A, 1 or 2]` logits, `"deltas"` `[B, A, 4]`, `"anchors"`
        `[A, 4]`, `"proposals"` `[B, P, 4]` (padding rows -1), `"proposal_scores"` `[B, P]`,
        `"num_proposals"` int32 `[B]`.

    Example:
        >>> rpn = RegionProposalNetwork(sizes=[[32, 64]], strides=[16], channels=64)
        >>> out = rpn([tf.zeros([1, 16, 16, 64])], tf.zeros([1, 256, 256, 3]))
        >>> out["proposals"].shape
        TensorShape([1, 300, 4])
        >>> sampled = rpn.sample_targets(out, {"boxes": boxes, "labels": labels}, images, training=True)
        >>> rpn.compute_losses(out, sampled)          # {"rpn_objectness_loss", "rpn_box_loss"}
    """

    def __init__(self, sizes=((128, 256, 512),), aspect_ratios=(0.5, 1.0, 2.0), strides=(16,), channels=256,
                 objectness="softmax", train_pre_nms_topk=2000, train_post_nms_topk=2000, test_pre_nms_topk=1000,
                 test_post_nms_topk=300, nms_iou_threshold=0.7, batch_size_per_image=256, positive_fraction=0.5,
                 border_tolerance=0.0, box_loss_beta=1.0 / 9.0, min_size=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if objectness not in _OBJECTNESS:
            raise ValueError(f"`objectness` must be one of {_OBJECTNESS}; got {objectness!r}")
        sizes = [[float(s) for s in level] for level in sizes]
        strides = [int(s) for s in strides]
        if len(sizes) != len(strides):
            raise ValueError(f"`sizes` ({len(sizes)} levels) and `strides` ({len(strides)}) must have one entry per level")
        if len({len(level) for level in sizes}) != 1:
            raise ValueError(f"every level of `sizes` needs the same number of sizes (the head is shared); got {sizes}")
        if border_tolerance is not None and not float(border_tolerance) >= 0:
            raise ValueError(f"`border_tolerance` must be None or >= 0; got {border_tolerance!r}")
        self.sizes = sizes
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.strides = strides
        self.channels = int(channels)
        self.objectness = objectness
        self.train_pre_nms_topk = int(train_pre_nms_topk)
        self.train_post_nms_topk = int(train_post_nms_topk)
        self.test_pre_nms_topk = int(test_pre_nms_topk)
        self.test_post_nms_topk = int(test_post_nms_topk)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)
        self.border_tolerance = None if border_tolerance is None else float(border_tolerance)
        self.box_loss_beta = float(box_loss_beta)
        self.min_size = float(min_size)
        self.seed = seed
        self.num_anchors = len(sizes[0]) * len(self.aspect_ratios)
        self.logits_per_anchor = 2 if objectness == "softmax" else 1

        def init():  # one per layer (an unseeded Keras initializer fixes its seed when made)
            return keras.initializers.RandomNormal(stddev=0.01)

        self.conv = keras.layers.Conv2D(self.channels, 3, padding="same", activation="relu", kernel_initializer=init(),
                                        name="rpn_conv")
        self.objectness_conv = keras.layers.Conv2D(self.num_anchors * self.logits_per_anchor, 1,
                                                   kernel_initializer=init(), name="rpn_objectness")
        self.delta_conv = keras.layers.Conv2D(self.num_anchors * 4, 1, kernel_initializer=init(), name="rpn_deltas")
        self.anchor_generator = AnchorGenerator(sizes=sizes, aspect_ratios=self.aspect_ratios, strides=strides,
                                                per_level=True, name="rpn_anchors")
        self.matcher = BoxMatcher(thresholds=(0.3, 0.7), match_values=(0, -1, 1), allow_low_quality_matches=True,
                                  name="rpn_matcher")
        self.sampler = RoISampler(num_samples=self.batch_size_per_image, positive_fraction=self.positive_fraction,
                                  seed=seed, name="rpn_sampler")
        self.train_proposals = ProposalGenerator(self.train_pre_nms_topk, self.train_post_nms_topk,
                                                 self.nms_iou_threshold, min_size=self.min_size, name="train_proposals")
        self.test_proposals = ProposalGenerator(self.test_pre_nms_topk, self.test_post_nms_topk,
                                                self.nms_iou_threshold, min_size=self.min_size, name="test_proposals")
        self.coder = DeltaCoder((1.0, 1.0, 1.0, 1.0))
        self.box_loss = SmoothL1Loss(beta=self.box_loss_beta, reduction="sum")

    def build(self, maps_shape, images_shape=None):
        channels = maps_shape[0][-1]
        self.conv.build((None, None, None, channels))
        self.objectness_conv.build((None, None, None, self.channels))
        self.delta_conv.build((None, None, None, self.channels))
        self.built = True

    def _head(self, x, training):
        hidden = self.conv(x, training=training)
        return self.objectness_conv(hidden, training=training), self.delta_conv(hidden, training=training)

    def call(self, maps, images, training=False, image_sizes=None):
        maps = list(maps)
        heads = [self._head(m, training) for m in maps]
        objectness = flatten_levels([h[0] for h in heads], self.logits_per_anchor, concat=False)
        deltas = flatten_levels([h[1] for h in heads], 4, concat=False)
        anchors = self.anchor_generator(images, *maps)
        scores = [self.objectness_score(o) for o in objectness]
        generator = self.train_proposals if training else self.test_proposals
        # proposals stay inside each image's own pixels (`image_sizes` [B, 2], before padding; default: `images`)
        proposals = generator(scores, deltas, anchors, images if image_sizes is None else image_sizes)
        return {
            "objectness": tf.concat(objectness, axis=1),
            "deltas": tf.concat(deltas, axis=1),
            "anchors": tf.concat(anchors, axis=0),
            "proposals": proposals["rois"],
            "proposal_scores": proposals["scores"],
            "num_proposals": proposals["num_rois"],
        }

    def objectness_score(self, logits):
        """One logit per anchor: the softmax pair's difference (log-odds of object), or the sigmoid logit."""
        return logits[..., 1] - logits[..., 0] if self.objectness == "softmax" else logits[..., 0]

    def sample_targets(self, outputs, targets, images, training=None):
        """The anchors the loss trains on: `{"states", "boxes", "mask"}` (`assign_anchor_targets` plus the
        balanced sample of `batch_size_per_image`; random in training, fixed otherwise)."""
        hw = tf.cast(tf.shape(images)[1:3], tf.float32)
        assigned = assign_anchor_targets(self.matcher, outputs["anchors"], targets, image_hw=hw,
                                         border_tolerance=self.border_tolerance)
        sample = self.sampler(assigned["states"], training=training)
        return {"states": assigned["states"], "boxes": assigned["boxes"], "mask": tf.stop_gradient(sample["mask"])}

    def compute_losses(self, outputs, sampled):
        """`{"rpn_objectness_loss", "rpn_box_loss"}` from the head's outputs and `sample_targets`' anchors."""
        mask = sampled["mask"]
        count = tf.maximum(tf.reduce_sum(mask), 1.0)
        logit = self.objectness_score(outputs["objectness"])
        is_object = tf.cast(sampled["states"] == 1, tf.float32)
        # the two-way softmax cross-entropy equals the sigmoid cross-entropy of the logit difference
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=is_object, logits=logit)
        objectness_loss = tf.reduce_sum(ce * mask) / count
        box_targets = self.coder.encode(outputs["anchors"], sampled["boxes"])
        box_loss = self.box_loss(box_targets, outputs["deltas"], sample_weight=mask * is_object) / count
        return {"rpn_objectness_loss": objectness_loss, "rpn_box_loss": box_loss}

    def get_config(self):
        config = super().get_config()
        config.update(
            sizes=self.sizes, aspect_ratios=self.aspect_ratios, strides=self.strides, channels=self.channels,
            objectness=self.objectness, train_pre_nms_topk=self.train_pre_nms_topk,
            train_post_nms_topk=self.train_post_nms_topk, test_pre_nms_topk=self.test_pre_nms_topk,
            test_post_nms_topk=self.test_post_nms_topk, nms_iou_threshold=self.nms_iou_threshold,
            batch_size_per_image=self.batch_size_per_image, positive_fraction=self.positive_fraction,
            border_tolerance=self.border_tolerance, box_loss_beta=self.box_loss_beta, min_size=self.min_size,
            seed=self.seed,
        )
        return config
