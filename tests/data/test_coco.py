"""COCO json reader/writer: round trips, label mapping, masks, crowd, tf.data form."""

import contextlib
import io
import json

import cv2
import numpy as np
import pytest
import tensorflow as tf
from pycocotools.coco import COCO

from kerasdet.data import synthetic
from kerasdet.data.coco import CocoDataset, write_coco
from kerasdet.data.dataset_error import DatasetError


def _write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def test_round_trip_keeps_everything(tmp_path, shapes_samples):
    ann_file = tmp_path / "ann.json"
    write_coco(shapes_samples, ann_file, synthetic.categories(), image_dir=tmp_path / "img")
    ds = CocoDataset(ann_file, tmp_path / "img")
    assert len(ds) == len(shapes_samples)
    assert ds.class_names == synthetic.class_names()
    assert ds.target_keys == ["boxes", "labels", "masks", "keypoints"]
    for i, (image, targets) in enumerate(shapes_samples):
        got_image, got = ds.load(i)
        np.testing.assert_array_equal(got_image, image)
        for key in ds.target_keys:
            np.testing.assert_array_equal(got[key], targets[key], err_msg=key)


def test_written_file_loads_in_pycocotools(tmp_path, shapes_samples):
    ann_file = tmp_path / "ann.json"
    data = write_coco(shapes_samples, ann_file, synthetic.categories())
    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO(str(ann_file))
    assert api.getImgIds() == list(range(1, len(shapes_samples) + 1))
    k = 0
    for i, (_, targets) in enumerate(shapes_samples):
        anns = api.loadAnns(api.getAnnIds(imgIds=[i + 1]))
        assert [a["category_id"] - 1 for a in anns] == targets["labels"].tolist()
        for a, mask in zip(anns, targets["masks"]):
            np.testing.assert_array_equal(api.annToMask(a), mask)
            assert a["area"] == mask.sum()
            k += 1
    assert k == len(data["annotations"]) > 0


def _custom_file(tmp_path, annotations, categories=None, images=None, name="custom.json"):
    root = tmp_path / "images"
    if images is None:
        _write_png(root / "a.png", np.full((20, 30, 3), 50, np.uint8))
        _write_png(root / "b.png", np.full((20, 30), 90, np.uint8))  # grayscale file
        images = [{"id": 10, "file_name": "a.png", "height": 20, "width": 30},
                  {"id": 4, "file_name": "b.png", "height": 20, "width": 30}]
    if categories is None:
        categories = [{"id": 90, "name": "zebra"}, {"id": 3, "name": "cat"},
                      {"id": 7, "name": "dog"}]
    data = {"images": images, "annotations": annotations, "categories": categories}
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path, root


def test_category_ids_map_to_contiguous_labels_and_back(tmp_path):
    anns = [{"id": 1, "image_id": 10, "category_id": 90, "bbox": [1, 2, 3, 4], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [5, 5, 10, 10], "iscrowd": 0},
            {"id": 3, "image_id": 4, "category_id": 7, "bbox": [0, 0, 30, 20], "iscrowd": 0}]
    path, root = _custom_file(tmp_path, anns)
    ds = CocoDataset(path, root)
    assert ds.class_names == ["cat", "dog", "zebra"]  # sorted by id 3, 7, 90
    assert ds.category_ids == [3, 7, 90]
    assert not ds.with_masks and not ds.with_keypoints
    image, t = ds.load(0)
    assert image.shape == (20, 30, 3)
    np.testing.assert_array_equal(t["labels"], [2, 0])
    np.testing.assert_array_equal(t["boxes"], [[1, 2, 4, 6], [5, 5, 15, 15]])
    gray, t = ds.load(1)
    assert gray.shape == (20, 30, 3) and np.all(gray == 90)
    np.testing.assert_array_equal(ds.labels_to_category_ids([2, 0, -1]), [90, 3, -1])
    np.testing.assert_array_equal(ds.category_ids_to_labels([[7, 90]]), [[1, 2]])
    with pytest.raises(ValueError, match=r"\[5\]"):
        ds.category_ids_to_labels([5])
    # writing back with the dataset's categories keeps the original ids
    out = write_coco((ds.load(i) for i in range(len(ds))), tmp_path / "out.json",
                     ds.categories)
    assert sorted({a["category_id"] for a in out["annotations"]}) == [3, 7, 90]
    again = CocoDataset(tmp_path / "out.json", root)
    assert again.category_ids == [3, 7, 90]


