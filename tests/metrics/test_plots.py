"""Precision-recall figures: written as PNG for COCO and VOC results, with clear errors."""

import numpy as np
import pytest
from PIL import Image

from kerasdet.metrics.coco import coco_evaluate
from kerasdet.metrics.plots import plot_precision_recall
from kerasdet.metrics.voc import voc_evaluate
from tests.metrics.random_sets import make_set
from tests.metrics.test_voc import random_voc_set

pytest.importorskip("pycocotools")


def _png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        return img.size


def test_coco_curves_overall_and_per_class(tmp_path):
    gt, dets = make_set(0, "bbox")
    stats = coco_evaluate(gt, dets)
    w_all, h_all = _png(plot_precision_recall(stats, tmp_path / "all.png", per_class=False))
    w, h = _png(plot_precision_recall(stats, tmp_path / "sub" / "classes.png"))
    assert h > h_all  # the per-class panels add rows
    cid = [r["category_id"] for r in stats["per_class"] if r["AP"] > -1][0]
    _png(plot_precision_recall(stats, tmp_path / "one.png", classes=[cid], area="small", title="one class"))


def test_coco_overall_curve_is_the_mean_of_the_classes(tmp_path):
    # the AP printed in the legend equals COCO AP50 / AP: the curve is the per-recall mean over classes
    gt, dets = make_set(1, "bbox")
    stats = coco_evaluate(gt, dets)
    p = stats["precision"][0, :, :, 0, -1]
    defined = p[:, (p > -1).all(axis=0)]
    assert defined.mean(axis=1).mean() == pytest.approx(stats["AP50"], abs=1e-12)


def test_voc_curves(tmp_path):
    gts, dets = random_voc_set(2)
    out = voc_evaluate(gts, dets, class_names=list("abcde"))
    _png(plot_precision_recall(out, tmp_path / "voc.png"))


def test_errors(tmp_path):
    with pytest.raises(TypeError, match="`stats`"):
        plot_precision_recall([1, 2], tmp_path / "x.png")
    with pytest.raises(ValueError, match="coco_evaluate"):
        plot_precision_recall({"AP": 1.0}, tmp_path / "x.png")
    gt, dets = make_set(0, "bbox")
    with pytest.raises(ValueError, match="`area`"):
        plot_precision_recall(coco_evaluate(gt, dets), tmp_path / "x.png", area="tiny")
    assert not np.any([p.name == "x.png" for p in tmp_path.iterdir()])
