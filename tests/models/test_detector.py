"""The `Detector` base class on a tiny family with fixed outputs: input checks, prediction dict, batch 0,
compile defaults, fit / evaluate wiring, config and .keras round trips (DESIGN.md §3)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.metrics.coco import DETECTION_STATS
from kerasdet.metrics.keras_metrics import COCOMetric
from kerasdet.models.detector import Detector
from tests.models.toy_detector import ToyDetector

SIZE = 32
#: candidates as image fractions: three separate boxes and a fourth on top of the first
FRACTIONS = [[0.05, 0.05, 0.3, 0.3], [0.5, 0.1, 0.9, 0.4], [0.2, 0.6, 0.5, 0.95], [0.06, 0.05, 0.3, 0.31]]
#: logits: box 0 class 1 (0.95), box 1 class 0 (0.88), box 2 class 1 (0.73), box 3 class 1 (0.5,
#: suppressed by box 0), every other (box, class) far below the score threshold
LOGITS = [[-9.0, 3.0], [2.0, -9.0], [-9.0, 1.0], [-9.0, 0.0]]


def make_model(**kwargs):
    model = ToyDetector(num_classes=2, num_boxes=4, max_detections=6, **kwargs)
    model.build_for_size(SIZE)
    model.set_outputs(FRACTIONS, LOGITS)
    return model


def images(batch, size=SIZE, dtype=np.uint8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3)).astype(dtype)


def expected_boxes(size=SIZE):
    return np.asarray(FRACTIONS, np.float32)[[0, 1, 2]] * size


def targets(batch, size=SIZE):
    """Ground truth equal to the three detections the fixed model makes, plus a padding row."""
    boxes = np.full((batch, 4, 4), -1.0, np.float32)
    labels = np.full((batch, 4), -1, np.int32)
    boxes[:, :3] = expected_boxes(size)
    labels[:, :3] = [1, 0, 1]
    return {"boxes": boxes, "labels": labels}


@pytest.fixture(scope="module")
def model():
    return make_model()


# -- prediction -----------------------------------------------------------------------------------


def test_predict_returns_padded_detections(model):
    out = model.predict(images(3), verbose=0)
    assert sorted(out) == ["boxes", "labels", "num_detections", "scores"]
    assert out["boxes"].shape == (3, 6, 4) and out["boxes"].dtype == np.float32
    assert out["scores"].shape == (3, 6) and out["labels"].shape == (3, 6)
    assert out["labels"].dtype == np.int32 and out["num_detections"].dtype == np.int32
    np.testing.assert_array_equal(out["num_detections"], [3, 3, 3])
    np.testing.assert_array_equal(out["labels"], [[1, 0, 1, -1, -1, -1]] * 3)
    np.testing.assert_allclose(out["scores"][:, :3], np.tile(1 / (1 + np.exp(-np.array([3.0, 2.0, 1.0]))), (3, 1)),
                               rtol=1e-5)
    np.testing.assert_array_equal(out["scores"][:, 3:], 0.0)
    np.testing.assert_allclose(out["boxes"][:, :3], np.tile(expected_boxes(), (3, 1, 1)), atol=1e-3)
    np.testing.assert_array_equal(out["boxes"][:, 3:], -1.0)


def test_uint8_and_float_images_agree(model):
    a = model.predict_on_batch(images(2))
    b = model.predict_on_batch(images(2).astype(np.float32))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_detect_in_graph_matches_predict(model):
    detect = tf.function(model.detect, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    x = images(2, size=48)
    graph = detect(tf.constant(x))
    eager = model.predict(x, verbose=0)
    for key in eager:
        np.testing.assert_allclose(graph[key].numpy(), eager[key], atol=1e-5)
    np.testing.assert_allclose(eager["boxes"][0, :3], expected_boxes(48), atol=1e-3)


@pytest.mark.parametrize("how", ["eager", "graph", "predict", "predict_on_batch"])
def test_batch_zero_gives_empty_padded_outputs(model, how):
    x = images(0)
    if how == "eager":
        out = model.detect(x)
    elif how == "graph":
        detect = tf.function(model.detect, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        out = detect(tf.constant(x))
    elif how == "predict":
        out = model.predict(x, verbose=0)
    else:
        out = model.predict_on_batch(x)
    shapes = {k: tuple(np.shape(v)) for k, v in out.items()}
    assert shapes == {"boxes": (0, 6, 4), "scores": (0, 6), "labels": (0, 6), "num_detections": (0,)}
    assert np.asarray(out["labels"]).dtype == np.int32


def test_batch_zero_with_empty_image_size(model):
    detect = tf.function(model.detect, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    out = detect(tf.zeros([0, 0, 0, 3], tf.uint8))
    assert tuple(out["boxes"].shape) == (0, 6, 4)


# -- input checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (np.zeros((SIZE, SIZE, 3), np.uint8), ValueError, ["images", "[B, H, W, 3]", "(32, 32, 3)"]),
        (np.zeros((1, SIZE, SIZE, 1), np.uint8), ValueError, ["images", "(1, 32, 32, 1)", "to_rgb"]),
        (np.zeros((1, SIZE, SIZE, 4), np.float32), ValueError, ["images", "(1, 32, 32, 4)"]),
        (np.zeros((1, SIZE, SIZE, 3), np.int32), TypeError, ["images", "uint8 or float", "int32"]),
        (np.zeros((1, SIZE, SIZE, 3), bool), TypeError, ["images", "bool"]),
    ],
)
@pytest.mark.parametrize("entry", ["call", "detect", "predict"])
def test_bad_images_raise_naming_the_argument(model, bad, error, words, entry):
    if bad.ndim == 3 and entry != "call":
        # detect / predict take one [H, W, 3] image (DESIGN.md §3): outputs without the batch axis
        out = model.detect(bad) if entry == "detect" else make_model().predict(bad, verbose=0)
        assert tuple(np.shape(out["boxes"])) == (model.max_detections, 4) and np.shape(out["num_detections"]) == ()
        return
    with pytest.raises(error) as info:
        if entry == "call":
            model(bad)
        elif entry == "detect":
            model.detect(bad)
        else:
            make_model().predict(bad, verbose=0)  # fresh: its predict function is traced for `bad` only
    for word in words:
        assert word in str(info.value), str(info.value)


def test_images_must_be_a_tensor_or_array(model):
    with pytest.raises(TypeError, match="`images` must be a tensor or array .* got list"):
        model([[[[0, 0, 0]]]])
    # detect takes a list of [H, W, 3] images, and names the one that is not
    with pytest.raises(ValueError, match=r"images\[0\]"):
        model.detect([[[[0, 0, 0]]]])


def test_bad_images_after_relaxed_traces_give_the_first_calls_value_error():
    model = make_model()
    for size in (32, 40, 48):  # Keras' predict function relaxes its input shape after retracing
        model.predict(images(1, size=size), verbose=0)
    for bad in (np.zeros((2, SIZE, SIZE), np.uint8), np.zeros((1, SIZE, SIZE, 4), np.uint8)):
        with pytest.raises(ValueError, match=r"`x \(images\)` must have shape \[B, H, W, 3\]"):
            model.predict(bad, verbose=0)


@pytest.fixture(scope="module")
def compiled():
    model = make_model()
    model.compile(learning_rate=1e-2)
    return model


@pytest.mark.parametrize(
    "y, error, words",
    [
        ({"boxes": np.zeros((2, 3, 4), np.float32)}, ValueError, ["`y`", "labels"]),
        ({"labels": np.zeros((2, 3), np.int32)}, ValueError, ["`y`", "boxes"]),
        ({"boxes": np.zeros((2, 3, 5), np.float32), "labels": np.zeros((2, 3), np.int32)}, ValueError,
         ["y['boxes']", "[B, M, 4]", "(2, 3, 5)"]),
        ({"boxes": np.zeros((2, 3, 4), np.float32), "labels": np.zeros((2, 3, 1), np.int32)}, ValueError,
         ["y['labels']", "[B, M]", "(2, 3, 1)"]),
        ({"boxes": np.zeros((2, 3, 4), np.float32), "labels": np.zeros((2, 4), np.int32)}, ValueError,
         ["y['boxes']", "y['labels']", "M"]),
    ],
)
def test_bad_targets_raise_naming_the_argument(compiled, y, error, words):
    with pytest.raises(error) as info:
        compiled.fit(images(2), y, epochs=1, batch_size=2, verbose=0)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_targets_must_be_a_dict(compiled):
    with pytest.raises(TypeError, match="`y` must be a dict"):
        compiled.train_on_batch(images(2), (np.zeros((2, 3, 4), np.float32), np.zeros((2, 3), np.int32)))


def test_missing_targets_and_sample_weight(compiled):
    with pytest.raises(ValueError, match="needs targets `y`"):
        compiled.fit(images(2), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="sample_weight"):
        compiled.fit(images(2), targets(2), sample_weight=np.ones(2, np.float32), epochs=1, verbose=0)


def test_compile_rejects_losses_and_non_metrics():
    model = make_model()
    for key in ("loss", "loss_weights", "weighted_metrics"):
        with pytest.raises(ValueError, match=f"`{key}`"):
            model.compile(**{key: "mse" if key == "loss" else ["mse"] if key == "weighted_metrics" else [1.0]})
    with pytest.raises(TypeError, match="`metrics`"):
        model.compile(metrics=["accuracy"])


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"num_classes": 0}, ["num_classes", "0"]),
        ({"num_classes": 2.0}, ["num_classes", "2.0"]),
        ({"num_classes": 2, "class_names": ["a"]}, ["class_names", "1", "num_classes", "2"]),
        ({"num_classes": 2, "score_threshold": 1.5}, ["score_threshold", "1.5"]),
        ({"num_classes": 2, "nms_iou_threshold": -0.1}, ["nms_iou_threshold", "-0.1"]),
        ({"num_classes": 2, "max_detections": 0}, ["max_detections", "0"]),
    ],
)
def test_constructor_checks(kwargs, words):
    with pytest.raises(ValueError) as info:
        ToyDetector(**kwargs)
    for word in words:
        assert word in str(info.value)


# -- compile, fit, evaluate -----------------------------------------------------------------------


def test_compile_defaults():
    model = make_model()
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert model.optimizer.global_clipnorm == 10.0
    assert not model.jit_compile


def test_fit_logs_each_term_and_lowers_the_loss():
    model = make_model()
    model.set_outputs(np.full((4, 4), 0.5), np.zeros((4, 2)))
    model.compile(learning_rate=0.05)
    history = model.fit(images(4), targets(4), epochs=15, batch_size=4, verbose=0).history
    assert {"loss", "class_loss", "box_loss"} <= set(history)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    np.testing.assert_allclose(history["loss"], np.add(history["class_loss"], history["box_loss"]), rtol=1e-5)


def test_a_built_model_makes_its_optimizer_before_the_training_step_is_traced(monkeypatch):
    """Keras leaves the optimizer's variables to the first trace of the training step when no strategy is set,
    and a tf.function that makes variables is traced twice; a built Detector's fit and train_on_batch make them
    first, so that no variable is created inside the step (one trace), with the weights Keras' own path gives."""
    created = []

    def creator(next_creator, **kwargs):
        variable = next_creator(**kwargs)
        if tf.inside_function():
            created.append(variable.name)
        return variable

    initial = make_model().get_weights()

    def train(how):
        model = make_model()
        model.set_weights(initial)
        model.compile(learning_rate=0.05)
        with tf.variable_creator_scope(creator):
            if how == "train_on_batch":
                model.train_on_batch(images(4), targets(4))
            else:
                model.fit(images(4), targets(4), epochs=1, batch_size=4, verbose=0)
        assert model.optimizer.built
        made_in_trace = list(created)
        created.clear()
        return [v.numpy() for v in model.trainable_variables], made_in_trace

    fitted, in_trace = train("fit")
    assert in_trace == []
    stepped, in_trace = train("train_on_batch")
    assert in_trace == []
    monkeypatch.setattr(ToyDetector, "_build_optimizer_before_tracing", lambda self: None)
    keras_path, in_trace = train("fit")
    assert len(in_trace) > 0  # what Keras alone does (so the probe above can see it)
    for a, b, c in zip(fitted, stepped, keras_path):
        # equal up to the last bits that TensorFlow's threaded reductions vary from run to run
        np.testing.assert_allclose(c, a, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-8)


