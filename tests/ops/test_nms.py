"""kerasdet.ops.nms against the numpy references of tests/reference/nms.py (exact indices)."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.ops import nms as nms_module
from kerasdet.ops.nms import batched_non_max_suppression, non_max_suppression
from tests.reference.nms import batched_nms_reference, iou_row, nms_reference, soft_nms_reference

TIED_SCORES = np.array([0.1, 0.3, 0.5, 0.7, 0.9], np.float32)


def random_boxes(rng, shape):
    """Boxes `shape + (4,)` mixing the hard cases.

    Per box, one of: continuous boxes crossing the 0..100 image border; small-integer-grid
    boxes (IoU hits 1/2, 1/3, 2/3... exactly, so the strict `>` matters); clusters of
    near-copies of one box (heavy suppression); zero-area boxes; inverted boxes (x2 < x1 or y2 < y1).
    """
    centre = rng.uniform(-20, 120, shape + (2,))
    size = rng.uniform(0.5, 60, shape + (2,))
    continuous = np.concatenate([centre - size / 2, centre + size / 2], -1)
    xy1 = rng.integers(0, 6, shape + (2,))
    grid = np.concatenate([xy1, xy1 + rng.integers(1, 4, shape + (2,))], -1).astype(np.float64)
    jitter = rng.normal(0, 2.0, shape + (4,))
    cluster = np.array([30, 30, 70, 80]) + jitter
    kind = rng.integers(0, 3, shape)[..., None]
    boxes = np.where(kind == 0, continuous, np.where(kind == 1, grid, cluster))
    special = rng.uniform(size=shape)
    zero_w = special < 0.07
    boxes[..., 2] = np.where(zero_w, boxes[..., 0], boxes[..., 2])
    inverted = (special >= 0.07) & (special < 0.14)
    boxes[..., [0, 2]] = np.where(inverted[..., None], boxes[..., [2, 0]], boxes[..., [0, 2]])
    inverted_h = (special >= 0.14) & (special < 0.18)
    boxes[..., [1, 3]] = np.where(inverted_h[..., None], boxes[..., [3, 1]], boxes[..., [1, 3]])
    return boxes.astype(np.float32)


def random_scores(rng, shape, tied):
    if tied:
        return TIED_SCORES[rng.integers(0, len(TIED_SCORES), shape)]
    return rng.uniform(size=shape).astype(np.float32)


IOU_THRESHOLDS = [0.0, 0.3, 0.5, 0.7, 1.0]
SCORE_THRESHOLDS = [-np.inf, 0.0, 0.3, 0.5, 0.95]


# ----------------------------------------------------------------------------- single set


def test_single_matches_reference_on_1200_random_cases():
    rng = np.random.default_rng(0)
    cases, n_max = 1200, 40
    all_boxes = random_boxes(rng, (cases, n_max))
    tied = rng.uniform(size=cases) < 0.5
    all_scores = np.where(tied[:, None], random_scores(rng, (cases, n_max), True), random_scores(rng, (cases, n_max), False))
    sizes = rng.integers(0, n_max + 1, cases)
    sizes[:20] = 0
    iou_thr = np.where(rng.uniform(size=cases) < 0.6, rng.choice(IOU_THRESHOLDS, cases), rng.uniform(size=cases))
    score_thr = rng.choice(SCORE_THRESHOLDS, cases)
    limits = rng.integers(-1, 12, cases)  # -1: None
    kept_total = 0
    for i in range(cases):
        n = sizes[i]
        boxes, scores = all_boxes[i, :n], all_scores[i, :n]
        limit = None if limits[i] < 0 else int(limits[i])
        got = non_max_suppression(boxes, scores, float(iou_thr[i]), float(score_thr[i]), limit).numpy()
        want = nms_reference(boxes, scores, iou_thr[i], score_thr[i], limit)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want, err_msg=f"case {i}: n={n} iou={iou_thr[i]} score={score_thr[i]}")
        kept_total += len(want)
    assert kept_total > 3000  # the cases are not trivially empty


def test_single_strict_threshold_and_tie_order():
    # IoU of these two boxes is exactly 1/2: not suppressed at 0.5 (strict), suppressed below.
    boxes = [[0, 0, 2, 1], [0, 0, 1, 1], [5, 5, 6, 6]]
    scores = [0.5, 0.5, 0.5]
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.5).numpy(), [0, 1, 2])
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.49).numpy(), [0, 2])
    # ties by lower index: box 1 is ranked first when it has the same score as box 0
    np.testing.assert_array_equal(non_max_suppression(boxes[::-1], scores, 0.49).numpy(), [0, 1])


def test_single_degenerate_boxes_never_suppress_nor_are_suppressed():
    boxes = [[0, 0, 10, 10], [10, 10, 0, 0], [0, 0, 10, 0], [0, 0, 10, 10], [0, 10, 10, 0]]
    scores = [0.5, 0.9, 0.8, 0.4, 0.7]
    # the inverted box 1 covers box 0 exactly once its corners are sorted: it must still not suppress
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.5).numpy(), [1, 2, 4, 0])


def test_single_thresholds_and_limits():
    boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [100, 100, 110, 110]]
    scores = [0.9, 0.8, 0.7]
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 1.0).numpy(), [0, 1, 2])
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.0).numpy(), [0, 2])
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.5, score_threshold=0.8).numpy(), [0])
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.5, score_threshold=0.95).numpy(), [])
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 1.0, max_output_size=2).numpy(), [0, 1])
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 1.0, max_output_size=0).numpy(), [])
    assert non_max_suppression(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


def test_single_nan_and_infinite_scores():
    boxes = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]]
    scores = np.array([np.nan, -np.inf, np.inf, 0.5], np.float32)
    np.testing.assert_array_equal(non_max_suppression(boxes, scores).numpy(), [2, 3])
    np.testing.assert_array_equal(nms_reference(boxes, scores, 0.5), [2, 3])


def test_single_best_window_first_is_exact_on_both_of_its_paths(monkeypatch):
    """With `max_output_size`, NMS first runs on the best-ranked window of boxes and falls back to every box only when
    the window cannot hold the answer: both paths equal the reference, ties, NaN scores and non-finite boxes
    included (a window of 4 x max_output_size boxes here, so that 40-box cases take both paths)."""
    monkeypatch.setattr(nms_module, "_MIN_WINDOW", 1)
    calls = []
    kernel = nms_module._nms_v5
    monkeypatch.setattr(nms_module, "_nms_v5", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    rng = np.random.default_rng(31)
    paths = {1: 0, 2: 0}
    for case in range(400):
        n = int(rng.integers(10, 41))
        boxes = random_boxes(rng, (n,))
        if case % 4 == 1:  # near-copies of one box: the window keeps too few and every box is needed
            boxes = (np.array([30, 30, 70, 80]) + rng.normal(0, 3.0, (n, 4))).astype(np.float32)
        if case % 3 == 0:
            boxes = _with_non_finite_boxes(rng, boxes)
        scores = random_scores(rng, (n,), case % 2 == 0)
        if case % 5 == 0:
            scores[rng.random(n) < 0.1] = np.nan
        limit = int(rng.integers(0, 8))
        iou_thr, score_thr = float(rng.choice(IOU_THRESHOLDS)), float(rng.choice(SCORE_THRESHOLDS))
        calls.clear()
        got = non_max_suppression(boxes, scores, iou_thr, score_thr, limit).numpy()
        want = nms_reference(boxes, scores, iou_thr, score_thr, limit)
        np.testing.assert_array_equal(got, want, err_msg=f"case {case}: n={n} limit={limit}")
        if n > 4 * limit:
            paths[len(calls)] += 1
    assert paths[1] > 50 and paths[2] > 15, paths  # window final / fallback to every box


def test_single_final_detection_case_at_default_window():
    """Thousands of candidates, few kept (a detector's last NMS): the default window, eagerly and traced."""
    rng = np.random.default_rng(32)
    signature = [tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.float32)]
    for n, limit in [(3000, 100), (3000, 5), (1500, 1000)]:
        fn = tf.function(lambda b, s: non_max_suppression(b, s, 0.5, 0.05, limit), input_signature=signature)
        boxes = _with_non_finite_boxes(rng, random_boxes(rng, (n,)) * 10)
        scores = random_scores(rng, (n,), n == 1500)
        want = nms_reference(boxes, scores, 0.5, 0.05, limit)
        assert len(want) == min(limit, len(want)) and len(want) > 0
        np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.5, 0.05, limit).numpy(), want)
        np.testing.assert_array_equal(fn(boxes, scores).numpy(), want)


