"""SSD: the model harness on the compact model, the paper configurations' maps and default boxes, the multibox
loss against its numpy reference, and the family's table row."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.heads.anchor_targets import assign_anchor_targets
from kerasdet.models.families import family
from kerasdet.models.ssd import SSD
from tests.models import harness
from tests.reference.detection_losses import ssd_multibox_loss

SPEC = harness.FamilySpec(name="ssd", build=lambda: SSD.compact(num_classes=3, width=0.35),
                          zoo_name="ssd_resnet18_shapes", slow_checks=("test_mixed_float16_training_step_is_finite",))
globals().update(harness.family_tests(SPEC))


@pytest.mark.parametrize("size, cells, total", [(300, (38, 19, 10, 5, 3, 1), 8732),
                                                (512, (64, 32, 16, 8, 4, 2, 1), 24564)])
def test_paper_maps_and_default_boxes(size, cells, total):
    """SSD300 / SSD512 at their size: the paper's maps and 8732 / 24564 default boxes; the first box of each map
    has the released models' size and the extra box sqrt(s_k s_k+1); cell centres follow each map's stride."""
    model = SSD.paper_config(size, num_classes=20, width=0.125)
    raw = model(tf.zeros([1, size, size, 3]))
    anchors = raw["anchors"].numpy()
    assert anchors.shape == (total, 4) and raw["class_logits"].shape == (1, total, 21)
    per_cell = model.anchor_generator.num_anchors_per_location(len(cells))
    assert sum(n * n * a for n, a in zip(cells, per_cell)) == total
    start = 0
    for k, (n, a) in enumerate(zip(cells, per_cell)):
        level = anchors[start:start + n * n * a]
        start += n * n * a
        sizes = model.box_sizes
        np.testing.assert_allclose(level[0, 2] - level[0, 0], sizes[k], rtol=1e-5)
        np.testing.assert_allclose(level[1, 2] - level[1, 0], math.sqrt(sizes[k] * sizes[k + 1]), rtol=1e-5)
        centre = (level[0, :2] + level[0, 2:]) / 2
        np.testing.assert_allclose(centre, [model.map_offsets[k] * model.map_strides[k]] * 2, atol=1e-3)
    assert model.count_params() > 0


def test_ssd300_cell_centres_follow_the_layers():
    """Cell j of a layer (kernel k, stride s, padding p) is centred on input cell j*s - p + (k-1)/2: fc7 at 8 + 16j,
    conv8_2 and conv9_2 (3x3, stride 2, padding 1) at 8 + 32j and 8 + 64j, the unpadded conv10_2 at 72 + 64j and
    conv11_2's one cell at 136 (not the image centre, 150: the 300 px input is padded on its right by the pools)."""
    model = SSD.paper_config(300, num_classes=2, width=0.125)
    expected = [8 * 0.5, 16 * 0.5, 8.0, 8.0, 72.0, 136.0]
    first_centres = [o * s for o, s in zip(model.map_offsets, model.map_strides)]
    np.testing.assert_allclose(first_centres, expected)
    assert model.min_input_size == 257 and model.size_divisor == 1
    # smaller images are padded up to the smallest input that gives every map a cell; boxes stay in the image
    out = model.predict(np.full((1, 120, 90, 3), 128, np.uint8), verbose=0)
    k = int(out["num_detections"][0])
    assert out["boxes"].shape == (1, 200, 4)
    assert np.all(out["boxes"][0, :k, 2] <= 90) and np.all(out["boxes"][0, :k, 3] <= 120)


