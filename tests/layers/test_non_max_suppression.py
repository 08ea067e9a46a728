"""NonMaxSuppression layer: the shared harness plus equality with the numpy reference."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers.non_max_suppression import NonMaxSuppression
from tests.layers.harness import check_layer
from tests.reference.nms import batched_nms_reference


def _inputs(seed=0, batch=3, n=40, classes=4, per_class_boxes=False):
    rng = np.random.default_rng(seed)
    lead = (batch, n, classes) if per_class_boxes else (batch, n)
    centre = rng.uniform(0, 200, lead + (2,))
    size = rng.uniform(5, 80, lead + (2,))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)
    scores = np.array([0.2, 0.4, 0.6, 0.8], np.float32)[rng.integers(0, 4, (batch, n, classes))]
    return boxes, scores


def _empty_check(outputs, args):
    batch = args[1].shape[0]
    assert outputs["boxes"].shape == (batch, 10, 4)
    assert outputs["num_detections"].shape == (batch,)
    assert (outputs["num_detections"] == 0).all()


@pytest.mark.parametrize(
    "init_kwargs, per_class_boxes",
    [
        (dict(iou_threshold=0.5, score_threshold=0.3, max_detections=10, max_detections_per_class=4), False),
        (dict(iou_threshold=0.4, score_threshold=0.1, max_detections=10, class_agnostic=True), True),
        (dict(iou_threshold=0.5, score_threshold=0.3, max_detections=10, soft_nms_sigma=0.5), False),
    ],
)
def test_harness(init_kwargs, per_class_boxes):
    boxes, scores = _inputs(per_class_boxes=per_class_boxes)
    empty = [
        (boxes[:0], scores[:0]),  # batch 0
        (boxes[:, :0], scores[:, :0]),  # zero boxes
    ]
    check_layer(
        NonMaxSuppression,
        init_kwargs,
        (boxes, scores),
        empty_args=empty,
        empty_check=_empty_check,
        jit=False,
        atol=0,
        rtol=0,
        fp16_atol=0,
        fp16_rtol=0,
    )


def test_layer_matches_reference():
    boxes, scores = _inputs(seed=1, batch=8, n=60, classes=5)
    settings = dict(iou_threshold=0.45, score_threshold=0.3, max_detections=25, max_detections_per_class=6)
    out = NonMaxSuppression(**settings)(boxes, scores)
    want = batched_nms_reference(boxes, scores, **settings)
    for key in want:
        np.testing.assert_array_equal(out[key].numpy(), want[key], err_msg=key)


def test_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    layer = NonMaxSuppression(max_detections=5)
    boxes, scores = _inputs(seed=2)
    boxes = boxes + np.float32(1000.3)  # not representable in float16
    out = layer(tf.constant(boxes), tf.constant(scores))
    assert out["boxes"].dtype == tf.float32 and out["scores"].dtype == tf.float32
    first = out["boxes"].numpy()[0, 0]
    assert np.any(np.all(boxes[0] == first, axis=-1))


def test_config_keeps_arguments_and_infinite_threshold():
    layer = NonMaxSuppression(score_threshold=float("-inf"), max_detections=7, class_agnostic=True, name="nms")
    clone = NonMaxSuppression.from_config(layer.get_config())
    assert clone.score_threshold == float("-inf") and clone.max_detections == 7 and clone.class_agnostic
    assert clone.name == "nms"


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(iou_threshold=2.0), ValueError),
        (dict(max_detections=0), ValueError),
        (dict(max_detections_per_class="5"), TypeError),
        (dict(class_agnostic=1), TypeError),
        (dict(soft_nms_sigma=-0.1), ValueError),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        NonMaxSuppression(**kwargs)
