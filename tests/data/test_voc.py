"""Pascal VOC reader/writer: round trips, 1-based boxes, difficult, image sets."""

import cv2
import defusedxml.ElementTree as safe_et
import numpy as np
import pytest

from kerasdet.data import synthetic
from kerasdet.data.voc import VOC_CLASSES, VocDataset, write_voc

XML = """<annotation>
  <filename>{filename}</filename>
  <size><width>40</width><height>30</height><depth>3</depth></size>
  {objects}
</annotation>"""
OBJECT = ("<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
          "<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax>"
          "</bndbox></object>")


def make_voc(root, files, split="trainval"):
    """files: {image_id: [(name, difficult, (xmin, ymin, xmax, ymax)), ...]}"""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for image_id, objects in files.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.png"), np.zeros((30, 40, 3), np.uint8))
        body = "".join(OBJECT.format(name=n, difficult=d, b=b) for n, d, b in objects)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            XML.format(filename=f"{image_id}.png", objects=body))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in files))
    return root


def test_round_trip(tmp_path, shapes_samples):
    names = synthetic.class_names()
    ids = write_voc(shapes_samples, tmp_path / "voc", names, split="val")
    assert ids == [f"{i + 1:06d}" for i in range(len(shapes_samples))]
    ds = VocDataset(tmp_path / "voc", "val", class_names=names)
    assert len(ds) == len(shapes_samples) and ds.image_ids == ids
    for i, (image, targets) in enumerate(shapes_samples):
        got_image, got = ds.load(i)
        np.testing.assert_array_equal(got_image, image)
        np.testing.assert_array_equal(got["boxes"], targets["boxes"])
        np.testing.assert_array_equal(got["labels"], targets["labels"])
    for _, (image, targets) in zip(range(2), ds.dataset()):
        assert image.dtype.name == "uint8" and sorted(targets) == ["boxes", "labels"]


def test_one_based_inclusive_boxes_and_written_xml(tmp_path):
    root = make_voc(tmp_path / "v", {"a": [("dog", 0, (1, 1, 40, 30)), ("cat", 0, (5, 6, 5, 9))]})
    ds = VocDataset(root)
    _, t = ds.load(0)
    # whole image, and a one-pixel-wide column
    np.testing.assert_array_equal(t["boxes"], [[0, 0, 40, 30], [4, 5, 5, 9]])
    np.testing.assert_array_equal(t["labels"], [VOC_CLASSES.index("dog"), VOC_CLASSES.index("cat")])
    write_voc([ds.load(0)], tmp_path / "out", VOC_CLASSES, image_ids=["x"])
    tree = safe_et.parse(str(tmp_path / "out" / "Annotations" / "x.xml")).getroot()
    boxes = [[int(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
             for o in tree.findall("object")]
    assert boxes == [[1, 1, 40, 30], [5, 6, 5, 9]]
    assert tree.find("size").find("width").text == "40"


def test_difficult_and_fractional_boxes(tmp_path):
    objects = [("dog", 1, (2, 2, 10, 10)), ("cat", 0, (3.5, 4, 8.25, 9))]
    root = make_voc(tmp_path / "v", {"a": objects, "b": []})
    plain = VocDataset(root)
    _, t = plain.load(0)
    np.testing.assert_array_equal(t["labels"], [VOC_CLASSES.index("cat")])
    np.testing.assert_allclose(t["boxes"], [[2.5, 3, 8.25, 9]])
    kept = VocDataset(root, keep_difficult=True)
    assert kept.target_keys == ["boxes", "labels", "difficult"]
    _, t = kept.load(0)
    np.testing.assert_array_equal(t["difficult"], [1, 0])
    write_voc([kept.load(i) for i in range(2)], tmp_path / "out", VOC_CLASSES, split="s")
    again = VocDataset(tmp_path / "out", "s", keep_difficult=True)
    _, t2 = again.load(0)
    np.testing.assert_array_equal(t2["difficult"], t["difficult"])
    np.testing.assert_allclose(t2["boxes"], t["boxes"])
    _, empty = again.load(1)  # images without objects kept
    assert empty["boxes"].shape == (0, 4)


def test_class_image_set_format(tmp_path):
    root = make_voc(tmp_path / "v", {"a": [("dog", 0, (1, 1, 5, 5))], "b": []})
    (root / "ImageSets" / "Main" / "dog_train.txt").write_text("a  1\nb -1\n")
    ds = VocDataset(root, "dog_train")
    assert ds.image_ids == ["a"]


def test_argument_errors(tmp_path):
    root = make_voc(tmp_path / "v", {"a": []})
    with pytest.raises(ValueError, match="class_names"):
        VocDataset(root, class_names="dog")
    with pytest.raises(ValueError, match="duplicates"):
        VocDataset(root, class_names=["a", "a"])
    with pytest.raises(ValueError, match="image_format"):
        write_voc([], tmp_path / "o", image_format="gif")


def test_class_names_from_the_xml_and_folders_without_image_sets(tmp_path):
    """class_names=None reads the distinct object names of the split, sorted; split=None reads every annotation
    (a folder the user made without ImageSets/); `splits` lists the image sets, not the per-class ones."""
    root = make_voc(tmp_path / "voc", {"b": [("disc", 0, (1, 1, 10, 10)), ("star", 0, (5, 5, 20, 20))],
                                        "a": [("box", 1, (2, 2, 8, 8))]}, split="train")
    (root / "ImageSets" / "Main" / "disc_train.txt").write_text("b 1\n")
    assert VocDataset.splits(root) == ["train"]
    reader = VocDataset(root, "train", class_names=None)
    assert reader.class_names == ["box", "disc", "star"]
    assert [t["labels"].tolist() for _, t in (reader.load(i) for i in range(2))] == [[1, 2], []]  # "a": difficult
    for path in (root / "ImageSets").rglob("*.txt"):
        path.unlink()
    everything = VocDataset(root, split=None, class_names=None, keep_difficult=True)
    assert everything.image_ids == ["a", "b"] and everything.class_names == ["box", "disc", "star"]
    assert everything.load(0)[1]["labels"].tolist() == [0]
    with pytest.raises(Exception, match="image set file not found"):
        VocDataset(root, "trainval", class_names=None)


def test_an_object_wholly_outside_the_image_is_refused_as_coco_refuses_it(tmp_path):
    # one rule for every reader (kerasdet.data._records.clip_boxes): partly outside is clipped, wholly outside refused
    from kerasdet.data import DatasetError, VocDataset, write_voc

    image = np.zeros((40, 50, 3), np.uint8)
    write_voc([(image, {"boxes": np.array([[2.0, 3.0, 20.0, 30.0], [40.0, 30.0, 60.0, 45.0]], np.float32),
                        "labels": np.array([0, 0])})], tmp_path / "voc", ["a"], split="train")
    xml = next((tmp_path / "voc" / "Annotations").glob("*.xml"))
    ds = VocDataset(tmp_path / "voc", "train", ["a"])
    np.testing.assert_allclose(ds.load(0)[1]["boxes"][1], [40.0, 30.0, 50.0, 40.0], atol=1.0)  # partly: clipped
    text = xml.read_text()
    xml.write_text(text.replace("<xmin>41</xmin>", "<xmin>71</xmin>").replace("<xmax>60</xmax>", "<xmax>90</xmax>"))
    with pytest.raises(DatasetError, match=r"object 1 .* wholly outside the 40x50 image"):
        VocDataset(tmp_path / "voc", "train", ["a"]).load(0)
