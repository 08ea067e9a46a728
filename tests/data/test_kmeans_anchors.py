"""kmeans_anchors: YOLOv2's dimension clusters with the 1 - IoU distance."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.data.kmeans_anchors import faster_rcnn_anchors, kmeans_anchors, mean_best_iou, shape_iou


def test_shape_iou_is_the_centred_iou():
    got = shape_iou([[10.0, 20.0]], [[20.0, 10.0], [10.0, 20.0], [5.0, 5.0]])
    np.testing.assert_allclose(got, [[100 / 300, 1.0, 25 / 200]])


def test_recovers_separated_clusters_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[8.0, 8.0], [30.0, 15.0], [15.0, 40.0], [90.0, 90.0]])
    sizes = np.concatenate([c * rng.uniform(0.95, 1.05, (200, 2)) for c in centres])
    anchors = kmeans_anchors(sizes, 4, seed=3)
    order = np.argsort(centres.prod(1))
    np.testing.assert_allclose(anchors, centres[order], rtol=0.03)
    np.testing.assert_array_equal(anchors, kmeans_anchors(sizes, 4, seed=3))
    np.testing.assert_allclose(kmeans_anchors(sizes, 4, seed=3, stride=16), anchors / 16)
    assert mean_best_iou(sizes, anchors) > 0.9


def test_more_clusters_fit_better_and_xyxy_datasets_are_read():
    rng = np.random.default_rng(1)
    wh = np.exp(rng.normal(3, 0.7, (500, 2)))
    xy = rng.uniform(0, 100, (500, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    five, nine = kmeans_anchors(boxes, 5), kmeans_anchors(boxes, 9)
    assert five.shape == (5, 2) and nine.shape == (9, 2)
    assert mean_best_iou(wh, nine) > mean_best_iou(wh, five)
    # a tf.data of (image, targets): padding rows are skipped, boxes letterboxed to image_size
    images = tf.zeros([2, 50, 100, 3])
    targets = {"boxes": tf.constant([[[0, 0, 10, 20], [-1, -1, -1, -1]], [[5, 5, 25, 15], [0, 0, 4, 4]]], tf.float32),
               "labels": tf.constant([[0, -1], [1, 2]])}
    ds = tf.data.Dataset.from_tensor_slices((images, targets))
    got = kmeans_anchors(ds, 3, image_size=200)
    np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], [[8, 8], [20, 40], [40, 20]])


def test_faster_rcnn_anchors_scaled():
    a = faster_rcnn_anchors(600)
    np.testing.assert_allclose(np.sqrt(a.prod(1)), [128] * 3 + [256] * 3 + [512] * 3)
    np.testing.assert_allclose(a[0, 1] / a[0, 0], 0.5)


@pytest.mark.parametrize("data, k, message", [
    (np.ones((3, 2)), 5, "at least 5 boxes"),
    (np.ones((3, 3)), 2, "shape"),
    (np.full((4, 2), np.nan), 2, "NaN"),
    (np.ones((4, 2)), 0, "`k`"),
])
def test_bad_input(data, k, message):
    with pytest.raises(ValueError, match=message):
        kmeans_anchors(data, k)


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    """`kerasdet anchors`: k-means rows beside Faster R-CNN's hand-picked anchors, JSON with the anchors in grid units."""
    import json

    from kerasdet.cli import main

    out = tmp_path / "anchors.json"
    assert main(["anchors", "--images", "40", "--k", "3", "5", "--stride", "16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Faster R-CNN hand-picked" in printed and "k=5 in units of 16 px" in printed
    rows = json.loads(out.read_text())["rows"]
    assert [r["k"] for r in rows] == [9, 3, 5] and len(rows[2]["grid_units"]) == 5
    assert rows[2]["mean_iou"] > rows[1]["mean_iou"] > 0