def test_fit_on_a_dataset_does_not_warn_about_shuffling(recwarn):
    """Keras' default `shuffle=True` only warns for a tf.data.Dataset (it cannot shuffle one): a Detector takes the
    dataset in its own order without the warning, and an explicit `shuffle=True` still reaches Keras."""
    model = make_model()
    model.compile(learning_rate=1e-3)
    ds = tf.data.Dataset.from_tensor_slices((images(4), targets(4))).batch(2)
    model.fit(ds, epochs=1, verbose=0)
    assert not [w for w in recwarn if "shuffle" in str(w.message)]
    with pytest.warns(UserWarning, match="shuffle=True"):
        model.fit(ds, epochs=1, verbose=0, shuffle=True)


def test_freeze_keeps_the_named_parts_and_names_the_parts_there_are():
    model = make_model()
    model.compile(learning_rate=0.05)
    conv_before = np.array(model.conv.kernel.numpy())
    assert model.freeze("conv") is model
    model.compile(learning_rate=0.05)
    box_before = np.array(model.box_out.kernel.numpy())
    model.fit(images(4), targets(4), epochs=2, batch_size=4, verbose=0)
    np.testing.assert_array_equal(model.conv.kernel.numpy(), conv_before)
    assert not np.array_equal(model.box_out.kernel.numpy(), box_before)
    with pytest.raises(ValueError, match=r"no part 'trunk' to freeze; its parts are \[.*'class_out'.*'conv'"):
        model.freeze("trunk")


