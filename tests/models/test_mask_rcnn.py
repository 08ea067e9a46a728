"""Mask R-CNN: the model harness with masks and keypoints, the heads' targets, the mask output forms,
paper configurations and clear errors for data without masks."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.data import prepare, synthetic
from kerasdet.models import families
from kerasdet.models.mask_rcnn import MaskRCNN
from kerasdet.ops import paste_masks
from tests.models import harness


def _small(**kwargs):
    return MaskRCNN.compact(num_classes=3, width=0.25, num_keypoints=len(synthetic.KEYPOINT_NAMES), **kwargs)


# the mixed-precision training step is checked on RetinaNet in the default suite; Mask R-CNN's (about a minute:
# the heads on kept boxes build a second graph) runs with -m slow, as Faster R-CNN's
SPEC = harness.FamilySpec(name="mask_rcnn", build=_small, target_keys=("masks", "keypoints"),
                          zoo_name="mask_rcnn_resnet18_shapes", zoo_config={"mask_output": "roi"},
                          slow_checks=("test_mixed_float16_training_step_is_finite",))
globals().update(harness.family_tests(SPEC))


@pytest.fixture(scope="module")
def batch():
    return harness.synthetic_batch(SPEC, 2)


def test_the_family_table_names_mask_rcnn_for_its_models():
    assert families.family_of_model(_small()) == "mask_rcnn"
    model = families.FAMILIES["mask_rcnn"].archs["mask-rcnn-compact"](10, synthetic.class_names(),
                                                                      keypoints=synthetic.keypoint_names())
    assert model.num_keypoints == 5 and model.keypoint_classes == [synthetic.class_names().index("star")]
    assert model.output_keys[-2:] == ("masks", "keypoints")
    boxes_only = families.FAMILIES["mask_rcnn"].archs["mask-rcnn-compact"](10, synthetic.class_names())
    assert boxes_only.num_keypoints == 0 and "keypoints" not in boxes_only.output_keys


def test_every_head_variable_exists_once_built():
    """Building runs the heads on kept boxes too, so weights files hold them (and load by path)."""
    model = _small().build_for_size(96)
    paths = [v.path for v in model.weights]
    assert any("mask_head" in p for p in paths) and any("keypoint_head" in p for p in paths)


def test_training_without_masks_or_keypoints_names_the_missing_key(batch):
    x, y = batch
    model = _small().build_for_size(SPEC.image_size)
    model.compile()
    with pytest.raises(ValueError, match=r"y\['masks'\]"):
        model.train_on_batch(x, {k: v for k, v in y.items() if k != "masks"})
    with pytest.raises(ValueError, match=r"y\['keypoints'\]"):
        model.train_on_batch(x, {k: v for k, v in y.items() if k != "keypoints"})
    with pytest.raises(ValueError, match=r"y\['masks'\].*height and width"):
        model.train_on_batch(x, dict(y, masks=y["masks"][:, :, :-1]))


def test_the_loss_has_each_heads_term_and_the_mask_term_trains_positive_rois_only(batch):
    x, y = batch
    model = _small().build_for_size(SPEC.image_size)
    targets = model.standardize_targets(y, tf.constant(x))
    raw = model(x, training=True, targets=targets)
    terms = model.detection_losses(tf.constant(x), targets, raw)
    assert set(terms) == set(model.loss_terms)
    train = raw["mask_train"]
    positive = train["positive"].numpy()
    assert positive.any()
    # non-positive rows are padding rois (no features pooled), positive rows match a real object
    rois, gt = train["rois"].numpy(), train["gt_indices"].numpy()
    assert np.all(rois[~positive] == -1) and np.all(gt[positive] >= 0)
    # the heads run on as many rows as the image with the most positives has, and every positive is among them
    states = raw["sampled"]["states"].numpy()
    assert positive.shape[1] == (states == 1).sum(axis=1).max()
    assert positive.sum() == (states == 1).sum()
    assert np.isclose(float(terms["mask_loss"]), np.log(2.0), atol=0.05)  # near-zero logits at the start
    kp = raw["keypoint_train"]
    assert 1 <= kp["heatmaps"].shape[1] <= model.keypoint_rois_per_image and kp["heatmaps"].shape[2:] == (56, 56, 5)


def test_a_ground_truth_roi_targets_its_own_mask(batch):
    """Each positive RoI's target is its matched object's mask: for the ground-truth boxes the sampler adds, the
    28x28 target covers most of the RoI where the object's visible mask does."""
    from kerasdet.ops import crop_masks

    x, y = batch
    masks = tf.constant(y["masks"])
    rois = tf.constant(y["boxes"])
    index = tf.where(tf.constant(y["labels"]) >= 0, tf.range(y["labels"].shape[1])[None], -1)
    crops = crop_masks(masks, rois, index, 28, sampling_ratio=2).numpy()
    for i in range(len(x)):
        for j in np.nonzero(y["labels"][i] >= 0)[0]:
            x1, y1, x2, y2 = y["boxes"][i, j]
            visible = y["masks"][i, j].sum() / max((x2 - x1) * (y2 - y1), 1)
            assert abs((crops[i, j] >= 0.5).mean() - visible) < 0.15, (i, j)


