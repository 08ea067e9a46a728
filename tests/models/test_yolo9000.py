"""YOLO9000: the model harness on a compact model over a small WordTree, node targets and classification-only
rows, the joint-training loss written out, the tree descent's outputs, and the embedded experiment's data."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.data import prepare, synthetic
from kerasdet.data.pipeline import padded_batch
from kerasdet.layers import WordTree
from kerasdet.models.yolo_v2 import YOLO9000
from tests.models import harness

#: three classes as leaves (nodes 2, 3, 4) under two roots
TREE = WordTree(["round", "angular", "c0", "c1", "c2"], [-1, -1, 0, 0, 1])

SPEC = harness.FamilySpec(name="yolo9000", build=lambda: YOLO9000.compact(num_classes=3, word_tree=TREE, width=0.125,
                                                                            class_nodes=(2, 3, 4)),
                          zoo_name=None, fit_epochs=15, slow_checks=("test_mixed_float16_training_step_is_finite",))
globals().update(harness.family_tests(SPEC))


def _model(**kwargs):
    return YOLO9000.compact(num_classes=3, word_tree=TREE, width=0.125, class_nodes=(2, 3, 4), **kwargs)


def _log_softmax(v):
    v = np.asarray(v, np.float64)
    return v - v.max() - math.log(np.exp(v - v.max()).sum())


def _path_log_p(logits, node):
    """log P(node) of the tree above from one prediction's 5 node logits, by hand."""
    roots, round_children = _log_softmax(logits[[0, 1]]), _log_softmax(logits[[2, 3]])
    table = {0: roots[0], 1: roots[1], 2: roots[0] + round_children[0], 3: roots[0] + round_children[1],
             4: roots[1] + 0.0}  # c2 is angular's only child: P(c2 | angular) = 1
    return table[node]


def test_classification_only_image_trains_one_prediction_at_its_node():
    """On an image whose only row is (boxes -1, node n): the class loss is -log P(n) of the prediction with the
    highest P(n), the objectness loss 5 (sigmoid(t_o) - 0.3)^2 on that prediction, and no other term."""
    model = _model()
    images = tf.zeros([2, 64, 64, 3])
    rng = np.random.default_rng(0)
    predictions = rng.normal(0, 1.5, (2, 4, 4, 5, 10)).astype(np.float32)
    y = {"boxes": np.array([[[-1, -1, -1, -1]], [[-1, -1, -1, -1]]], np.float32), "nodes": np.array([[3], [1]])}
    targets = model.standardize_targets(y, images)
    assert targets["image_nodes"].numpy().tolist() == [3, 1]
    model._training_loss = True
    got = model.detection_losses(images, targets, {"predictions": tf.constant(predictions)})
    flat = predictions.reshape(2, -1, 10)
    want_class = want_object = 0.0
    for b, node in ((0, 3), (1, 1)):
        log_p = [_path_log_p(flat[b, k, 5:], node) for k in range(flat.shape[1])]
        best = int(np.argmax(log_p))
        want_class += -log_p[best]
        want_object += 5.0 * (1 / (1 + math.exp(-flat[b, best, 4])) - 0.3) ** 2
    np.testing.assert_allclose(float(got["class_loss"]), want_class / 2, rtol=1e-5)
    np.testing.assert_allclose(float(got["object_loss"]), want_object / 2, rtol=1e-5)
    for name in ("coord_loss", "noobject_loss", "prior_loss"):
        assert float(got[name]) == 0.0, name


def test_detection_rows_train_the_hierarchical_class_loss_at_their_node():
    """A detection object labelled at the inner node "round" trains -log P(round) on its responsible prediction;
    labelled at a leaf, -log P(leaf) = -(log P(round) + log P(leaf | round))."""
    model = _model(prior_pull_images=0)
    images = tf.zeros([1, 64, 64, 3])
    predictions = np.random.default_rng(1).normal(0, 1, (1, 4, 4, 5, 10)).astype(np.float32)
    for node in (0, 3):
        y = {"boxes": np.array([[[4, 4, 30, 30]]], np.float32), "nodes": np.array([[node]])}
        targets = model.standardize_targets(y, images)
        slot = int(model.responsibilities(targets, tf.constant([4, 4]))[0, 0])
        got = model.detection_losses(images, targets, {"predictions": tf.constant(predictions)})
        want = -_path_log_p(predictions.reshape(1, -1, 10)[0, slot, 5:], node)
        np.testing.assert_allclose(float(got["class_loss"]), want, rtol=1e-5)


def _class_columns(model, nodes):
    """The predictor kernel's columns of the class logits of `nodes`, for every anchor."""
    per_anchor = 5 + model.class_outputs
    return [a * per_anchor + 5 + n for a in range(len(model.anchors)) for n in nodes]


def test_class_logits_start_at_zero_and_an_unreached_sibling_group_stays_uniform():
    """The predictor's class logits start at zero (its box and objectness outputs do not); trained on detection rows
    that name only "round" (node 0) and "c2", the group {c0, c1} under "round" gets no gradient, keeps its zero
    weights, so P(c0 | round) = P(c1 | round) = 1/2 exactly and no detection names c0 or c1."""
    model = _model(score_threshold=0.0)
    model.compile(learning_rate=1e-2)
    image = np.random.default_rng(4).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    y = {"boxes": np.array([[[4, 4, 30, 30], [30, 30, 60, 62]], [[10, 2, 40, 20], [-1, -1, -1, -1]]], np.float32),
         "nodes": np.array([[0, 4], [0, -1]])}
    model(image)
    kernel = model.predictor.kernel.numpy()
    assert (kernel[..., _class_columns(model, range(5))] == 0).all()
    assert (kernel[..., [a * 10 + k for a in range(5) for k in range(5)]] != 0).mean() > 0.99
    for _ in range(5):
        model.train_on_batch(image, y)
    kernel, bias = model.predictor.kernel.numpy(), model.predictor.bias.numpy()
    unreached = _class_columns(model, (2, 3))
    assert (kernel[..., unreached] == 0).all() and (bias[unreached] == 0).all()
    assert (kernel[..., _class_columns(model, (0, 1))] != 0).any()  # the roots did learn
    out = model.predict(image, verbose=0)
    assert out["num_detections"].sum() > 0
    named = out["nodes"][out["scores"] > 0]
    assert not np.isin(named, [2, 3]).any()