def test_evaluate_with_coco_metric_scores_the_decoded_detections():
    model = make_model()
    model.compile(metrics=[COCOMetric(num_classes=2)])
    logs = model.evaluate(images(4), targets(4), batch_size=2, verbose=0, return_dict=True)
    assert set(DETECTION_STATS) <= set(logs)
    assert {"loss", "class_loss", "box_loss"} <= set(logs)
    # the fixed detections coincide with the ground truth: perfect scores at every IoU threshold
    assert logs["AP"] == pytest.approx(1.0) and logs["AP50"] == pytest.approx(1.0)
    # a wrong label for one of the three objects costs that class's AP
    wrong = targets(4)
    wrong["labels"][:, 1] = 1
    logs = model.evaluate(images(4), wrong, batch_size=2, verbose=0, return_dict=True)
    assert logs["AP"] < 0.9


def test_training_does_not_feed_detection_metrics():
    model = make_model()
    metric = COCOMetric(num_classes=2)
    model.compile(metrics=[metric])
    history = model.fit(images(2), targets(2), epochs=1, batch_size=2, verbose=0).history
    assert not set(DETECTION_STATS) & set(history)
    assert metric._num_images == 0


# -- config and saving ----------------------------------------------------------------------------


def test_config_round_trip():
    model = ToyDetector(num_classes=2, num_boxes=3, class_names=["a", "b"], score_threshold=0.2,
                        nms_iou_threshold=0.4, max_detections=7, name="toy")
    config = model.get_config()
    for key, value in dict(num_classes=2, num_boxes=3, class_names=["a", "b"], score_threshold=0.2,
                           nms_iou_threshold=0.4, max_detections=7).items():
        assert config[key] == value
    clone = ToyDetector.from_config(config)
    assert clone.get_config() == config
    assert isinstance(clone, Detector)


