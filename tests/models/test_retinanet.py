"""RetinaNet (Lin et al., 2017): paper configuration, heads and anchors, losses, fit / predict / evaluate,
config and .keras round trips, batch 0. Tiny images (64-96 px) and a quarter-width compact model."""

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.data import synthetic
from kerasdet.data.pipeline import prepare
from kerasdet.losses.giou import GIoULoss
from kerasdet.losses.smooth_l1 import SmoothL1Loss
from kerasdet.metrics.coco import DETECTION_STATS
from kerasdet.metrics.keras_metrics import COCOMetric
from kerasdet.models.retinanet.retinanet import RetinaNet
from tests.reference import boxes as ref_boxes
from tests.reference import detection_losses as ref_losses
from tests.reference import matching as ref_matching

SIZE = 64
NUM_CLASSES = 3


def tiny(**kwargs):
    model = RetinaNet.compact(num_classes=NUM_CLASSES, width=0.25, **kwargs)
    model.build_for_size(SIZE)
    return model


def images(batch, height=SIZE, width=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3)).astype(np.uint8)


def synthetic_batch(num_images, size=SIZE, split="train"):
    """One padded batch (images float32, targets) of the embedded dataset, its 10 classes folded into the
    model's NUM_CLASSES (labels must lie in [-1, num_classes))."""
    ds = synthetic.dataset(split, num_images, image_size=size, with_masks=False, with_keypoints=False)
    x, y = next(iter(prepare(ds, num_images, size)))
    y = {k: v.numpy() for k, v in y.items()}
    y["labels"] = np.where(y["labels"] >= 0, y["labels"] % NUM_CLASSES, -1).astype(np.int32)
    return x.numpy(), y


def conv_layers(head):
    return [layer for layer in head.layers if isinstance(layer, keras.layers.Conv2D)]


def expected_anchor_count(height, width, num_anchors=9):
    return sum(math.ceil(height / s) * math.ceil(width / s) * num_anchors for s in (8, 16, 32, 64, 128))


@pytest.fixture(scope="module")
def model():
    return tiny()


# -- architecture ---------------------------------------------------------------------------------


def test_paper_config_resnet50_head_sizes():
    model = RetinaNet.paper_config("resnet50", num_classes=80)
    model.build_for_size(128)
    assert model.num_anchors == 9 and model.fpn_channels == 256
    assert model.anchor_base_sizes == (32.0, 64.0, 128.0, 256.0, 512.0)
    assert (model.focal_alpha, model.focal_gamma, model.prior_probability) == (0.25, 2.0, 0.01)
    assert isinstance(model.box_loss, SmoothL1Loss)
    for head, outputs in ((model.class_head, 9 * 80), (model.box_head, 9 * 4)):
        convs = conv_layers(head)
        assert [c.filters for c in convs] == [256, 256, 256, 256, outputs]
        assert all(c.kernel_size == (3, 3) for c in convs)
        assert tuple(convs[0].kernel.shape) == (3, 3, 256, 256)
    bias = conv_layers(model.class_head)[-1].bias.numpy()
    np.testing.assert_allclose(bias, -math.log(0.99 / 0.01), rtol=1e-6)
    np.testing.assert_array_equal(conv_layers(model.box_head)[-1].bias.numpy(), 0.0)
    assert model.backbone.name.startswith("resnet50")
    # ResNet-50-FPN RetinaNet with 80 classes: about 36-38 million parameters
    assert 3.0e7 < model.count_params() < 4.2e7
    raw = model(np.zeros((1, 128, 128, 3), np.uint8))
    assert raw["class_logits"].shape == (1, expected_anchor_count(128, 128), 80)


def test_paper_config_rejects_unknown_backbone():
    with pytest.raises(ValueError, match="`backbone` must be one of .*'vgg16'"):
        RetinaNet.paper_config("vgg16")