@pytest.mark.parametrize("ratio", [3.0, None])
def test_multibox_loss_matches_reference(ratio):
    """The loss terms equal the numpy reference (matching at 0.5 plus each object's best box, softmax
    cross-entropy over background + classes with 3:1 hard negatives or every negative, smooth L1 with variances
    0.1 / 0.2, both over the number of positives), on random head outputs."""
    model = SSD.compact(num_classes=3, width=0.35, neg_pos_ratio=ratio)
    images = np.zeros((2, 96, 96, 3), np.float32)
    raw = model(images)
    anchors = raw["anchors"].numpy()
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, raw["class_logits"].shape).astype(np.float32)
    deltas = rng.normal(0, 1, raw["box_deltas"].shape).astype(np.float32)
    boxes = np.array([[[10, 12, 40, 50], [50, 50, 90, 94], [-1, -1, -1, -1]],
                      [[5, 5, 20, 15], [-1, -1, -1, -1], [-1, -1, -1, -1]]], np.float32)
    labels = np.array([[0, 2, -1], [1, -1, -1]], np.int32)
    targets = model.standardize_targets({"boxes": boxes, "labels": labels}, tf.constant(images))
    got = model.detection_losses(images, targets, {"class_logits": tf.constant(logits),
                                                   "box_deltas": tf.constant(deltas), "anchors": raw["anchors"]})
    want = ssd_multibox_loss(anchors, boxes, labels, logits, deltas, neg_pos_ratio=ratio)
    np.testing.assert_allclose(float(got["class_loss"]), want[0], rtol=1e-4)
    np.testing.assert_allclose(float(got["box_loss"]), want[1], rtol=1e-4)


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    """All logits zero: every default box's cross-entropy is log(3) (background + 2 classes), so with mining the
    class loss is (P + 3P) log 3 / P = 4 log 3 whatever P; with every negative, (P + N) log 3 / P. A hard negative
    (a confident wrong class far from the object) is among those kept."""
    images = np.zeros((1, 96, 96, 3), np.float32)
    targets = {"boxes": np.array([[[20, 20, 60, 60]]], np.float32), "labels": np.array([[1]], np.int32)}
    mined_model = SSD.compact(num_classes=2, width=0.35)
    raw = mined_model(images)
    targets = mined_model.standardize_targets(targets, tf.constant(images))
    num = raw["class_logits"].shape[1]
    zeros = tf.zeros([1, num, 3])
    mined = float(mined_model.detection_losses(images, targets, dict(raw, class_logits=zeros))["class_loss"])
    assert mined == pytest.approx(4 * math.log(3), rel=1e-5)
    everything = SSD.compact(num_classes=2, width=0.35, neg_pos_ratio=None)
    everything(images)
    unmined = float(everything.detection_losses(images, targets, dict(raw, class_logits=zeros))["class_loss"])
    assigned = assign_anchor_targets(mined_model.matcher, raw["anchors"], targets)
    positives = float(tf.reduce_sum(assigned["positive"]))
    assert unmined == pytest.approx(num * math.log(3) / positives, rel=1e-5) and unmined > 10 * mined
    hard = np.zeros((1, num, 3), np.float32)
    hard[0, num - 1, 1] = 12.0  # the last default box: the coarsest map's, not matched to the small object
    assert assigned["states"].numpy()[0, num - 1] == 0
    with_hard = float(mined_model.detection_losses(images, targets, dict(raw, class_logits=tf.constant(hard)))["class_loss"])
    assert with_hard == pytest.approx((4 * positives - 1) * math.log(3) / positives + 12.0 / positives, rel=1e-3)


def test_each_objects_best_box_is_matched_to_that_object():
    """The paper's bipartite step: object A's best default box is also B's best, with a higher IoU for B; A still
    gets it (and B the IoU >= 0.5 match of its own), where Detectron2's low-quality rule would leave A without a
    box. Two equal default boxes around a small object: only one is forced positive."""
    model = SSD.compact(num_classes=2, width=0.35)
    anchors = tf.constant([[0.0, 0.0, 10.0, 10.0], [0.0, 5.0, 10.0, 15.0], [50.0, 50.0, 60.0, 60.0]])
    boxes = tf.constant([[[0.0, 0.0, 10.0, 3.0], [0.0, 4.0, 10.0, 14.0]]])
    out = model.matcher(anchors, boxes, tf.constant([[0, 1]]))
    np.testing.assert_array_equal(out["match_states"].numpy(), [[1, 1, 0]])
    np.testing.assert_array_equal(out["matched_gt_indices"].numpy()[0, :2], [0, 1])
    twins = tf.constant([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 20.0, 20.0]])
    out = model.matcher(twins, tf.constant([[[8.0, 8.0, 12.0, 12.0]]]), tf.constant([[0]]))
    np.testing.assert_array_equal(out["match_states"].numpy(), [[1, 0]])


