"""The harness's output comparison: detections whose scores tie may swap places between two graphs, nothing else."""

import numpy as np
import pytest

from tests.models.harness import _flat_close


def _detections():
    return {"boxes": np.array([[[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 3, 3]]], np.float32),
            "scores": np.array([[0.9, 0.5, 0.5000001]], np.float32),
            "labels": np.array([[1, 2, 0]], np.int32), "num_detections": np.array([3], np.int32)}


def _swapped(out, order=(0, 2, 1)):
    return {k: (v[:, list(order)] if k != "num_detections" else v) for k, v in out.items()}


def test_tied_detections_may_swap():
    expected = _detections()
    _flat_close(_swapped(expected), expected, 1e-4, "tie")
    _flat_close({k: v[0] for k, v in _swapped(expected).items() if k != "num_detections"},
                {k: v[0] for k, v in expected.items() if k != "num_detections"}, 1e-4, "one image")


def test_detections_of_different_scores_may_not_swap():
    expected = _detections()
    expected["scores"] = np.array([[0.9, 0.5, 0.4]], np.float32)
    with pytest.raises(AssertionError):
        _flat_close(_swapped(expected), expected, 1e-4, "no tie")


def test_a_tie_does_not_hide_a_wrong_box():
    expected = _detections()
    got = _swapped(expected)
    got["boxes"] = got["boxes"].copy()
    got["boxes"][0, 1] += 3.0
    with pytest.raises(AssertionError):
        _flat_close(got, expected, 1e-4, "tie with a moved box")
