"""coco_evaluate against pycocotools (the reference everyone trusts) on random sets full of edge cases."""

import copy
import time

import numpy as np
import pytest

from kerasdet.metrics.coco import DETECTION_STATS, KEYPOINT_STATS, coco_evaluate, format_summary
from tests.metrics.random_sets import SIGMAS, make_set, pycocotools_eval

pytest.importorskip("pycocotools")


def _check_against_pycocotools(gt, dets, iou_type, sigmas=None):
    ref_stats, ref_eval = pycocotools_eval(gt, dets, iou_type, sigmas)
    gt_before, dets_before = copy.deepcopy(gt), copy.deepcopy(dets)
    out = coco_evaluate(gt, dets, iou_type, kpt_oks_sigmas=sigmas)
    assert gt == gt_before and dets == dets_before, "inputs must not be modified"
    names = KEYPOINT_STATS if iou_type == "keypoints" else DETECTION_STATS
    np.testing.assert_allclose([out[k] for k in names], ref_stats, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["precision"], ref_eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["recall"], ref_eval["recall"], rtol=0, atol=1e-12)
    return out, ref_eval


@pytest.mark.parametrize("seeds", [range(0, 25), range(25, 50)])
def test_bbox_equals_pycocotools_on_50_random_sets(seeds):
    for seed in seeds:
        gt, dets = make_set(seed, "bbox")
        out, ref = _check_against_pycocotools(gt, dets, "bbox")
        # the per-class table reads the same precision array
        p = ref["precision"][:, :, :, 0, -1]
        for k, row in enumerate(out["per_class"]):
            defined = p[:, :, k][p[:, :, k] > -1]
            assert row["AP"] == pytest.approx(defined.mean() if defined.size else -1.0, abs=1e-12)


@pytest.mark.parametrize("seeds", [range(0, 25), range(25, 50)])
def test_segm_equals_pycocotools_on_50_random_sets(seeds):
    for seed in seeds:
        gt, dets = make_set(seed, "segm")
        _check_against_pycocotools(gt, dets, "segm")


def test_segm_results_without_boxes_use_the_mask_area():
    # loadRes rule: when the first result has no bbox, areas (and boxes) come from the masks
    for seed in range(50, 56):
        gt, dets = make_set(seed, "segm")
        for d in dets:
            d.pop("bbox", None)
        _check_against_pycocotools(gt, dets, "segm")


def test_bbox_evaluation_of_mask_only_results_uses_their_mask_boxes():
    gt, dets = make_set(60, "segm")
    for d in dets:
        d.pop("bbox", None)
    _check_against_pycocotools(gt, dets, "bbox")


def test_keypoints_equal_pycocotools_on_random_sets():
    for seed in range(20):
        gt, dets = make_set(seed, "keypoints")
        _check_against_pycocotools(gt, dets, "keypoints", SIGMAS)


def test_keypoint_results_with_boxes_use_the_box_area():
    gt, dets = make_set(70, "keypoints")
    rng = np.random.default_rng(0)
    for d in dets:
        d["bbox"] = rng.uniform(1, 60, 4).round(1).tolist()
    _check_against_pycocotools(gt, dets, "keypoints", SIGMAS)


def test_bbox_evaluation_of_keypoint_only_results_uses_their_extent():
    gt, dets = make_set(71, "keypoints")
    _check_against_pycocotools(gt, dets, "bbox")