def test_single_in_tf_function_with_unknown_sizes():
    fn = tf.function(
        lambda b, s: non_max_suppression(b, s, 0.4, 0.2, 5),
        input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.float32)],
    )
    rng = np.random.default_rng(1)
    for n in [0, 1, 7, 30]:
        boxes, scores = random_boxes(rng, (n,)), random_scores(rng, (n,), True)
        np.testing.assert_array_equal(fn(boxes, scores).numpy(), nms_reference(boxes, scores, 0.4, 0.2, 5))
    with pytest.raises(tf.errors.InvalidArgumentError, match="scores"):
        fn(np.zeros((3, 4), np.float32), np.zeros(2, np.float32))


def test_single_dtypes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10]])
    for dtype in [np.int32, np.float16, np.float64]:
        got = non_max_suppression(boxes.astype(dtype), np.array([0.9, 0.8], dtype), 0.5)
        np.testing.assert_array_equal(got.numpy(), [0])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: non_max_suppression(np.zeros((3, 5)), np.zeros(3)), ValueError, r"boxes.*\[N, 4\].*\(3, 5\)"),
        (lambda: non_max_suppression(np.zeros((2, 3, 4)), np.zeros(3)), ValueError, r"boxes.*\[N, 4\]"),
        (lambda: non_max_suppression(np.zeros((3, 4)), np.zeros(2)), ValueError, r"scores.*\(3, 4\).*\(2,\)"),
        (lambda: non_max_suppression(np.zeros((3, 4)), np.zeros((3, 1))), ValueError, r"scores.*\[N\]"),
        (lambda: non_max_suppression(np.zeros((3, 4)), np.array(["a"] * 3)), TypeError, "scores.*string"),
        (lambda: non_max_suppression(np.zeros((3, 4), bool), np.zeros(3)), TypeError, "boxes.*bool"),
        (lambda: non_max_suppression(np.zeros((3, 4)), np.zeros(3), 1.5), ValueError, r"iou_threshold.*\[0.0, 1.0\].*1.5"),
        (lambda: non_max_suppression(np.zeros((3, 4)), np.zeros(3), "0.5"), TypeError, "iou_threshold"),
        (lambda: non_max_suppression(np.zeros((3, 4)), np.zeros(3), 0.5, np.nan), ValueError, "score_threshold"),
        (lambda: non_max_suppression(np.zeros((3, 4)), np.zeros(3), max_output_size=-1), ValueError, "max_output_size"),
        (lambda: non_max_suppression(np.zeros((3, 4)), np.zeros(3), max_output_size=2.0), TypeError, "max_output_size"),
    ],
)
def test_single_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- batched


