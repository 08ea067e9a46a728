"""Annotated images: the best detection's caption is drawn on top, and captions stay inside the image."""

import numpy as np

from kerasdet.visualize import draw_detections, palette


def test_the_highest_score_is_drawn_last_whatever_the_order():
    image = np.zeros((80, 120, 3), np.uint8)
    boxes = [[20, 30, 90, 70], [20, 30, 90, 70]]
    colours = palette(2)
    for scores, best in (([0.9, 0.3], 0), ([0.3, 0.9], 1)):
        out = draw_detections(image, boxes, [0, 1], scores, ["a", "b"])
        # the caption's filled background above the box's top-left corner is the best one's colour
        area = out[18:30, 20:40]
        counts = [int(np.all(area == c, axis=-1).sum()) for c in colours]
        assert counts[best] > 100 and counts[1 - best] == 0, (scores, counts)


def test_captions_stay_inside_the_image():
    image = np.zeros((60, 100, 3), np.uint8)
    colour = (255, 0, 0)
    # a box at the top-right corner: the caption cannot go above it or to its right
    out = draw_detections(image, [[90, 0, 100, 20]], [0], [0.87], ["a_long_class_name"], colour=colour)
    red = np.all(out == colour, axis=-1)
    columns = np.flatnonzero(red.any(axis=0))
    assert red[:12].sum() > 100  # the caption's background, inside the image's top rows
    assert columns.min() < 60 and columns.max() == 99  # moved left into the image, ending at its right edge


def test_boxes_that_are_not_finite_or_huge_and_unknown_labels():
    image = np.zeros((40, 40, 3), np.uint8)
    out = draw_detections(image, [[np.nan, 1, 5, 5], [1, 1, 1e12, 30]], [0, 1], [0.5, 0.6], ["a", "b"])
    assert out.shape == (40, 40, 3) and out.any()
    import pytest

    with pytest.raises(ValueError, match="class_names"):
        draw_detections(image, [[1, 1, 5, 5]], [3], [0.5], ["a", "b"])


def test_scores_must_match_the_boxes():
    import pytest

    with pytest.raises(ValueError, match="scores"):
        draw_detections(np.zeros((20, 20, 3), np.uint8), [[1, 1, 5, 5], [2, 2, 6, 6]], [0, 0], [0.5])
