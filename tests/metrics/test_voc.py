"""voc_evaluate against the devkit's definitions (tests/reference/metrics_voc.py) on random sets."""

import numpy as np
import pytest

from kerasdet.metrics.voc import voc_ap, voc_evaluate
from tests.reference.metrics_voc import voc_ap_reference, voc_eval_class_reference

NUM_CLASSES = 5


def random_voc_set(seed):
    """Per-image ground truths (with difficult objects) and detections; the last class never has ground truth."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(int(rng.integers(1, 15))):
        m = int(rng.integers(0, 8))
        xy = rng.uniform(0, 80, (m, 2))
        b = np.concatenate([xy, xy + rng.uniform(1, 40, (m, 2))], axis=1)
        if seed % 2:
            b = np.round(b)  # integer boxes: exact IoU ties, and +1 pixel arithmetic matters
        lab = rng.integers(0, NUM_CLASSES - 1, m)
        diff = rng.random(m) < 0.2
        gts.append({"boxes": b, "labels": lab, "difficult": diff})
        n = int(rng.integers(0, 20))
        src = rng.integers(0, max(m, 1), n)
        if m:
            db = b[src] + rng.normal(0, 3, (n, 4))
            db[: n // 3] = b[src[: n // 3]]  # exact copies: duplicates of one object
            dl = np.where(rng.random(n) < 0.8, lab[src], rng.integers(0, NUM_CLASSES, n))
        else:  # detections on an image without objects
            xy = rng.uniform(0, 80, (n, 2))
            db = np.concatenate([xy, xy + 10], axis=1)
            dl = rng.integers(0, NUM_CLASSES, n)
        dets.append({"boxes": db, "scores": np.round(rng.random(n), 1), "labels": dl})  # tied scores
    return gts, dets


def _as_reference(gts, dets):
    g = [(x["boxes"].tolist(), x["labels"].tolist(), x["difficult"].tolist()) for x in gts]
    d = [(x["boxes"].tolist(), x["scores"].tolist(), x["labels"].tolist()) for x in dets]
    return g, d


@pytest.mark.parametrize("use_07_metric", [False, True])
@pytest.mark.parametrize("legacy_plus_one", [False, True])
def test_equals_devkit_reference_on_random_sets(use_07_metric, legacy_plus_one):
    for seed in range(40):
        gts, dets = random_voc_set(seed)
        ref_g, ref_d = _as_reference(gts, dets)
        thr = 0.5 if seed % 3 else 0.7
        out = voc_evaluate(gts, dets, iou_threshold=thr, use_07_metric=use_07_metric,
                           legacy_plus_one=legacy_plus_one, num_classes=NUM_CLASSES)
        aps = []
        for c in range(NUM_CLASSES):
            ap, rec, prec = voc_eval_class_reference(ref_g, ref_d, c, thr, use_07_metric, legacy_plus_one)
            np.testing.assert_allclose(out["recall"][c], rec, rtol=0, atol=1e-12)
            np.testing.assert_allclose(out["precision"][c], prec, rtol=0, atol=1e-12)
            if ap is None:
                assert out["AP"][c] == -1.0
            else:
                assert out["AP"][c] == pytest.approx(ap, abs=1e-12)
                aps.append(ap)
        assert out["mAP"] == pytest.approx(np.mean(aps) if aps else -1.0, abs=1e-12)


def test_batched_padded_input_equals_per_image_lists():
    gts, dets = random_voc_set(3)
    b, m, n = len(gts), max(len(g["labels"]) for g in gts), max(len(d["labels"]) for d in dets)
    t = {"boxes": -np.ones((b, m, 4)), "labels": -np.ones((b, m), int), "difficult": np.zeros((b, m), bool)}
    p = {"boxes": np.zeros((b, n + 2, 4)), "scores": np.zeros((b, n + 2)), "labels": np.full((b, n + 2), 3),
         "num_detections": np.zeros(b, int)}  # rows past num_detections are ignored whatever they hold
    for i, (g, d) in enumerate(zip(gts, dets)):
        k = len(g["labels"])
        t["boxes"][i, :k], t["labels"][i, :k], t["difficult"][i, :k] = g["boxes"], g["labels"], g["difficult"]
        k = len(d["labels"])
        p["boxes"][i, :k], p["scores"][i, :k], p["labels"][i, :k] = d["boxes"], d["scores"], d["labels"]
        p["num_detections"][i] = k
    a = voc_evaluate(gts, dets, num_classes=NUM_CLASSES)
    c = voc_evaluate(t, p, num_classes=NUM_CLASSES)
    np.testing.assert_array_equal(a["AP"], c["AP"])


def test_hand_computed_example():
    # one class, 2 objects; ranked: TP, FP (duplicate), TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    gts = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [0, 0]}]
    dets = [{"boxes": [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], "scores": [0.9, 0.8, 0.7], "labels": [0, 0, 0]}]
    out = voc_evaluate(gts, dets)
    np.testing.assert_allclose(out["precision"][0], [1, 0.5, 2 / 3])
    assert out["mAP"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    out07 = voc_evaluate(gts, dets, use_07_metric=True)
    assert out07["mAP"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # a detection on a difficult object is ignored, not a false positive
    gts[0]["difficult"] = [False, True]
    out = voc_evaluate(gts, dets)
    np.testing.assert_allclose(out["precision"][0], [1, 0.5, 0.5])
    assert out["mAP"] == pytest.approx(1.0) and out["per_class"][0]["num_gt"] == 1


def test_legacy_plus_one_changes_small_boxes():
    gts = [{"boxes": [[0, 0, 2, 2]], "labels": [0]}]
    dets = [{"boxes": [[1, 1, 3, 3]], "scores": [1.0], "labels": [0]}]
    assert voc_evaluate(gts, dets, iou_threshold=0.25)["mAP"] == 0.0  # continuous IoU 1/7
    assert voc_evaluate(gts, dets, iou_threshold=0.25, legacy_plus_one=True)["mAP"] == 1.0  # 4/14


def test_voc_ap_matches_reference_and_doc():
    rng = np.random.default_rng(0)
    for _ in range(50):
        rec = np.sort(rng.random(int(rng.integers(1, 30))))
        prec = rng.random(len(rec))
        for use07 in (False, True):
            assert voc_ap(rec, prec, use07) == pytest.approx(voc_ap_reference(rec.tolist(), prec.tolist(), use07), abs=1e-12)
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == 0.75


def test_names_and_errors():
    gts, dets = random_voc_set(4)
    out = voc_evaluate(gts, dets, num_classes=NUM_CLASSES, class_names=list("abcde"))
    assert [r["name"] for r in out["per_class"]] == list("abcde")
    assert out["per_class"][-1]["AP"] == -1.0  # no ground truth of the last class
    with pytest.raises(ValueError, match="has 2 images but `detections` has 1"):
        voc_evaluate(gts[:2], dets[:1])
    with pytest.raises(ValueError, match=r"ground_truths\[0\]\['boxes'\]"):
        voc_evaluate([{"boxes": [[1, 2, 3]], "labels": [0]}], [{"boxes": [], "scores": [], "labels": []}])
    with pytest.raises(ValueError, match="needs 'scores'"):
        voc_evaluate([{"boxes": [], "labels": []}], [{"boxes": [], "labels": []}])
    with pytest.raises(ValueError, match="num_classes"):
        voc_evaluate(gts, dets, num_classes=2)
    with pytest.raises(ValueError, match="iou_threshold"):
        voc_evaluate(gts, dets, iou_threshold=1.5)
    with pytest.raises(TypeError, match="list of per-image dicts"):
        voc_evaluate("gts", dets)


def test_labels_below_padding_are_refused():
    gts = [{"boxes": [[0, 0, 4, 4]], "labels": [-3]}]
    dets = [{"boxes": [[0, 0, 4, 4]], "scores": [0.9], "labels": [0]}]
    with pytest.raises(ValueError, match=">= -1"):
        voc_evaluate(gts, dets, num_classes=2)