def assert_same_result(got, want, exact_scores=True):
    got = {k: v.numpy() for k, v in got.items()}
    assert got["boxes"].dtype == np.float32 and got["scores"].dtype == np.float32
    assert got["labels"].dtype == np.int32 and got["num_detections"].dtype == np.int32
    np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
    np.testing.assert_array_equal(got["labels"], want["labels"])
    np.testing.assert_array_equal(got["boxes"], want["boxes"])
    if exact_scores:
        np.testing.assert_array_equal(got["scores"], want["scores"])
    else:
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-5, atol=1e-6)


BATCHED_SETTINGS = [
    dict(iou_threshold=0.5, score_threshold=0.05, max_detections=20, max_detections_per_class=None),
    dict(iou_threshold=0.5, score_threshold=0.3, max_detections=15, max_detections_per_class=4),
    dict(iou_threshold=0.0, score_threshold=-np.inf, max_detections=50, max_detections_per_class=3),
    dict(iou_threshold=1.0, score_threshold=0.5, max_detections=7, max_detections_per_class=2),
    dict(iou_threshold=0.3, score_threshold=0.95, max_detections=5, max_detections_per_class=5),
    dict(iou_threshold=0.7, score_threshold=0.0, max_detections=200, max_detections_per_class=1),
]


@pytest.mark.parametrize("setting_index", range(len(BATCHED_SETTINGS)))
@pytest.mark.parametrize("per_class_boxes", [False, True])
@pytest.mark.parametrize("tied", [False, True])
def test_batched_matches_reference(setting_index, per_class_boxes, tied):
    # 40 images x 4 classes = 160 NMS problems per call: 24 calls cover ~3,800 (image, class) cases. The seed is
    # fixed per case (not `hash()`, which differs between runs for tuples holding None) and printed on failure.
    settings = BATCHED_SETTINGS[setting_index]
    seed = 1000 + 4 * setting_index + 2 * per_class_boxes + tied
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    batch, n, classes = 40, 35, 4
    boxes = random_boxes(rng, (batch, n, classes) if per_class_boxes else (batch, n))
    scores = random_scores(rng, (batch, n, classes), tied)
    got = batched_non_max_suppression(boxes, scores, **settings)
    assert_same_result(got, batched_nms_reference(boxes, scores, **settings))


