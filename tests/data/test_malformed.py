"""Malformed inputs: every case raises DatasetError naming the file, the entry and the problem."""

import json
import os

import cv2
import numpy as np
import pytest

from kerasdet.data.coco import CocoDataset
from kerasdet.data.dataset_error import DatasetError
from kerasdet.data.voc import VocDataset
from kerasdet.data.yolo_txt import YoloTxtDataset

# ------------------------------------------------------------------------------------ COCO


def _coco_base():
    return {"images": [{"id": 1, "file_name": "a.png", "height": 10, "width": 12}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}],
            "categories": [{"id": 1, "name": "thing", "keypoints": ["p", "q"]}]}


def _coco(tmp, edit=None, text=None):
    root = tmp / "img"
    root.mkdir(exist_ok=True)
    cv2.imwrite(str(root / "a.png"), np.zeros((10, 12, 3), np.uint8))
    data = _coco_base()
    if edit is not None:
        edit(data)
    path = tmp / "ann.json"
    path.write_text(text if text is not None else json.dumps(data))
    return lambda: CocoDataset(path, root), path


def _set(path, value):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return edit


_DELETE = object()
ANN = ("annotations", 0)

COCO_CASES = [
    # (id, edit or raw text, entry, problem)
    ("invalid-json", '{"images": [', None, "invalid JSON at line 1"),
    ("missing-images", _set(("images",), _DELETE), None, "missing top-level key 'images'"),
    ("unknown-image-id", _set(ANN + ("image_id",), 99), "annotations[0] (id 5)",
     "image_id 99 is not in 'images'"),
    ("unknown-category", _set(ANN + ("category_id",), 4), "annotations[0] (id 5)",
     "category_id 4 is not in 'categories'"),
    ("bbox-length", _set(ANN + ("bbox",), [1, 2, 3]), "annotations[0] (id 5)",
     "bbox must be a list [x, y, w, h]"),
    ("bbox-negative", _set(ANN + ("bbox",), [1, 2, -3, 4]), "annotations[0] (id 5)",
     "negative size"),
    ("bbox-not-number", _set(ANN + ("bbox",), [1, "x", 3, 4]), "annotations[0] (id 5)",
     "bbox value must be a number"),
    ("bbox-outside", _set(ANN + ("bbox",), [50, 50, 3, 4]), "annotations[0] (id 5)",
     "lies outside"),
    ("duplicate-image", lambda d: d["images"].append(dict(d["images"][0])), "images[1] (id 1)",
     "duplicate image id 1"),
    ("duplicate-category", lambda d: d["categories"].append({"id": 1, "name": "x"}),
     "categories[1]", "duplicate category id 1"),
    ("rle-size", _set(ANN + ("segmentation",), {"size": [5, 5], "counts": [25]}),
     "annotations[0] (id 5)", "RLE size [5, 5] differs from the image size [10, 12]"),
    ("rle-counts", _set(ANN + ("segmentation",), {"size": [10, 12], "counts": [3, 4]}),
     "annotations[0] (id 5)", "RLE counts sum to 7, expected 120"),
    ("odd-polygon", _set(ANN + ("segmentation",), [[1, 1, 2, 2, 3]]), "annotations[0] (id 5)",
     "segmentation polygon 0 must be a flat list"),
    ("keypoint-length", _set(ANN + ("keypoints",), [1, 1, 2]), "annotations[0] (id 5)",
     "keypoints must be a flat list of 6 numbers"),
    ("iscrowd", _set(ANN + ("iscrowd",), 2), "annotations[0] (id 5)", "iscrowd must be 0 or 1"),
    ("path-escape", _set(("images", 0, "file_name"), "../../secret.png"), "images[0] (id 1)",
     "leaves the dataset root"),
    ("path-absolute", _set(("images", 0, "file_name"), "/etc/passwd"), "images[0] (id 1)",
     "is absolute"),
    ("image-size", _set(("images", 0, "width"), 0), "images[0] (id 1)",
     "'width' must be a positive int"),
    ("no-categories", _set(("categories",), []), None, "'categories' is empty"),
]


@pytest.mark.parametrize("case", COCO_CASES, ids=[c[0] for c in COCO_CASES])
def test_coco_malformed(tmp_path, case):
    _, change, entry, problem = case
    make, path = (_coco(tmp_path, text=change) if isinstance(change, str)
                  else _coco(tmp_path, edit=change))
    with pytest.raises(DatasetError) as info:
        make()
    _check(info.value, path, entry, problem)


def _check(error, path, entry, problem):
    message = str(error)
    assert message.startswith(str(path)), message
    assert problem in message, message
    if entry is not None:
        assert f": {entry}: " in message, message
    assert isinstance(error, ValueError)


def test_coco_image_problems_name_the_image(tmp_path):
    make, _ = _coco(tmp_path)
    ds = make()
    image = tmp_path / "img" / "a.png"
    cv2.imwrite(str(image), np.zeros((11, 12, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"a\.png: image is 11x12 \(HxW\) but .*ann\.json "
                                           r"declares 10x12"):
        ds.load(0)
    image.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetError, match=r"a\.png: cannot decode image"):
        ds.load(0)
    os.remove(image)
    with pytest.raises(DatasetError, match=r"a\.png: image file not found"):
        ds.load(0)


def test_symlink_leaving_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside.png"
    cv2.imwrite(str(outside), np.zeros((10, 12, 3), np.uint8))
    make, path = _coco(tmp_path, edit=_set(("images", 0, "file_name"), "link.png"))
    os.symlink(outside, tmp_path / "img" / "link.png")
    with pytest.raises(DatasetError, match="leaves the dataset root"):
        make()


# ------------------------------------------------------------------------------------- VOC

GOOD_OBJECT = ("<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
               "<ymax>5</ymax></bndbox></object>")
BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        "<annotation><filename>&lol2;</filename></annotation>")


