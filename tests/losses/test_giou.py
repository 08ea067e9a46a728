"""GIoULoss against the numpy GIoU reference, with padding rows and degenerate boxes."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.losses.giou import GIoULoss
from tests.losses.common import REDUCTIONS, assert_config_round_trip, assert_graph_jit_and_float16_inputs
from tests.reference import detection_losses as ref


def _boxes(rng, shape):
    xy = rng.uniform(0, 50, size=shape + (2,))
    wh = rng.uniform(0, 30, size=shape + (2,))
    return np.concatenate([xy, xy + wh], axis=-1)


def _inputs(seed=0, shape=(2, 8)):
    rng = np.random.default_rng(seed)
    y_true = _boxes(rng, shape)
    y_pred = y_true + rng.normal(scale=6.0, size=shape + (4,))
    y_true[0, 0] = -1.0  # padding
    y_pred[0, 1] = y_true[0, 1]  # identical boxes
    y_true[0, 2] = [5.0, 5.0, 5.0, 9.0]  # zero-area target
    y_pred[0, 3] = [7.0, 7.0, 7.0, 7.0]  # a point
    y_true[1, 0], y_pred[1, 0] = [0, 0, 10, 10], [30, 30, 40, 40]  # disjoint
    y_pred[1, 1] = [20.0, 20.0, 10.0, 10.0]  # inverted prediction (zero area)
    y_true[1, 2], y_pred[1, 2] = [3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]  # identical points
    return y_true.astype(np.float32), y_pred.astype(np.float32)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_reference(reduction):
    y_true, y_pred = _inputs()
    sample_weight = np.random.default_rng(1).uniform(size=y_true.shape[:-1]).astype(np.float32)
    per_box, valid = ref.giou_loss_per_box(y_true, y_pred)
    loss = GIoULoss(reduction=reduction)
    for sw in (None, sample_weight):
        got = np.asarray(loss(y_true, y_pred, sample_weight=sw))
        np.testing.assert_allclose(got, ref.reduce(per_box, valid, sw, reduction), rtol=1e-5, atol=1e-6)


def test_known_values():
    per_box = GIoULoss(reduction=None)(
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [-1.0, -1.0, -1.0, -1.0]],
        [[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 0.0, 30.0, 10.0], [0.0, 0.0, 5.0, 5.0]],
    )
    np.testing.assert_allclose(per_box, [0.0, 1.0 - 1.0 / 3.0, 1.0 + 1.0 / 3.0, 0.0], rtol=1e-6)


def test_gradients_finite_at_degenerate_boxes():
    y_true, y_pred = _inputs(seed=2)
    x = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = GIoULoss(reduction="sum")(y_true, x)
    grad = tape.gradient(value, x).numpy()
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[0, 0], 0.0)  # padding row
    np.testing.assert_allclose(grad[0, 1], 0.0, atol=1e-6)  # identical boxes: a minimum
    assert np.abs(grad[1, 0]).sum() > 0  # disjoint boxes still get a gradient (the GIoU point)


def test_graph_jit_and_float16_inputs():
    y_true, y_pred = _inputs(seed=3)
    assert_graph_jit_and_float16_inputs(GIoULoss(), y_true, y_pred)


def test_config_round_trip():
    assert_config_round_trip(GIoULoss, reduction="sum", name="giou", dtype="float32")


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"y_true.*\[\.\.\., 4\].*\(2, 5\)"):
        GIoULoss()(np.zeros((2, 5)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"y_true.*y_pred.*\(2, 4\).*\(3, 4\)"):
        GIoULoss()(np.zeros((2, 4)), np.zeros((3, 4)))
