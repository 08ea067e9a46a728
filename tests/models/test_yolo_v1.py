"""YOLO (v1) and Fast YOLO: the model harness on the compact YOLO (Fast YOLO's is in test_fast_yolo.py), the paper networks' outputs, the loss
against eq. 3 written out, the internal resize to the network's input size, and the family rows."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.models.families import family_of_arch, family_of_model
from kerasdet.models.yolo_v1 import FastYOLO, YOLOv1
from tests.models import harness
from tests.reference.detection_losses import yolo_v1_loss

SPEC = harness.FamilySpec(name="yolo_v1", build=lambda: YOLOv1.compact(num_classes=3, width=0.125, input_size=96,
                                                                        hidden_units=64), zoo_name=None,
                          slow_checks=("test_mixed_float16_training_step_is_finite",))
globals().update(harness.family_tests(SPEC))


@pytest.mark.parametrize("make, params", [(YOLOv1.paper_config, 271_703_550), (FastYOLO.paper_config, 36_531_294)])
def test_paper_networks(make, params):
    """448 px, S = 7, B = 2, 20 classes: 7 x 7 x 30 outputs; YOLO has 24 convolutions and fc 4096, Fast YOLO 9."""
    model = make(num_classes=20)
    assert model(tf.zeros([1, 448, 448, 3]))["predictions"].shape == (1, 49, 30)
    convs = [layer for layer in model.network.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    assert len(convs) == (24 if make == YOLOv1.paper_config else 9)
    assert model.count_params() == params and model.grid_size == 7


def test_loss_matches_equation_3():
    model = YOLOv1.compact(num_classes=3, width=0.125, input_size=96, hidden_units=16)
    images = tf.zeros([2, 96, 96, 3])
    rng = np.random.default_rng(2)
    predictions = rng.normal(0.4, 0.5, (2, 9, 13)).astype(np.float32)
    boxes = np.array([[[10, 12, 40, 50], [12, 12, 30, 44], [50, 30, 90, 60]],
                      [[5, 5, 20, 15], [60, 2, 95, 90], [-1, -1, -1, -1]]], np.float32)
    labels = np.array([[0, 2, 1], [1, 0, -1]], np.int32)
    targets = model.standardize_targets({"boxes": boxes, "labels": labels}, images)
    got = model.detection_losses(images, targets, {"predictions": tf.constant(predictions)})
    want = yolo_v1_loss(predictions, boxes, labels, 3, 2, (96, 96))
    for name, value in zip(("coord_loss", "object_loss", "noobject_loss", "class_loss"), want):
        np.testing.assert_allclose(float(got[name]), value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_inputs_are_resized_to_the_network_and_boxes_come_back_in_input_pixels():
    """A 96 px network on a 150 x 300 image sees the image resized to 96 x 96 (equal outputs), and decodes its boxes
    with x scaled by 300 / 96 and y by 150 / 96."""
    model = YOLOv1.compact(num_classes=3, width=0.125, input_size=96, hidden_units=16)
    image = np.random.default_rng(0).uniform(0, 255, (1, 150, 300, 3)).astype(np.float32)
    small = tf.image.resize(image, [96, 96])
    np.testing.assert_allclose(model(image)["predictions"], model(small)["predictions"], atol=1e-5)
    raw = {"predictions": tf.constant(np.random.default_rng(1).uniform(0.2, 0.8, (1, 9, 13)), tf.float32)}
    big_boxes, big_scores = model.decode_candidates(raw, tf.zeros([1, 150, 300, 3]))
    small_boxes, small_scores = model.decode_candidates(raw, tf.zeros([1, 96, 96, 3]))
    np.testing.assert_allclose(big_scores, small_scores)
    unclipped = (small_boxes.numpy() > 0).all(-1) & (small_boxes.numpy() < 96).all(-1)
    assert unclipped.sum() > 3
    np.testing.assert_allclose(big_boxes.numpy()[unclipped],
                               small_boxes.numpy()[unclipped] * np.array([300, 150, 300, 150]) / 96, rtol=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_size=100), "multiple of the network's stride"),
    (dict(conv_layers=((16, 3),)), "conv_layers"),
    (dict(conv_layers=("M",)), "at least one convolution"),
    (dict(boxes_per_cell=0), "boxes_per_cell"),
    (dict(hidden_units=0), "hidden_units"),
    (dict(dropout=1.0), "dropout"),
    (dict(lambda_coord=-1.0), "lambda_coord"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        YOLOv1.compact(num_classes=3, width=0.125, **kwargs)


def test_family_rows():
    assert family_of_arch("yolo-v1-compact").name == "yolo_v1" and family_of_arch("fast-yolo-compact").name == "fast_yolo"
    fast = family_of_arch("fast-yolo-compact").archs["fast-yolo-compact"](2, ["a", "b"])
    assert isinstance(fast, FastYOLO) and family_of_model(fast) == "fast_yolo" and fast.grid_size == 8
    assert family_of_model(family_of_arch("yolo-v1-compact").archs["yolo-v1-compact"](2, ["a", "b"])) == "yolo_v1"