def _voc_xml(body):
    return f"<annotation><filename>a.png</filename>{body}</annotation>"


VOC_CASES = [
    ("malformed-xml", "<annotation><object>", None, "malformed XML"),
    ("entity-bomb", BOMB, None, "unsafe XML refused"),
    ("wrong-root", "<root/>", None, "root element must be <annotation>"),
    ("unknown-class", _voc_xml(GOOD_OBJECT.replace("dog", "dragon")), "object[0] (dragon)",
     "unknown class name 'dragon'"),
    ("missing-name", _voc_xml("<object><bndbox/></object>"), "object[0]", "missing <name>"),
    ("missing-bndbox", _voc_xml("<object><name>dog</name></object>"), "object[0] (dog)",
     "missing <bndbox>"),
    ("missing-xmax", _voc_xml(GOOD_OBJECT.replace("<xmax>5</xmax>", "")), "object[0] (dog)",
     "missing <xmax>"),
    ("inverted-box", _voc_xml(GOOD_OBJECT.replace("<xmax>5</xmax>", "<xmax>0</xmax>")),
     "object[0] (dog)", "xmax < xmin"),
    ("not-a-number", _voc_xml(GOOD_OBJECT.replace("<ymin>1</ymin>", "<ymin>one</ymin>")),
     "object[0] (dog)", "<ymin> must be a number, got 'one'"),
    ("difficult-flag", _voc_xml(GOOD_OBJECT.replace("</name>", "</name><difficult>2</difficult>")),
     "object[0] (dog)", "<difficult> must be 0 or 1"),
    ("filename-escape", _voc_xml("").replace("a.png", "../../x.png"), "<filename>",
     "leaves the dataset root"),
]


@pytest.mark.parametrize("case", VOC_CASES, ids=[c[0] for c in VOC_CASES])
def test_voc_malformed(tmp_path, case):
    _, text, entry, problem = case
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text("a\n")
    path = tmp_path / "Annotations" / "a.xml"
    path.write_text(text)
    with pytest.raises(DatasetError) as info:
        VocDataset(tmp_path)
    _check(info.value, path, entry, problem)


def test_voc_missing_files(tmp_path):
    with pytest.raises(DatasetError) as info:
        VocDataset(tmp_path, "val")
    _check(info.value, tmp_path / "ImageSets" / "Main" / "val.txt", None,
           "image set file not found")
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("a\n../../../etc/passwd\n")
    with pytest.raises(DatasetError) as info:
        VocDataset(tmp_path, "val")
    _check(info.value, tmp_path / "Annotations" / "a.xml", None, "annotation file not found")
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("../../../etc/passwd\n")
    with pytest.raises(DatasetError) as info:
        VocDataset(tmp_path, "val")
    _check(info.value, tmp_path / "ImageSets" / "Main" / "val.txt", "line 1",
           "leaves the dataset root")


# ------------------------------------------------------------------------------------ YOLO

YOLO_CASES = [
    ("field-count", "0 0.5 0.5 0.2\n", "line 1", "expected 5 values"),
    ("segment-line", "0 0.1 0.1 0.2 0.1 0.2 0.2\n", "line 1", "polygon/segment lines are not"),
    ("class-range", "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n", "line 2",
     "class index 7 out of range [0, 2)"),
    ("class-not-int", "dog 0.5 0.5 0.2 0.2\n", "line 1", "class index must be an integer"),
    ("pixels", "\n1 50 40 20 10\n", "line 2", "normalised to [0, 1]"),
    ("not-number", "1 0.5 abc 0.2 0.2\n", "line 1", "box values must be numbers"),
    ("zero-size", "1 0.5 0.5 0.0 0.2\n", "line 1", "width and height must be > 0"),
    ("nan", "1 0.5 nan 0.2 0.2\n", "line 1", "must be finite"),
]


@pytest.mark.parametrize("case", YOLO_CASES, ids=[c[0] for c in YOLO_CASES])
def test_yolo_malformed(tmp_path, case):
    _, text, entry, problem = case
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    path = tmp_path / "labels" / "a.txt"
    path.write_text(text)
    with pytest.raises(DatasetError) as info:
        YoloTxtDataset(tmp_path, class_names=["cat", "dog"])
    _check(info.value, os.path.realpath(path), entry, problem)


def test_yolo_missing_names_and_escaping_list(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError) as info:
        YoloTxtDataset(tmp_path)
    _check(info.value, tmp_path / "classes.txt", None, "class names file not found")
    (tmp_path / "list.txt").write_text("images/a.png\n../b.png\n")
    with pytest.raises(DatasetError) as info:
        YoloTxtDataset(tmp_path, class_names=["a"], image_list=tmp_path / "list.txt")
    _check(info.value, tmp_path / "list.txt", "line 2", "leaves the dataset root")
    with pytest.raises(DatasetError) as info:
        YoloTxtDataset(tmp_path, split="val", class_names=["a"])
    _check(info.value, tmp_path / "images" / "val", None, "image folder not found")