@pytest.mark.parametrize("per_class_boxes", [False, True])
def test_batched_kernel_on_the_scores_only_when_its_order_is_the_definitions(per_class_boxes, monkeypatch):
    """Few candidates (a detector's case): the kernel runs directly on the scores when no two candidates of an image
    share a score and no box is inverted, and the result equals the reference; a tie or an inverted box sends the
    batch to the exact windows, which equal the reference too."""
    calls = []
    kernel = nms_module._combined_kernel
    monkeypatch.setattr(nms_module, "_combined_kernel", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    rng = np.random.default_rng(77)
    batch, n, classes = 6, 300, 5
    settings = dict(iou_threshold=0.45, score_threshold=0.9, max_detections=12, max_detections_per_class=6)
    taken = {"direct": 0, "windows": 0}
    for case in range(24):
        boxes = random_boxes(rng, (batch, n, classes) if per_class_boxes else (batch, n))
        upright = np.concatenate([np.minimum(boxes[..., :2], boxes[..., 2:]), np.maximum(boxes[..., :2], boxes[..., 2:])], -1)
        boxes = upright if case % 3 else boxes  # every third case keeps its inverted boxes
        scores = rng.uniform(size=(batch, n, classes)).astype(np.float32)
        if case % 4 == 1:  # a tie between two candidates of one image
            scores[2, 7, 1] = scores[2, 11, 3] = 0.97
        if case % 5 == 2:
            scores[0, 3, 0] = np.nan
            boxes[1, 4, ..., 0] = np.inf
        calls.clear()
        got = batched_non_max_suppression(boxes, scores, **settings)
        assert_same_result(got, batched_nms_reference(boxes, scores, **settings))
        taken["direct" if calls else "windows"] += 1
        if calls:
            assert case % 4 != 1 and case % 3 != 0, case
    assert taken["direct"] >= 6 and taken["windows"] >= 6, taken


def test_batched_scores_at_or_below_minus_one_never_meet_the_kernels_padding():
    """The kernel pads its per-class lists with score -1 and sorts that padding among the kept boxes: log-probability
    scores (below -1) must still come back as the reference has them (found by review: dummy boxes were returned)."""
    boxes = np.array([[[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]]], np.float32)
    scores = np.full((1, 4, 3), -20.0, np.float32)
    scores[0, 0, 0], scores[0, 1, 1], scores[0, 3, 2] = -2.0, -3.0, -1.0
    for threshold in (-10.0, -np.inf):
        settings = dict(score_threshold=threshold, max_detections=3)
        got = batched_non_max_suppression(boxes, scores, **settings)
        assert_same_result(got, batched_nms_reference(boxes, scores, **settings))
        np.testing.assert_array_equal(got["scores"].numpy()[0], [-1.0, -2.0, -3.0])


def test_single_max_output_size_near_the_int32_limit_with_unknown_sizes():
    fn = tf.function(lambda b, s: non_max_suppression(b, s, 0.5, max_output_size=2**31 - 1),
                     input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.float32)])
    rng = np.random.default_rng(8)
    boxes, scores = random_boxes(rng, (30,)), random_scores(rng, (30,), False)
    np.testing.assert_array_equal(fn(boxes, scores).numpy(), nms_reference(boxes, scores, 0.5))


