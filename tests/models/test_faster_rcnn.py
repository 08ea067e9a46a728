"""Faster R-CNN: the model harness, the two-stage training step, paper configurations, and the CLI round trip."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.models.faster_rcnn import FasterRCNN
from tests.models import harness

# the mixed-precision training step (about 30 s here) is checked on RetinaNet in the default suite, and the
# two-stage layers' float32 outputs under mixed_float16 by their layer tests; the whole model's runs with -m slow
SPEC = harness.FamilySpec(name="faster_rcnn", build=lambda: FasterRCNN.compact(num_classes=3, width=0.25),
                          zoo_name="faster_rcnn_resnet18_shapes",
                          slow_checks=("test_mixed_float16_training_step_is_finite",))
globals().update(harness.family_tests(SPEC))


#: parameter counts of the paper configurations (ZF / VGG16 for the 20 VOC classes, the rest for 80 COCO
#: classes); the note of issue "Two-stage core" sets them beside the papers' and torchvision's figures
PAPER_PARAMETERS = {
    "zf": 59_278_363,
    "vgg16": 137_061_851,
    "resnet50_c4": 33_902_919,
    "resnet101_c4": 52_973_383,
    "resnet50_fpn": 41_833_507,
    "resnet101_fpn": 60_903_971,
    "mobilenet_v2": 19_290_851,
}


def _paper_model(name):
    return FasterRCNN.paper_config(name, num_classes=20 if name in ("zf", "vgg16") else 80)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_paper_config_detects_on_a_600x1000_image(name):
    """Each paper configuration builds and runs one 600x1000 image end to end (random weights): proposals,
    RoI pooling, head and NMS, with its parameter count."""
    model = _paper_model(name)
    image = np.random.default_rng(0).uniform(0, 255, (1, 600, 1000, 3)).astype(np.float32)
    out = model.predict(image, verbose=0)
    assert model.count_params() == PAPER_PARAMETERS[name]
    assert out["boxes"].shape == (1, 100, 4)
    k = int(out["num_detections"][0])
    boxes = out["boxes"][0, :k]
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 2] <= 1000) and np.all(boxes[:, 3] <= 600)


def test_paper_config_names_and_arguments_are_checked():
    with pytest.raises(ValueError, match="name"):
        FasterRCNN.paper_config("alexnet")
    with pytest.raises(ValueError, match="roi_pooling"):
        FasterRCNN.paper_config("zf", roi_pooling="max")
    model = FasterRCNN.paper_config("zf", num_classes=20, roi_pooling="roi_align")
    assert type(model.roi_pooler).__name__ == "RoIAlign" and model.rpn.border_tolerance == 0.0
    assert model.proposal_sampler.background_iou_low == 0.1 and model.proposal_sampler.num_samples == 128
    assert model.rpn.num_anchors == 9 and model.rpn.objectness == "softmax"


def test_two_stage_training_step_samples_against_the_targets():
    """The forward pass of a training step sees the targets: 256 anchors for the RPN (half positive at most),
    the proposals sampled with ground truth added and 25% foreground at most."""
    model = FasterRCNN.compact(num_classes=3, width=0.25)
    x, y = harness.synthetic_batch(SPEC, 2)
    model.build_for_size(SPEC.image_size)
    targets = model.standardize_targets(y, tf.constant(x))
    raw = model(x, training=True, targets=targets)
    sampled = raw["sampled"]
    assert sampled["rois"].shape == (2, 256, 4)
    states = sampled["states"].numpy()
    assert (states == 1).sum(axis=1).max() <= 64 and (states == 1).sum() > 0
    # each foreground RoI's regression target is one of its image's ground-truth boxes
    for i in range(2):
        gt = targets["boxes"].numpy()[i][targets["labels"].numpy()[i] >= 0]
        for box in sampled["boxes"].numpy()[i][states[i] == 1]:
            assert np.any(np.all(np.isclose(gt, box, atol=1e-4), axis=1))
    # the ground truth is added to the proposals: with no proposals at all, the foreground RoIs are the objects
    none = -tf.ones([2, 5, 4])
    alone = model.proposal_sampler(none, dict(targets), training=False)
    for i in range(2):
        gt = targets["boxes"].numpy()[i][targets["labels"].numpy()[i] >= 0]
        fg = alone["rois"].numpy()[i][alone["states"].numpy()[i] == 1]
        assert len(fg) == min(len(gt), 64)
        assert all(np.any(np.all(np.isclose(gt, r, atol=1e-4), axis=1)) for r in fg)
    rpn = raw["rpn_sampled"]["mask"].numpy()
    assert rpn.sum(axis=1).max() <= 256
    positives = (raw["rpn_sampled"]["states"].numpy() == 1) & (rpn > 0)
    assert positives.sum(axis=1).max() <= 128 and positives.sum() > 0
    # without targets there is no sampling, and the test budget of proposals is pooled
    plain = model(x, training=False)
    assert "sampled" not in plain and plain["rois"].shape[1] == model.rpn.test_post_nms_topk


def test_crowd_regions_are_never_negatives():
    """An anchor or proposal mostly inside a crowd region is ignored, not background."""
    from kerasdet.heads import assign_anchor_targets
    from kerasdet.layers import BoxMatcher

    anchors = tf.constant([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [52.0, 52.0, 70.0, 70.0],
                           [100.0, 100.0, 110.0, 110.0]])
    targets = {"boxes": tf.constant([[[0.0, 0.0, 10.0, 10.0], [48.0, 48.0, 64.0, 64.0]]]),
               "labels": tf.constant([[1, 2]]), "is_crowd": tf.constant([[False, True]])}
    out = assign_anchor_targets(BoxMatcher(), anchors, targets)
    # anchor 0 matches the ordinary box; 1 lies inside the crowd region; 2 is covered 12 / 18 x 12 / 18 = 44%
    np.testing.assert_array_equal(out["states"].numpy(), [[1, -1, 0, 0]])
    np.testing.assert_array_equal(out["labels"].numpy(), [[1, -1, -1, -1]])


def test_frozen_batch_norm_survives_the_config_and_the_alternating_steps():
    """The paper configurations freeze batch norm; a rebuilt model (config round trip) freezes the same layers,
    and freezing then unfreezing a part for an alternating step restores them."""
    import keras

    def frozen_bn(model):
        return sum(1 for layer in model.backbone._flatten_layers()
                   if isinstance(layer, keras.layers.BatchNormalization) and not layer.trainable)

    model = FasterRCNN.paper_config("resnet50_c4", num_classes=3)
    total = sum(1 for layer in model.backbone._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization))
    assert frozen_bn(model) == total > 0
    again = FasterRCNN.from_config(model.get_config())
    assert frozen_bn(again) == total
    assert all(not layer.trainable for layer in again.box_head.tower._flatten_layers()
               if isinstance(layer, keras.layers.BatchNormalization))
    model.set_training_stage("detector", trainable=("box_head",))
    assert not any(v.trainable for v in model.backbone.weights)
    model.set_training_stage("joint")
    assert frozen_bn(model) == total and any(v.trainable for v in model.backbone.weights)
    vgg = FasterRCNN.paper_config("vgg16", num_classes=3)
    frozen = {layer.name for layer in vgg.backbone.layers if layer.weights and not layer.trainable}
    assert frozen == {"block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2"}


def test_feature_names_and_strides_are_checked():
    from kerasdet.backbones import ResNet
    from kerasdet.layers import RoIAlign

    with pytest.raises(ValueError, match="rpn_features"):
        FasterRCNN(3, backbone=ResNet(18, levels=("C5",)))
    with pytest.raises(ValueError, match="spatial_scale"):
        FasterRCNN(3, backbone=ResNet(18, levels=("C4",)), roi_pooler=RoIAlign(7, spatial_scale=1 / 32))
    with pytest.raises(ValueError, match="zf|ZF"):
        FasterRCNN.paper_config("zf", backbone_weights="imagenet")


def test_targets_given_to_call_are_standardised_and_empty_targets_work():
    """`model(x, training=True, targets=y)` in a custom loop takes the same targets as fit ("classes", other box
    formats), and targets with no rows at all (M = 0) give a finite loss."""
    model = FasterRCNN.compact(num_classes=3, width=0.25, bounding_box_format="center_xywh")
    x, y = harness.synthetic_batch(SPEC, 2)
    model.build_for_size(SPEC.image_size)
    centre = np.concatenate([(y["boxes"][..., :2] + y["boxes"][..., 2:]) / 2, y["boxes"][..., 2:] - y["boxes"][..., :2]], -1)
    given = {"boxes": np.where(y["labels"][..., None] >= 0, centre, -1).astype(np.float32), "classes": y["labels"]}
    raw = model(x, training=True, targets=given)
    fg = raw["sampled"]["boxes"].numpy()[raw["sampled"]["states"].numpy() == 1]
    gt = y["boxes"][y["labels"] >= 0]
    assert len(fg) and all(np.any(np.all(np.isclose(gt, b, atol=1e-3), axis=1)) for b in fg)  # xyxy inside
    assert np.isfinite(float(model.compute_loss(x, given, raw)))
    empty = {"boxes": np.zeros((2, 0, 4), np.float32), "labels": np.zeros((2, 0), np.int32)}
    model.compile()
    assert np.isfinite(model.train_on_batch(x, empty, return_dict=True)["loss"])


def test_rois_are_refused_by_a_family_that_makes_its_own():
    model = FasterRCNN.compact(num_classes=3, width=0.25)
    with pytest.raises(ValueError, match="rois"):
        model.predict({"images": np.zeros((1, 96, 96, 3), np.uint8), "rois": np.zeros((1, 2, 4), np.float32)}, verbose=0)


def test_trainable_backbone_layers_freezes_the_first_stages_and_survives_the_config():
    model = FasterRCNN.paper_config("resnet50_fpn", num_classes=3, trainable_backbone_layers=3)
    frozen_stages = {layer.name.split("_")[0] for layer in model.backbone.layers if layer.weights and not any(
        v.trainable for v in layer.weights)}
    assert {"conv1", "conv2"} <= frozen_stages
    trains = {layer.name.split("_")[0] for layer in model.backbone.layers if any(v.trainable for v in layer.weights)}
    assert trains == {"conv3", "conv4", "conv5"}
    again = FasterRCNN.from_config(model.get_config())
    assert len(again.backbone.trainable_weights) == len(model.backbone.trainable_weights)
    with pytest.raises(ValueError, match="trainable_layers"):
        FasterRCNN.paper_config("resnet50_c4", trainable_backbone_layers=7)
