import numpy as np
import pytest
import tensorflow as tf

from kerasdet.ops import boxes as ops
from tests.reference import boxes as ref


def random_boxes(rng, n, lo=-20.0, hi=120.0, degenerate_fraction=0.2):
    """Boxes crossing and beyond a 100x100 image, some zero-area and some inverted."""
    xy = rng.uniform(lo, hi, (n, 2))
    wh = rng.uniform(0.0, 60.0, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    k = int(n * degenerate_fraction)
    if k:
        idx = rng.choice(n, k, replace=False)
        boxes[idx[: k // 2], 2] = boxes[idx[: k // 2], 0]  # zero width
        inv = idx[k // 2 :]
        boxes[inv, 2], boxes[inv, 0] = boxes[inv, 0].copy(), boxes[inv, 2].copy()  # inverted
    return boxes.astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_iou_and_giou_match_reference(seed):
    rng = np.random.default_rng(seed)
    a = random_boxes(rng, 23)
    b = random_boxes(rng, 17)
    b[:3] = a[:3]  # identical boxes
    np.testing.assert_allclose(ops.iou(a, b).numpy(), ref.pairwise(ref.iou_pair, a, b), atol=1e-6)
    np.testing.assert_allclose(ops.giou(a, b).numpy(), ref.pairwise(ref.giou_pair, a, b), atol=1e-5)
    np.testing.assert_allclose(ops.area(a).numpy(), [ref.area(x) for x in a], rtol=1e-6)


def test_iou_batched_aligned_and_empty():
    rng = np.random.default_rng(7)
    a = random_boxes(rng, 12).reshape(3, 4, 4)
    b = random_boxes(rng, 15).reshape(3, 5, 4)
    out = ops.iou(a, b).numpy()
    assert out.shape == (3, 4, 5)
    for i in range(3):
        np.testing.assert_allclose(out[i], ref.pairwise(ref.iou_pair, a[i], b[i]), atol=1e-6)
    aligned = ops.iou(a, a[:, ::-1], aligned=True).numpy()
    want = [[ref.iou_pair(x, y) for x, y in zip(a[i], a[i, ::-1])] for i in range(3)]
    np.testing.assert_allclose(aligned, want, atol=1e-6)
    assert ops.iou(np.zeros((0, 4)), b[0]).shape == (0, 5)
    assert ops.iou(np.zeros((2, 0, 4)), np.zeros((2, 3, 4))).shape == (2, 0, 3)


def test_iou_zero_union_is_zero_and_in_graph():
    z = np.array([[5.0, 5.0, 5.0, 5.0]], np.float32)
    assert ops.iou(z, z).numpy()[0, 0] == 0.0
    assert ops.giou(z, z).numpy()[0, 0] == 0.0
    fn = tf.function(lambda x, y: ops.iou(x, y), input_signature=[tf.TensorSpec([None, 4])] * 2)
    assert fn(z, z).shape == (1, 1)


def test_clip_and_convert():
    b = np.array([[-5.0, 2.0, 120.0, 40.0], [10, 10, 20, 20]], np.float32)
    np.testing.assert_allclose(ops.clip_boxes(b, (32, 100)).numpy(), [[0, 2, 100, 32], [10, 10, 20, 20]])
    per_image = ops.clip_boxes(np.stack([b, b]), np.array([[32.0, 100.0], [15.0, 15.0]])[:, None, :]).numpy()
    np.testing.assert_allclose(per_image[1], [[0, 2, 15, 15], [10, 10, 15, 15]])
    c = ops.convert_format(b, "xyxy", "center_xywh")
    np.testing.assert_allclose(ops.convert_format(c, "center_xywh", "xyxy").numpy(), b, atol=1e-5)
    np.testing.assert_allclose(ops.convert_format(b, "xyxy", "xywh").numpy()[1], [10, 10, 10, 10])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ops.iou(np.zeros((3, 5)), np.zeros((2, 4))), r"`boxes1` must have shape \[\.\.\., 4\]"),
        (lambda: ops.iou(np.zeros((3, 4)), "boxes"), r"`boxes2` must hold numbers"),
        (lambda: ops.area(np.zeros((3, 3))), r"`boxes`.*got shape \(3, 3\)"),
        (lambda: ops.clip_boxes(np.zeros((3, 4)), (1, 2, 3)), r"`image_shape`"),
        (lambda: ops.convert_format(np.zeros((3, 4)), "xyxy", "cxcy"), r"`target` must be one of"),
        (lambda: ops.convert_format(np.zeros((3, 4)), "xyxy", "rel_xyxy"), r"needs `height` and `width`"),
    ],
)
def test_bad_input_errors_name_the_argument(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_aligned_must_be_a_bool():
    from kerasdet.ops import giou, iou

    boxes = np.array([[0.0, 0.0, 2.0, 2.0]], np.float32)
    for fn in (iou, giou):
        with pytest.raises(TypeError, match="aligned"):
            fn(boxes, boxes, aligned="no")


def test_sizes_without_meaning_are_refused():
    from kerasdet.ops import clip_boxes, convert_format

    boxes = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    for shape in ((-1, 10), (float("nan"), 10), (10, float("inf"))):
        with pytest.raises(ValueError, match="image_shape"):
            clip_boxes(boxes, shape)
    assert clip_boxes(boxes, (0, 0)).numpy().tolist() == [[0, 0, 0, 0]]  # an empty image clips everything to 0
    with pytest.raises(ValueError, match="height"):
        convert_format(boxes, "xyxy", "rel_xyxy", height=0, width=10)
    with pytest.raises(ValueError, match="width"):
        convert_format(boxes, "rel_xyxy", "xyxy", height=10, width=float("nan"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_boxes_have_area_0_iou_0_giou_minus_1_and_zero_gradients(bad):
    good = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]], np.float32)
    broken = good.copy()
    broken[1, 2] = bad  # box 1 of the second set has a non-finite x2
    np.testing.assert_array_equal(ops.area(broken).numpy(), [100.0, 0.0])
    want_iou = ops.iou(good, good).numpy()
    want_iou[:, 1] = 0.0
    np.testing.assert_allclose(ops.iou(good, broken).numpy(), want_iou, rtol=1e-6)
    want_giou = ops.giou(good, good).numpy()
    want_giou[:, 1] = -1.0
    np.testing.assert_allclose(ops.giou(good, broken).numpy(), want_giou, rtol=1e-6)
    np.testing.assert_allclose(ops.giou(broken, good, aligned=True).numpy(), [1.0, -1.0], rtol=1e-6)
    np.testing.assert_allclose(ops.iou(broken, good, aligned=True).numpy(), [1.0, 0.0], rtol=1e-6)
    # [-inf, -inf, inf, inf] is not "everything": no box
    np.testing.assert_array_equal(ops.area([[-np.inf, -np.inf, np.inf, np.inf]]).numpy(), [0.0])
    variable = tf.Variable(broken)
    with tf.GradientTape(persistent=True) as tape:
        pairs = [tf.reduce_sum(f(variable, good, aligned=True)) for f in (ops.iou, ops.giou)]
        losses = pairs + [tf.reduce_sum(ops.area(variable))]
    for loss in losses:
        grad = tape.gradient(loss, variable).numpy()
        assert np.isfinite(grad).all() and np.isfinite(loss.numpy())
        np.testing.assert_array_equal(grad[1], 0.0)


def test_non_finite_boxes_match_the_reference_among_random_boxes():
    rng = np.random.default_rng(31)
    a, b = random_boxes(rng, 40), random_boxes(rng, 30)
    for boxes in (a, b):
        boxes[rng.choice(len(boxes), 6, replace=False), rng.integers(0, 4, 6)] = [np.nan, np.inf, -np.inf] * 2
    np.testing.assert_allclose(ops.iou(a, b).numpy(), ref.pairwise(ref.iou_pair, a, b), atol=1e-6)
    np.testing.assert_allclose(ops.giou(a, b).numpy(), ref.pairwise(ref.giou_pair, a, b), atol=1e-5)
    np.testing.assert_allclose(ops.area(a).numpy(), [ref.area(box) for box in a], rtol=1e-6)