def test_sigmas_from_the_category_and_coco_default():
    gt, dets = make_set(3, "keypoints")
    expected = coco_evaluate(gt, dets, "keypoints", kpt_oks_sigmas=SIGMAS)
    by_cat = coco_evaluate(gt, dets, "keypoints", kpt_oks_sigmas={c["id"]: SIGMAS for c in gt["categories"]})
    gt2 = copy.deepcopy(gt)
    for c in gt2["categories"]:
        c["kpt_oks_sigmas"] = SIGMAS.tolist()
    from_field = coco_evaluate(gt2, dets, "keypoints")
    for k in KEYPOINT_STATS:
        assert by_cat[k] == expected[k] == from_field[k]
    with pytest.raises(ValueError, match="no OKS sigmas|kpt_oks_sigmas"):
        coco_evaluate(gt, dets, "keypoints")  # 5 keypoints: no default
    # a box-only category beside the keypoint ones is left out of the keypoint evaluation
    gt3 = copy.deepcopy(gt2)
    gt3["categories"].append({"id": 999, "name": "box only"})
    gt3["annotations"].append({"id": 10**6, "image_id": gt3["images"][0]["id"], "category_id": 999,
                               "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0})
    mixed = coco_evaluate(gt3, dets, "keypoints")
    assert [mixed[k] for k in KEYPOINT_STATS] == [from_field[k] for k in KEYPOINT_STATS]
    assert mixed["per_class"][-1]["AP"] == -1.0


def test_categories_with_different_keypoint_counts():
    # pycocotools has one sigma array: check each category on its own against it
    gt, dets = make_set(8, "keypoints")
    a, b = gt["categories"][0]["id"], gt["categories"][1]["id"]
    for item in gt["annotations"] + dets:
        if item["category_id"] == b:
            item["keypoints"] = item["keypoints"][:9]  # 3 keypoints
            if "num_keypoints" in item:
                item["num_keypoints"] = int(np.sum(np.asarray(item["keypoints"][2::3]) > 0))
        elif item["category_id"] != a:
            item["category_id"] = a
    gt["categories"] = gt["categories"][:2]
    out = coco_evaluate(gt, dets, "keypoints", kpt_oks_sigmas={a: SIGMAS, b: SIGMAS[:3]})
    for cid, sig in ((a, SIGMAS), (b, SIGMAS[:3])):
        sub_gt = dict(gt, categories=[c for c in gt["categories"] if c["id"] == cid],
                      annotations=[x for x in gt["annotations"] if x["category_id"] == cid])
        sub_dets = [d for d in dets if d["category_id"] == cid]
        ref_stats, ref_eval = pycocotools_eval(sub_gt, sub_dets, "keypoints", sig)
        row = next(r for r in out["per_class"] if r["category_id"] == cid)
        assert row["AP"] == pytest.approx(ref_stats[0], abs=1e-12)
        assert row["AP50"] == pytest.approx(ref_stats[1], abs=1e-12)


def test_doc_example_and_perfect_detections():
    gt = {"images": [{"id": 1, "height": 100, "width": 100}], "categories": [{"id": 1, "name": "cat"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    out = coco_evaluate(gt, dets)
    one = 1 / (1 + np.spacing(1))  # pycocotools' precision tp / (tp + fp + eps)
    assert out["AP"] == one and out["APs"] == one and out["APm"] == -1.0 and out["AR1"] == 1.0
    assert out["per_class"] == [{"category_id": 1, "name": "cat", "AP": pytest.approx(1, abs=1e-15),
                                 "AP50": pytest.approx(1, abs=1e-15), "AP75": pytest.approx(1, abs=1e-15), "num_gt": 1}]
    assert "AP50" in format_summary(out) and "cat" in format_summary(out)


def test_no_detections_and_no_ground_truth():
    gt, _ = make_set(1, "bbox")
    out = coco_evaluate(gt, [])
    assert out["AP"] == 0.0 and out["AR100"] == 0.0  # ground truth exists, nothing found
    empty = dict(gt, annotations=[])
    _, dets = make_set(1, "bbox")
    out = coco_evaluate(empty, dets)
    assert all(out[k] == -1.0 for k in DETECTION_STATS)  # undefined everywhere
    assert all(row["AP"] == -1.0 for row in out["per_class"])


def test_columnar_detections_equal_the_list_form():
    gt, dets = make_set(5, "bbox")
    cols = {"image_id": np.array([d["image_id"] for d in dets]), "category_id": np.array([d["category_id"] for d in dets]),
            "score": np.array([d["score"] for d in dets]), "bbox": np.array([d["bbox"] for d in dets])}
    a, b = coco_evaluate(gt, dets), coco_evaluate(gt, cols)
    assert [a[k] for k in DETECTION_STATS] == [b[k] for k in DETECTION_STATS]


def test_string_ids_and_missing_optional_fields():
    gt = {"images": [{"id": "b"}, {"id": "a"}], "categories": [{"id": 7}],
          "annotations": [{"image_id": "a", "category_id": 7, "bbox": [0, 0, 10, 10]},
                          {"image_id": "b", "category_id": 7, "bbox": [5, 5, 50, 50]}]}
    dets = [{"image_id": "a", "category_id": 7, "bbox": [0, 0, 10, 10], "score": 0.5},
            {"image_id": "b", "category_id": 7, "bbox": [60, 60, 5, 5], "score": 0.7}]
    out = coco_evaluate(gt, dets)
    assert out["AR100"] == pytest.approx(0.5) and out["per_class"][0]["name"] == "7"


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda gt, d: d.append({"image_id": 99999, "category_id": gt["categories"][0]["id"], "bbox": [0, 0, 1, 1], "score": 1}),
         ValueError, "image_id 99999"),
        (lambda gt, d: d[0].update(category_id=12345), ValueError, "category_id 12345"),
        (lambda gt, d: d[1].update(bbox=[1, 2, 3]), ValueError, r"detections\[1\]\['bbox'\]"),
        (lambda gt, d: d[2].pop("score"), ValueError, r"detections\[2\]` has no 'score'"),
        (lambda gt, d: d[0].update(score=float("nan")), ValueError, "finite"),
        (lambda gt, d: gt["images"].append(dict(gt["images"][0])), ValueError, "more than once"),
        (lambda gt, d: gt.pop("categories"), ValueError, "'categories'"),
    ],
)
def test_errors_name_the_entry(mutate, error, match):
    gt, dets = make_set(2, "bbox")
    mutate(gt, dets)
    with pytest.raises(error, match=match):
        coco_evaluate(gt, dets)


def test_argument_type_errors():
    gt, dets = make_set(2, "bbox")
    with pytest.raises(ValueError, match="iou_type"):
        coco_evaluate(gt, dets, iou_type="mask")
    with pytest.raises(TypeError, match="`gt` must be"):
        coco_evaluate([gt], dets)
    with pytest.raises(TypeError, match="detections"):
        coco_evaluate(gt, "results.json")
    seg_gt = copy.deepcopy(gt)
    del seg_gt["images"][0]["height"]
    with pytest.raises(ValueError, match="height"):
        coco_evaluate(seg_gt, dets, iou_type="segm")


@pytest.mark.slow
def test_bbox_at_least_5x_faster_than_pycocotools_on_1000_images():
    from benchmarks.coco_eval import make_set as bench_set, ours_case, pycocotools_case

    gt, dets = bench_set(1000)
    ours, peer = ours_case(gt, dets), pycocotools_case(gt, dets)
    np.testing.assert_allclose(ours(), peer(), atol=1e-6)
    t0 = time.perf_counter()
    ours()
    t1 = time.perf_counter()
    peer()
    t2 = time.perf_counter()
    assert (t2 - t1) / (t1 - t0) >= 5.0
