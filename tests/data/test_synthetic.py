"""The embedded synthetic dataset: determinism, difficulty statistics, COCO output, tf.data."""

import contextlib
import io
import json
import time

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from kerasdet.data import synthetic
from tests.reference import data_masks as ref

SIZE = 256


@pytest.fixture(scope="module")
def sample():
    """120 images at the default size, with the targets of each (numpy)."""
    seed = 4
    images, coco = synthetic.generate(120, image_size=SIZE, seed=seed)
    targets = [synthetic.render(i, SIZE, seed)[1] for i in range(8)]
    return images, coco, targets


def _coco_api(data):
    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO()
        api.dataset = data
        api.createIndex()
    return api


def test_same_seed_gives_identical_bytes():
    a_images, a_coco = synthetic.generate(5, image_size=96, seed=11)
    b_images, b_coco = synthetic.generate(5, image_size=96, seed=11)
    assert a_images.tobytes() == b_images.tobytes()
    assert json.dumps(a_coco, sort_keys=True) == json.dumps(b_coco, sort_keys=True)
    # image i depends only on (seed, i): a shorter run is a prefix
    c_images, c_coco = synthetic.generate(3, image_size=96, seed=11)
    assert c_images.tobytes() == a_images[:3].tobytes()
    assert c_coco["annotations"] == [a for a in a_coco["annotations"] if a["image_id"] <= 3]


def test_different_seeds_and_splits_differ():
    a, _ = synthetic.generate(2, image_size=64, seed=0)
    b, _ = synthetic.generate(2, image_size=64, seed=1)
    assert not np.array_equal(a, b)
    seeds = {split: synthetic.split_seed(split) for split in ("train", "val", "test")}
    assert len(set(seeds.values())) == 3
    firsts = [synthetic.render(0, 64, seed)[0] for seed in seeds.values()]
    assert not np.array_equal(firsts[0], firsts[1])
    assert not np.array_equal(firsts[1], firsts[2])
    assert synthetic.as_coco("train", 2, 64) != synthetic.as_coco("val", 2, 64)


def test_difficulty_statistics(sample):
    images, coco, _ = sample
    anns = coco["annotations"]
    areas = np.array([a["area"] for a in anns])
    small = np.mean(areas < 32 ** 2)
    large = np.mean(areas >= 96 ** 2)
    assert small >= 0.2, small
    assert large >= 0.04, large  # COCO small, medium and large all present
    assert np.mean((areas >= 32 ** 2) & (areas < 96 ** 2)) >= 0.2
    sides = np.array([max(a["bbox"][2], a["bbox"][3]) for a in anns])
    assert sides.min() <= 10 and sides.max() >= 0.55 * SIZE  # ~8 px to ~60% of the image
    per_image = np.bincount([a["image_id"] for a in anns], minlength=len(images) + 1)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 12
    assert per_image.max() >= 10  # crowded images exist
    counts = np.bincount([a["category_id"] - 1 for a in anns], minlength=10)
    share = counts / counts.sum()
    assert share.min() > 0.06 and share.max() < 0.14, counts  # balanced classes


def test_colours_do_not_tell_classes_apart(sample):
    images, coco, _ = sample
    api = _coco_api(coco)
    by_class = {c: [] for c in range(10)}
    for ann in coco["annotations"]:
        mask = api.annToMask(ann).astype(bool)
        by_class[ann["category_id"] - 1].append(images[ann["image_id"] - 1][mask].mean(axis=0))
    means = np.array([np.mean(v, axis=0) for v in by_class.values()])
    spread = np.array([np.std(v, axis=0).mean() for v in by_class.values()])
    overall = means.mean(axis=0)
    assert np.abs(means - overall).max() < 0.5 * spread.mean(), (means, spread)


def test_boxes_inside_and_equal_to_tight_mask_boxes(sample):
    images, coco, _ = sample
    api = _coco_api(coco)
    for k, ann in enumerate(coco["annotations"]):
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= SIZE and y + h <= SIZE
        mask = api.annToMask(ann)
        assert mask.sum() == ann["area"]
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1] == [x, y, x + w, y + h]
        if k < 40:  # the slow loop reference on a few
            assert ref.tight_box(mask.tolist()) == [x, y, x + w, y + h]
        assert coco_mask.toBbox(ann["segmentation"]).tolist() == [x, y, w, h]


def test_targets_masks_are_disjoint_and_match_boxes(sample):
    _, _, targets = sample
    overlapping_boxes = 0
    for t in targets:
        masks = t["masks"]
        assert masks.dtype == np.uint8 and masks.shape[1:] == (SIZE, SIZE)
        assert masks.sum(axis=0).max() <= 1  # visible parts only: no pixel twice
        for j in range(masks.shape[0]):
            assert t["boxes"][j].tolist() == ref.tight_box(masks[j].tolist())
        b = t["boxes"]
        for i in range(len(b)):
            for j in range(i + 1, len(b)):
                iw = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0])
                ih = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1])
                overlapping_boxes += iw > 0 and ih > 0
    assert overlapping_boxes > 0  # occlusion happens