@pytest.mark.parametrize("per_class_boxes", [False, True])
def test_batched_class_agnostic(per_class_boxes):
    rng = np.random.default_rng(3)
    batch, n, classes = 30, 30, 5
    boxes = random_boxes(rng, (batch, n, classes) if per_class_boxes else (batch, n))
    scores = random_scores(rng, (batch, n, classes), True)
    settings = dict(iou_threshold=0.5, score_threshold=0.2, max_detections=12, class_agnostic=True)
    got = batched_non_max_suppression(boxes, scores, **settings)
    assert_same_result(got, batched_nms_reference(boxes, scores, **settings))


def test_batched_with_labels():
    rng = np.random.default_rng(4)
    batch, n = 20, 30
    boxes = random_boxes(rng, (batch, n))
    scores = random_scores(rng, (batch, n), True)
    labels = rng.integers(-1, 6, (batch, n))
    for agnostic in [False, True]:
        settings = dict(iou_threshold=0.4, score_threshold=0.2, max_detections=10, max_detections_per_class=3, class_agnostic=agnostic)
        got = batched_non_max_suppression(boxes, scores, labels, **settings)
        assert_same_result(got, batched_nms_reference(boxes, scores, labels, **settings))


@pytest.mark.parametrize("window", [1, 2, 5])
def test_window_fallback_is_exact(window):
    """Rows whose first window is too small are solved again with larger windows."""
    rng = np.random.default_rng(5)
    rows, n, per_row = 60, 70, 6
    boxes = random_boxes(rng, (rows, n))  # one image per row
    scores = random_scores(rng, (rows, n), True)

    def gather(row_ids, box_idx):
        image = tf.broadcast_to(row_ids[:, None], tf.shape(box_idx))
        return tf.gather_nd(tf.constant(boxes), tf.stack([image, box_idx], -1))

    row_scores = tf.constant(scores)
    kept_idx, kept_scores = nms_module._greedy_rows(
        lambda w: tf.math.top_k(row_scores, k=w), lambda r: tf.gather(row_scores, r), tf.constant(n), rows, per_row,
        gather, 0.3, 0.05, window=window,
    )
    for r in range(rows):
        want = nms_reference(boxes[r], scores[r], 0.3, 0.05, per_row)
        got = kept_idx.numpy()[r]
        np.testing.assert_array_equal(got[: len(want)], want)
        assert (got[len(want) :] == -1).all()
        np.testing.assert_array_equal(kept_scores.numpy()[r, : len(want)], scores[r, want])


