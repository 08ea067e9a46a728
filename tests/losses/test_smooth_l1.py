"""SmoothL1Loss against the numpy reference of Fast R-CNN eq. (3) and against keras.losses.Huber."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.losses.smooth_l1 import DEFAULT_BETA, SmoothL1Loss
from tests.losses.common import REDUCTIONS, assert_config_round_trip, assert_graph_jit_and_float16_inputs
from tests.reference import detection_losses as ref


def _inputs(seed=0, shape=(2, 9, 4)):
    rng = np.random.default_rng(seed)
    y_true = rng.normal(size=shape)
    y_pred = y_true + rng.normal(scale=0.3, size=shape)
    y_pred[0, 0] = y_true[0, 0]  # exact match: zero loss, zero gradient
    y_pred[1, 1, 0] = y_true[1, 1, 0] + 1.0 / 9.0  # on the transition point
    return y_true.astype(np.float32), y_pred.astype(np.float32)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [DEFAULT_BETA, 1.0, 0.1])
def test_matches_reference(reduction, beta):
    y_true, y_pred = _inputs()
    sample_weight = (np.random.default_rng(1).uniform(size=y_true.shape[:-1]) < 0.5).astype(np.float32)
    per_box = ref.smooth_l1_per_box(y_true, y_pred, beta)
    valid = np.ones(per_box.shape, bool)
    loss = SmoothL1Loss(beta=beta, reduction=reduction)
    for sw in (None, sample_weight):
        got = np.asarray(loss(y_true, y_pred, sample_weight=sw))
        np.testing.assert_allclose(got, ref.reduce(per_box, valid, sw, reduction), rtol=1e-5, atol=1e-6)


def test_default_beta_is_one_ninth():
    assert SmoothL1Loss().beta == pytest.approx(1.0 / 9.0)


def test_beta_zero_is_l1():
    y_true, y_pred = _inputs(seed=2)
    got = SmoothL1Loss(beta=0.0, reduction=None)(y_true, y_pred)
    np.testing.assert_allclose(got, np.abs(y_pred - y_true).sum(-1), rtol=1e-6)


@pytest.mark.parametrize("beta", [1.0, 0.5, DEFAULT_BETA])
def test_equals_huber_over_beta(beta):
    y_true, y_pred = _inputs(seed=3)
    ours = SmoothL1Loss(beta=beta, reduction=None)(y_true, y_pred)
    huber = keras.losses.Huber(delta=beta, reduction=None)(y_true, y_pred)  # mean over the last axis
    np.testing.assert_allclose(ours, 4 * np.asarray(huber) / beta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("beta", [0.0, DEFAULT_BETA, 1.0])
def test_gradients_finite_and_bounded(beta):
    y_true, y_pred = _inputs(seed=4)
    y_pred[0, 2] = y_true[0, 2] + [1e6, -1e6, 0.0, 1e-9]
    x = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = SmoothL1Loss(beta=beta, reduction="sum")(y_true, x)
    grad = tape.gradient(value, x).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() <= 1.0 + 1e-6
    np.testing.assert_array_equal(grad[0, 0], 0.0)  # exact matches
    np.testing.assert_allclose(grad[0, 2, :2], [1.0, -1.0])  # the linear part has slope 1


def test_graph_jit_and_float16_inputs():
    y_true, y_pred = _inputs(seed=5)
    assert_graph_jit_and_float16_inputs(SmoothL1Loss(), y_true, y_pred)


def test_config_round_trip():
    assert_config_round_trip(SmoothL1Loss, beta=1.0, reduction="sum", name="box", dtype="float32")


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="beta"):
        SmoothL1Loss(beta=-0.1)
    with pytest.raises(ValueError, match="beta"):
        SmoothL1Loss(beta=float("nan"))
    with pytest.raises(ValueError, match=r"y_true.*y_pred.*\(2, 4\).*\(2, 3\)"):
        SmoothL1Loss()(np.zeros((2, 4)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="y_true"):
        SmoothL1Loss()(np.array([["a"] * 4]), np.zeros((1, 4)))