def test_keras_save_load_gives_equal_predictions(tmp_path, model):
    path = os.path.join(tmp_path, "toy.keras")
    model.compile()
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, ToyDetector) and loaded.optimizer is not None
    x = images(2)
    a, b = model.predict_on_batch(x), loaded.predict_on_batch(x)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("fmt", ["center_xywh", "yxyx", "rel_xyxy", "xywh"])
def test_bounding_box_format_applies_to_targets_and_predictions(fmt):
    """Predictions come back in the model's `bounding_box_format`; targets given in it train the same model
    as xyxy targets (the loss is equal)."""
    from kerasdet.ops.boxes import convert_format

    xyxy_model = make_model()
    model = make_model(bounding_box_format=fmt)
    x = images(2)
    ours, ref = model.predict(x, verbose=0), xyxy_model.predict(x, verbose=0)
    k = int(ref["num_detections"][0])
    expected = convert_format(ref["boxes"][:, :k], "xyxy", fmt, height=SIZE, width=SIZE).numpy()
    np.testing.assert_allclose(ours["boxes"][:, :k], expected, atol=1e-4)
    assert np.all(ours["boxes"][:, k:] == -1)
    y = targets(2)
    converted = dict(y, boxes=np.where(y["labels"][..., None] >= 0,
                                       convert_format(y["boxes"], "xyxy", fmt, height=SIZE, width=SIZE).numpy(), -1))
    for m in (model, xyxy_model):
        m.compile()
    loss = model.compute_loss(x, converted, model(x, training=False))
    ref_loss = xyxy_model.compute_loss(x, y, xyxy_model(x, training=False))
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)