def test_mask_outputs_roi_and_pasted_forms_agree_and_threshold_gives_uint8(batch):
    x, _ = batch
    model = _small().build_for_size(SPEC.image_size)
    pasted = model.predict(x, verbose=0)
    config = model.get_config()
    roi = MaskRCNN.from_config(dict(config, mask_output="roi")).build_for_size(SPEC.image_size)
    roi.set_weights(model.get_weights())
    small = roi.predict(x, verbose=0)
    assert small["masks"].shape == (2, model.max_detections, 28, 28)
    again = paste_masks(small["masks"], np.where(small["labels"][..., None] >= 0, small["boxes"], -1.0),
                        x.shape[1:3]).numpy()
    np.testing.assert_allclose(again, pasted["masks"], atol=1e-5)
    binary = MaskRCNN.from_config(dict(config, mask_threshold=0.5)).build_for_size(SPEC.image_size)
    binary.set_weights(model.get_weights())
    out = binary.predict(x, verbose=0)
    assert out["masks"].dtype == np.uint8
    np.testing.assert_array_equal(out["masks"], (pasted["masks"] >= 0.5).astype(np.uint8))
    # padding rows are empty, masks lie inside their boxes (bilinear spill of at most one pixel)
    labels = pasted["labels"]
    assert np.all(pasted["masks"][labels < 0] == 0)
    k = int(pasted["num_detections"][0])
    for n in range(k):
        x1, y1, x2, y2 = pasted["boxes"][0, n]
        m = pasted["masks"][0, n] > 0
        ys, xs = np.nonzero(m)
        if len(xs):
            assert xs.min() >= np.floor(x1) - 1 and xs.max() <= np.ceil(x2) and ys.max() <= np.ceil(y2)


def test_keypoints_only_on_keypoint_classes(batch):
    x, _ = batch
    model = _small(keypoint_classes=[1]).build_for_size(SPEC.image_size)
    model.score_threshold = 0.0
    out = model.predict(x, verbose=0)
    kp, labels = out["keypoints"], out["labels"]
    assert np.all(kp[labels != 1] == 0)
    rows = labels == 1
    if rows.any():
        boxes = out["boxes"][rows]
        inside = ((kp[rows][..., 0] >= boxes[:, None, 0] - 1e-3) & (kp[rows][..., 0] <= boxes[:, None, 2] + 1e-3))
        assert inside.all()


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="FasterRCNN"):
        MaskRCNN.compact(num_classes=3, with_masks=False)
    with pytest.raises(ValueError, match="mask_output"):
        MaskRCNN.compact(num_classes=3, mask_output="rle")
    with pytest.raises(ValueError, match="mask_threshold"):
        MaskRCNN.compact(num_classes=3, mask_threshold=1.5)
    with pytest.raises(ValueError, match="mask_threshold"):
        MaskRCNN.compact(num_classes=3, mask_output="roi", mask_threshold=0.5)
    with pytest.raises(ValueError, match="keypoint_classes"):
        MaskRCNN.compact(num_classes=3, num_keypoints=2, keypoint_classes=[3])
    with pytest.raises(ValueError, match="name"):
        MaskRCNN.paper_config("vgg16")


def test_paper_configurations_have_the_papers_heads():
    fpn = MaskRCNN.paper_config("resnet50_fpn", num_classes=80)
    assert fpn.mask_head.conv_dims == (256,) * 4 and fpn.mask_pooler.output_size == 14
    assert type(fpn.mask_pooler).__name__ == "MultiLevelRoIAlign" and fpn.num_keypoints == 0
    c4 = MaskRCNN.paper_config("resnet50_c4", num_classes=80)
    assert c4.mask_pooler is None and c4.mask_head.conv_dims == () and c4.box_head.tower is not None
    assert type(c4.roi_pooler).__name__ == "RoIAlign"
    keypoints = MaskRCNN.paper_config("resnet50_fpn", num_classes=1, with_masks=False, num_keypoints=17)
    assert keypoints.keypoint_head.conv_dims == (512,) * 8 and keypoints.output_keys[-1] == "keypoints"


