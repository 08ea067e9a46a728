"""The released Mask R-CNN: masks on the demo's images are right, and its segm numbers agree with pycocotools."""

import numpy as np
import pytest

import kerasdet
from kerasdet import cli
from kerasdet.data import synthetic
from kerasdet.ops import iou

NAME = "mask_rcnn_resnet18_shapes"
DEMO_MIN_SCORE = cli.build_parser().parse_args(["demo"]).min_score


@pytest.fixture(scope="module")
def demo_run():
    """The demo's annotated images (the first 8 validation images) with the model's detections and the truth."""
    model = kerasdet.zoo.load(NAME)
    size = kerasdet.zoo.card(NAME)["image_size"]
    images, gt = synthetic.generate(8, image_size=size, seed=synthetic.split_seed("val"))
    out = model.predict(images.astype(np.float32), verbose=0)
    return images, gt, out


def _matched_mask_ious(images, out):
    """(mask IoU, truth area, image) of each detection the demo draws (score >= its --min-score) that is matched,
    COCO-style: in score order, to the unmatched same-class truth of highest box IoU, at box IoU >= 0.5 (so a
    duplicate of a matched object is not a match)."""
    size = images.shape[1]
    found = []
    for i in range(len(images)):
        truth = synthetic.render(i, size, synthetic.split_seed("val"))[1]
        taken = np.zeros(len(truth["labels"]), bool)
        for d in range(int(out["num_detections"][i])):  # detections come in score order
            if out["scores"][i, d] < DEMO_MIN_SCORE or not len(truth["labels"]):
                continue
            overlaps = iou(out["boxes"][i, d][None], truth["boxes"]).numpy()[0]
            same = np.where((truth["labels"] == out["labels"][i, d]) & ~taken, overlaps, 0.0)
            if same.max() < 0.5:
                continue
            g = int(same.argmax())
            taken[g] = True
            pred, true = out["masks"][i, d] >= 0.5, truth["masks"][g] > 0
            found.append(((pred & true).sum() / max((pred | true).sum(), 1), int(true.sum()), i))
    return found


@pytest.mark.xfail(strict=True, reason="issue 'Mask R-CNN' Must-show not met: 41 of the 49 matched detections on the "
                                       "demo's 8 images reach mask IoU 0.7 (median 0.919, lowest 0.487: heavily "
                                       "occluded and tiny objects)")
def test_each_matched_detection_on_the_demo_images_has_a_mask_of_iou_07(demo_run):
    images, _, out = demo_run
    found = _matched_mask_ious(images, out)
    assert len(found) >= 20, len(found)
    below = [(round(float(v), 3), area, image) for v, area, image in found if v < 0.7]
    assert not below, f"{len(below)} of {len(found)} matched detections below mask IoU 0.7: {below}"


def test_the_demo_masks_mostly_fit_their_objects(demo_run):
    """What holds today, so that a regression shows: most matched demo detections have masks of IoU >= 0.7 and
    the median is high."""
    images, _, out = demo_run
    values = np.array([v for v, _, _ in _matched_mask_ious(images, out)])
    assert len(values) >= 40 and np.mean(values >= 0.7) >= 0.8 and np.median(values) >= 0.9, values


@pytest.mark.slow  # suite time: tests/metrics checks segm against pycocotools on random sets in the default suite
def test_segm_numbers_equal_pycocotools_on_a_fresh_seed():
    pytest.importorskip("pycocotools.cocoeval")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from kerasdet.metrics import _rle, coco_evaluate

    model = kerasdet.zoo.load(NAME)
    images, gt = synthetic.generate(40, image_size=kerasdet.zoo.card(NAME)["image_size"], seed=4242)
    results = []
    for start in range(0, len(images), 8):
        out = model.predict_on_batch(images[start:start + 8].astype(np.float32))
        for i in range(out["boxes"].shape[0]):
            k = int(out["num_detections"][i])
            rles = _rle.encode(np.asarray(out["masks"][i, :k]) >= 0.5) if k else []
            for j in range(k):
                results.append({"image_id": start + i + 1, "category_id": int(out["labels"][i, j]) + 1,
                                "score": float(out["scores"][i, j]), "segmentation": rles[j]})
    ours = coco_evaluate(gt, results, iou_type="segm")
    coco = COCO()
    coco.dataset = {k: v for k, v in gt.items()}
    coco.createIndex()
    dets = coco.loadRes([dict(r, segmentation=dict(r["segmentation"], counts=r["segmentation"]["counts"].encode()))
                         for r in results])
    evaluator = COCOeval(coco, dets, "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert abs(ours["AP"] - evaluator.stats[0]) < 1e-6 and abs(ours["AP75"] - evaluator.stats[2]) < 1e-6
