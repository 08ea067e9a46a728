"""FocalLoss against the numpy reference of Lin et al. (2017) eq. (5) and against Keras' focal loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.losses.focal import FocalLoss
from tests.losses.common import REDUCTIONS, assert_config_round_trip
from tests.reference import detection_losses as ref


def _inputs(seed=0, shape=(2, 7, 3), soft=False):
    rng = np.random.default_rng(seed)
    if soft:
        y_true = rng.uniform(size=shape)
    else:
        y_true = (rng.uniform(size=shape) < 0.3).astype(np.float64)
    y_true[0, 1] = -1.0  # an ignored anchor
    y_true[1, 2, 0] = -1.0  # one ignored entry in an anchor that still counts
    logits = rng.normal(scale=3.0, size=shape)
    logits[0, 3] = [100.0, -100.0, 30.0]  # saturated: p = 1, 0 in float32
    logits[1, 4] = [-100.0, 100.0, -30.0]
    return y_true.astype(np.float32), logits.astype(np.float32)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (None, 0.0), (0.5, 0.5), (0.9, 3.0)])
def test_matches_reference(reduction, alpha, gamma):
    y_true, logits = _inputs()
    sample_weight = np.random.default_rng(1).uniform(size=y_true.shape[:-1]).astype(np.float32)
    per_anchor, valid = ref.focal_per_anchor(y_true, logits, alpha, gamma)
    loss = FocalLoss(alpha=alpha, gamma=gamma, reduction=reduction)
    for sw in (None, sample_weight):
        got = np.asarray(loss(y_true, logits, sample_weight=sw))
        want = ref.reduce(per_anchor, valid, sw, reduction)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_soft_targets_and_probabilities():
    y_true, logits = _inputs(seed=3, soft=True)
    logits = np.clip(logits, -12, 12)  # probabilities stay away from the 1e-7 clip
    per_anchor, valid = ref.focal_per_anchor(y_true, logits)
    got = FocalLoss(reduction=None)(y_true, logits)
    np.testing.assert_allclose(got, np.where(valid, per_anchor, 0.0), rtol=1e-5, atol=1e-6)
    probs = tf.sigmoid(logits)
    got_p = FocalLoss(from_logits=False, reduction=None)(y_true, probs)
    np.testing.assert_allclose(got_p, got, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("reduction", ["sum", "sum_over_batch_size", None])
def test_equals_keras_binary_focal_crossentropy_times_classes(from_logits, reduction):
    """Keras averages over the class axis, FocalLoss sums: a factor K where the conventions coincide."""
    rng = np.random.default_rng(5)
    y_true = (rng.uniform(size=(3, 6, 4)) < 0.4).astype(np.float32)
    y_pred = rng.normal(size=(3, 6, 4)).astype(np.float32)
    if not from_logits:
        y_pred = np.asarray(tf.sigmoid(y_pred))
    sample_weight = rng.uniform(size=(3, 6)).astype(np.float32)
    for alpha, balanced in ((0.25, True), (None, False)):
        ours = FocalLoss(alpha=alpha, gamma=2.0, from_logits=from_logits, reduction=reduction)
        theirs = keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=balanced, alpha=0.25, gamma=2.0, from_logits=from_logits, reduction=reduction
        )
        got = np.asarray(ours(y_true, y_pred, sample_weight=sample_weight))
        want = 4 * np.asarray(theirs(y_true, y_pred, sample_weight=sample_weight))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("from_logits", [True, False])
def test_gradients_finite_at_saturation(gamma, from_logits):
    logits = tf.constant([[100.0, -100.0, 100.0, -100.0, 0.0, 88.0, -88.0, 17.0]])
    y_true = tf.constant([[1.0, 0.0, 0.0, 1.0, -1.0, 1.0, 0.0, 0.5]])
    y_pred = logits if from_logits else tf.sigmoid(logits)
    loss = FocalLoss(gamma=gamma, from_logits=from_logits, reduction="sum")
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss(y_true, y_pred)
    grad = tape.gradient(value, y_pred).numpy()
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(grad)), grad
    assert grad[0, 4] == 0.0  # ignored entry: no gradient
    if from_logits:
        # well-classified saturated entries: zero loss gradient; badly classified: the largest
        assert abs(grad[0, 0]) < 1e-6 and abs(grad[0, 1]) < 1e-6
        assert abs(grad[0, 2]) > 0.5 and abs(grad[0, 3]) > 0.2


def test_gradient_matches_finite_differences():
    y_true, logits = _inputs(seed=7)
    logits = np.clip(logits, -6, 6).astype(np.float64)
    x = tf.constant(logits, tf.float32)
    loss = FocalLoss(reduction="sum")
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(y_true, x)
    grad = tape.gradient(value, x).numpy()
    eps = 1e-4
    for idx in [(0, 0, 0), (0, 2, 1), (1, 5, 2), (1, 6, 0)]:
        up, down = logits.copy(), logits.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric = (ref.focal_per_anchor(y_true, up)[0].sum() - ref.focal_per_anchor(y_true, down)[0].sum()) / (2 * eps)
        np.testing.assert_allclose(grad[idx], numeric, rtol=1e-3, atol=1e-5)


def test_graph_jit_and_float16_inputs():
    y_true, logits = _inputs(seed=2)
    loss = FocalLoss()
    eager = loss(y_true, logits)
    graph = tf.function(loss)(y_true, logits)
    jit = tf.function(loss, jit_compile=True)(y_true, logits)
    np.testing.assert_allclose(graph, eager, rtol=1e-6)
    np.testing.assert_allclose(jit, eager, rtol=1e-5)
    keras.config.set_dtype_policy("mixed_float16")
    half = FocalLoss()(y_true, tf.constant(logits, tf.float16))
    assert half.dtype == tf.float32
    np.testing.assert_allclose(half, eager, rtol=1e-2)


def test_all_ignored_gives_zero():
    y_true = -np.ones((2, 3, 4), np.float32)
    logits = np.zeros((2, 3, 4), np.float32)
    for reduction in ("sum_over_batch_size", "sum"):
        assert float(FocalLoss(reduction=reduction)(y_true, logits)) == 0.0


def test_config_round_trip():
    assert_config_round_trip(FocalLoss, alpha=None, gamma=0.5, from_logits=False, reduction="sum", name="cls",
                             dtype="float32")


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"alpha": 1.5}, ValueError),
        ({"alpha": "0.25"}, ValueError),
        ({"gamma": -1.0}, ValueError),
        ({"from_logits": "yes"}, TypeError),
        ({"reduction": "average"}, ValueError),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        FocalLoss(**kwargs)


def test_bad_inputs():
    loss = FocalLoss()
    with pytest.raises(ValueError, match=r"y_true.*y_pred.*\(2, 3\).*\(2, 4\)"):
        loss(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"y_true.*\[0, 1\]"):
        loss(np.full((2, 3), 2.0), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="y_pred"):
        loss(np.zeros((2, 3)), np.array([["a"] * 3] * 2))


# -- sum_over_labels: the integer-label fast path RetinaNet trains with ----------------------------------


def _label_inputs(seed, shape=(3, 40), classes=5):
    rng = np.random.default_rng(seed)
    labels = np.where(rng.uniform(size=shape) < 0.3, rng.integers(0, classes, shape), -1).astype(np.int32)
    labels[0, :3] = [-5, classes - 1, 0]  # any negative label is background; both end classes
    logits = rng.normal(scale=4.0, size=shape + (classes,)).astype(np.float32)
    logits[1, 0, :5] = [100.0, -100.0, 30.0, -30.0, 0.0]  # saturated entries
    weights = rng.uniform(size=shape).astype(np.float32)
    weights[-1, :5] = 0.0  # ignored anchors
    return labels, logits, weights


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (None, 0.0), (0.5, 0.5), (0.9, 3.0), (0.25, 1.0)])
def test_sum_over_labels_matches_reference(alpha, gamma):
    labels, logits, weights = _label_inputs(seed=11)
    one_hot = np.zeros(logits.shape)
    rows = np.nonzero(labels >= 0)
    one_hot[rows + (labels[rows],)] = 1.0
    per_anchor, _ = ref.focal_per_anchor(one_hot, logits, alpha, gamma)
    loss = FocalLoss(alpha=alpha, gamma=gamma)  # its own reduction does not matter here
    got = loss.sum_over_labels(labels, logits, weights)
    np.testing.assert_allclose(got, (per_anchor * weights).sum(), rtol=1e-5)
    np.testing.assert_allclose(loss.sum_over_labels(labels, logits), per_anchor.sum(), rtol=1e-5)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_sum_over_labels_equals_call_in_value_and_gradient(gamma):
    labels, logits, weights = _label_inputs(seed=12, shape=(2, 300), classes=7)
    loss = FocalLoss(gamma=gamma, reduction="sum")
    x = tf.constant(logits)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        fast = tf.function(loss.sum_over_labels)(labels, x, weights)
        slow = loss(tf.one_hot(labels, 7), x, sample_weight=weights)
    np.testing.assert_allclose(fast, slow, rtol=1e-5)
    g_fast, g_slow = tape.gradient(fast, x).numpy(), tape.gradient(slow, x).numpy()
    assert np.all(np.isfinite(g_fast))
    np.testing.assert_allclose(g_fast, g_slow, rtol=1e-4, atol=1e-6)
    assert np.all(g_fast[weights == 0.0] == 0.0)


def test_sum_over_labels_under_jit_and_float16():
    labels, logits, weights = _label_inputs(seed=13)
    loss = FocalLoss()
    eager = loss.sum_over_labels(labels, logits, weights)
    jit = tf.function(loss.sum_over_labels, jit_compile=True)(labels, logits, weights)
    np.testing.assert_allclose(jit, eager, rtol=1e-5)
    half = loss.sum_over_labels(labels, tf.constant(logits, tf.float16), weights)
    assert half.dtype == tf.float32
    np.testing.assert_allclose(half, eager, rtol=1e-2)


def test_sum_over_labels_bad_inputs():
    with pytest.raises(ValueError, match="from_logits"):
        FocalLoss(from_logits=False).sum_over_labels([0], [[0.0, 1.0]])
    with pytest.raises(TypeError, match="labels.*integer"):
        FocalLoss().sum_over_labels([0.0], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="class axis"):
        FocalLoss().sum_over_labels([[0, 1]], [[0.0, 1.0]])
