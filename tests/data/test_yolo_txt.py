"""YOLO txt reader/writer: round trips, normalised centre boxes, layouts."""

import os

import cv2
import numpy as np
import pytest

from kerasdet.data import synthetic
from kerasdet.data.yolo_txt import YoloTxtDataset, label_path_for, write_yolo_txt
from tests.reference import data_masks as ref


def test_round_trip(tmp_path, shapes_samples):
    names = synthetic.class_names()
    paths = write_yolo_txt(shapes_samples, tmp_path / "y", names, split="train")
    assert (tmp_path / "y" / "classes.txt").read_text().split() == names
    ds = YoloTxtDataset(tmp_path / "y", "train")  # names read from classes.txt
    assert ds.class_names == names and ds.image_paths == [os.path.realpath(p) for p in paths]
    for i, (image, targets) in enumerate(shapes_samples):
        got_image, got = ds.load(i)
        np.testing.assert_array_equal(got_image, image)
        np.testing.assert_allclose(got["boxes"], targets["boxes"], atol=1e-3)
        np.testing.assert_array_equal(got["labels"], targets["labels"])


def test_written_lines_are_normalised_centre_boxes(tmp_path, shapes_samples):
    image, targets = shapes_samples[0]
    write_yolo_txt([(image, targets)], tmp_path / "y", synthetic.class_names())
    lines = (tmp_path / "y" / "labels" / "000001.txt").read_text().splitlines()
    assert len(lines) == len(targets["labels"])
    h, w = image.shape[:2]
    for line, box, label in zip(lines, targets["boxes"], targets["labels"]):
        fields = line.split()
        assert int(fields[0]) == label
        np.testing.assert_allclose([float(v) for v in fields[1:]],
                                   ref.yolo_line_values(box.tolist(), w, h), atol=1e-7)


def test_reading_hand_written_files(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.jpg"), np.zeros((50, 100, 3), np.uint8))
    cv2.imwrite(str(root / "images" / "b.png"), np.zeros((50, 100, 4), np.uint8))  # RGBA
    cv2.imwrite(str(root / "images" / "c.png"), np.zeros((50, 100, 3), np.uint8))
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 1.0 1.0\n\n0 0.1 0.2 0.2 0.4\n")
    (root / "labels" / "b.txt").write_text("")  # empty: no objects; c has no file at all
    (root / "obj.names").write_text("cat\ndog\n")
    ds = YoloTxtDataset(root)
    assert ds.class_names == ["cat", "dog"] and ds.image_ids == ["a", "b", "c"]
    _, t = ds.load(0)
    np.testing.assert_allclose(t["boxes"], [[0, 0, 100, 50], [0, 0, 20, 20]], atol=1e-4)
    np.testing.assert_array_equal(t["labels"], [1, 0])
    for i in (1, 2):
        image, t = ds.load(i)
        assert image.shape == (50, 100, 3) and t["boxes"].shape == (0, 4)
    (root / "list.txt").write_text("images/c.png\nimages/a.jpg\n")
    listed = YoloTxtDataset(root, class_names=["cat", "dog"], image_list=root / "list.txt")
    assert listed.image_ids == ["images/c", "images/a"]
    assert listed.load(1)[1]["labels"].tolist() == [1, 0]


def test_label_path_rule():
    assert label_path_for(os.path.join("r", "images", "train", "x.jpg")) == os.path.join(
        "r", "labels", "train", "x.txt")
    assert label_path_for(os.path.join("images", "a", "images", "x.png")) == os.path.join(
        "images", "a", "labels", "x.txt")
    assert label_path_for(os.path.join("flat", "x.png")) == os.path.join("flat", "x.txt")


def test_argument_errors(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="class_names"):
        YoloTxtDataset(tmp_path, class_names="cat")


def test_writers_take_a_tf_dataset(tmp_path):
    ds = synthetic.dataset("val", 3, image_size=64, with_masks=False, with_keypoints=False)
    paths = write_yolo_txt(ds, tmp_path / "y", synthetic.class_names())
    assert len(paths) == 3
    back = YoloTxtDataset(tmp_path / "y")
    for (image, targets), i in zip(ds, range(3)):
        got_image, got = back.load(i)
        np.testing.assert_array_equal(got_image, image.numpy())
        np.testing.assert_allclose(got["boxes"], targets["boxes"].numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="unbatch first"):
        write_yolo_txt(ds.padded_batch(2), tmp_path / "z", synthetic.class_names())
