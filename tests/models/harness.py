"""The model harness of DESIGN.md §8 / issue "Two-stage core": the checks every detector family passes.

A family's test module describes its model once with a `FamilySpec` and calls `family_tests(spec)`, which
returns pytest test functions to bind at module level:

    spec = FamilySpec(name="faster_rcnn", build=lambda: FasterRCNN.compact(num_classes=3, width=0.25), ...)
    globals().update(family_tests(spec))

The checks (each one test):

1. config round trip: `from_config(get_config())` gives an equal config, and every `__init__` argument is in it;
2. `.keras` save/load gives equal predictions;
3. batch 0: `predict` on 0 images gives the declared outputs with batch 0;
4. a `mixed_float16` training step gives a finite loss;
5. a few `fit` steps on a tiny set: finite loss that falls;
6. degenerate targets (zero-area, inverted, partly and wholly outside the image, an all-padding image)
   give a finite loss and finite gradients;
7. bad input (wrong rank, channels or dtype of the images; labels >= num_classes; labels below -1)
   raises an error naming the argument;
8. an export loaded in a fresh process (no kerasdet import) gives the outputs of `predict`;
9. any input size: the same content on larger canvases (the 256x256, 300x500, 400x400, 480x640 and 513x769 of
   the issue "The user's path", scaled to the test's image size) keeps its mean IoU to the truth within 0.01;
10. an image's detections do not depend on its batch mates: in a list with a larger image (padded with the
   model's pad value), detections away from the padded edge keep their boxes within 1 px and scores within 0.02;
   one `[H, W, 3]` image gives unbatched outputs equal to the batch of one;
11. no op of the traced `detect` and training-step graphs carries a device pin (issue 14: on a GPU every op,
   NMS included, runs there unless the user pins it).

Later issues (the user's path, reliability, speed) add their checks here, once for every family.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.data import prepare, synthetic
from kerasdet.export import saved_model
from kerasdet.ops import iou

HERE = Path(__file__).parent


@dataclasses.dataclass
class FamilySpec:
    """How to make a small model of a family and its inputs.

    Attributes:
        name: test-name prefix.
        build: `() -> Detector`, a small, unbuilt model with `num_classes` classes.
        num_classes: the model's class count (the embedded dataset's labels are folded into it).
        image_size: side of the test images.
        fit_epochs: epochs of `fit` on one batch for the falling-loss check.
        learning_rate: of that fit.
        make_rois: for families with `needs_rois`: `(targets, batch) -> rois [B, R, 4]` (e.g. jittered boxes).
        target_keys: target keys beyond boxes and labels the family trains on ("masks", "keypoints").
        zoo_name: the family's released model, on which the any-input-size check runs.
        zoo_config: entries of the released model's config replaced for the any-input-size check (which reads
            boxes only; e.g. Mask R-CNN's `mask_output="roi"` instead of masks pasted at every canvas size).
        slow_checks: names of harness checks (e.g. "test_mixed_float16_training_step_is_finite") that run with
            `-m slow` only for this family, where another family covers the same code path in the default suite.
    """

    name: str
    build: Callable
    num_classes: int = 3
    image_size: int = 96
    fit_epochs: int = 12
    learning_rate: float = 1e-3
    make_rois: Callable | None = None
    target_keys: tuple = ()
    zoo_name: str | None = None
    zoo_config: dict = dataclasses.field(default_factory=dict)
    slow_checks: tuple = ()


#: the canvases of the any-input-size check (issue "The user's path"), given for 256 px content
CANVASES = ((300, 500), (400, 400), (480, 640), (513, 769))

#: tolerance of the export-equals-predict check per output (DESIGN.md / the Mask R-CNN issue: masks within 1e-3)
EXPORT_ATOL = {"masks": 1e-3}


def synthetic_batch(spec, num_images=4, split="train"):
    """A padded batch of the embedded dataset at `spec.image_size`, labels folded into `spec.num_classes`."""
    ds = synthetic.dataset(split, num_images, image_size=spec.image_size, with_masks="masks" in spec.target_keys,
                           with_keypoints="keypoints" in spec.target_keys)
    x, y = next(iter(prepare(ds, num_images, spec.image_size)))
    y = {k: v.numpy() for k, v in y.items()}
    y["labels"] = np.where(y["labels"] >= 0, y["labels"] % spec.num_classes, -1).astype(np.int32)
    return x.numpy(), y


def default_rois(targets, batch):
    """Ground-truth boxes jittered by a few pixels plus fixed background boxes, padded with -1."""
    rng = np.random.default_rng(0)
    boxes = targets["boxes"]
    jitter = rng.normal(0.0, 2.0, boxes.shape).astype(np.float32)
    fg = np.where(targets["labels"][..., None] >= 0, boxes + jitter, -1.0)
    bg = np.tile(np.asarray([[[0, 0, 30, 30], [40, 40, 90, 90], [10, 50, 60, 95]]], np.float32), (batch, 1, 1))
    return np.concatenate([fg, bg], axis=1).astype(np.float32)


def model_inputs(spec, model, images, targets):
    if not model.needs_rois:
        return images
    make = spec.make_rois or default_rois
    return {"images": images, "rois": make(targets, images.shape[0])}


def built(spec):
    model = spec.build()
    model.build_for_size(spec.image_size)
    return model


def _tie_order(a, b, tie=1e-5):
    """`a` with detections whose scores tie in `b` (consecutive scores within `tie`) put in `b`'s order.

    Two graphs (an export and `predict`, two batch sizes) round a score differently in the last bits, and detections
    whose scores agree to 1e-5 may then swap places (a CI run swapped two Faster R-CNN detections of equal score);
    within such a group each detection of `b` takes the nearest remaining box of `a`. Every other detection keeps its
    place, and the values are compared after this as before."""
    if "scores" not in a or "boxes" not in a or np.asarray(b["scores"]).ndim not in (1, 2):
        return a
    scores_b = np.asarray(b["scores"])
    single = scores_b.ndim == 1
    scores_b = scores_b[None] if single else scores_b
    boxes_a = np.asarray(a["boxes"])[None] if single else np.asarray(a["boxes"])
    boxes_b = np.asarray(b["boxes"])[None] if single else np.asarray(b["boxes"])
    if boxes_a.shape != boxes_b.shape or boxes_b.shape[:2] != scores_b.shape:
        return a
    order = np.tile(np.arange(scores_b.shape[1]), (scores_b.shape[0], 1))
    for i, row in enumerate(scores_b):
        start = 0
        while start < len(row):
            end = start + 1
            while end < len(row) and abs(row[end] - row[end - 1]) < tie:
                end += 1
            if end - start > 1:
                free = list(range(start, end))
                for j in range(start, end):
                    k = min(free, key=lambda f: np.abs(boxes_a[i, f] - boxes_b[i, j]).sum())
                    order[i, j] = k
                    free.remove(k)
            start = end
    out = {}
    for key, value in a.items():
        value = np.asarray(value)
        lead = value[None] if single else value
        if lead.ndim >= 2 and lead.shape[:2] == scores_b.shape:
            lead = np.take_along_axis(lead, order.reshape(order.shape + (1,) * (lead.ndim - 2)), axis=1)
            value = lead[0] if single else lead
        out[key] = value
    return out


def _flat_close(a, b, atol, what, per_key=None):
    assert sorted(a) == sorted(b), f"{what}: keys {sorted(a)} vs {sorted(b)}"
    a = _tie_order(a, b)
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.shape == y.shape, f"{what} {key}: {x.shape} vs {y.shape}"
        if x.dtype.kind in "biu":
            np.testing.assert_array_equal(x, y, err_msg=f"{what} {key}")
        elif key == "keypoints":
            # a keypoint is a heatmap's argmax: on a barely fitted model's nearly flat maps two bins can tie to the
            # last bit and swap between two graphs; such keypoints (peak probability < 0.05, where a confident one is
            # near 1) may differ, at most one in a thousand, and every other value must agree
            tolerance = max(atol, (per_key or {}).get(key, 0.0))
            differs = np.abs(x - y) > tolerance
            unsure = (x[..., 2:3] < 0.05) & (y[..., 2:3] < 0.05)
            assert not (differs & ~unsure).any(), f"{what} {key}: confident keypoints differ"
            assert differs.mean() <= 1e-3, f"{what} {key}: {int(differs.sum())} of {differs.size} values differ"
        else:
            tolerance = max(atol, (per_key or {}).get(key, 0.0))
            np.testing.assert_allclose(x, y, atol=tolerance, rtol=0, err_msg=f"{what} {key}")


def head_targets(spec, boxes, image_size):
    """Masks (each box filled) and keypoints (none labelled) for targets the test writes by hand, as the
    family's `target_keys` need."""
    extra = {}
    if "masks" in spec.target_keys:
        b, m = boxes.shape[:2]
        masks = np.zeros((b, m, image_size, image_size), np.uint8)
        for i in range(b):
            for j in range(m):
                x1, y1, x2, y2 = np.clip(np.round(boxes[i, j]), 0, image_size).astype(int)
                masks[i, j, y1:y2, x1:x2] = 1
        extra["masks"] = masks
    if "keypoints" in spec.target_keys:
        extra["keypoints"] = np.zeros(boxes.shape[:2] + (len(synthetic.KEYPOINT_NAMES), 3), np.float32)
    return extra