def test_batched_default_window_fallback_with_dense_clusters():
    # every box sits in one cluster: the first window (per-class cap + 8) keeps too few boxes
    rng = np.random.default_rng(6)
    batch, n, classes = 4, 400, 3
    centre = rng.uniform(0, 1000, (batch, 8, 2))[:, rng.integers(0, 8, n)]
    size = rng.uniform(40, 60, (batch, n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)
    scores = rng.uniform(size=(batch, n, classes)).astype(np.float32)
    settings = dict(iou_threshold=0.5, score_threshold=0.05, max_detections=30, max_detections_per_class=10)
    got = batched_non_max_suppression(boxes, scores, **settings)
    assert_same_result(got, batched_nms_reference(boxes, scores, **settings))


@pytest.mark.parametrize("shape", [(0, 10, 3), (2, 0, 3), (0, 0, 3), (2, 5, 0)])
def test_batched_empty_inputs(shape):
    boxes = np.zeros(shape[:2] + (4,), np.float32)
    scores = np.zeros(shape, np.float32)
    out = batched_non_max_suppression(boxes, scores, max_detections=6)
    assert out["boxes"].shape == (shape[0], 6, 4)
    assert out["labels"].shape == (shape[0], 6) and out["scores"].shape == (shape[0], 6)
    assert out["num_detections"].shape == (shape[0],)
    assert (out["num_detections"].numpy() == 0).all()
    assert (out["labels"].numpy() == -1).all() and (out["boxes"].numpy() == -1).all()


def test_batched_all_below_threshold_and_padding():
    rng = np.random.default_rng(7)
    boxes = random_boxes(rng, (3, 10))
    scores = np.full((3, 10, 2), 0.05, np.float32)  # equal to the threshold: dropped
    out = batched_non_max_suppression(boxes, scores, score_threshold=0.05, max_detections=4)
    np.testing.assert_array_equal(out["num_detections"].numpy(), [0, 0, 0])
    np.testing.assert_array_equal(out["scores"].numpy(), np.zeros((3, 4)))
    np.testing.assert_array_equal(out["labels"].numpy(), -np.ones((3, 4)))
    np.testing.assert_array_equal(out["boxes"].numpy(), -np.ones((3, 4, 4)))


def test_batched_nan_scores_are_dropped():
    boxes = np.array([[[0, 0, 10, 10], [20, 20, 30, 30]]], np.float32)
    scores = np.array([[[np.nan], [0.5]]], np.float32)
    out = batched_non_max_suppression(boxes, scores, max_detections=3)
    np.testing.assert_array_equal(out["num_detections"].numpy(), [1])
    np.testing.assert_array_equal(out["boxes"].numpy()[0, 0], [20, 20, 30, 30])


def _with_non_finite_boxes(rng, boxes):
    """A copy of `boxes` where about one box in five has a NaN, inf or -inf coordinate."""
    boxes = boxes.copy()
    flat = boxes.reshape(-1, 4)
    bad = rng.random(len(flat)) < 0.2
    flat[bad, rng.integers(0, 4, bad.sum())] = rng.choice([np.nan, np.inf, -np.inf], bad.sum())
    return boxes


def test_single_non_finite_boxes_never_suppress_nor_are_returned():
    boxes = np.array([[0, 0, 10, 10], [0, 0, np.nan, 10], [1, 1, 10, 10], [-np.inf, 0, np.inf, 50]], np.float32)
    kept = non_max_suppression(boxes, [0.8, 0.95, 0.7, 0.99], iou_threshold=0.5).numpy()
    np.testing.assert_array_equal(kept, [0])  # the inf box does not suppress box 0; box 2 overlaps box 0
    rng = np.random.default_rng(21)
    for case in range(30):
        boxes = _with_non_finite_boxes(rng, random_boxes(rng, (40,)))
        scores = random_scores(rng, (40,), case % 2 == 0)
        got = non_max_suppression(boxes, scores, iou_threshold=0.4, score_threshold=0.1).numpy()
        np.testing.assert_array_equal(got, nms_reference(boxes, scores, 0.4, 0.1), err_msg=f"case {case}")
        assert np.isfinite(boxes[got]).all()


@pytest.mark.parametrize("per_class_boxes", [False, True])
@pytest.mark.parametrize("mode", ["per_class", "class_agnostic", "soft"])
def test_batched_non_finite_boxes_never_suppress_nor_are_returned(per_class_boxes, mode):
    rng = np.random.default_rng(22 + per_class_boxes)
    batch, n, classes = 8, 30, 3
    boxes = _with_non_finite_boxes(rng, random_boxes(rng, (batch, n, classes) if per_class_boxes else (batch, n)))
    scores = random_scores(rng, (batch, n, classes), False)
    settings = dict(iou_threshold=0.5, score_threshold=0.1, max_detections=40, max_detections_per_class=10,
                    class_agnostic=mode == "class_agnostic", soft_nms_sigma=0.5 if mode == "soft" else 0.0)
    got = batched_non_max_suppression(boxes, scores, **settings)
    assert_same_result(got, batched_nms_reference(boxes, scores, **settings), exact_scores=mode != "soft")
    assert np.isfinite(got["boxes"].numpy()).all() and np.isfinite(got["scores"].numpy()).all()
    assert got["num_detections"].numpy().min() > 0


def test_batched_in_tf_function_with_unknown_sizes():
    spec_boxes = tf.TensorSpec([None, None, 4], tf.float32)
    spec_scores = tf.TensorSpec([None, None, None], tf.float32)
    settings = dict(iou_threshold=0.5, score_threshold=0.2, max_detections=9, max_detections_per_class=4)
    fn = tf.function(lambda b, s: batched_non_max_suppression(b, s, **settings), input_signature=[spec_boxes, spec_scores])
    rng = np.random.default_rng(8)
    for shape in [(3, 20, 4), (0, 5, 2), (2, 0, 2), (1, 50, 1)]:
        boxes, scores = random_boxes(rng, shape[:2]), random_scores(rng, shape, True)
        out = fn(boxes, scores)
        assert out["boxes"].shape == (shape[0], 9, 4)
        assert_same_result(out, batched_nms_reference(boxes, scores, **settings))
    with pytest.raises(tf.errors.InvalidArgumentError, match="agree"):
        fn(np.zeros((2, 5, 4), np.float32), np.zeros((2, 4, 3), np.float32))


def test_batched_soft_nms_matches_reference():
    rng = np.random.default_rng(9)
    batch, n, classes = 6, 25, 3
    centre = rng.uniform(0, 100, (batch, n, 2))
    size = rng.uniform(10, 40, (batch, n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)
    boxes[:, :3, 2] = boxes[:, :3, 0]  # a few degenerate boxes
    scores = random_scores(rng, (batch, n, classes), False)
    for sigma, agnostic in [(0.5, False), (0.1, False), (0.3, True)]:
        settings = dict(iou_threshold=0.5, score_threshold=0.3, max_detections=25, max_detections_per_class=8,
                        soft_nms_sigma=sigma, class_agnostic=agnostic)
        got = batched_non_max_suppression(boxes, scores, **settings)
        assert_same_result(got, batched_nms_reference(boxes, scores, **settings), exact_scores=False)
        rescored = got["scores"].numpy()
        assert (rescored[got["labels"].numpy() >= 0] > 0.3).all()


def test_soft_nms_reference_convention():
    # two identical boxes: no hard suppression, the second is rescored by exp(-0.5 / sigma)
    idx, scores = soft_nms_reference([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], sigma=0.5)
    np.testing.assert_array_equal(idx, [0, 1])
    np.testing.assert_allclose(scores, [0.9, 0.8 * np.exp(-1.0)], rtol=1e-6)
    out = batched_non_max_suppression(
        np.array([[[0, 0, 10, 10], [0, 0, 10, 10]]], np.float32), np.array([[[0.9], [0.8]]], np.float32),
        iou_threshold=0.5, score_threshold=0.0, soft_nms_sigma=0.5, max_detections=3,
    )
    np.testing.assert_allclose(out["scores"].numpy()[0], [0.9, 0.8 * np.exp(-1.0), 0.0], rtol=1e-6)


def test_batched_matches_combined_nms_on_untied_scores():
    """A peer check: TF's combined NMS agrees where it has no tie or degenerate-box ambiguity."""
    rng = np.random.default_rng(10)
    centre = rng.uniform(0, 1000, (4, 300, 2))
    size = rng.uniform(10, 200, (4, 300, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)
    scores = rng.uniform(size=(4, 300, 6)).astype(np.float32)
    ours = batched_non_max_suppression(boxes, scores, iou_threshold=0.5, score_threshold=0.05, max_detections=50, max_detections_per_class=20)
    peer = tf.image.combined_non_max_suppression(boxes[:, :, None], scores, 20, 50, 0.5, 0.05, clip_boxes=False)
    np.testing.assert_array_equal(ours["scores"].numpy(), peer.nmsed_scores.numpy())
    np.testing.assert_array_equal(ours["labels"].numpy(), peer.nmsed_classes.numpy().astype(np.int32))
    np.testing.assert_array_equal(ours["boxes"].numpy(), peer.nmsed_boxes.numpy())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(boxes=np.zeros((2, 5, 3)), scores=np.zeros((2, 5, 3))), ValueError, r"boxes.*\(2, 5, 3\)"),
        (dict(boxes=np.zeros((5, 4)), scores=np.zeros((2, 5, 3))), ValueError, r"boxes.*\[B, N, 4\].*\(5, 4\)"),
        (dict(boxes=np.zeros((2, 5, 4)), scores=np.zeros((2, 6, 3))), ValueError, r"agree.*\(2, 5, 4\).*\(2, 6, 3\)"),
        (dict(boxes=np.zeros((2, 5, 3, 4)), scores=np.zeros((2, 5, 2))), ValueError, "agree"),
        (dict(boxes=np.zeros((2, 5, 4)), scores=np.zeros((2, 5))), ValueError, r"scores.*\[B, N, C\]"),
        (dict(boxes=np.zeros((2, 5, 4)), scores=np.zeros((2, 5)), labels=np.zeros((2, 4), int)), ValueError, "labels"),
        (dict(boxes=np.zeros((2, 5, 4)), scores=np.zeros((2, 5)), labels=np.zeros((2, 5))), TypeError, "labels.*float"),
        (dict(boxes=np.zeros((2, 5, 4)), scores=np.zeros((2, 5, 3), bool)), TypeError, "scores.*bool"),
        (dict(boxes=np.zeros((2, 5, 4)), scores=np.zeros((2, 5, 3)), max_detections=0), ValueError, "max_detections"),
        (dict(boxes=np.zeros((2, 5, 4)), scores=np.zeros((2, 5, 3)), max_detections_per_class=1.5), TypeError, "max_detections_per_class"),
        (dict(boxes=np.zeros((2, 5, 4)), scores=np.zeros((2, 5, 3)), iou_threshold=-0.1), ValueError, "iou_threshold"),
        (dict(boxes=np.zeros((2, 5, 4)), scores=np.zeros((2, 5, 3)), soft_nms_sigma=-1.0), ValueError, "soft_nms_sigma"),
        (dict(boxes=np.zeros((2, 5, 4)), scores=np.zeros((2, 5, 3)), class_agnostic="yes"), TypeError, "class_agnostic"),
    ],
)
def test_batched_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        batched_non_max_suppression(**kwargs)