def test_paper_model_builds_and_detects_below_its_smallest_input():
    """SSD300 built for 256 px (the CLI's default size) and run on 200x150 images: padded up to 257 px inside."""
    model = SSD.paper_config(300, num_classes=2, width=0.125).build_for_size(256)
    out = model.predict(np.full((2, 150, 200, 3), 90, np.uint8), verbose=0)
    assert out["boxes"].shape == (2, 200, 4)
    assert SSD(num_classes=2, backbone=model.backbone).size_divisor == 1  # VGG16: no padding to a stride


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="one sequence of ratios per prediction map"):
        SSD.compact(num_classes=2, aspect_ratios=(2.0, 3.0))
    with pytest.raises(ValueError, match="box_sizes"):
        SSD.compact(num_classes=2, box_sizes=30.0)
    with pytest.raises(ValueError, match="no cell"):
        SSD.compact(num_classes=2, extra_layers=((8, 8, 3, 2, 0),) * 12,
                    aspect_ratios=((2.0,),) * 15, box_sizes=tuple(range(10, 170, 10)))
    with pytest.raises(ValueError, match="feature_levels"):
        SSD.compact(num_classes=2, feature_levels=("C3", "C6"))
    with pytest.raises(ValueError, match="aspect_ratios"):
        SSD.compact(num_classes=2, aspect_ratios=((2.0,),))
    with pytest.raises(ValueError, match="a > 1"):
        SSD.compact(num_classes=2, aspect_ratios=((0.5,), (2.0,), (2.0,), (2.0,), (2.0,)))
    with pytest.raises(ValueError, match="box_sizes"):
        SSD.compact(num_classes=2, box_sizes=(10, 20))
    with pytest.raises(ValueError, match="extra_layers"):
        SSD.compact(num_classes=2, extra_layers=((64, 128, 3, 0, 1),))
    with pytest.raises(ValueError, match="neg_pos_ratio"):
        SSD.compact(num_classes=2, neg_pos_ratio=-1)
    with pytest.raises(ValueError, match="size"):
        SSD.paper_config(400)
    with pytest.raises(ValueError, match="backbone"):
        SSD.compact(num_classes=2, backbone="vgg19")


def test_family_row_builds_every_arch_and_uses_the_papers_augmentation():
    from kerasdet.data import SSDAugmenter

    row = family("ssd")
    compact = row.archs["ssd-compact"](3, ["a", "b", "c"])
    assert compact.separable and type(compact.backbone).__name__ == "MobileNetV2"
    plain = row.archs["ssd-compact-resnet18-all-negatives"](3, ["a", "b", "c"])
    assert not plain.separable and plain.neg_pos_ratio is None
    assert isinstance(row.recipe.augmenter(256, seed=0), SSDAugmenter)
    assert not row.recipe.augmenter(256, seed=0, augmentation="ssd-no-zoom-out").zoom_out


def test_ssdlite_has_torchvisions_layout():
    """`SSD.ssdlite(size=320)`: maps of 20, 10, 5, 3, 2, 1 cells from C4, C5 and four extras, 6 default boxes per
    cell (3,234, torchvision's ssdlite320 count), sizes 0.2 .. 0.95 of the image, separable predictors."""
    model = SSD.ssdlite(num_classes=4, width=0.35)
    raw = model(tf.zeros([1, 320, 320, 3]))
    assert raw["anchors"].shape == (3234, 4) and model.size_divisor == 32 and model.separable
    np.testing.assert_allclose(model.box_sizes[:-1], [64, 112, 160, 208, 256, 304])
