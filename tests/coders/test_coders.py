import math

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.coders.delta_coder import DeltaCoder
from kerasdet.coders.yolo_coder import YoloCoder
from tests.reference import boxes as ref


def positive_boxes(rng, n):
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(1, 80, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


@pytest.mark.parametrize("weights", [(1, 1, 1, 1), (10, 10, 5, 5)])
def test_delta_coder_matches_reference_and_round_trips(weights):
    rng = np.random.default_rng(0)
    anchors, boxes = positive_boxes(rng, 50), positive_boxes(rng, 50)
    coder = DeltaCoder(weights)
    deltas = coder.encode(anchors, boxes).numpy()
    want = [ref.delta_encode(a, b, weights) for a, b in zip(anchors, boxes)]
    np.testing.assert_allclose(deltas, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(coder.decode(anchors, deltas).numpy(), boxes, rtol=1e-4, atol=1e-3)
    random_deltas = rng.normal(0, 3, (50, 4)).astype(np.float32)
    want = [ref.delta_decode(a, d, weights, math.log(1000 / 16)) for a, d in zip(anchors, random_deltas)]
    np.testing.assert_allclose(coder.decode(anchors, random_deltas).numpy(), want, rtol=1e-4, atol=1e-2)


def test_delta_coder_clamps_and_ssd_variances():
    coder = DeltaCoder()
    out = coder.decode([[0.0, 0.0, 16.0, 16.0]], [[0.0, 0.0, 100.0, 100.0]]).numpy()
    np.testing.assert_allclose(out[0, 2] - out[0, 0], 1000.0, rtol=1e-5)
    ssd = DeltaCoder.from_variances((0.1, 0.1, 0.2, 0.2))
    assert ssd.weights == (10.0, 10.0, 5.0, 5.0)
    assert DeltaCoder.from_config(ssd.get_config()).get_config() == ssd.get_config()
    with pytest.raises(ValueError, match="`weights`"):
        DeltaCoder((1, 1, 1))
    with pytest.raises(ValueError, match="`deltas` must have shape"):
        coder.decode([[0.0, 0.0, 1.0, 1.0]], [[1.0, 2.0]])


@pytest.mark.parametrize("units", ["cells", "pixels"])
def test_yolo_coder_matches_definition_and_inverts(units):
    rng = np.random.default_rng(1)
    stride = 32.0
    anchors = np.array([[1.5, 2.0], [3.0, 1.0]], np.float32) * (1 if units == "cells" else stride)
    raw = rng.normal(0, 1, (2, 3, 4, 2, 4)).astype(np.float32)
    coder = YoloCoder(stride, units)
    out = coder.decode(raw, anchors).numpy()
    scale = stride if units == "cells" else 1.0
    for b, y, x, a in [(0, 0, 0, 0), (1, 2, 3, 1), (0, 1, 2, 1)]:
        tx, ty, tw, th = raw[b, y, x, a]
        sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
        bx, by = (sig(tx) + x) * stride, (sig(ty) + y) * stride
        bw, bh = anchors[a, 0] * scale * math.exp(tw), anchors[a, 1] * scale * math.exp(th)
        np.testing.assert_allclose(out[b, y, x, a], [bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], rtol=1e-5)
    cells = np.broadcast_to(np.stack(np.meshgrid(np.arange(4), np.arange(3)), -1)[None, :, :, None, :], (2, 3, 4, 2, 2))
    anchor_grid = np.broadcast_to(anchors, (2, 3, 4, 2, 2))
    targets = coder.encode(out, cells.astype(np.float32), anchor_grid).numpy()
    np.testing.assert_allclose(targets[..., :2], 1 / (1 + np.exp(-raw[..., :2])), atol=1e-4)
    np.testing.assert_allclose(targets[..., 2:], raw[..., 2:], atol=1e-4)
    fn = tf.function(lambda r: coder.decode(r, anchors))
    np.testing.assert_allclose(fn(raw).numpy(), out, rtol=1e-6)


def test_yolo_coder_errors():
    with pytest.raises(ValueError, match="`anchor_units`"):
        YoloCoder(32, "grid")
    with pytest.raises(ValueError, match=r"`raw` must have shape \[B, H, W, A, 4\]"):
        YoloCoder(32).decode(np.zeros((1, 13, 13, 4)), [[1.0, 1.0]])


@pytest.mark.parametrize("which", ["reference", "boxes"])
@pytest.mark.parametrize("bad", [[5.0, 5.0, 5.0, 9.0], [5.0, 5.0, 9.0, 5.0], [0.0, 0.0, np.nan, 9.0],
                                 [0.0, -np.inf, 9.0, 9.0], [9.0, 9.0, 5.0, 5.0]])
def test_delta_encode_refuses_boxes_without_a_size_and_never_returns_nan(which, bad):
    coder = DeltaCoder(weights=(10.0, 10.0, 5.0, 5.0))
    good = np.array([[0.0, 0.0, 10.0, 10.0], [2.0, 3.0, 12.0, 9.0]], np.float32)
    broken = good.copy()
    broken[1] = bad
    args = (broken, good) if which == "reference" else (good, broken)
    with pytest.raises(ValueError, match=rf"`{which}` must hold finite boxes .* box \(1,\)"):
        coder.encode(*args)
    # inside a graph the values are unknown until run time: the pair gets deltas 0, the others are exact
    got = tf.function(coder.encode)(*args).numpy()
    np.testing.assert_array_equal(got[1], 0.0)
    np.testing.assert_allclose(got[0], coder.encode(good[:1], good[:1]).numpy()[0], atol=1e-6)
    assert np.isfinite(got).all()
