"""BoxMatcher / match_boxes against the numpy reference (tests/reference/matching.py) and the harness."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers.box_matcher import BoxMatcher
from kerasdet.ops.matching import match_boxes
from tests.layers.harness import check_layer
from tests.reference import matching as ref

CONFIGS = {
    "rpn": dict(thresholds=(0.3, 0.7), match_values=(0, -1, 1), allow_low_quality_matches=True, force_best_match=False),
    "fast_rcnn": dict(thresholds=(0.5,), match_values=(0, 1), allow_low_quality_matches=False, force_best_match=False),
    "fast_rcnn_bg_lo": dict(
        thresholds=(0.1, 0.5), match_values=(-1, 0, 1), allow_low_quality_matches=False, force_best_match=False
    ),
    "retinanet": dict(thresholds=(0.4, 0.5), match_values=(0, -1, 1), allow_low_quality_matches=True, force_best_match=False),
    "ssd": dict(thresholds=(0.5,), match_values=(0, 1), allow_low_quality_matches=False, force_best_match=True),
}


def _random_boxes(rng, shape, size=40, lo=-8):
    """Integer boxes (exact float32 areas, so ties are ties), some beyond the border, some degenerate."""
    xy = rng.integers(lo, size, shape + (2,))
    wh = rng.integers(0, size // 2, shape + (2,))
    return np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)


def _grid_anchors():
    """Anchors on a coarse grid, with duplicated rows so that some IoUs tie exactly."""
    boxes = []
    for y in range(0, 40, 8):
        for x in range(0, 40, 8):
            for w, h in ((8, 8), (16, 8), (8, 16), (16, 16)):
                boxes.append([x, y, x + w, y + h])
    boxes = np.asarray(boxes, np.float32)
    return np.concatenate([boxes, boxes[:10]])


def _gt(rng, batch=3, m=6):
    boxes = _random_boxes(rng, (batch, m))
    labels = rng.integers(0, 5, (batch, m)).astype(np.int32)
    labels[0, -2:] = -1  # padding
    boxes[0, -2:] = -1
    labels[1, 0] = -1  # padding in the middle is ignored too
    return boxes, labels


def _check(anchors, boxes, labels, config):
    idx, states, ious = (t.numpy() for t in match_boxes(anchors, boxes, labels, **config))
    e_idx, e_states, e_ious = ref.match(
        anchors, boxes, labels, config["thresholds"], config["match_values"],
        config["allow_low_quality_matches"], config["force_best_match"],
    )
    np.testing.assert_array_equal(states, e_states)
    np.testing.assert_array_equal(idx, e_idx)
    np.testing.assert_allclose(ious, e_ious, rtol=1e-6, atol=1e-7)
    assert idx.dtype == np.int32 and states.dtype == np.int32 and ious.dtype == np.float32


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_on_random_boxes(name, seed):
    rng = np.random.default_rng(seed)
    boxes, labels = _gt(rng)
    _check(_grid_anchors(), boxes, labels, CONFIGS[name])


@pytest.mark.parametrize("name", ["rpn", "ssd", "fast_rcnn"])
def test_per_image_anchors_with_padding_rows(name):
    rng = np.random.default_rng(3)
    boxes, labels = _gt(rng, batch=2)
    anchors = _random_boxes(rng, (2, 30))
    anchors[1, -5:] = -1
    anchors[0, 3] = boxes[0, 0]  # an exact match
    _check(anchors, boxes, labels, CONFIGS[name])
    _, states, _ = match_boxes(anchors, boxes, labels, **CONFIGS[name])
    assert np.all(states.numpy()[1, -5:] == -1)


def test_low_quality_keeps_all_tied_anchors_and_their_own_best_box():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [10, 0, 20, 10], [100, 100, 110, 110]], np.float32)
    gt = np.array([[[0, 0, 20, 10], [0, 0, 10, 40]]], np.float32)  # IoU 0.5 and 0.25 with anchors 0, 1
    labels = np.array([[1, 2]], np.int32)
    idx, states, ious = (t.numpy() for t in match_boxes(anchors, gt, labels))
    # anchors 0, 1 (tied at gt 0's best 0.5, and gt 1's best 0.25) and 2 (tied with them for gt 0) positive
    np.testing.assert_array_equal(states, [[1, 1, 1, 0]])
    np.testing.assert_array_equal(idx, [[0, 0, 0, 0]])
    np.testing.assert_allclose(ious, [[0.5, 0.5, 0.5, 0.0]])


def test_force_best_match_lowest_anchor_and_highest_box_wins():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    gt = np.array([[[0, 0, 10, 20], [0, 0, 20, 10], [200, 200, 210, 210]]], np.float32)
    labels = np.array([[0, 1, 2]], np.int32)
    config = dict(CONFIGS["ssd"], thresholds=(0.6,))
    idx, states, ious = (t.numpy() for t in match_boxes(anchors, gt, labels, **config))
    # both boxes pick anchor 0 (lowest of the tie); box 1 wins; gt 2 overlaps nothing and forces nothing
    np.testing.assert_array_equal(states, [[1, 0, 0]])
    np.testing.assert_array_equal(idx, [[1, 0, 0]])
    np.testing.assert_allclose(ious, [[0.5, 0.5, 0.0]])


def test_box_without_overlap_forces_nothing():
    anchors = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    gt = np.array([[[100, 100, 120, 120]]], np.float32)
    _, states, _ = match_boxes(anchors, gt, np.array([[0]], np.int32))
    np.testing.assert_array_equal(states.numpy(), [[0, 0]])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_zero_gt_and_all_padding(name):
    anchors = _grid_anchors()
    config = CONFIGS[name]
    for boxes, labels in (
        (np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), np.int32)),
        (-np.ones((2, 3, 4), np.float32), -np.ones((2, 3), np.int32)),
    ):
        idx, states, ious = (t.numpy() for t in match_boxes(anchors, boxes, labels, **config))
        assert states.shape == (2, len(anchors))
        assert np.all(states == config["match_values"][0]) and np.all(idx == -1) and np.all(ious == 0)


def test_batch_zero_and_zero_anchors():
    idx, states, ious = match_boxes(_grid_anchors(), np.zeros((0, 4, 4), np.float32), np.zeros((0, 4), np.int32))
    assert idx.shape == (0, len(_grid_anchors())) and states.shape == idx.shape and ious.shape == idx.shape
    idx, states, _ = match_boxes(np.zeros((0, 4), np.float32), np.ones((2, 3, 4), np.float32), np.zeros((2, 3), np.int32))
    assert states.shape == (2, 0)


def test_layer_outputs_and_graph_with_unknown_shapes():
    rng = np.random.default_rng(5)
    boxes, labels = _gt(rng)
    anchors = _grid_anchors()
    layer = BoxMatcher()
    fn = tf.function(
        layer,
        input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None], tf.int32)],
    )
    out = fn(anchors, boxes, labels)
    e_idx, e_states, _ = ref.match(anchors, boxes, labels, (0.3, 0.7), (0, -1, 1), True, False)
    np.testing.assert_array_equal(out["match_states"].numpy(), e_states)
    np.testing.assert_array_equal(out["matched_gt_indices"].numpy(), e_idx)


def test_harness():
    rng = np.random.default_rng(7)
    boxes, labels = _gt(rng, batch=2)
    anchors = _grid_anchors()
    check_layer(
        BoxMatcher,
        {"thresholds": (0.4, 0.5), "match_values": (0, -1, 1)},
        (anchors, boxes, labels),
        empty_args=[(anchors, boxes[:, :0], labels[:, :0]), (anchors, boxes[:0], labels[:0])],
        empty_check=lambda out, args: np.testing.assert_equal(out["match_states"].shape, (args[1].shape[0], len(anchors))),
    )


def test_harness_ssd_rule():
    rng = np.random.default_rng(8)
    boxes, labels = _gt(rng, batch=2)
    check_layer(BoxMatcher, CONFIGS["ssd"], (_grid_anchors(), boxes, labels))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"thresholds": (0.7, 0.3)}, ValueError, "non-decreasing"),
        ({"thresholds": (0.0, 0.7)}, ValueError, "thresholds"),
        ({"thresholds": (0.5,), "match_values": (0, -1, 1)}, ValueError, "match_values"),
        ({"thresholds": (0.5,), "match_values": (0, 2)}, ValueError, "match_values"),
        ({"force_best_match": True}, ValueError, "only one"),
        ({"allow_low_quality_matches": 1}, TypeError, "allow_low_quality_matches"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BoxMatcher(**kwargs)


def test_bad_call_arguments():
    layer = BoxMatcher()
    anchors = _grid_anchors()
    boxes = np.zeros((1, 2, 4), np.float32)
    with pytest.raises(TypeError, match="gt_labels"):
        layer(anchors, boxes, np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"gt_boxes.*\[B, M, 4\]"):
        layer(anchors, np.zeros((1, 2, 5), np.float32), np.zeros((1, 2), np.int32))
    with pytest.raises(ValueError, match="anchors"):
        layer(anchors[None, None], boxes, np.zeros((1, 2), np.int32))
    with pytest.raises(ValueError, match="gt_labels"):
        layer(anchors, boxes, np.zeros((1, 2, 1), np.int32))