def _large_object_iou(model, images, truth, height, width, min_size=100):
    """Mean best same-label IoU of the objects of at least `min_size` px for `images` pasted top-left into
    height x width canvases filled with 114, the predicted boxes clipped to the pasted content."""
    ious = []
    for start in range(0, len(images), 6):
        chunk = images[start:start + 6]
        canvas = np.full((len(chunk), height, width, 3), 114, np.uint8)
        canvas[:, : chunk.shape[1], : chunk.shape[2]] = chunk
        out = model.predict_on_batch(canvas.astype(np.float32))
        for i, t in enumerate(truth[start:start + 6]):
            large = np.maximum(t["boxes"][:, 2] - t["boxes"][:, 0], t["boxes"][:, 3] - t["boxes"][:, 1]) >= min_size
            k = int(out["num_detections"][i])
            if not large.any():
                continue
            if k == 0:
                ious.extend([0.0] * int(large.sum()))
                continue
            # predictions clipped to the content, as the 256 case clips them to its image: what is compared is where
            # the objects are found, not how far a box at the content's edge may reach into the canvas
            boxes = np.clip(out["boxes"][i, :k], 0, [chunk.shape[2], chunk.shape[1]] * 2)
            overlaps = iou(t["boxes"][large], boxes).numpy()
            same = t["labels"][large][:, None] == out["labels"][i, :k][None]
            ious.extend(np.where(same, overlaps, 0.0).max(axis=1))
    return float(np.mean(ious))