def test_predictions_descend_the_tree():
    """`nodes` is the deepest node whose path probability stays above the threshold, `node_scores` that probability,
    `scores` objectness x it, `labels` the node's class or -1 for an inner node."""
    model = _model(score_threshold=0.0)
    # class logits start at zero (every group uniform): random ones so that some predictions descend to leaves
    image = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    model(image)
    rng = np.random.default_rng(5)
    model.predictor.kernel.assign(rng.normal(0, 0.3, model.predictor.kernel.shape).astype(np.float32))
    out = model.predict(image, verbose=0)
    assert (out["labels"][out["scores"] > 0] >= 0).any()  # some detection reached a leaf
    assert out["num_detections"].sum() > 0
    raw = model(image)
    flat = tf.reshape(raw["predictions"], [2, -1, 10]).numpy()
    for b in range(2):
        for d in range(int(out["num_detections"][b])):
            node, path = int(out["nodes"][b, d]), float(out["node_scores"][b, d])
            assert out["labels"][b, d] == {2: 0, 3: 1, 4: 2}.get(node, -1)
            # the detection's own prediction: the one whose objectness x path probability is its score
            gaps = [abs(math.exp(_path_log_p(flat[b, k, 5:], node)) / (1 + math.exp(-flat[b, k, 4])) - out["scores"][b, d])
                    for k in range(flat.shape[1])]
            k = int(np.argmin(gaps))
            assert gaps[k] < 1e-6, (b, d)
            np.testing.assert_allclose(path, math.exp(_path_log_p(flat[b, k, 5:], node)), rtol=1e-5)
            assert path > 0.5 or node in (0, 1)


def test_an_image_with_a_classification_row_trains_no_detection_term():
    """Box rows beside a classification row: the image is a classification image (no coordinate term)."""
    model = _model()
    images = tf.zeros([1, 64, 64, 3])
    y = {"boxes": np.array([[[4, 4, 30, 30], [-1, -1, -1, -1]]], np.float32), "nodes": np.array([[2, 3]])}
    targets = model.standardize_targets(y, images)
    predictions = np.random.default_rng(3).normal(0, 1, (1, 4, 4, 5, 10)).astype(np.float32)
    got = model.detection_losses(images, targets, {"predictions": tf.constant(predictions)})
    assert float(got["coord_loss"]) == 0.0 and float(got["class_loss"]) > 0


def test_node_targets_are_checked_against_the_tree():
    model = _model()
    x = np.zeros((1, 64, 64, 3), np.float32)
    with pytest.raises(ValueError, match=r"y\['nodes'\].*node 5.*\[-1, 5\)"):
        model.train_on_batch(x, {"boxes": np.array([[[-1, -1, -1, -1]]], np.float32), "nodes": np.array([[5]])})
    with pytest.raises(ValueError, match=r"y\['nodes'\].*-2"):
        model.train_on_batch(x, {"boxes": np.array([[[1, 1, 9, 9]]], np.float32), "nodes": np.array([[-2]])})
    with pytest.raises(ValueError, match="class_nodes"):
        YOLO9000.compact(num_classes=3, word_tree=TREE, width=0.125, class_nodes=(2, 2, 4))


def test_embedded_experiment_data():
    """Detection images name squares, rectangles, stars, crosses and arrows only by their parent node; the
    classification images hold one object each and name every leaf class in turn; both batch for the model."""
    names, parents = synthetic.hierarchy()
    detection, classification = synthetic.word_tree_datasets("train", 12, 20, image_size=128)
    parent_only = {names.index(c) for c in synthetic.PARENT_ONLY_CLASSES}
    seen = set()
    for _, t in detection:
        nodes = t["nodes"].numpy()
        assert not parent_only & set(nodes.tolist())
        seen |= set(nodes.tolist())
    assert {names.index("quadrilateral"), names.index("concave_polygon")} & seen
    leaves = synthetic.class_node_indices()
    for i, (image, t) in enumerate(classification):
        assert t["nodes"].numpy().tolist() == [leaves[i % 10]] and (t["boxes"].numpy() == -1).all()
    # the one object's size is drawn as the detection images' objects are: small ones as well as large ones
    extents = []
    for i in range(40):
        _, drawn = synthetic._render(synthetic.split_seed("train"), i, 256, single=True)
        assert len(drawn["boxes"]) == 1 and drawn["labels"].tolist() == [i % 10]
        extents.append(float(np.max(drawn["boxes"][0, 2:] - drawn["boxes"][0, :2])))
    assert min(extents) < 24 and max(extents) > 120, extents
    tree = WordTree(names, parents)
    model = YOLO9000.compact(num_classes=10, word_tree=tree, class_names=synthetic.class_names(), width=0.125)
    assert model.class_nodes == tuple(leaves)
    model.compile(learning_rate=1e-3)
    for x, y in (next(iter(prepare(detection, 4, 128))), next(iter(padded_batch(classification, 4)))):
        assert np.isfinite(model.train_on_batch(x, y, return_dict=True)["loss"])
