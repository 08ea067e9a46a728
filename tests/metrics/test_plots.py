"""Precision-recall figures: written as PNG for COCO and VOC results, with clear errors."""

import re

import numpy as np
import pytest
from PIL import Image

from kerasdet.metrics import plots
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


def test_coco_overall_curve_is_the_mean_of_the_classes():
    # COCO AP50 is the mean over classes and recall points of the interpolated precision: the overall curve the
    # figure draws is that per-recall mean over the classes (checked on the drawn legend below)
    gt, dets = make_set(1, "bbox")
    stats = coco_evaluate(gt, dets)
    p = stats["precision"][0, :, :, 0, -1]
    defined = p[:, (p > -1).all(axis=0)]
    assert defined.mean(axis=1).mean() == pytest.approx(stats["AP50"], abs=1e-12)


@pytest.mark.parametrize("seed", [1, 4])
def test_the_drawn_legend_gives_coco_ap(tmp_path, monkeypatch, seed):
    # the legend of the overall panel, as drawn into the figure, prints COCO's AP50, AP75 and AP
    figures = []
    draw = plots._draw
    monkeypatch.setattr(plots, "_draw", lambda *args: figures.append(draw(*args)) or figures[-1])
    gt, dets = make_set(seed, "bbox")
    stats = coco_evaluate(gt, dets)
    plot_precision_recall(stats, tmp_path / "all.png", per_class=False)
    legend = figures[0].axes[0].get_legend()
    printed = {}
    for text in legend.get_texts():
        curve, ap = re.fullmatch(r"(IoU=[0-9.:]+)  AP=([0-9.]+)", text.get_text()).groups()
        printed[curve] = float(ap)
    assert printed == {"IoU=0.50": pytest.approx(stats["AP50"], abs=5e-4),
                       "IoU=0.75": pytest.approx(stats["AP75"], abs=5e-4),
                       "IoU=0.50:0.95": pytest.approx(stats["AP"], abs=5e-4)}
    assert 0.0 < stats["AP"] < stats["AP50"] < 1.0  # a set where the three numbers differ


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
