"""Mask helpers (tight boxes, COCO RLE, polygons) against plain-loop references and pycocotools."""

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from kerasdet.data import _masks
from tests.reference import data_masks as ref


def _random_masks(seed, count=20):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        h, w = rng.integers(1, 24, 2)
        kind = rng.integers(0, 4)
        if kind == 0:
            m = (rng.uniform(size=(h, w)) < rng.uniform(0.05, 0.95)).astype(np.uint8)
        elif kind == 1:
            m = np.zeros((h, w), np.uint8)
        elif kind == 2:
            m = np.ones((h, w), np.uint8)
        else:
            m = np.zeros((h, w), np.uint8)
            m[rng.integers(0, h), rng.integers(0, w)] = 1
        out.append(m)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tight_box_matches_reference(seed):
    for m in _random_masks(seed):
        got = _masks.mask_tight_box(m)
        want = ref.tight_box(m.tolist())
        assert (got is None) == (want is None)
        if want is not None:
            assert got.tolist() == want


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rle_counts_match_reference_and_pycocotools(seed):
    for m in _random_masks(seed):
        counts = _masks.mask_to_counts(m)
        assert counts == ref.rle_counts(m.tolist())
        ours = _masks.mask_to_rle(m)
        theirs = coco_mask.encode(np.asfortranarray(m))
        assert ours["counts"] == theirs["counts"].decode("ascii")
        assert ours["size"] == list(theirs["size"])
        np.testing.assert_array_equal(_masks.rle_to_mask(ours), m)
        np.testing.assert_array_equal(coco_mask.decode(theirs), m)


def test_rle_large_counts_and_uncompressed_form():
    m = np.zeros((300, 400), np.uint8)
    m[10:290, 5:395] = 1  # long runs: multi-character and negative deltas
    m[150, 200] = 0
    rle = _masks.mask_to_rle(m)
    assert rle["counts"] == coco_mask.encode(np.asfortranarray(m))["counts"].decode()
    np.testing.assert_array_equal(_masks.rle_to_mask(rle), m)
    raw = {"size": [300, 400], "counts": _masks.mask_to_counts(m)}
    np.testing.assert_array_equal(_masks.rle_to_mask(raw), m)


def test_rle_rejects_bad_input():
    with pytest.raises(ValueError, match="sum to"):
        _masks.rle_to_mask({"size": [2, 2], "counts": [1, 1]})
    with pytest.raises(ValueError, match="ends in the middle"):
        _masks.decode_counts("0" + chr(48 + 0x20))
    with pytest.raises(ValueError, match="invalid character"):
        _masks.decode_counts("0 1")


def test_polygons_match_pycocotools():
    rng = np.random.default_rng(3)
    for _ in range(10):
        h, w = 40, 50
        centre = rng.uniform(10, 30, 2)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
        radius = rng.uniform(4, 10, 7)
        poly = np.stack([centre[0] + radius * np.cos(angles),
                         centre[1] + radius * np.sin(angles)], 1).reshape(-1).tolist()
        ours = _masks.polygons_to_mask([poly], h, w)
        theirs = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([poly], h, w)))
        inter = np.logical_and(ours, theirs).sum()
        union = np.logical_or(ours, theirs).sum()
        assert inter / union > 0.85, inter / union


def test_polygon_pixel_centre_rule():
    square = [10, 10, 20, 10, 20, 20, 10, 20]
    m = _masks.polygons_to_mask([square], 30, 30)
    expected = np.zeros((30, 30), np.uint8)
    expected[10:20, 10:20] = 1
    np.testing.assert_array_equal(m, expected)
    theirs = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([square], 30, 30)))
    np.testing.assert_array_equal(m, theirs)


def test_polygon_parts_are_a_union():
    a = [0, 0, 10, 0, 10, 10, 0, 10]
    b = [5, 5, 15, 5, 15, 15, 5, 15]
    m = _masks.polygons_to_mask([a, b], 20, 20)
    assert m[7, 7] == 1  # the overlap is filled, not cut out
    assert m.sum() == 100 + 100 - 25