def test_coco_dict_is_valid_for_pycocotools(sample):
    images, coco, _ = sample
    assert [im["id"] for im in coco["images"]] == list(range(1, len(images) + 1))
    assert [c["id"] for c in coco["categories"]] == list(range(1, 11))
    assert [c["name"] for c in coco["categories"]] == synthetic.class_names()
    api = _coco_api(json.loads(json.dumps(coco)))
    assert len(api.getAnnIds()) == len(coco["annotations"])
    star = synthetic.class_names().index("star") + 1
    assert api.loadCats(star)[0]["keypoints"] == list(synthetic.KEYPOINT_NAMES)


def test_star_keypoints(sample):
    _, coco, targets = sample
    star = synthetic.class_names().index("star")
    stars = [a for a in coco["annotations"] if a["category_id"] == star + 1]
    assert len(stars) > 20
    seen_occluded = False
    for ann in stars:
        kp = np.array(ann["keypoints"]).reshape(5, 3)
        assert set(kp[:, 2]) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((kp[:, 2] > 0).sum())
        assert np.all(kp[kp[:, 2] == 0, :2] == 0)
        labelled = kp[kp[:, 2] > 0]
        assert np.all((labelled[:, :2] >= 0) & (labelled[:, :2] < SIZE))
        seen_occluded |= bool((kp[:, 2] == 1).any())
        if (kp[:, 2] > 0).all():
            assert np.argmin(kp[:, 1]) == 0  # tip_1 is the topmost
        x, y, w, h = ann["bbox"]
        visible = kp[kp[:, 2] == 2]  # visible tips touch the visible mask's box
        assert np.all(np.abs(visible[:, 0] - (x + w / 2)) <= w / 2 + 1.5)
        assert np.all(np.abs(visible[:, 1] - (y + h / 2)) <= h / 2 + 1.5)
    assert seen_occluded
    for t in targets:
        others = t["labels"] != star
        assert np.all(t["keypoints"][others] == 0)


def test_generation_speed_scales_to_1000_images_in_a_minute():
    """Best of two runs (as `timeit` reports): the suite's other worker shares the cores."""
    elapsed = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        synthetic.generate(100, image_size=SIZE, seed=9)
        elapsed = min(elapsed, time.perf_counter() - start)
    assert elapsed < 6.0, f"100 images took {elapsed:.1f}s; 1,000 would exceed 60 s"


def test_dataset_elements_equal_render():
    ds = synthetic.dataset("val", 3, image_size=96)
    assert ds.cardinality().numpy() == 3
    seed = synthetic.split_seed("val")
    for i, (image, targets) in enumerate(ds):
        want_image, want = synthetic.render(i, 96, seed)
        np.testing.assert_array_equal(image.numpy(), want_image)
        assert sorted(targets) == ["boxes", "keypoints", "labels", "masks"]
        for key in targets:
            np.testing.assert_array_equal(targets[key].numpy(), want[key])
    spec = synthetic.dataset("train", 2, 96, with_masks=False, with_keypoints=False).element_spec
    assert sorted(spec[1]) == ["boxes", "labels"]
    assert spec[0].shape.as_list() == [96, 96, 3]


def test_hierarchy_and_names():
    names, parents = synthetic.hierarchy()
    assert len(names) == len(parents) == len(set(names))
    for i, p in enumerate(parents):
        assert p < i  # parents first; -1 for roots
    nodes = synthetic.class_node_indices()
    assert [names[n] for n in nodes] == synthetic.class_names()
    assert all(n not in parents for n in nodes)  # classes are leaves
    square = names.index("square")
    assert names[parents[square]] == "quadrilateral"
    assert names[parents[parents[square]]] in ("polygon", "convex_polygon")
    assert len(synthetic.class_names()) >= 8
    flip = synthetic.keypoint_flip_map()
    assert sorted(flip) == list(range(5)) and flip[0] == 0


def test_argument_errors():
    with pytest.raises(ValueError, match="num_images"):
        synthetic.generate(-1)
    with pytest.raises(TypeError, match="num_images"):
        synthetic.generate(2.5)
    with pytest.raises(ValueError, match="image_size"):
        synthetic.generate(1, image_size=8)
    with pytest.raises(ValueError, match="split"):
        synthetic.dataset("validation", 3)
    with pytest.raises(ValueError, match="index"):
        synthetic.render(-1)


def test_occlusion_is_bounded(monkeypatch):
    """Every kept object shows at least half of its full area (occlusion + truncation), and a
    fair share of objects is partly hidden. Uses the generator's own rasteriser for the full
    shapes."""
    fractions = []
    original = synthetic._targets

    def spy(placed, owner, size):
        for index, (_, shape, centre, _) in enumerate(placed):
            frac = centre - np.floor(centre)
            patch, _, _ = synthetic._rasterise(shape, frac[0], frac[1])
            fractions.append((owner == index).sum() / patch.sum())
        return original(placed, owner, size)

    monkeypatch.setattr(synthetic, "_targets", spy)
    synthetic.generate(60, image_size=SIZE, seed=2)
    fractions = np.array(fractions)
    assert fractions.min() >= synthetic.MIN_VISIBLE_FRACTION - 1e-9
    assert np.mean(fractions < 0.9) > 0.15  # occlusion is common
    assert np.mean(fractions < 0.7) > 0.05  # and sometimes heavy