def test_reference_iou_is_the_float32_formula():
    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1], [3, 3, 3, 5], [1, 1, 0, 0]], np.float32)
    np.testing.assert_array_equal(iou_row(boxes[0], boxes), np.array([1, 0.5, 0, 0], np.float32))


@pytest.mark.parametrize("tied", [False, True])
def test_batched_sparse_candidates_match_reference(tied):
    """Few scores above the threshold (a detector's case): the candidates-only path is exact too,
    with ties, rows that need larger windows (dense clusters with many candidates) and empty rows."""
    rng = np.random.default_rng(8)
    batch, n, classes = 3, 900, 12
    boxes = random_boxes(rng, (batch, n))
    scores = np.where(rng.uniform(size=(batch, n, classes)) < 0.002, random_scores(rng, (batch, n, classes), tied), 0.0)
    scores[1, :, 3] = np.where(rng.uniform(size=n) < 0.15, random_scores(rng, (n,), tied), 0.0)  # a crowded row
    scores[2, :, 5] = 0.0  # an empty row
    scores = scores.astype(np.float32)
    assert (scores > 0.05).mean() <= 1 / nms_module._SPARSE_FRACTION
    for per_class in (None, 4):
        settings = dict(iou_threshold=0.5, score_threshold=0.05, max_detections=40, max_detections_per_class=per_class)
        got = batched_non_max_suppression(boxes, scores, **settings)
        assert_same_result(got, batched_nms_reference(boxes, scores, **settings))
        got = tf.function(lambda b, s: batched_non_max_suppression(b, s, **settings))(boxes, scores)
        assert_same_result(got, batched_nms_reference(boxes, scores, **settings))


