"""The card's numbers are reproducible, and pycocotools agrees on a freshly seeded split."""

import pathlib

import numpy as np
import pytest

import kerasdet
from kerasdet import cli
from tests.metrics.random_sets import pycocotools_eval

#: each released model's bar (AP50, AP) from its issue, on 500 images of the embedded test split
RELEASE_BARS = {
    "retinanet_resnet18_shapes": (0.80, 0.50),
    "faster_rcnn_resnet18_shapes": (0.82, 0.58),
}

#: bars on the other tables of a card (issue "Mask R-CNN": mask AP, keypoint AP (OKS) on stars)
TABLE_BARS = {}


def test_every_released_model_has_a_bar():
    assert sorted(RELEASE_BARS) == kerasdet.zoo.list()


@pytest.mark.parametrize("name", sorted(RELEASE_BARS))
def test_card_metrics_equal_a_rerun_of_its_eval_command(name):
    card = kerasdet.zoo.card(name)
    spec = card["eval_dataset"]
    metrics, _, _, tables = cli.evaluate_model(kerasdet.zoo.load(name), spec["name"], spec["images"],
                                               spec["image_size"])
    for key, value in card["metrics"].items():
        assert abs(metrics[key] - value) <= 0.005, (key, metrics[key], value)
    for table in cli.EXTRA_TABLES:
        assert (table in card) == (table in tables), table
        for key, value in card.get(table, {}).items():
            assert abs(tables[table][key] - value) <= 0.005, (table, key, tables[table][key], value)


@pytest.mark.slow  # suite time: the card's own rerun (above) and tests/metrics' pycocotools checks stay in the default
@pytest.mark.parametrize("name", sorted(RELEASE_BARS))
def test_pycocotools_on_a_fresh_seed_stays_near_the_card(name):
    pytest.importorskip("pycocotools.coco")
    pytest.importorskip("pycocotools.cocoeval")
    card = kerasdet.zoo.card(name)
    model = kerasdet.zoo.load(name)
    images, gt = kerasdet.data.synthetic.generate(300, image_size=card["image_size"], seed=987654)
    results = []
    for start in range(0, len(images), 16):
        out = model.predict_on_batch(images[start : start + 16].astype(np.float32))
        for i in range(out["boxes"].shape[0]):
            for k in range(int(out["num_detections"][i])):
                b = out["boxes"][i, k]
                results.append({"image_id": start + i + 1, "category_id": int(out["labels"][i, k]) + 1,
                                "score": float(out["scores"][i, k]),
                                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    stats, _ = pycocotools_eval(gt, results)
    ap, ap50 = stats[0], stats[1]
    assert abs(ap - card["metrics"]["AP"]) <= 0.05, (ap, card["metrics"]["AP"])
    assert abs(ap50 - card["metrics"]["AP50"]) <= 0.05, (ap50, card["metrics"]["AP50"])


@pytest.mark.parametrize("name", sorted(RELEASE_BARS))
def test_released_model_meets_its_release_bar(name):
    """The family issue's bar for the released model, on the card's measured numbers."""
    card = kerasdet.zoo.card(name)
    metrics = card["metrics"]
    ap50, ap = RELEASE_BARS[name]
    assert metrics["AP50"] >= ap50 and metrics["AP"] >= ap, metrics
    for table, (key, bar) in TABLE_BARS.get(name, {}).items():
        assert card[table][key] >= bar, (table, card[table])


def test_readme_table_shows_each_cards_numbers():
    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in kerasdet.zoo.list():
        rows = [line for line in readme.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, f"README's zoo table has no single row for {name}"
        cells = rows[0].strip("|").split("|")
        shown = [float(cell) for cell in cells[-7:]]
        card_speed = kerasdet.zoo.card(name)["speed"]["images_per_second"]
        assert abs(float(cells[-8]) - card_speed) <= 0.06, (name, cells[-8], card_speed)   # images/s column
        metrics = kerasdet.zoo.card(name)["metrics"]
        card = [metrics[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "VOC_mAP")]
        np.testing.assert_allclose(shown, card, atol=0.0006, err_msg=name)
