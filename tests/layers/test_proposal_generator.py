"""ProposalGenerator against tests/reference/proposals.py, and the layer harness."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers.anchor_generator import AnchorGenerator
from kerasdet.layers.proposal_generator import ProposalGenerator
from tests.layers.harness import check_layer
from tests.reference import proposals as ref


def _level(rng, batch, image_hw, stride, sizes):
    h, w = image_hw
    fmap = np.zeros((1, h // stride, w // stride, 1), np.float32)
    anchors = AnchorGenerator(sizes=sizes, strides=stride)(np.zeros((1, h, w, 3), np.float32), fmap).numpy()
    num = len(anchors)
    logits = rng.normal(0, 2, (batch, num)).astype(np.float32)
    deltas = rng.normal(0, 0.3, (batch, num, 4)).astype(np.float32)
    return logits, deltas, anchors


def _reference(levels, sizes, pre, post, iou, min_size):
    batch = len(levels[0][0])
    outs = [
        ref.proposals_image([(l[b], d[b], a) for l, d, a in levels], sizes[b], pre, post, iou, min_size)
        for b in range(batch)
    ]
    return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs]), np.array([o[2] for o in outs])


def _compare(out, expected):
    rois, scores, count = expected
    np.testing.assert_array_equal(out["num_rois"].numpy(), count)
    np.testing.assert_allclose(out["rois"].numpy(), rois, atol=2e-3, rtol=1e-5)
    np.testing.assert_allclose(out["scores"].numpy(), scores, atol=1e-6)


@pytest.mark.parametrize(
    "pre, post, iou, min_size", [(100, 30, 0.7, 2.0), (1000, 200, 0.5, 0.0), (20, 50, 0.7, 0.0), (400, 400, 0.5, 1.0)]
)
def test_single_level_matches_reference(pre, post, iou, min_size):
    rng = np.random.default_rng(pre + post)
    logits, deltas, anchors = _level(rng, 2, (64, 96), 8, (16, 32, 64))
    logits[0, :5] = logits[0, 5]  # ties
    gen = ProposalGenerator(pre_nms_topk=pre, post_nms_topk=post, nms_iou_threshold=iou, min_size=min_size)
    out = gen(logits, deltas, anchors, np.zeros((2, 64, 96, 3), np.float32))
    _compare(out, _reference([(logits, deltas, anchors)], [(64, 96)] * 2, pre, post, iou, min_size))
    assert out["rois"].shape == (2, post, 4) and out["num_rois"].dtype == tf.int32


def test_multi_level_top_k_per_level_matches_reference():
    rng = np.random.default_rng(3)
    levels = [_level(rng, 2, (64, 64), s, (size,)) for s, size in ((4, 16), (8, 32), (16, 64))]
    gen = ProposalGenerator(pre_nms_topk=50, post_nms_topk=60, nms_iou_threshold=0.7)
    out = gen([l[0] for l in levels], [l[1] for l in levels], [l[2] for l in levels], np.array([64, 64], np.int32))
    _compare(out, _reference(levels, [(64, 64)] * 2, 50, 60, 0.7, 0.0))


def test_per_image_sizes_clip_each_image():
    rng = np.random.default_rng(4)
    logits, deltas, anchors = _level(rng, 2, (64, 96), 8, (32,))
    sizes = np.array([[64, 96], [40, 50]], np.float32)
    out = ProposalGenerator(200, 40)(logits, deltas, anchors, sizes)
    _compare(out, _reference([(logits, deltas, anchors)], [(64, 96), (40, 50)], 200, 40, 0.7, 0.0))
    rois = out["rois"].numpy()[1][: out["num_rois"].numpy()[1]]
    assert rois[:, 2].max() <= 50 and rois[:, 3].max() <= 40


def test_anchors_centred_in_the_padding_are_no_candidates():
    """An image padded into a larger batch gets the proposals it gets alone: the anchors centred in its padding
    (here with the highest logits) are skipped, the same pre-NMS budget goes to the anchors over the image."""
    rng = np.random.default_rng(5)
    logits, deltas, anchors = _level(rng, 1, (64, 96), 8, (16, 32))
    centre = (anchors[:, :2] + anchors[:, 2:]) / 2
    inside = (centre[:, 0] < 50) & (centre[:, 1] < 40)
    logits[0, ~inside] = 50.0
    padded = ProposalGenerator(30, 20)(logits, deltas, anchors, np.array([[40, 50]], np.float32))
    alone = ProposalGenerator(30, 20)(logits[:, inside], deltas[:, inside], anchors[inside], np.array([40, 50]))
    for key in ("rois", "scores", "num_rois"):
        np.testing.assert_array_equal(padded[key].numpy(), alone[key].numpy())
    assert int(padded["num_rois"][0]) > 0


def test_padding_and_non_finite_inputs():
    anchors = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    logits = np.array([[3.0, 2.0, 1.0, np.nan]], np.float32)
    deltas = np.zeros((1, 4, 4), np.float32)
    deltas[0, 1] = [0, 0, np.inf, 0]
    out = ProposalGenerator(10, 6)(logits, deltas, anchors, np.array([40, 40]))
    # anchor 1 decodes to a non-finite box, anchor 2 is suppressed by anchor 0, anchor 3's logit is NaN
    assert out["num_rois"].numpy().tolist() == [1]
    np.testing.assert_allclose(out["rois"].numpy()[0, 0], [0, 0, 10, 10])
    np.testing.assert_allclose(out["rois"].numpy()[0, 1:], -1)
    np.testing.assert_allclose(out["scores"].numpy()[0], [1 / (1 + math.exp(-3))] + [0] * 5, rtol=1e-6)


def test_min_size_and_clamp():
    anchors = np.array([[0, 0, 4, 4], [10, 10, 30, 30]], np.float32)
    logits = np.array([[1.0, 0.5]], np.float32)
    deltas = np.array([[[0, 0, 0, 0], [0, 0, 100.0, 100.0]]], np.float32)
    out = ProposalGenerator(10, 2, min_size=4.0)(logits, deltas, anchors, np.array([1000, 1000]))
    # the 4x4 box is not larger than min_size; the huge delta is clamped at log(1000/16) then clipped
    assert out["num_rois"].numpy().tolist() == [1]
    half = 10 * 1000 / 16
    np.testing.assert_allclose(out["rois"].numpy()[0, 0], [0, 0, min(20 + half, 1000), min(20 + half, 1000)], rtol=1e-5)


def test_no_gradient_and_graph_with_unknown_sizes():
    rng = np.random.default_rng(6)
    logits, deltas, anchors = _level(rng, 2, (32, 32), 8, (16,))
    gen = ProposalGenerator(20, 10)
    logits_t = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits_t)
        out = gen(logits_t, deltas, anchors, np.array([32, 32]))
    assert tape.gradient(out["scores"], logits_t) is None
    fn = tf.function(
        gen,
        input_signature=[
            tf.TensorSpec([None, None]), tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, 4]),
            tf.TensorSpec([None, None, None, 3]),
        ],
    )
    got = fn(logits, deltas, anchors, tf.zeros([2, 32, 32, 3]))
    for key in out:
        np.testing.assert_allclose(got[key].numpy(), out[key].numpy())


def test_harness():
    rng = np.random.default_rng(8)
    logits, deltas, anchors = _level(rng, 2, (48, 64), 8, (16, 32))
    images = np.zeros((2, 48, 64, 3), np.float32)
    check_layer(
        ProposalGenerator,
        {"pre_nms_topk": 60, "post_nms_topk": 20, "nms_iou_threshold": 0.6, "min_size": 1.0},
        (logits, deltas, anchors, images),
        jit=False,
        fp16_compare=False,
        atol=1e-4,
        empty_args=[(logits[:0], deltas[:0], anchors, images[:0]), (logits[:, :0], deltas[:, :0], anchors[:0], images)],
        empty_check=lambda out, args: (
            np.testing.assert_equal(out["rois"].shape, (args[0].shape[0], 20, 4)),
            np.testing.assert_array_equal(out["num_rois"], np.zeros(args[0].shape[0])),
        ),
    )


def test_mixed_precision_inputs_give_float32():
    rng = np.random.default_rng(9)
    logits, deltas, anchors = _level(rng, 1, (32, 32), 8, (16,))
    keras.config.set_dtype_policy("mixed_float16")
    out = ProposalGenerator(20, 10)(tf.cast(logits, tf.float16), tf.cast(deltas, tf.float16), anchors, np.array([32, 32]))
    assert out["rois"].dtype == tf.float32 and out["scores"].dtype == tf.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pre_nms_topk": 0}, "pre_nms_topk"),
        ({"post_nms_topk": 2.5}, "post_nms_topk"),
        ({"nms_iou_threshold": 1.5}, "nms_iou_threshold"),
        ({"min_size": -1}, "min_size"),
        ({"scale_clamp": 0}, "scale_clamp"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProposalGenerator(**kwargs)


def test_bad_call_arguments():
    gen = ProposalGenerator(10, 5)
    logits = np.zeros((2, 6), np.float32)
    deltas = np.zeros((2, 6, 4), np.float32)
    anchors = np.zeros((6, 4), np.float32)
    sizes = np.array([32, 32])
    with pytest.raises(ValueError, match="number of anchors"):
        gen(logits, deltas, anchors[:5], sizes)
    with pytest.raises(ValueError, match="batch size"):
        gen(logits, deltas[:1], anchors, sizes)
    with pytest.raises(ValueError, match=r"deltas.*\[B, A, 4\]"):
        gen(logits, deltas[..., :3], anchors, sizes)
    with pytest.raises(ValueError, match="objectness"):
        gen(logits[..., None], deltas, anchors, sizes)
    with pytest.raises(ValueError, match="images"):
        gen(logits, deltas, anchors, np.zeros((2, 32, 32), np.float32))
    with pytest.raises(ValueError, match="number of levels"):
        gen([logits, logits], [deltas], [anchors, anchors], sizes)
    with pytest.raises(TypeError, match="objectness"):
        gen(np.array([["a"] * 6] * 2), deltas, anchors, sizes)