def test_polygons_crowd_and_clipping(tmp_path):
    square = [[2, 2, 12, 2, 12, 10, 2, 10]]
    anns = [
        {"id": 1, "image_id": 10, "category_id": 3, "bbox": [2, 2, 10, 8], "iscrowd": 0,
         "segmentation": square},
        {"id": 2, "image_id": 10, "category_id": 7, "bbox": [0, 0, 30, 20], "iscrowd": 1,
         "segmentation": {"size": [20, 30], "counts": [0, 600]}},
        {"id": 3, "image_id": 10, "category_id": 3, "bbox": [25, 15, 10, 10], "iscrowd": 0,
         "segmentation": [[25, 15, 35, 15, 35, 25, 25, 25]]},  # sticks out: clipped
    ]
    path, root = _custom_file(tmp_path, anns)
    ds = CocoDataset(path, root)
    assert ds.with_masks and ds.target_keys == ["boxes", "labels", "masks"]
    _, t = ds.load(0)
    np.testing.assert_array_equal(t["labels"], [0, 0])  # crowd left out
    np.testing.assert_array_equal(t["boxes"], [[2, 2, 12, 10], [25, 15, 30, 20]])
    assert t["masks"][0].sum() == 80 and t["masks"][0][2:10, 2:12].all()
    crowd = CocoDataset(path, root, keep_crowd=True)
    _, t = crowd.load(0)
    np.testing.assert_array_equal(t["iscrowd"], [0, 1, 0])
    assert t["masks"][1].all()
    no_masks = CocoDataset(path, root, with_masks=False)
    assert "masks" not in no_masks.load(0)[1]
    _, empty = ds.load(1)  # image without objects kept
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 20, 30)


def test_tf_dataset_matches_load(tmp_path, shapes_samples):
    ann_file = tmp_path / "ann.json"
    write_coco(shapes_samples, ann_file, synthetic.categories(), image_dir=tmp_path / "img")
    ds = CocoDataset(ann_file, tmp_path / "img")
    tfds = ds.dataset()
    spec = tfds.element_spec
    assert spec[0].dtype == tf.uint8 and spec[0].shape.as_list() == [None, None, 3]
    assert spec[1]["keypoints"].shape.as_list() == [None, 5, 3]
    for i, (image, targets) in enumerate(tfds):
        want_image, want = ds.load(i)
        np.testing.assert_array_equal(image.numpy(), want_image)
        for key in want:
            np.testing.assert_array_equal(targets[key].numpy(), want[key])
    shuffled = [int(t["labels"].shape[0]) for _, t in ds.dataset(shuffle=True, seed=1)]
    assert sorted(shuffled) == sorted(int(t["labels"].shape[0]) for _, t in shapes_samples)


def test_undecodable_image_in_tf_data_names_its_path(tmp_path):
    anns = [{"id": 1, "image_id": 10, "category_id": 3, "bbox": [1, 1, 3, 3]}]
    path, root = _custom_file(tmp_path, anns)
    (root / "a.png").write_bytes(b"this is not a png")
    ds = CocoDataset(path, root)
    with pytest.raises(DatasetError, match=r"a\.png: cannot decode image"):
        ds.load(0)
    with pytest.raises(tf.errors.OpError, match=r"a\.png: cannot decode image"):
        for _ in ds.dataset():
            pass


def test_writer_argument_errors(tmp_path, shapes_samples):
    with pytest.raises(ValueError, match="categories"):
        write_coco(shapes_samples, None, [])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        write_coco(shapes_samples, None, ["a", "b"])
    with pytest.raises(TypeError, match="single pair"):
        write_coco(shapes_samples[0], None, synthetic.categories())