def test_compact_heads_anchors_and_prior(model):
    assert model.num_anchors == 9 and model.fpn_channels == 64 and model.head_depth == 2
    assert [c.filters for c in conv_layers(model.class_head)] == [64, 64, 9 * NUM_CLASSES]
    assert [c.filters for c in conv_layers(model.box_head)] == [64, 64, 9 * 4]
    raw = model(images(2, 64, 96))
    count = expected_anchor_count(128, 128)  # the network sees the images padded to its size divisor, 128
    assert raw["class_logits"].shape == (2, count, NUM_CLASSES) and raw["class_logits"].dtype == tf.float32
    assert raw["box_deltas"].shape == (2, count, 4) and raw["anchors"].shape == (count, 4)
    # untrained, every class probability starts near the prior 0.01
    probabilities = tf.sigmoid(raw["class_logits"]).numpy()
    assert abs(probabilities.mean() - 0.01) < 0.005
    # the first anchors: level P3 (stride 8) at cell (0, 0), sizes 16 * 2^(k/3), centred on (4, 4)
    anchors = raw["anchors"].numpy()[:9]
    np.testing.assert_allclose((anchors[:, :2] + anchors[:, 2:]) / 2, 4.0, atol=1e-4)
    areas = np.sort((anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1]))
    sides = np.sort(np.repeat([16.0, 16.0 * 2 ** (1 / 3), 16.0 * 2 ** (2 / 3)], 3)) ** 2
    np.testing.assert_allclose(areas, sides, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"backbone": "resnet50"}, TypeError, ["backbone", "str"]),
        ({"box_loss": keras.losses.Huber()}, TypeError, ["box_loss", "Huber"]),
        ({"box_loss": GIoULoss()}, ValueError, ["box_loss", "reduction='sum'", "sum_over_batch_size"]),
        ({"anchor_base_sizes": (32, 64, 128, 256)}, ValueError, ["anchor_base_sizes", "5"]),
        ({"prior_probability": 0.0}, ValueError, ["prior_probability", "0.0"]),
        ({"num_classes": 0}, ValueError, ["num_classes", "0"]),
    ],
)
def test_constructor_checks(kwargs, error, words):
    args = {"num_classes": NUM_CLASSES, "backbone": keras.Sequential(), **kwargs}
    if "backbone" not in kwargs:
        args.pop("backbone")
        build = lambda: RetinaNet.compact(**args)  # noqa: E731
    else:
        build = lambda: RetinaNet(**args)  # noqa: E731
    with pytest.raises(error) as info:
        build()
    for word in words:
        assert word in str(info.value), str(info.value)


def test_mixed_float16_outputs_float32():
    keras.config.set_dtype_policy("mixed_float16")
    model = RetinaNet.compact(num_classes=NUM_CLASSES, width=0.25)
    raw = model(images(1))
    assert raw["class_logits"].dtype == tf.float32 and raw["anchors"].dtype == tf.float32
    out = model.detect(images(1))
    assert out["boxes"].dtype == tf.float32 and np.isfinite(out["scores"].numpy()).all()


# -- prediction -----------------------------------------------------------------------------------


def test_predict_returns_the_detection_dict_with_label_padding():
    model = tiny(score_threshold=0.0, max_detections=8000)  # more slots than candidates survive NMS
    out = model.predict(images(2, 64, 96), verbose=0)
    assert sorted(out) == ["boxes", "labels", "num_detections", "scores"]
    assert out["boxes"].shape == (2, 8000, 4) and out["labels"].dtype == np.int32
    for i in range(2):
        n = int(out["num_detections"][i])
        assert 0 < n < 8000
        assert (out["labels"][i, :n] >= 0).all() and (out["labels"][i, :n] < NUM_CLASSES).all()
        assert (out["labels"][i, n:] == -1).all() and (out["boxes"][i, n:] == -1).all()
        assert (out["scores"][i, n:] == 0).all() and (np.diff(out["scores"][i, :n]) <= 0).all()
        boxes = out["boxes"][i, :n]
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 96).all() and (boxes[:, [1, 3]] <= 64).all()
        # anchors in the padding decode to boxes clipped away to nothing: never reported
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()


def test_default_threshold_drops_the_untrained_prior(model):
    out = model.predict_on_batch(images(1))
    assert out["num_detections"][0] == 0 and (out["labels"] == -1).all()


@pytest.mark.parametrize("how", ["eager", "graph", "predict"])
def test_batch_zero(model, how):
    # oneDNN's Conv2D returns an empty batch unchanged on this TF build: detect() must never run it
    x = images(0)
    if how == "eager":
        out = model.detect(x)
    elif how == "graph":
        out = tf.function(model.detect, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])(x)
    else:
        out = model.predict(x, verbose=0)
    assert {k: tuple(np.shape(v)) for k, v in out.items()} == {
        "boxes": (0, 100, 4), "scores": (0, 100), "labels": (0, 100), "num_detections": (0,)}


def test_bad_images_name_the_argument(model):
    with pytest.raises(ValueError, match=r"`images` must have shape \[B, H, W, 3\].*\(1, 64, 64, 4\)"):
        model(np.zeros((1, SIZE, SIZE, 4), np.uint8))


# -- losses and training --------------------------------------------------------------------------


def test_losses_on_images_without_objects(model):
    y = {"boxes": np.full((2, 3, 4), -1.0, np.float32), "labels": np.full((2, 3), -1, np.int32)}
    raw = model(images(2))
    terms = model.detection_losses(images(2), y, raw)
    assert float(terms["box_loss"]) == 0.0
    # every anchor is a negative: the focal loss of p = 0.01 against 0, summed, over max(positives, 1) = 1
    p = tf.sigmoid(raw["class_logits"]).numpy().astype(np.float64)
    reference = np.sum(0.75 * p**2 * -np.log(1 - p))
    assert float(terms["class_loss"]) == pytest.approx(reference, rel=1e-4)