def family_tests(spec: FamilySpec) -> dict:
    """The harness's test functions for one family, named `test_<spec.name>_<check>`."""

    @pytest.fixture(scope="module")
    def trained():
        """A model fitted a few steps on one batch (shared by the prediction checks), and the batch."""
        keras.utils.set_random_seed(0)
        model = built(spec)
        x, y = synthetic_batch(spec)
        inputs = model_inputs(spec, model, x, y)
        model.compile(learning_rate=spec.learning_rate)
        history = model.fit(inputs, y, batch_size=len(x), epochs=spec.fit_epochs, verbose=0).history
        return model, inputs, y, history

    def test_config_round_trip():
        model = built(spec)
        config = model.get_config()
        again = type(model).from_config(json.loads(json.dumps(config))).get_config()
        assert json.dumps(again, sort_keys=True) == json.dumps(config, sort_keys=True)
        args = [n for n, p in inspect.signature(type(model).__init__).parameters.items()
                if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        missing = [a for a in args if a not in config]
        assert not missing, f"__init__ arguments not in get_config(): {missing}"

    def test_fit_lowers_a_finite_loss(trained):
        _, _, _, history = trained
        losses = history["loss"]
        assert np.isfinite(losses).all(), losses
        assert set(trained[0].loss_terms) <= set(history), sorted(history)
        assert np.mean(losses[-3:]) < 0.8 * losses[0], losses

    def test_keras_save_load_gives_equal_predictions(trained, tmp_path):
        model, inputs, _, _ = trained
        path = tmp_path / "model.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        _flat_close(loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0), 1e-4, "reloaded")

    def test_batch_zero_gives_empty_declared_outputs():
        model = built(spec)
        images = np.zeros((0, spec.image_size, spec.image_size, 3), np.uint8)
        inputs = images if not model.needs_rois else {"images": images, "rois": np.zeros((0, 2, 4), np.float32)}
        out = model.predict(inputs, verbose=0)
        assert sorted(out) == sorted(model.output_keys)
        assert all(np.asarray(v).shape[0] == 0 for v in out.values())

    def test_mixed_float16_training_step_is_finite():
        keras.config.set_dtype_policy("mixed_float16")
        try:
            model = built(spec)
            x, y = synthetic_batch(spec, 2)
            model.compile(learning_rate=1e-4)
            logs = model.train_on_batch(model_inputs(spec, model, x, y), y, return_dict=True)
        finally:
            keras.config.set_dtype_policy("float32")
        assert np.isfinite(logs["loss"]), logs

    def test_degenerate_targets_give_finite_loss_and_gradients():
        model = built(spec)
        s = float(spec.image_size)
        boxes = np.full((2, 6, 4), -1.0, np.float32)
        labels = np.full((2, 6), -1, np.int32)
        boxes[0, :6] = [[10, 10, 10, 10],                      # zero area
                        [40, 40, 20, 20],                      # inverted
                        [s - 10, s - 10, s + 30, s + 30],      # partly outside
                        [s + 10, s + 10, s + 40, s + 40],      # wholly outside
                        [-30, -30, -5, -5],                    # wholly outside, negative side
                        [5, 5, 40, 40]]                        # one ordinary box
        labels[0, :6] = [0, 1, 2 % spec.num_classes, 0, 1, 0]
        # image 1: all padding
        y = {"boxes": boxes, "labels": labels, **head_targets(spec, boxes, spec.image_size)}
        x = np.random.default_rng(0).uniform(0, 255, (2, spec.image_size, spec.image_size, 3)).astype(np.float32)
        inputs = model_inputs(spec, model, x, y)
        model.compile()
        targets = model.standardize_targets(y, tf.constant(x))
        with tf.GradientTape() as tape:
            raw = model(inputs, training=True, targets=targets)
            loss = model.compute_loss(inputs, targets, raw, training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        assert np.isfinite(float(loss)), float(loss)
        bad = [v.path for v, g in zip(model.trainable_variables, grads) if g is not None and not np.isfinite(g).all()]
        assert not bad, f"non-finite gradients: {bad}"

    def test_bad_input_is_refused_naming_the_argument():
        model = built(spec)
        x, y = synthetic_batch(spec, 2)
        n = spec.image_size

        def wrap(images):
            return images if not model.needs_rois else {"images": images, "rois": np.zeros((len(images), 1, 4), np.float32)}

        with pytest.raises((ValueError, TypeError), match="images"):
            model.predict(wrap(np.zeros((1, 1, n, n, 3), np.float32)), verbose=0)       # rank 5
        with pytest.raises(ValueError, match="images"):
            model.predict(wrap(np.zeros((1, n, n, 4), np.float32)), verbose=0)          # RGBA
        with pytest.raises(TypeError, match="images"):
            model.predict(wrap(np.zeros((1, n, n, 3), np.bool_)), verbose=0)            # dtype
        model.compile()
        inputs = model_inputs(spec, model, x, y)
        too_large = dict(y, labels=np.where(y["labels"] >= 0, spec.num_classes, -1).astype(np.int32))
        with pytest.raises(Exception, match=r"y\['labels'\]"):
            model.train_on_batch(inputs, too_large)
        below = dict(y, labels=np.where(y["labels"] >= 0, -2, -1).astype(np.int32))
        with pytest.raises(Exception, match=r"y\['labels'\]"):
            model.train_on_batch(inputs, below)

    def test_export_in_a_fresh_process_equals_predict(trained, tmp_path):
        model, inputs, _, _ = trained
        path = saved_model(model, tmp_path / "export" / "1")
        images = np.clip(np.asarray(inputs["images"] if isinstance(inputs, dict) else inputs), 0, 255).astype(np.uint8)
        feed = {"images": images}
        if model.needs_rois:
            feed["rois"] = np.asarray(inputs["rois"], np.float32)
        np.savez(tmp_path / "inputs.npz", **feed)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        proc = subprocess.run([sys.executable, str(HERE / "fresh_export_run.py"), str(path), str(tmp_path / "inputs.npz"),
                               str(tmp_path / "outputs.npz")], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        with np.load(tmp_path / "outputs.npz") as f:
            fresh = {k: f[k] for k in f.files}
        assert int(fresh.pop("kerasdet_imported")) == 0
        assert sorted(fresh.pop("signatures")) == ["serving_bytes", "serving_default"]
        expected = model.predict(images if not model.needs_rois else dict(feed), verbose=0)
        _flat_close(fresh, expected, 1e-4, "export", EXPORT_ATOL)

    def test_traced_graphs_carry_no_device_pin(trained):
        model, inputs, y, _ = trained
        as_tensors = tf.nest.map_structure(tf.constant, inputs)
        targets = {k: tf.constant(v) for k, v in y.items()}
        graphs = {"detect": tf.function(model.detect).get_concrete_function(as_tensors).graph,
                  "train_step": tf.function(model.train_step).get_concrete_function((as_tensors, targets)).graph}
        for what, graph in graphs.items():
            definition = graph.as_graph_def()
            nodes = list(definition.node) + [n for f in definition.library.function for n in f.node_def]
            assert len(nodes) > 100, (what, len(nodes))
            pinned = sorted({f"{n.op} on {n.device}" for n in nodes if n.device})
            assert not pinned, f"{what}: {pinned[:10]}"

    def test_any_input_size_keeps_the_boxes():
        """The released model of the family on the issue's canvases: the same 256x256 content (objects >= 100 px)
        top-left on larger canvases (filled with 114, the letterbox grey) keeps its mean IoU to the truth within
        0.01 of the 256x256 case (a barely fitted test model is too fragile for a 0.01 bar)."""
        if spec.zoo_name is None:
            pytest.skip(f"{spec.name} has no released model yet: the size check runs on a trained model")
        import kerasdet

        card = kerasdet.zoo.card(spec.zoo_name)
        weights = kerasdet.zoo.registry.weights_file(spec.zoo_name)
        model = kerasdet.zoo.build(dict(card, config=dict(card["config"], **spec.zoo_config)), weights=weights,
                                   sha256=card["sha256"])
        images, _ = synthetic.generate(30, 256, seed=777)
        truth = [synthetic.render(i, 256, 777)[1] for i in range(30)]
        reference = _large_object_iou(model, images, truth, 256, 256)
        for height, width in CANVASES:
            got = _large_object_iou(model, images, truth, height, width)
            assert abs(got - reference) <= 0.01, f"{height}x{width}: mean IoU {got:.4f} against {reference:.4f} at 256"

    def test_batch_mates_do_not_change_an_images_detections(trained):
        """An image's detections are the same alone, in a batch of one, as one [H, W, 3] image, and in a list
        beside a larger image (each size is detected apart: no padding from the batch mate reaches it)."""
        model, inputs, _, _ = trained
        if model.needs_rois:
            pytest.skip("families on external proposals take batches with rois")
        images = np.asarray(inputs)
        n = spec.image_size
        alone = model.predict(images[:1], verbose=0)
        one = {k: v[0] for k, v in alone.items()}
        _flat_close(model.predict(images[0], verbose=0), one, 1e-5, "one [H, W, 3] image")
        larger = np.full((n + n // 2, 2 * n, 3), 200, np.float32)
        listed = model.predict([images[0], larger, images[1]], verbose=0)
        assert isinstance(listed, list) and len(listed) == 3
        # the list's two same-size images run as one batch of 2, compared with batches of 1: oneDNN's kernels for
        # another batch size round differently, and a mask's probability, a sigmoid pasted bilinearly, moved by up to
        # 1.7e-4 in one CI run; masks are held to the 1e-3 (as the export check), every other output to 1e-4
        _flat_close(listed[0], one, 1e-4, "beside a larger image", EXPORT_ATOL)
        _flat_close(listed[2], {k: v[0] for k, v in model.predict(images[1:2], verbose=0).items()}, 1e-4,
                    "the third image of a list", EXPORT_ATOL)
        if "masks" in listed[1]:
            assert listed[1]["masks"].shape[1:] == larger.shape[:2]
        # a padded batch with each image's size (the export's serving_bytes) gives the same as the list
        padded = np.zeros((2, n + n // 2, 2 * n, 3), np.float32)
        padded[0, :n, :n], padded[1] = images[0], larger
        out = model.detect_padded(padded, np.array([[n, n], larger.shape[:2]], np.int32))
        first = {k: np.asarray(v[0]) for k, v in out.items()}
        if "masks" in first and getattr(model, "mask_output", "pasted") == "pasted":
            assert not first["masks"][:, n:].any() and not first["masks"][:, :, n:].any()
            first["masks"] = first["masks"][:, :n, :n]
        _flat_close(first, one, 1e-4, "in a padded batch with image sizes", EXPORT_ATOL)

    # every check defined above (a new check cannot be left out of the list by mistake)
    tests = {"trained": trained, **{k: v for k, v in locals().items() if k.startswith("test_") and callable(v)}}
    unknown = set(spec.slow_checks) - set(tests)
    if unknown:
        raise ValueError(f"{spec.name}: slow_checks names no harness check: {sorted(unknown)}")
    for name in spec.slow_checks:
        tests[name] = pytest.mark.slow(tests[name])
    return {(k if k == "trained" else k.replace("test_", f"test_{spec.name}_", 1)): v for k, v in tests.items()}