def test_compact_keypoint_head_configuration():
    # 4 convolutions of 64 on 14x14 RoIAlign over P2-P5 with the FPN paper's level assignment, 56x56 heatmaps: the
    # configuration of the second zoo run. An 8-convolution head with every RoI up to 448 px pooled from P2 was
    # tried (docs/decisions.md) and gave no better keypoint AP (0.356 against 0.365)
    model = MaskRCNN.compact(num_classes=10, num_keypoints=5, keypoint_classes=[7])
    assert model.keypoint_head.conv_dims == (64,) * 4 and model.keypoint_head.upsample == 2
    pooler = model.keypoint_pooler
    assert pooler.output_size == 14 and pooler.canonical_level == 4 and pooler.canonical_scale == 224.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50_fpn", "resnet101_fpn", "resnet50_c4"])
def test_paper_config_detects_with_masks_on_a_512x640_image(name):
    """Each paper configuration runs one image end to end (random weights): proposals, box head, NMS, masks
    pasted to the image (and the keypoint model's keypoints)."""
    model = MaskRCNN.paper_config(name, num_classes=80, num_keypoints=0 if name.endswith("c4") else 17,
                                  score_threshold=0.0)
    image = np.random.default_rng(0).uniform(0, 255, (1, 512, 640, 3)).astype(np.float32)
    out = model.predict(image, verbose=0)
    assert out["masks"].shape == (1, 100, 512, 640)
    assert 0.0 <= out["masks"].min() and out["masks"].max() <= 1.0
    if "keypoints" in out:
        assert out["keypoints"].shape == (1, 100, 17, 3)


def test_cli_refuses_a_mask_architecture_on_a_dataset_without_masks(tmp_path, capsys):
    from kerasdet import cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--arch", "mask-rcnn-compact", "--dataset", f"voc:{tmp_path}", "--out", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert "no instance masks" in capsys.readouterr().err


def test_masks_survive_the_training_pipeline():
    """The augmenter keeps masks, keypoints and boxes consistent for the family's training data: every box is
    its mask's tight box and every labelled keypoint of a star lies in its mask's box."""
    from kerasdet.models.families import family

    recipe = family("mask_rcnn").recipe
    aug = recipe.augmenter(96, seed=3, keypoint_flip_map=synthetic.keypoint_flip_map())
    ds = synthetic.dataset("train", 6, 96)
    for x, y in prepare(ds, 6, 96, augmenter=aug):
        for i in range(x.shape[0]):
            for j in np.nonzero(y["labels"][i].numpy() >= 0)[0]:
                ys, xs = np.nonzero(y["masks"][i, j].numpy())
                if not len(xs):
                    continue
                np.testing.assert_allclose(y["boxes"][i, j].numpy(), [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                                           atol=1.0)
                kp = y["keypoints"][i, j].numpy()
                on = kp[:, 2] > 0
                assert np.all(kp[on, 0] >= xs.min() - 2) and np.all(kp[on, 0] <= xs.max() + 3)


def test_cli_reads_coco_polygon_and_rle_masks_for_training(tmp_path):
    """COCO data with polygon and RLE segmentations gives the training pipeline of `kerasdet train` masks for every
    object (letterboxed with the images); without segmentations the command stops with a message."""
    import json

    from kerasdet import cli
    from kerasdet.data import write_coco

    data = write_coco(synthetic.dataset("train", 4, 96, with_keypoints=False), tmp_path / "ann.json",
                      [c["name"] for c in synthetic.categories()], image_dir=tmp_path / "images")
    # a polygon for every second object (its box as a rectangle), RLE for the rest
    for n, ann in enumerate(data["annotations"]):
        if n % 2 == 0:
            x, y, w, h = ann["bbox"]
            ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    (tmp_path / "ann.json").write_text(json.dumps(data))
    spec = f"coco:{tmp_path / 'ann.json'}:{tmp_path / 'images'}"
    ds, names, _, extras = cli.open_dataset(spec, "train", None, 128, with_masks=True, with_keypoints=True)
    assert extras["keypoints"] == {} and len(names) == 10
    x, y = next(iter(prepare(ds, 4, 128)))
    masks, boxes, labels = y["masks"].numpy(), y["boxes"].numpy(), y["labels"].numpy()
    assert masks.shape[2:] == (128, 128)
    for i, j in zip(*np.nonzero(labels >= 0)):
        ys, xs = np.nonzero(masks[i, j])
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], boxes[i, j], atol=2.0)
    for ann in data["annotations"]:
        ann.pop("segmentation")
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="segmentation"):
        cli.open_dataset(spec, "train", None, 128, with_masks=True)


def test_keypoint_box_scale_enlarges_boxes_about_their_centres_and_keeps_padding():
    model = _small(keypoint_box_scale=1.5)
    boxes = tf.constant([[[10.0, 20.0, 30.0, 60.0], [-1.0, -1.0, -1.0, -1.0], [0.0, 0.0, 8.0, 8.0]]])
    got = model._keypoint_boxes(boxes, tf.constant([[True, False, False]])).numpy()
    np.testing.assert_allclose(got[0, 0], [5.0, 10.0, 35.0, 70.0])  # centre (20, 40), 30 x 60
    np.testing.assert_array_equal(got[0, 1:], boxes.numpy()[0, 1:])  # padding and rows not valid untouched
    assert _small()._keypoint_boxes(boxes, tf.constant([[True, True, True]])) is boxes  # 1: the paper's boxes