def test_losses_equal_the_numpy_reference_from_the_definitions(model):
    """Class and box losses rebuilt from the reference matcher, focal loss and smooth L1 (beta 0.1)."""
    x, y = synthetic_batch(2)
    y["labels"] = np.where(y["labels"] >= 0, y["labels"] % NUM_CLASSES, -1).astype(np.int32)  # 10 -> 3 classes
    raw = model(x)
    terms = model.detection_losses(x, y, raw)
    anchors = raw["anchors"].numpy().astype(np.float64)
    idx, states, _ = ref_matching.match(anchors, y["boxes"], y["labels"], (0.4, 0.5), (0, -1, 1), low_quality=True)
    assert (states == 1).sum() > 0
    logits = raw["class_logits"].numpy()
    deltas = raw["box_deltas"].numpy()
    one_hot = np.zeros(logits.shape)
    box_sum = 0.0
    for b, a in zip(*np.nonzero(states == 1)):
        one_hot[b, a, y["labels"][b, idx[b, a]]] = 1.0
        target = ref_boxes.delta_encode(anchors[a], y["boxes"][b, idx[b, a]].astype(np.float64), (1, 1, 1, 1))
        box_sum += ref_losses.smooth_l1_per_box(np.array([target]), deltas[b, a][None], 0.1)[0]
    per_anchor, _ = ref_losses.focal_per_anchor(one_hot, logits, 0.25, 2.0)
    num_positive = (states == 1).sum()
    class_ref = (per_anchor * (states != -1)).sum() / num_positive
    assert float(terms["class_loss"]) == pytest.approx(class_ref, rel=1e-4)
    assert float(terms["box_loss"]) == pytest.approx(box_sum / num_positive, rel=1e-4)


@pytest.mark.slow  # the harness's test_retinanet_fit_lowers_a_finite_loss checks the falling loss by default
def test_fit_on_synthetic_images_lowers_the_loss():
    keras.utils.set_random_seed(0)
    model = tiny()
    model.compile(learning_rate=1e-3)
    x, y = synthetic_batch(4)  # 12 objects
    history = model.fit(x, y, batch_size=4, epochs=20, verbose=0).history
    assert {"loss", "class_loss", "box_loss"} <= set(history)
    assert np.isfinite(history["loss"]).all()
    # (measured: 0.81 -> about 0.14; single steps may spike)
    assert np.mean(history["loss"][-3:]) < 0.5 * history["loss"][0], history["loss"]
    assert history["box_loss"][-1] < 0.5 * history["box_loss"][0], history["box_loss"]


def test_giou_variant_trains_a_step():
    model = tiny(box_loss=GIoULoss(reduction="sum"))
    model.compile(learning_rate=1e-3, run_eagerly=True)  # one step: cheaper than tracing the train function
    x, y = synthetic_batch(2)
    before = [w.numpy() for w in conv_layers(model.box_head)[-1].weights]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and 0.0 < logs["box_loss"] <= 2.0  # mean of 1 - GIoU over positives
    after = [w.numpy() for w in conv_layers(model.box_head)[-1].weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_evaluate_with_coco_metric_returns_the_coco_keys():
    model = tiny()
    model.compile(metrics=[COCOMetric(num_classes=NUM_CLASSES)])
    x, y = synthetic_batch(2)
    logs = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    assert set(DETECTION_STATS) | {"loss", "class_loss", "box_loss"} <= set(logs)
    assert all(-1.0 <= logs[k] <= 1.0 for k in DETECTION_STATS)


# -- config and saving ----------------------------------------------------------------------------


@pytest.mark.parametrize("box_loss", [None, GIoULoss(reduction="sum")])
def test_config_round_trip(box_loss):
    model = RetinaNet.compact(num_classes=NUM_CLASSES, width=0.25, box_loss=box_loss, class_names=["a", "b", "c"],
                              max_detections=50, focal_gamma=1.5)
    config = model.get_config()
    json.dumps(config)
    clone = RetinaNet.from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    assert type(clone.box_loss) is type(model.box_loss) and clone.focal_gamma == 1.5
    assert clone.class_names == ["a", "b", "c"] and clone.max_detections == 50


def test_keras_save_load_gives_equal_predictions(tmp_path):
    model = tiny(score_threshold=0.0)
    model.compile()
    path = os.path.join(tmp_path, "retinanet.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, RetinaNet) and loaded.optimizer is not None
    x = images(2)
    a, b = model.predict_on_batch(x), loaded.predict_on_batch(x)
    assert a["num_detections"].min() > 0
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_weights_file_loads_into_a_fresh_model(tmp_path):
    model = tiny(score_threshold=0.0)
    path = os.path.join(tmp_path, "retinanet.weights.h5")
    model.save_weights(path)
    fresh = tiny(score_threshold=0.0)
    fresh.load_weights(path)
    x = images(1)
    a, b = model.predict_on_batch(x), fresh.predict_on_batch(x)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
