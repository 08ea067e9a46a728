"""The dataset writers never overwrite earlier output (issue "Nothing silent"): default ids continue after what a
folder holds, an existing file is refused unless overwrite=True, and illegal boxes and labels are refused."""

import numpy as np
import pytest

from kerasdet.data import CocoDataset, VocDataset, YoloTxtDataset, synthetic, write_coco, write_voc
from kerasdet.data.yolo_txt import write_yolo_txt

NAMES = list(synthetic.class_names())


def _samples(seed, n=3):
    return [synthetic.render(i, 64, seed) for i in range(n)]


def _pairs(samples):
    return [(image, {"boxes": t["boxes"], "labels": t["labels"]}) for image, t in samples]


def test_voc_splits_written_into_one_root_keep_their_own_images(tmp_path):
    train, val = _samples(1), _samples(2)
    assert write_voc(_pairs(train), tmp_path, NAMES, split="train") == ["000001", "000002", "000003"]
    assert write_voc(_pairs(val), tmp_path, NAMES, split="val") == ["000004", "000005", "000006"]
    for split, samples in (("train", train), ("val", val)):
        reader = VocDataset(tmp_path, split, class_names=NAMES)
        np.testing.assert_array_equal(reader.load(0)[0], samples[0][0])
    with pytest.raises(FileExistsError, match="image set"):
        write_voc(_pairs(val), tmp_path, NAMES, split="val")
    with pytest.raises(FileExistsError, match="000001"):
        write_voc(_pairs(val), tmp_path, NAMES, split="test", image_ids=["000001", "a", "b"])
    write_voc(_pairs(train), tmp_path, NAMES, split="val", image_ids=["000004", "000005", "000006"], overwrite=True)
    np.testing.assert_array_equal(VocDataset(tmp_path, "val", class_names=NAMES).load(0)[0], train[0][0])


def test_two_coco_jsons_can_share_an_image_folder(tmp_path):
    first, second = _samples(3), _samples(4)
    write_coco(_pairs(first), tmp_path / "a.json", NAMES, image_dir=tmp_path / "images")
    data = write_coco(_pairs(second), tmp_path / "b.json", NAMES, image_dir=tmp_path / "images")
    assert [im["file_name"] for im in data["images"]] == ["000004.png", "000005.png", "000006.png"]
    for name, samples in (("a.json", first), ("b.json", second)):
        reader = CocoDataset(str(tmp_path / name), str(tmp_path / "images"), with_masks=False, with_keypoints=False)
        np.testing.assert_array_equal(reader.load(0)[0], samples[0][0])
    with pytest.raises(FileExistsError, match="annotation file"):
        write_coco(_pairs(first), tmp_path / "a.json", NAMES, image_dir=tmp_path / "images")


def test_yolo_folders_continue_and_refuse_other_class_names(tmp_path):
    write_yolo_txt(_pairs(_samples(5)), tmp_path, NAMES, split="train")
    paths = write_yolo_txt(_pairs(_samples(6)), tmp_path, NAMES, split="train")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["000004.png", "000005.png", "000006.png"]
    assert len(YoloTxtDataset(tmp_path, split="train")) == 6
    with pytest.raises(FileExistsError, match="other class names"):
        write_yolo_txt(_pairs(_samples(6)), tmp_path, ["a", "b"], split="val")


@pytest.mark.parametrize("boxes, labels, match", [
    ([[1.0, 2.0, np.nan, 9.0]], [0], "finite"),
    ([[1.0, 2.0, 8.0, np.inf]], [0], "finite"),
    ([[1.0, 2.0, 8.0, 9.0]], [-2], r"\[-1, 10\)"),
    ([[1.0, 2.0, 8.0, 9.0]], [0.7], "integers"),
])
def test_illegal_boxes_and_labels_are_refused(tmp_path, boxes, labels, match):
    sample = (np.zeros((16, 16, 3), np.uint8), {"boxes": np.asarray(boxes, np.float32), "labels": np.asarray(labels)})
    with pytest.raises(ValueError, match=match):
        write_coco([sample], tmp_path / "x.json", NAMES, image_dir=tmp_path / "images")
    with pytest.raises(ValueError, match=match):
        write_voc([sample], tmp_path / "voc", NAMES)