def test_classes_is_read_as_labels_and_bad_labels_are_refused():
    model = make_model()
    model.compile()
    x, y = images(2), targets(2)
    as_classes = {"boxes": y["boxes"], "classes": y["labels"]}
    np.testing.assert_allclose(float(model.compute_loss(x, as_classes, model(x))), float(model.compute_loss(x, y, model(x))))
    model.train_on_batch(x, as_classes)
    with pytest.raises(ValueError, match=r"y\['labels'\]` holds the label 2"):
        model.train_on_batch(x, dict(y, labels=np.where(y["labels"] >= 0, 2, -1).astype(np.int32)))
    with pytest.raises(ValueError, match=r"y\['classes'\]` holds the label -3"):
        model.fit(x, {"boxes": y["boxes"], "classes": np.full_like(y["labels"], -3)}, verbose=0)
    with pytest.raises(ValueError, match=r"y\['boxes'\]` holds NaN"):
        model.train_on_batch(x, dict(y, boxes=np.full_like(y["boxes"], np.nan)))
    with pytest.raises(ValueError, match="bounding_box_format"):
        ToyDetector(num_classes=2, bounding_box_format="xyxy_pixels")


def test_evaluate_feeds_metrics_the_targets_in_the_models_box_format():
    """`evaluate` gives detection metrics the targets as the user gave them and detections in the same
    `bounding_box_format` (a metric that compares them sees equal boxes for the fixed model)."""
    seen = []

    class Spy(keras.metrics.Metric):
        def update_state(self, y_true, y_pred, sample_weight=None):
            seen.append((y_true["boxes"], y_pred["boxes"]))

        def result(self):
            return 0.0

    model = make_model(bounding_box_format="yxyx")
    model.compile(metrics=[Spy(name="spy")], run_eagerly=True)
    y = targets(1)
    yxyx = dict(y, boxes=np.where(y["labels"][..., None] >= 0, y["boxes"][..., [1, 0, 3, 2]], -1).astype(np.float32))
    model.evaluate(images(1), yxyx, verbose=0)
    given, predicted = (np.asarray(t) for t in seen[0])
    np.testing.assert_allclose(given[0, :3], yxyx["boxes"][0, :3])
    # the fixed model predicts the three target boxes (in some order of score)
    for box in given[0, :3]:
        assert np.any(np.all(np.isclose(predicted[0], box, atol=1e-3), axis=1))


def test_the_refusal_names_the_first_non_finite_pixel_and_sanitize_images_replaces_them(tmp_path):
    bad = np.full((2, SIZE, SIZE, 3), 100.0, np.float32)
    bad[1, 5, 7, 2] = np.nan
    bad[1, 9, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"first is nan at index \[1, 5, 7, 2\].*sanitize_images=True"):
        make_model().predict(bad, verbose=0)
    with pytest.raises(ValueError, match=r"first is nan at index \[1, 5, 7, 2\]"):
        make_model().detect(bad)
    with pytest.raises(TypeError, match="sanitize_images"):
        make_model(sanitize_images="yes")
    clean = bad.copy()
    clean[1, 5, 7, 2], clean[1, 9, 0, 0] = 0.0, 255.0
    lenient = make_model(sanitize_images=True)
    want = make_model().predict(clean, verbose=0)
    got = lenient.predict(bad, verbose=0)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    lenient.compile()
    targets = {"boxes": np.array([[[2.0, 2.0, 20.0, 20.0]]] * 2, np.float32), "labels": np.array([[0]] * 2, np.int32)}
    logs = lenient.train_on_batch(bad, targets, return_dict=True)
    assert np.isfinite(logs["loss"]) and all(np.isfinite(w.numpy()).all() for w in lenient.weights)
    assert lenient.get_config()["sanitize_images"] is True
    path = str(tmp_path / "lenient.keras")
    lenient.save(path)
    assert keras.models.load_model(path).sanitize_images is True


