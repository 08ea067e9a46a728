"""kerasdet.metrics._rle against pycocotools.mask (the COCO reference toolbox), on random masks and polygons."""

import numpy as np
import pytest

from kerasdet.metrics import _rle

mask_utils = pytest.importorskip("pycocotools.mask")


def _ref_encode(masks):
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def _random_masks(rng, trial):
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    n = int(rng.integers(1, 6))
    masks = (rng.random((n, h, w)) < rng.random()).astype(np.uint8)
    if trial % 5 == 0:
        masks[0] = 0  # empty
    if trial % 7 == 0:
        masks[-1] = 1  # full
    return masks


@pytest.mark.parametrize("seed", range(4))
def test_mask_functions_match_pycocotools(seed):
    rng = np.random.default_rng(seed)
    for trial in range(40):
        masks = _random_masks(rng, trial)
        ref, ours = _ref_encode(masks), _rle.encode(masks)
        assert [r["counts"].decode() for r in ref] == [o["counts"] for o in ours]
        assert all(list(r["size"]) == o["size"] for r, o in zip(ref, ours))
        np.testing.assert_array_equal(_rle.decode(ours), masks)
        np.testing.assert_array_equal(_rle.decode(ref), masks)  # bytes counts read too
        np.testing.assert_array_equal(_rle.area(ours), mask_utils.area(ref))
        np.testing.assert_array_equal(_rle.to_bbox(ours), mask_utils.toBbox(ref))
        crowd = rng.random(len(masks)) < 0.5
        np.testing.assert_allclose(
            _rle.iou(ours, ours[::-1], crowd), mask_utils.iou(ref, ref[::-1], list(crowd.astype(np.uint8))), rtol=0, atol=1e-15
        )
        assert _rle.merge(ours)["counts"] == mask_utils.merge(ref)["counts"].decode()
        assert _rle.merge(ours, intersect=True)["counts"] == mask_utils.merge(ref, 1)["counts"].decode()


def test_large_counts_and_negative_deltas_round_trip():
    # long runs need several characters and the deltas (count minus the count two before) go negative
    masks = np.zeros((3, 1500, 1300), np.uint8)
    masks[0, 10:1400, 3:1200] = 1
    masks[1, :, 700:] = 1
    masks[2, 5, 5] = 1
    ref, ours = _ref_encode(masks), _rle.encode(masks)
    assert [r["counts"].decode() for r in ref] == [o["counts"] for o in ours]
    np.testing.assert_array_equal(_rle.area(ref), masks.sum(axis=(1, 2)))


@pytest.mark.parametrize("seed", range(3))
def test_polygons_match_pycocotools(seed):
    rng = np.random.default_rng(100 + seed)
    for trial in range(150):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        polys = []
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(3, 10))
            pts = rng.uniform(-6, max(h, w) + 6, 2 * k)  # also beyond the image
            if trial % 3 == 0:
                pts = np.round(pts)  # vertices on pixel corners
            if trial % 5 == 0:
                pts = np.round(pts * 2) / 2
            if trial % 7 == 0:
                pts[2:4] = pts[0:2]  # a repeated vertex
            polys.append(pts.tolist())
        ref = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
        ours = _rle.from_polygons(polys, h, w)
        assert ours["counts"] == ref["counts"].decode(), (h, w, polys)


def test_boxes_match_pycocotools():
    rng = np.random.default_rng(7)
    boxes = np.concatenate([rng.uniform(-3, 30, (40, 2)), rng.uniform(0, 25, (40, 2))], axis=1)
    boxes[:10] = np.round(boxes[:10])
    ref = mask_utils.frPyObjects(boxes, 25, 20)
    ours = _rle.from_bboxes(boxes, 25, 20)
    assert [r["counts"].decode() for r in ref] == [o["counts"] for o in ours]


def test_uncompressed_counts_with_empty_runs_decode_like_pycocotools():
    rle = {"size": [4, 3], "counts": [2, 3, 0, 2, 1, 0, 4]}  # zero-length runs inside
    ref = mask_utils.frPyObjects(rle, 4, 3)
    np.testing.assert_array_equal(_rle.decode(rle), mask_utils.decode(ref))
    assert _rle.area(rle) == mask_utils.area(ref)


def test_segmentation_reader_follows_ann_to_rle():
    # polygons (merged), boxes (a first part of 4 numbers), uncompressed and compressed RLE
    h, w = 30, 40
    segs = [
        [[1, 1, 20, 2, 15, 25], [22, 3, 35, 3, 35, 20, 22, 20]],
        [[2, 3, 10, 12], [3, 3, 9, 3, 9, 9]],  # a 2-vertex part encloses nothing
        {"size": [h, w], "counts": [100, 50, h * w - 150]},
        {"size": [h, w], "counts": _rle.encode(np.eye(h, w, dtype=np.uint8))["counts"]},
    ]
    runs = _rle.runs_from_segmentations(segs, [h] * 4, [w] * 4)
    ours = _rle.rles_from_runs(runs)
    expected = [
        mask_utils.merge(mask_utils.frPyObjects(segs[0], h, w)),
        mask_utils.merge(mask_utils.frPyObjects([[2, 3, 10, 12, 10, 12], [3, 3, 9, 3, 9, 9]], h, w)),
        mask_utils.frPyObjects(segs[2], h, w),
        segs[3],
    ]
    for o, e in zip(ours, expected):
        np.testing.assert_array_equal(_rle.decode(o), mask_utils.decode(e) if isinstance(e["counts"], bytes) else _rle.decode(e))


def test_doc_example():
    m = np.zeros((4, 5), np.uint8)
    m[1:3, 1:4] = 1
    rle = _rle.encode(m)
    assert rle == {"size": [4, 5], "counts": "5220003"}
    assert _rle.area(rle) == 6
    assert _rle.decode({"size": [2, 2], "counts": [1, 3]}).tolist() == [[0, 1], [1, 1]]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="counts.*sum to 5"):
        _rle.decode({"size": [2, 3], "counts": [2, 3]})
    with pytest.raises(ValueError, match="non-negative"):
        _rle.decode({"size": [2, 2], "counts": [5, -1]})
    with pytest.raises(ValueError, match="characters outside"):
        _rle.decode({"size": [2, 2], "counts": "0~"})
    with pytest.raises(ValueError, match="middle of a number"):
        _rle.decode({"size": [2, 2], "counts": "P"})
    with pytest.raises(ValueError, match=r"\[H, W\] or \[N, H, W\]"):
        _rle.encode(np.zeros(5))
    with pytest.raises(TypeError, match="RLE dict"):
        _rle.area("abc")
    with pytest.raises(ValueError, match="size"):
        _rle.iou([_rle.encode(np.zeros((2, 2)))], [_rle.encode(np.zeros((3, 2)))])
    with pytest.raises(ValueError, match="shape \\[N, 4\\]"):
        _rle.from_bboxes([1, 2, 3], 4, 4)