def test_keypoints_outside_the_box_train_only_with_an_enlarged_keypoint_box(batch):
    """One labelled keypoint per object, right of its box by 0.2 of the box's width (as a star tip hidden by another
    object lies outside the box of its visible part). The same weights (so the same positive RoIs, every one
    training the head): at scale 2 every RoI that trained the keypoint at scale 1 still does, and most positive RoIs
    do (a box twice as large reaches half a width beyond each side); at scale 1 only the RoIs wider than their
    object to the right can."""
    x, y = batch
    keypoints = np.zeros_like(y["keypoints"])
    b = y["boxes"]
    keypoints[..., 0, 0] = b[..., 2] + 0.2 * (b[..., 2] - b[..., 0])
    keypoints[..., 0, 1] = (b[..., 1] + b[..., 3]) / 2
    keypoints[..., 0, 2] = np.where(y["labels"] >= 0, 2.0, 0.0)
    y = dict(y, keypoints=keypoints)
    plain = _small(keypoint_rois_per_image=None).build_for_size(SPEC.image_size)
    wide = MaskRCNN.from_config(dict(plain.get_config(), keypoint_box_scale=2.0)).build_for_size(SPEC.image_size)
    wide.set_weights(plain.get_weights())
    valid, positive = {}, {}
    for scale, model in ((1.0, plain), (2.0, wide)):
        targets = model.standardize_targets(y, tf.constant(x))
        raw = model(x, training=True, targets=targets)
        valid[scale] = raw["keypoint_train"]["valid"].numpy()
        positive[scale] = raw["mask_train"]["positive"].numpy()
    np.testing.assert_array_equal(positive[1.0], positive[2.0])
    assert not valid[2.0][..., 1:].any()  # unlabelled keypoints never train
    assert np.all(valid[2.0][..., 0] >= valid[1.0][..., 0])
    count = positive[1.0].sum()
    assert valid[1.0][..., 0].sum() <= 0.5 * count < 0.8 * count <= valid[2.0][..., 0].sum(), (
        valid[1.0][..., 0].sum(), valid[2.0][..., 0].sum(), count)


def test_predicted_keypoints_are_decoded_in_the_enlarged_box(batch, monkeypatch):
    """The same heatmaps (a peak in the top-left bin of every map) decode to the first bin of the enlarged box."""
    x, _ = batch
    plain = _small().build_for_size(SPEC.image_size)
    wide = MaskRCNN.from_config(dict(plain.get_config(), keypoint_box_scale=2.0)).build_for_size(SPEC.image_size)
    assert wide.get_config()["keypoint_box_scale"] == 2.0
    boxes = tf.constant([[[20.0, 30.0, 60.0, 50.0], [-1.0, -1.0, -1.0, -1.0]]])
    detections = {"boxes": boxes, "scores": tf.constant([[0.9, 0.0]]), "labels": tf.constant([[0, -1]]),
                  "num_detections": tf.constant([1])}
    out, size = {}, plain._heatmap_size()
    for name, model in (("plain", plain), ("wide", wide)):
        peak = tf.reshape(tf.one_hot(0, size * size, on_value=20.0), [1, 1, size, size, 1])
        monkeypatch.setattr(model, "keypoint_head",
                            lambda pooled, training=False: tf.tile(peak, [1, tf.shape(pooled)[1], 1, 1, 5]))
        raw = model(x[:1], training=False)
        out[name] = model.refine_detections(detections, raw, x[:1])["keypoints"].numpy()[0, 0, :, :2]
    np.testing.assert_allclose(out["plain"], np.tile([20 + 0.5 * 40 / size, 30 + 0.5 * 20 / size], (5, 1)), rtol=1e-5)
    np.testing.assert_allclose(out["wide"], np.tile([0 + 0.5 * 80 / size, 20 + 0.5 * 40 / size], (5, 1)), rtol=1e-5)


def test_keypoint_box_scale_is_checked_and_named_by_its_architecture():
    for bad in (0.5, float("nan"), True, "2"):
        with pytest.raises(ValueError, match="keypoint_box_scale"):
            _small(keypoint_box_scale=bad)
    model = families.FAMILIES["mask_rcnn"].archs["mask-rcnn-compact-keypoint-box-1.5"](
        10, synthetic.class_names(), keypoints=synthetic.keypoint_names())
    assert model.keypoint_box_scale == 1.5 and model.num_keypoints == 5