def test_images_with_nan_or_inf_are_refused_at_every_entry(model):
    """One NaN pixel would change every detection (and one training step on it every weight): refused, naming the
    images, eagerly and inside predict's graph."""
    bad = np.full((1, SIZE, SIZE, 3), 100.0, np.float32)
    bad[0, 3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="images.*NaN"):
        model(bad)
    with pytest.raises(ValueError, match="images.*NaN"):
        model.detect(bad)
    with pytest.raises(Exception, match="NaN or infinite"):
        make_model().predict(np.where(np.isnan(bad), np.inf, bad), verbose=0)
    trained = make_model()
    trained.compile()
    before = [w.numpy().copy() for w in trained.trainable_weights]
    targets = {"boxes": np.array([[[2.0, 2.0, 20.0, 20.0]]], np.float32), "labels": np.array([[0]], np.int32)}
    with pytest.raises(Exception, match="NaN or infinite"):
        trained.train_on_batch(bad, targets)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, trained.trainable_weights))


def test_xla_forward_detects_as_without_it_compiles_once_per_padded_size_and_exports_without_xla(tmp_path):
    class Strided(ToyDetector):
        size_divisor = 8  # images are padded to multiples of 8 before the network

    def strided(**kwargs):
        model = Strided(num_classes=2, num_boxes=4, max_detections=6, **kwargs)
        model.build_for_size(SIZE)
        model.set_outputs(FRACTIONS, LOGITS)
        return model

    plain, compiled = strided(), strided(xla_forward=True)
    compiled.set_weights(plain.get_weights())
    assert compiled.get_config()["xla_forward"] is True
    rng = np.random.default_rng(3)
    for size in (SIZE, SIZE - 3, SIZE - 5):  # all three pad to one size: one compilation
        images = rng.uniform(0, 255, (2, size, size, 3)).astype(np.float32)
        want, got = plain.detect(images), compiled.detect(images)
        np.testing.assert_array_equal(got["labels"].numpy(), want["labels"].numpy())
        np.testing.assert_allclose(got["boxes"].numpy(), want["boxes"].numpy(), atol=1e-3)
        np.testing.assert_allclose(got["scores"].numpy(), want["scores"].numpy(), atol=1e-5)
    assert compiled._compiled_forward.experimental_get_tracing_count() == 1
    with pytest.raises(TypeError, match="xla_forward"):
        make_model(xla_forward=1)
    bad = np.full((1, SIZE, SIZE, 3), 100.0, np.float32)
    bad[0, 2, 3, 1] = np.nan  # XLA's CPU CheckNumerics lets NaN through: the check runs before the compiled call
    with pytest.raises(ValueError, match=r"first is nan at index \[0, 2, 3, 1\]"):
        compiled.detect(bad)
    with pytest.raises(Exception, match="NaN or infinite"):
        compiled.predict(tf.data.Dataset.from_tensor_slices(bad).batch(1), verbose=0)
    lenient = strided(xla_forward=True, sanitize_images=True)
    lenient.set_weights(plain.get_weights())
    clean = np.where(np.isnan(bad), 0.0, bad).astype(np.float32)
    np.testing.assert_array_equal(lenient.detect(bad)["labels"].numpy(), plain.detect(clean)["labels"].numpy())
    from kerasdet.export import saved_model

    default = saved_model(compiled, tmp_path / "default")
    kept = saved_model(compiled, tmp_path / "xla", xla=True)
    assert b"_XlaMustCompile" not in (default / "saved_model.pb").read_bytes()
    assert b"_XlaMustCompile" in (kept / "saved_model.pb").read_bytes()  # the check above can see the attribute
    served = tf.saved_model.load(str(default)).signatures["serving_default"]
    out = served(images=tf.constant(np.full((1, SIZE, SIZE, 3), 90, np.uint8)))
    np.testing.assert_array_equal(out["labels"].numpy(), plain.detect(np.full((1, SIZE, SIZE, 3), 90.0, np.float32))["labels"].numpy())


def test_families_whose_forward_pass_holds_nms_refuse_xla_forward():
    from kerasdet.models import FasterRCNN

    with pytest.raises(ValueError, match="FasterRCNN cannot take `xla_forward=True`"):
        FasterRCNN.compact(num_classes=3, xla_forward=True)
