"""The bad-input matrix (issue 13): one table of bad or edge inputs across ops, layers, models, data, metrics, zoo,
export and CLI, each with its exact expected behaviour: the error type and the argument its message names, or the
correct result. Each case is cheap (no training, no zoo weights), so the whole table runs in the default suite.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from kerasdet import cli, ops, zoo
from kerasdet.coders.delta_coder import DeltaCoder
from kerasdet.data import (CocoDataset, DatasetError, DetectionAugmenter, VocDataset, padded_batch, read_image,
                           synthetic, write_coco, write_voc, write_yolo_txt)
from kerasdet.export import saved_model
from kerasdet.layers import FeaturePyramid, MultiLevelRoIAlign, NonMaxSuppression, RoIAlign, RoIPool
from kerasdet.metrics import coco_evaluate, plot_precision_recall, voc_evaluate
from kerasdet.models.mask_rcnn import MaskRCNN
from kerasdet.models.retinanet import RetinaNet
from tests.models.test_detector import make_model, targets

BOXES = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 15.0]], np.float32)
FEATURES = np.zeros((1, 8, 8, 4), np.float32)
ROIS = np.array([[[0.0, 0.0, 4.0, 4.0]]], np.float32)


@pytest.fixture(scope="module")
def toy():
    model = make_model()
    model.compile()
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "not_an_image.png").write_bytes(b"this is text")
    (root / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (root / "broken.json").write_text('{"images": [')
    (root / "truncated.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"0" * 64)
    (root / "a_file").write_text("x")
    (root / "export").mkdir()
    (root / "export" / "saved_model.pb").write_bytes(b"")
    return root


def _sample(boxes, labels):
    image = np.zeros((32, 32, 3), np.uint8)
    return [(image, {"boxes": np.asarray(boxes, np.float32), "labels": np.asarray(labels)})]


def _y(**changes):
    y = targets(2)
    y.update(changes)
    return y


def _images(batch=2, channels=3, size=32):
    return np.full((batch, size, size, channels), 100.0, np.float32)


def _nan_images():
    x = _images()
    x[1, 2, 3, 1] = np.nan
    return x


def _label(value, dtype=np.int32):
    y = targets(2)
    labels = y["labels"].astype(dtype)
    labels[0, 0] = value
    y["labels"] = labels
    return y


def _cli(*argv):
    """`kerasdet ...` in process: the exit status (SystemExit code)."""
    with pytest.raises(SystemExit) as stop:
        cli.main(list(argv))
    return stop.value.code


def _zoo_dir_file(files, monkeypatch):
    monkeypatch.setenv("KERASDET_ZOO_DIR", str(files / "a_file"))
    return zoo.card("retinanet_resnet18_shapes")


# (id, call(toy, files, monkeypatch), expected exception type, regex its message must match)
RAISES = [
    # -- ops
    ("iou aligned str", lambda t, f, m: ops.iou(BOXES, BOXES, aligned="no"), TypeError, r"`aligned` must be a bool"),
    ("giou aligned int", lambda t, f, m: ops.giou(BOXES, BOXES, aligned=1), TypeError, r"`aligned` must be a bool"),
    ("area last dim 3", lambda t, f, m: ops.area(np.zeros((3, 3))), ValueError, r"`boxes`"),
    ("iou boxes1 last dim", lambda t, f, m: ops.iou(np.zeros((3, 5)), BOXES), ValueError, r"`boxes1`"),
    ("iou boxes2 strings", lambda t, f, m: ops.iou(BOXES, "boxes"), (TypeError, ValueError), r"`boxes2`"),
    ("clip negative size", lambda t, f, m: ops.clip_boxes(BOXES, (-1, 10)), ValueError, r"image"),
    ("clip NaN size", lambda t, f, m: ops.clip_boxes(BOXES, (np.nan, 10)), ValueError, r"image"),
    ("relative with height 0", lambda t, f, m: ops.convert_format(BOXES, "xyxy", "rel_xyxy", height=0, width=10),
     ValueError, r"height"),
    ("unknown box format", lambda t, f, m: ops.convert_format(BOXES, "abc", "xyxy"), ValueError, r"abc"),
    ("nms iou above 1", lambda t, f, m: ops.non_max_suppression(BOXES, [0.5, 0.4], iou_threshold=1.5),
     ValueError, r"`iou_threshold`"),
    ("nms iou str", lambda t, f, m: ops.non_max_suppression(BOXES, [0.5, 0.4], iou_threshold="a"),
     TypeError, r"`iou_threshold`"),
    ("nms negative output size", lambda t, f, m: ops.non_max_suppression(BOXES, [0.5, 0.4], max_output_size=-1),
     ValueError, r"`max_output_size`"),
    ("nms scores count", lambda t, f, m: ops.non_max_suppression(BOXES, [0.5]), (ValueError, tf.errors.InvalidArgumentError),
     r"`scores`"),
    ("batched nms boxes rank 2", lambda t, f, m: ops.batched_non_max_suppression(BOXES, np.zeros((1, 2, 1))),
     ValueError, r"`boxes`"),
    ("batched nms max_detections 0", lambda t, f, m: ops.batched_non_max_suppression(
        BOXES[None], np.zeros((1, 2, 1), np.float32), max_detections=0), ValueError, r"`max_detections`"),
    ("roi_align sampling float", lambda t, f, m: ops.roi_align(FEATURES, ROIS, 2, sampling_ratio=1.5),
     TypeError, r"`sampling_ratio`"),
    ("roi_align aligned str", lambda t, f, m: ops.roi_align(FEATURES, ROIS, 2, aligned="yes"), TypeError, r"`aligned`"),
    ("roi_align output 0", lambda t, f, m: ops.roi_align(FEATURES, ROIS, 0), ValueError, r"`output_size`"),
    ("roi_align scale 0", lambda t, f, m: ops.roi_align(FEATURES, ROIS, 2, spatial_scale=0.0), ValueError,
     r"`spatial_scale`"),
    ("roi_align rois last dim 5", lambda t, f, m: ops.roi_align(FEATURES, np.zeros((1, 1, 5), np.float32), 2),
     ValueError, r"`rois`"),
    ("roi_pool output (0, 2)", lambda t, f, m: ops.roi_pool(FEATURES, ROIS, (0, 2)), ValueError, r"`output_size`"),
    ("ps_roi_align channels", lambda t, f, m: ops.ps_roi_align(np.zeros((1, 8, 8, 5), np.float32), ROIS, 2),
     ValueError, r"channels|features"),
    ("delta weights 3", lambda t, f, m: DeltaCoder(weights=(1.0, 1.0, 1.0)), ValueError, r"`weights`"),
    ("delta clamp 0", lambda t, f, m: DeltaCoder(scale_clamp=0.0), ValueError, r"`scale_clamp`"),
    ("delta zero reference", lambda t, f, m: DeltaCoder().encode([[0.0, 0.0, 0.0, 0.0]], BOXES[:1]), ValueError,
     r"`reference`"),
    ("delta NaN target", lambda t, f, m: DeltaCoder().encode(BOXES[:1], [[0.0, 0.0, np.nan, 1.0]]), ValueError,
     r"`boxes`"),
    ("heatmap size 0", lambda t, f, m: ops.keypoint_heatmap_targets(np.zeros((1, 1, 1, 3)), ROIS, 0), ValueError,
     r"`heatmap_size`"),
    # -- layers
    ("RoIAlign output 0", lambda t, f, m: RoIAlign(0), ValueError, r"`output_size`"),
    ("RoIAlign sampling str", lambda t, f, m: RoIAlign(2, sampling_ratio="2"), TypeError, r"`sampling_ratio`"),
    ("RoIPool scale negative", lambda t, f, m: RoIPool(2, spatial_scale=-1.0), ValueError, r"`spatial_scale`"),
    ("MultiLevelRoIAlign no strides", lambda t, f, m: MultiLevelRoIAlign(7, strides=[]), TypeError, r"`strides`"),
    ("MultiLevelRoIAlign dict vs list", lambda t, f, m: MultiLevelRoIAlign(2, strides={"P2": 4})([FEATURES], ROIS),
     TypeError, r"`features`"),
    ("NonMaxSuppression iou 2", lambda t, f, m: NonMaxSuppression(iou_threshold=2.0), ValueError, r"`iou_threshold`"),
    ("FeaturePyramid channels 0", lambda t, f, m: FeaturePyramid(num_channels=0), ValueError, r"`num_channels`"),
    # -- models: constructors
    ("num_classes 0", lambda t, f, m: RetinaNet.compact(num_classes=0), ValueError, r"`num_classes`"),
    ("num_classes True", lambda t, f, m: RetinaNet.compact(num_classes=True), ValueError, r"`num_classes`"),
    ("class_names length", lambda t, f, m: RetinaNet.compact(num_classes=2, class_names=["a"]), ValueError,
     r"`class_names`"),
    ("score_threshold str", lambda t, f, m: RetinaNet.compact(num_classes=2, score_threshold="high"), TypeError,
     r"`score_threshold`"),
    ("score_threshold 1", lambda t, f, m: RetinaNet.compact(num_classes=2, score_threshold=1.0), ValueError,
     r"`score_threshold`"),
    ("nms_iou_threshold negative", lambda t, f, m: RetinaNet.compact(num_classes=2, nms_iou_threshold=-0.1),
     ValueError, r"`nms_iou_threshold`"),
    ("max_detections 0", lambda t, f, m: RetinaNet.compact(num_classes=2, max_detections=0), ValueError,
     r"`max_detections`"),
    ("box format", lambda t, f, m: RetinaNet.compact(num_classes=2, bounding_box_format="abc"), ValueError,
     r"`bounding_box_format`"),
    ("fpn_channels 0", lambda t, f, m: RetinaNet.compact(num_classes=2, fpn_channels=0), ValueError,
     r"`fpn_channels`"),
    ("num_keypoints negative", lambda t, f, m: MaskRCNN.compact(num_classes=2, num_keypoints=-1), ValueError,
     r"`num_keypoints`"),
    ("no mask and no keypoints", lambda t, f, m: MaskRCNN.compact(num_classes=2, with_masks=False), ValueError,
     r"with_masks"),
    ("keypoint class out of range", lambda t, f, m: MaskRCNN.compact(num_classes=2, num_keypoints=5,
                                                                      keypoint_classes=[9]), ValueError,
     r"`keypoint_classes`"),
    # -- models: calls
    ("predict gray", lambda t, f, m: t.predict(_images(channels=1), verbose=0), ValueError, r"\[B, H, W, 3\].*to_rgb"),
    ("predict RGBA", lambda t, f, m: t.predict(_images(channels=4), verbose=0), ValueError, r"\[B, H, W, 3\]"),
    ("predict NaN pixel", lambda t, f, m: t.predict(_nan_images(), verbose=0), ValueError, r"holds NaN"),
    ("predict a path", lambda t, f, m: t.predict("image.png", verbose=0), TypeError, r"`x` must be images.*read_image"),
    ("detect list with a bad image", lambda t, f, m: t.detect([np.zeros((8, 8), np.uint8)]), ValueError,
     r"images\[0\]"),
    ("train label too large", lambda t, f, m: t.train_on_batch(_images(), _label(2)), ValueError, r"holds the label 2"),
    ("train label -2", lambda t, f, m: t.train_on_batch(_images(), _label(-2)), ValueError, r"holds the label -2"),
    ("train fractional label", lambda t, f, m: t.train_on_batch(_images(), _label(0.7, np.float32)), ValueError,
     r"`y\['labels'\]` holds the label 0.7.*whole class indices"),
    ("train y not a dict", lambda t, f, m: t.train_on_batch(_images(), np.zeros((2, 4))), TypeError, r"`y`"),
    ("train y lacks labels", lambda t, f, m: t.train_on_batch(_images(), {"boxes": targets(2)["boxes"]}), ValueError,
     r"lack \['labels'\]"),
    ("train NaN box", lambda t, f, m: t.train_on_batch(_images(), _y(boxes=np.full((2, 4, 4), np.nan, np.float32))),
     ValueError, r"`y\['boxes'\]`"),
    ("train NaN pixel", lambda t, f, m: t.train_on_batch(_nan_images(), targets(2)), ValueError, r"holds NaN"),
    ("train batch mismatch", lambda t, f, m: t.train_on_batch(_images(3), targets(2)), ValueError,
     r"hold 2 images but the images batch has 3"),
    ("train sample_weight", lambda t, f, m: t.train_on_batch(_images(), targets(2), sample_weight=np.ones(2)),
     ValueError, r"sample_weight"),
    # -- data
    ("read_image missing", lambda t, f, m: read_image(f / "missing.png"), (FileNotFoundError, DatasetError),
     r"missing\.png"),
    ("read_image not an image", lambda t, f, m: read_image(f / "not_an_image.png"), DatasetError, r"not_an_image"),
    ("read_image pixel limit", lambda t, f, m: read_image(f / "not_an_image.png", max_pixels=0), ValueError,
     r"`max_pixels`"),
    ("coco json missing", lambda t, f, m: CocoDataset(f / "none.json", f), DatasetError, r"not found"),
    ("coco json broken", lambda t, f, m: CocoDataset(f / "broken.json", f), DatasetError, r"invalid JSON"),
    ("coco json too deep", lambda t, f, m: CocoDataset(f / "deep.json", f), DatasetError, r"nested too deeply"),
    ("voc root missing", lambda t, f, m: VocDataset(f / "no_voc"), (DatasetError, FileNotFoundError), r"no_voc"),
    ("write_voc NaN box", lambda t, f, m: write_voc(_sample([[0, 0, np.nan, 5]], [0]), f / "voc_nan", ["a"]),
     ValueError, r"finite|NaN"),
    ("write_coco label -2", lambda t, f, m: write_coco(_sample([[0, 0, 5, 5]], [-2]), f / "c.json",
                                                       [{"id": 1, "name": "a"}], image_dir=f / "c_images"),
     ValueError, r"label"),
    ("write_yolo fractional label", lambda t, f, m: write_yolo_txt(_sample([[0, 0, 5, 5]], np.array([0.5])),
                                                                     f / "yolo", ["a"]), ValueError, r"label"),
    ("augmenter infinite scale", lambda t, f, m: DetectionAugmenter(scale_range=(1.0, np.inf)), ValueError,
     r"scale_range"),
    ("synthetic negative count", lambda t, f, m: synthetic.generate(-1), ValueError, r"num_images"),
    ("synthetic tiny images", lambda t, f, m: synthetic.generate(1, image_size=8), ValueError, r"image_size"),
    ("padded_batch size 0", lambda t, f, m: padded_batch(synthetic.dataset("val", 2, 32), 0), ValueError,
     r"batch_size"),
    # -- metrics
    ("coco iou_type", lambda t, f, m: coco_evaluate({}, [], iou_type="x"), ValueError, r"`iou_type`"),
    ("coco unknown image", lambda t, f, m: coco_evaluate(
        {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}], "annotations": []},
        [{"image_id": 7, "category_id": 1, "score": 0.5, "bbox": [0, 0, 1, 1]}]), ValueError, r"image_id"),
    ("voc labels -3", lambda t, f, m: voc_evaluate([{"boxes": BOXES[:1], "labels": np.array([-3])}],
                                                   [{"boxes": BOXES[:1], "scores": [0.5], "labels": [0]}]),
     ValueError, r"label"),
    ("plot stats list", lambda t, f, m: plot_precision_recall([1, 2], f / "x.png"), TypeError, r"`stats`"),
    # -- zoo
    ("zoo unknown name", lambda t, f, m: zoo.load("no_such_model"), (KeyError, ValueError), r"no_such_model"),
    ("zoo weights int", lambda t, f, m: zoo.load("retinanet_resnet18_shapes", weights=123), TypeError, r"`weights`"),
    ("zoo num_classes True", lambda t, f, m: zoo.load("retinanet_resnet18_shapes", num_classes=True), ValueError,
     r"`num_classes`"),
    ("zoo num_classes 0", lambda t, f, m: zoo.load("retinanet_resnet18_shapes", num_classes=0), ValueError,
     r"`num_classes`"),
    ("zoo truncated weights", lambda t, f, m: zoo.load("retinanet_resnet18_shapes", weights=f / "truncated.weights.h5"),
     OSError, r"truncated\.weights\.h5"),
    ("zoo weights not .h5", lambda t, f, m: zoo.load("retinanet_resnet18_shapes", weights=f / "a_file"), ValueError,
     r"\.weights\.h5"),
    ("zoo dir is a file", lambda t, f, m: _zoo_dir_file(f, m), (NotADirectoryError, ValueError, OSError),
     r"KERASDET_ZOO_DIR"),
    # -- export
    ("export into an existing folder", lambda t, f, m: saved_model(t, f / "export"), (FileExistsError, ValueError),
     r"overwrite"),
    ("export max_pixels 0", lambda t, f, m: saved_model(t, f / "export_new", max_pixels=0), ValueError,
     r"`max_pixels`"),
    ("export a non-model", lambda t, f, m: saved_model("model", f / "export_str"), TypeError, r"`model`"),
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in RAISES], ids=[c[0] for c in RAISES])
def test_bad_input_raises_naming_it(toy, files, monkeypatch, call, error, match):
    with pytest.raises(error, match=match):
        call(toy, files, monkeypatch)


# CLI mistakes: exit status 2 and one line on stderr, no traceback
CLI = [
    ("train epochs 0", ["train", "--epochs", "0", "--out", "{tmp}/run"], r"--epochs must be at least 1"),
    ("train batch 0", ["train", "--batch-size", "0", "--out", "{tmp}/run"], r"--batch-size must be at least 1"),
    ("train without out", ["train"], r"--out"),
    ("train unknown arch", ["train", "--arch", "nope", "--out", "{tmp}/run"], r"--arch"),
    ("evaluate unknown model", ["evaluate", "--model", "no_such_model"], r"no_such_model"),
    ("evaluate missing json", ["evaluate", "--model", "retinanet_resnet18_shapes", "--dataset", "coco:{tmp}/none.json"],
     r"none\.json"),
]


@pytest.mark.parametrize("argv,match", [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_cli_mistakes_exit_2_with_one_line(tmp_path, capsys, argv, match):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert _cli(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert pytest.importorskip("re").search(match, err), err
    assert not (tmp_path / "run").exists()


# edge inputs with a defined, correct result (no error, no NaN)
def test_edge_inputs_give_the_defined_result():
    nan_box = np.array([[0.0, 0.0, np.nan, 10.0]], np.float32)
    assert ops.area(nan_box).numpy().tolist() == [0.0]
    assert ops.iou(nan_box, BOXES).numpy().tolist() == [[0.0, 0.0]]
    assert ops.giou(nan_box, BOXES).numpy().tolist() == [[-1.0, -1.0]]
    kept = ops.non_max_suppression(np.concatenate([nan_box, BOXES]), [0.99, 0.5, 0.4], iou_threshold=0.5).numpy()
    assert kept.tolist() == [1, 2]
    out = ops.batched_non_max_suppression(np.concatenate([nan_box, BOXES])[None], np.array([[[0.99], [0.5], [0.4]]]),
                                          max_detections=3)
    assert out["num_detections"].numpy().tolist() == [2] and np.isfinite(out["boxes"].numpy()).all()
    assert ops.roi_align(FEATURES, np.array([[[0.0, 0.0, 1e5, 1e5]]], np.float32), 7, 1.0, 0).shape == (1, 1, 7, 7, 4)
    assert ops.roi_align(FEATURES, np.full((1, 1, 4), -1.0, np.float32), 2).numpy().tolist() == [[[[[0.0] * 4] * 2] * 2]]
    assert ops.clip_boxes(np.array([[-5.0, -5.0, 50.0, 50.0]], np.float32), (10, 20)).numpy().tolist() == [
        [0.0, 0.0, 20.0, 10.0]]
    empty = ops.batched_non_max_suppression(np.zeros((2, 0, 4), np.float32), np.zeros((2, 0, 3), np.float32),
                                            max_detections=4)
    assert empty["num_detections"].numpy().tolist() == [0, 0]
    assert np.isfinite(DeltaCoder().decode(BOXES, np.full((2, 4), 1e6, np.float32)).numpy()).all()  # clamped


def test_edge_images_give_the_defined_result(toy):
    assert toy.predict(np.zeros((0, 32, 32, 3), np.uint8), verbose=0)["boxes"].shape[0] == 0  # empty batch
    one = toy.predict(np.zeros((32, 32, 3), np.uint8), verbose=0)  # one image without the batch axis
    assert one["boxes"].ndim == 2
    with pytest.warns(UserWarning, match="0..255"):
        toy.predict(np.full((1, 32, 32, 3), 0.5, np.float32), verbose=0)  # 0..1 floats: detected, with a warning
    assert os.environ.get("KERASDET_ZOO_DIR") is None or pathlib.Path(os.environ["KERASDET_ZOO_DIR"]).is_dir()