def test_kernels_carry_no_device_pin_unless_asked_and_a_pin_changes_no_result():
    rng = np.random.default_rng(12)
    xy = rng.uniform(0, 80, (300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(4, 40, (300, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    classes = rng.uniform(0, 1, (2, 300, 4)).astype(np.float32)

    def traced_devices():
        graph = tf.function(lambda b, s: non_max_suppression(b, s, 0.5, max_output_size=50)).get_concrete_function(
            tf.constant(boxes), tf.constant(scores)).graph
        return {op.device for op in graph.get_operations()}

    assert traced_devices() == {""}
    free = (non_max_suppression(boxes, scores, 0.5, max_output_size=50).numpy(),
            batched_non_max_suppression(np.stack([boxes, boxes]), classes, max_detections=40)["boxes"].numpy())
    try:
        nms_module.set_kernel_device("/device:CPU:0")
        assert any("CPU" in d for d in traced_devices())
        pinned = (non_max_suppression(boxes, scores, 0.5, max_output_size=50).numpy(),
                  batched_non_max_suppression(np.stack([boxes, boxes]), classes, max_detections=40)["boxes"].numpy())
    finally:
        nms_module.set_kernel_device(None)
    np.testing.assert_array_equal(free[0], pinned[0])
    np.testing.assert_array_equal(free[1], pinned[1])
    np.testing.assert_array_equal(free[0], nms_reference(boxes, scores, 0.5)[:50])
    with pytest.raises(TypeError, match="device"):
        nms_module.set_kernel_device(0)
