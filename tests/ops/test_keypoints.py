"""Keypoint heatmap targets and decoding against the numpy references of tests/reference/keypoints.py."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.ops.keypoints import heatmaps_to_keypoints, keypoint_heatmap_targets
from tests.reference import keypoints as ref

ATOL = 1e-4


# --------------------------------------------------------------------------------------------------
# keypoint_heatmap_targets


def _random_rois(rng, batch, count):
    """Boxes of varied sizes; per image one padding row, one zero-width, one zero-height, one inverted."""
    start = rng.uniform(-20.0, 80.0, size=(batch, count, 2))
    size = rng.uniform(0.5, 60.0, size=(batch, count, 2))
    rois = np.concatenate([start, start + size], axis=-1).astype(np.float32)
    rois[:, 0] = -1.0  # padding row
    rois[:, 1, 2] = rois[:, 1, 0]  # zero width
    rois[:, 2, 3] = rois[:, 2, 1]  # zero height
    rois[:, 3, [0, 2]] = rois[:, 3, [2, 0]]  # inverted in x
    return rois


def _random_keypoints(rng, rois, count, size):
    """Keypoints inside, outside, on the four edges and on bin boundaries of their rois; visibility 0/1/2."""
    batch, rows = rois.shape[:2]
    x1, y1, x2, y2 = (rois[..., i : i + 1] for i in range(4))
    u = rng.uniform(-0.3, 1.3, size=(batch, rows, count, 2)).astype(np.float32)
    x = x1 + u[..., 0] * (x2 - x1)
    y = y1 + u[..., 1] * (y2 - y1)
    kind = rng.integers(0, 6, size=(batch, rows, count))
    x = np.where(kind == 1, x1, np.where(kind == 2, x2, x))
    y = np.where(kind == 3, y1, np.where(kind == 4, y2, y))
    # on a bin boundary, computed in float32 as x1 + j * (x2 - x1) / S
    j = rng.integers(0, size + 1, size=(batch, rows, count)).astype(np.float32)
    x = np.where(kind == 5, x1 + j * (x2 - x1) / np.float32(size), x)
    y = np.where(kind == 5, y1 + j[..., ::-1] * (y2 - y1) / np.float32(size), y)
    visibility = rng.integers(0, 3, size=(batch, rows, count)).astype(np.float32)
    return np.stack([x, y, visibility], axis=-1).astype(np.float32)


@pytest.mark.parametrize("size", [1, 3, 7, 56])
def test_targets_match_reference(size):
    rng = np.random.default_rng(size)
    rois = _random_rois(rng, 3, 20)
    keypoints = _random_keypoints(rng, rois, 17, size)
    indices, valid = keypoint_heatmap_targets(keypoints, rois, size)
    want_indices, want_valid = ref.keypoint_heatmap_targets(keypoints, rois, size)
    assert indices.dtype == tf.int32 and valid.dtype == tf.bool
    assert indices.shape == (3, 20, 17) and valid.shape == (3, 20, 17)
    np.testing.assert_array_equal(valid.numpy(), want_valid)
    np.testing.assert_array_equal(indices.numpy(), want_indices)
    assert want_valid.sum() > 100 and (~want_valid).sum() > 100  # both kinds are exercised
    assert not want_valid[:, :4].any()  # padding, zero-size and inverted rois never train
    assert np.all((indices.numpy() >= 0) & (indices.numpy() < size * size))


def test_targets_edges_and_visibility():
    roi = [10.0, 20.0, 18.0, 24.0]  # width 8, height 4; S = 4: bins 2 wide, 1 high
    points = [
        [10.0, 20.0, 2.0],  # top-left corner: bin (0, 0)
        [18.0, 24.0, 2.0],  # bottom-right corner: the last bin (3, 3)
        [18.0, 20.0, 1.0],  # right edge, occluded but labelled: (0, 3)
        [12.0, 21.0, 2.0],  # on the boundary between columns 0 and 1: column 1, row 1
        [13.9, 23.99, 2.0],  # column 1, row 3
        [9.999, 22.0, 2.0],  # just left of the roi
        [14.0, 24.001, 2.0],  # just below the roi
        [14.0, 22.0, 0.0],  # not labelled
        [14.0, 22.0, -1.0],  # negative visibility: not labelled either
    ]
    indices, valid = keypoint_heatmap_targets([[points]], [[roi]], 4)
    assert valid.numpy()[0, 0].tolist() == [True] * 5 + [False] * 4
    assert indices.numpy()[0, 0].tolist() == [0, 15, 3, 5, 13, 0, 0, 0, 0]


def test_targets_degenerate_and_non_finite_inputs_do_not_train():
    inf, nan = np.inf, np.nan
    rois = np.array(
        [[[-1.0, -1.0, -1.0, -1.0], [5.0, 5.0, 5.0, 9.0], [5.0, 5.0, 9.0, 5.0], [0.0, 0.0, inf, 8.0],
          [nan, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0]]],
        np.float32,
    )
    keypoints = np.array(
        [[[[-1.0, -1.0, 2.0]], [[5.0, 6.0, 2.0]], [[6.0, 5.0, 2.0]], [[1.0, 1.0, 2.0]], [[1.0, 1.0, 2.0]],
          [[nan, 1.0, 2.0]], [[1.0, 1.0, inf]], [[1.0, 1.0, nan]]]],
        np.float32,
    )
    for fn in (keypoint_heatmap_targets, tf.function(keypoint_heatmap_targets)):
        indices, valid = fn(keypoints, rois, 8)
        assert not valid.numpy().any()
        assert np.all(indices.numpy() == 0)
    want = ref.keypoint_heatmap_targets(keypoints, rois, 8)
    assert not want[1].any()


def test_targets_huge_coordinates_stay_in_range():
    # float32 overflow of the bin position: in range and not training where it is NaN
    # (inf / inf in the first roi, whose width overflows; (x - x1) * S = inf over a finite width in the second)
    rois = np.array([[[-3e38, -3e38, 3e38, 3e38], [0.0, 0.0, 3e38, 1.0]]], np.float32)
    keypoints = np.array([[[[3e38, 3e38, 2.0], [0.0, 0.0, 2.0]], [[3e38, 0.5, 2.0], [0.0, 0.5, 2.0]]]], np.float32)
    indices, valid = keypoint_heatmap_targets(keypoints, rois, 56)
    want_indices, want_valid = ref.keypoint_heatmap_targets(keypoints, rois, 56)
    np.testing.assert_array_equal(valid.numpy(), want_valid)
    np.testing.assert_array_equal(indices.numpy(), want_indices)
    assert valid.numpy().tolist() == [[[False, False], [True, True]]]
    assert indices.numpy()[0, 1].tolist() == [28 * 56 + 55, 28 * 56]


def test_targets_graph_with_unknown_shapes_and_empty_inputs():
    rng = np.random.default_rng(0)
    rois = _random_rois(rng, 2, 6)
    keypoints = _random_keypoints(rng, rois, 5, 8)
    spec = (tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, None, 4]))
    fn = tf.function(lambda k, r: keypoint_heatmap_targets(k, r, 8), input_signature=spec)
    for kp, rr in ((keypoints, rois), (keypoints[:0], rois[:0]), (keypoints[:, :0], rois[:, :0]),
                   (keypoints[:, :, :0], rois)):
        indices, valid = fn(kp, rr)
        want_indices, want_valid = ref.keypoint_heatmap_targets(kp, rr, 8)
        assert indices.shape == want_indices.shape
        np.testing.assert_array_equal(indices.numpy(), want_indices)
        np.testing.assert_array_equal(valid.numpy(), want_valid)
    indices, valid = keypoint_heatmap_targets(np.zeros((0, 3, 17, 3)), np.zeros((0, 3, 4)), 56)
    assert indices.shape == (0, 3, 17) and valid.shape == (0, 3, 17)


def test_targets_accept_float64_and_int_inputs():
    keypoints = np.array([[[[3, 5, 2], [8, 0, 1]]]])
    rois = np.array([[[0, 0, 8, 8]]])
    for k, r in ((keypoints, rois), (keypoints.astype(np.float64), rois.astype(np.float64))):
        indices, valid = keypoint_heatmap_targets(k, r, 4)
        assert indices.numpy().tolist() == [[[9, 3]]] and valid.numpy().all()


# --------------------------------------------------------------------------------------------------
# heatmaps_to_keypoints


def _random_detections(rng, batch, count):
    start = rng.uniform(-10.0, 100.0, size=(batch, count, 2))
    size = rng.uniform(1.0, 80.0, size=(batch, count, 2))
    rois = np.concatenate([start, start + size], axis=-1).astype(np.float32)
    rois[:, -1] = -1.0  # padding row
    rois[:, 0, 2] = rois[:, 0, 0]  # zero width: x is the left edge
    return rois


def _random_heatmaps(rng, batch, count, size, keypoints):
    """Normal logits; some maps quantised (ties), some with the peak forced onto a border row or column."""
    maps = rng.normal(scale=3.0, size=(batch, count, size, size, keypoints)).astype(np.float32)
    maps[:, :, :, :, 0] = np.round(maps[:, :, :, :, 0] / 3.0)  # few distinct values: ties everywhere
    if size > 1:
        maps[:, 1, :, :, 1] = 0.0  # a constant map: argmax 0 (corner), no offset
        maps[:, 2, :, 0, 1] += 20.0  # peak in column 0
        maps[:, 2, -1, :, 2 % keypoints] += 20.0  # peak in the last row
        maps[:, 3, 0, -1, 1] = maps[:, 3, 0, -2, 1] = 50.0  # tie of two neighbours on the top row
    return maps


@pytest.mark.parametrize("size,keypoints", [(1, 2), (2, 3), (5, 3), (56, 4)])
def test_decode_matches_reference(size, keypoints):
    rng = np.random.default_rng(size)
    rois = _random_detections(rng, 2, 6)
    maps = _random_heatmaps(rng, 2, 6, size, keypoints)
    got = heatmaps_to_keypoints(maps, rois)
    want = ref.heatmaps_to_keypoints(maps, rois)
    assert got.dtype == tf.float32 and got.shape == (2, 6, keypoints, 3)
    np.testing.assert_allclose(got.numpy(), want, atol=ATOL, rtol=1e-6)
    np.testing.assert_array_equal(got.numpy()[:, -1], 0.0)  # padding rows
    scores = got.numpy()[:, :-1, :, 2]
    assert np.all((scores > 0) & (scores <= 1))


@pytest.mark.parametrize("dtype,atol", [(tf.float16, ATOL), (tf.bfloat16, ATOL), (tf.float64, ATOL)])
def test_decode_low_precision_heatmaps_are_decoded_in_float32(dtype, atol):
    rng = np.random.default_rng(3)
    rois = _random_detections(rng, 2, 4)
    maps = tf.cast(_random_heatmaps(rng, 2, 4, 9, 3), dtype)  # the rounded values are the input
    got = heatmaps_to_keypoints(maps, rois)
    assert got.dtype == tf.float32
    want = ref.heatmaps_to_keypoints(tf.cast(maps, tf.float32).numpy(), rois)
    np.testing.assert_allclose(got.numpy(), want, atol=atol, rtol=1e-6)


def test_decode_ties_take_the_lowest_flat_index():
    s = 4
    maps = np.zeros((1, 3, s, s, 1), np.float32)
    maps[0, 1, 2, 1, 0] = maps[0, 1, 1, 3, 0] = 5.0  # flat 9 and 7: row 1, column 3 wins
    maps[0, 2, 3, 0, 0] = maps[0, 2, 3, 2, 0] = 5.0  # flat 12 and 14, same row: column 0 wins
    rois = np.tile(np.array([[0.0, 0.0, 8.0, 4.0]], np.float32), (1, 3, 1))
    got = heatmaps_to_keypoints(maps, rois).numpy()[0, :, 0]
    # constant map: bin (0, 0), no offset
    np.testing.assert_allclose(got[0], [1.0, 0.5, 1.0 / 16], atol=1e-6)
    # (1, 3): column on the border -> dx = 0; row 1 with neighbours 0 and 0 -> dy = 0
    np.testing.assert_allclose(got[1, :2], [7.0, 1.5], atol=1e-6)
    # (3, 0): both on the border
    np.testing.assert_allclose(got[2, :2], [1.0, 3.5], atol=1e-6)


def test_decode_parabola_recovers_the_vertex_of_a_quadratic():
    # logits sampled from a parabola: the refinement gives its vertex exactly
    s = 10
    rows, cols = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    centres = [(3.3, 6.8), (5.0, 5.0), (1.45, 8.55), (0.2, 4.6), (7.6, 9.3)]
    maps = np.stack(
        [-((cols - cx) ** 2) - 0.5 * (rows - cy) ** 2 for cx, cy in centres], axis=-1
    ).astype(np.float32)[None, None]
    rois = np.array([[[0.0, 0.0, 20.0, 10.0]]], np.float32)
    got = heatmaps_to_keypoints(maps, rois).numpy()[0, 0]
    # x in bins is vertex + 0.5; on the border (column 0 or S - 1) the offset is 0: the bin centre
    want_x = [3.8, 5.5, 1.95, 0.5, 8.1]
    want_y = [7.3, 5.5, 9.5, 5.1, 9.5]
    np.testing.assert_allclose(got[:, 0], np.array(want_x) * 2.0, atol=1e-4)
    np.testing.assert_allclose(got[:, 1], want_y, atol=1e-4)


def test_decode_score_is_the_spatial_softmax_of_the_peak():
    rng = np.random.default_rng(5)
    maps = rng.normal(scale=4.0, size=(2, 3, 7, 7, 5)).astype(np.float32)
    rois = np.tile(np.array([[0.0, 0.0, 7.0, 7.0]], np.float32), (2, 3, 1))
    scores = heatmaps_to_keypoints(maps, rois).numpy()[..., 2]
    flat = np.transpose(maps, (0, 1, 4, 2, 3)).reshape(2, 3, 5, 49).astype(np.float64)
    soft = np.exp(flat - flat.max(-1, keepdims=True))
    np.testing.assert_allclose(scores, (soft / soft.sum(-1, keepdims=True)).max(-1), rtol=1e-5)


def test_decode_non_finite_logits():
    s = 5
    maps = np.zeros((1, 5, s, s, 1), np.float32)
    maps[0, 0, 2, 2, 0] = np.nan
    maps[0, 1, 2, 2, 0] = np.inf
    maps[0, 2] = -np.inf
    maps[0, 3] = -np.inf  # only two finite bins: the peak (2, 2) and its right neighbour
    maps[0, 3, 2, 2, 0] = 1.0
    maps[0, 3, 2, 3, 0] = 0.0
    maps[0, 4, 1, 1, 0] = np.nan  # NaN on a padding row: zeros
    rois = np.array([[[0.0, 0.0, 5.0, 5.0]] * 4 + [[-1.0, -1.0, -1.0, -1.0]]], np.float32)
    want = ref.heatmaps_to_keypoints(maps, rois)
    for fn in (heatmaps_to_keypoints, tf.function(heatmaps_to_keypoints)):
        got = fn(maps, rois).numpy()[0, :, 0]
        assert np.all(np.isnan(got[:3]))
        # -inf neighbours: no offset, the peak's probability is that of a two-bin softmax
        np.testing.assert_allclose(got[3], [2.5, 2.5, 1.0 / (1.0 + np.exp(-1.0))], atol=1e-6)
        np.testing.assert_array_equal(got[4], 0.0)
        np.testing.assert_allclose(got, want[0, :, 0], atol=1e-6)


def test_decode_graph_with_unknown_shapes_and_empty_inputs():
    rng = np.random.default_rng(7)
    rois = _random_detections(rng, 2, 5)
    maps = _random_heatmaps(rng, 2, 5, 6, 3)
    spec = (tf.TensorSpec([None, None, None, None, 3]), tf.TensorSpec([None, None, 4]))
    fn = tf.function(heatmaps_to_keypoints, input_signature=spec)
    for m, r in ((maps, rois), (maps[:0], rois[:0]), (maps[:, :0], rois[:, :0])):
        got = fn(m, r)
        assert got.shape == (m.shape[0], m.shape[1], 3, 3)
        np.testing.assert_allclose(got.numpy(), ref.heatmaps_to_keypoints(m, r), atol=ATOL, rtol=1e-6)
    assert fn.get_concrete_function().structured_outputs.shape.as_list() == [None, None, 3, 3]
    with pytest.raises(tf.errors.InvalidArgumentError, match="square"):
        fn(np.zeros((1, 1, 4, 5, 3), np.float32), np.zeros((1, 1, 4), np.float32))
    assert heatmaps_to_keypoints(np.zeros((0, 2, 56, 56, 17)), np.zeros((0, 2, 4))).shape == (0, 2, 17, 3)
    assert heatmaps_to_keypoints(np.zeros((1, 2, 56, 56, 0)), np.zeros((1, 2, 4))).shape == (1, 2, 0, 3)


def test_round_trip_from_one_hot_targets():
    size = 56
    rng = np.random.default_rng(11)
    rois = _random_rois(rng, 2, 12)[:, 4:]  # proper rois only
    keypoints = _random_keypoints(rng, rois, 17, size)
    keypoints[..., 2] = 2.0
    indices, valid = keypoint_heatmap_targets(keypoints, rois, size)
    assert valid.numpy().any()
    logits = 30.0 * tf.one_hot(indices, size * size)  # [B, R, K, S*S]
    maps = tf.transpose(tf.reshape(logits, [2, 8, 17, size, size]), [0, 1, 3, 4, 2])
    got = heatmaps_to_keypoints(maps, rois).numpy()
    v = valid.numpy()
    half = (rois[..., 2:] - rois[..., :2]) / size / 2.0  # [B, R, 2]: half a bin
    err = np.abs(got[..., :2] - keypoints[..., :2])
    assert np.all(err[v] <= np.broadcast_to(half[:, :, None, :], err.shape)[v] * (1 + 1e-5) + 1e-4)
    assert np.all(got[..., 2][v] > 0.999)


def test_docstring_examples():
    kp = [[[[3.0, 5.0, 2.0], [8.0, 0.0, 1.0], [1.0, 1.0, 0.0]]]]
    indices, valid = keypoint_heatmap_targets(kp, [[[0.0, 0.0, 8.0, 8.0]]], 4)
    assert indices.numpy().tolist() == [[[9, 3, 0]]] and valid.numpy().tolist() == [[[True, True, False]]]
    maps = tf.reshape(10.0 * tf.one_hot(1 * 4 + 2, 16), [1, 1, 4, 4, 1])
    got = heatmaps_to_keypoints(maps, [[[0.0, 0.0, 8.0, 8.0]]]).numpy()
    np.testing.assert_allclose(got.round(3), [[[[5.0, 3.0, 0.999]]]])


# --------------------------------------------------------------------------------------------------
# input checks

_KP = np.zeros((1, 2, 3, 3), np.float32)
_R = np.zeros((1, 2, 4), np.float32)
_H = np.zeros((1, 2, 4, 4, 3), np.float32)


@pytest.mark.parametrize(
    "call,exc,words",
    [
        (lambda: keypoint_heatmap_targets(np.zeros((2, 3, 3)), _R, 4), ValueError, "keypoints"),
        (lambda: keypoint_heatmap_targets(np.zeros((1, 2, 3, 2)), _R, 4), ValueError, "keypoints"),
        (lambda: keypoint_heatmap_targets(_KP, np.zeros((1, 2, 5)), 4), ValueError, "rois"),
        (lambda: keypoint_heatmap_targets(_KP, np.zeros((2, 4)), 4), ValueError, "rois"),
        (lambda: keypoint_heatmap_targets(_KP, np.zeros((2, 2, 4)), 4), ValueError, "batch size"),
        (lambda: keypoint_heatmap_targets(_KP, np.zeros((1, 3, 4)), 4), ValueError, "number of rois"),
        (lambda: keypoint_heatmap_targets(_KP, _R, 0), ValueError, "heatmap_size"),
        (lambda: keypoint_heatmap_targets(_KP, _R, 4.0), TypeError, "heatmap_size"),
        (lambda: keypoint_heatmap_targets(np.array([["a"]]), _R, 4), TypeError, "keypoints"),
        (lambda: heatmaps_to_keypoints(np.zeros((1, 2, 4, 4)), _R), ValueError, "heatmaps"),
        (lambda: heatmaps_to_keypoints(np.zeros((1, 2, 4, 5, 3)), _R), ValueError, "square"),
        (lambda: heatmaps_to_keypoints(np.zeros((1, 2, 0, 0, 3)), _R), ValueError, "non-empty"),
        (lambda: heatmaps_to_keypoints(_H, np.zeros((1, 2, 3))), ValueError, "rois"),
        (lambda: heatmaps_to_keypoints(_H, np.zeros((2, 4))), ValueError, "rois"),
        (lambda: heatmaps_to_keypoints(_H, np.zeros((3, 2, 4))), ValueError, "batch size"),
        (lambda: heatmaps_to_keypoints(_H, np.zeros((1, 5, 4))), ValueError, "number of rois"),
        (lambda: heatmaps_to_keypoints(np.array([["a"]]), _R), TypeError, "heatmaps"),
    ],
)
def test_input_errors_name_the_argument(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
