"""WordTree, HierarchicalSoftmax and HierarchicalSoftmaxLoss against the numpy reference."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers.hierarchical_softmax import HierarchicalSoftmax
from kerasdet.layers.word_tree import WordTree
from kerasdet.losses.hierarchical_softmax_loss import HierarchicalSoftmaxLoss
from tests.layers.harness import check_layer
from tests.reference import word_tree as ref


# -- random trees -------------------------------------------------------------------------------


def random_parents(rng, num_nodes, kind):
    """Parents of a random tree, renumbered at random (parents may follow their children),
    or breadth first for ``kind="breadth_first"`` (as `from_hierarchy` and the readers number)."""
    if kind == "chain":  # one deep chain: every group has a single child
        parents = [-1] + list(range(num_nodes - 1))
    elif kind == "flat":  # every node a root
        parents = [-1] * num_nodes
    elif kind == "deep":  # mostly chains with a few branches
        parents = [-1] + [int(i - 1 if rng.random() < 0.7 else rng.integers(0, i)) for i in range(1, num_nodes)]
    else:  # bushy, several roots, some single-child groups
        parents = [-1, -1] + [int(rng.integers(-1, i)) if rng.random() < 0.1 else int(rng.integers(0, i)) for i in range(2, num_nodes)]
    if kind == "breadth_first":
        tree = make_tree(parents)
        queue, visited = list(tree.roots), []
        while queue:
            visited.append(queue.pop(0))
            queue.extend(tree.children(visited[-1]))
        order = np.argsort(visited)  # new index of old node i is order[i]
    else:
        order = rng.permutation(num_nodes)
    renumbered = [0] * num_nodes
    for old, parent in enumerate(parents):
        renumbered[order[old]] = -1 if parent < 0 else int(order[parent])
    return renumbered


def make_tree(parents):
    return WordTree([f"node{i}" for i in range(len(parents))], parents)


TREE_CASES = [(kind, n, seed) for seed, (kind, n) in enumerate(
    [("chain", 1), ("chain", 9), ("flat", 5), ("deep", 30), ("bushy", 40), ("bushy", 25), ("deep", 17),
     ("breadth_first", 33)]
)]


@pytest.fixture(params=TREE_CASES, ids=lambda c: f"{c[0]}{c[1]}")
def tree_case(request):
    kind, n, seed = request.param
    rng = np.random.default_rng(100 + seed)
    parents = random_parents(rng, n, kind)
    return make_tree(parents), parents, rng


def labels_for(rng, parents, shape):
    labels = rng.integers(-1, len(parents), size=shape)
    return labels.astype(np.int32)


# -- WordTree ----------------------------------------------------------------------------------------


def test_word_tree_structure():
    tree = WordTree(["terrier", "animal", "dog", "cat", "hound"], [2, -1, 1, 1, 2])
    assert tree.num_nodes == 5 and len(tree) == 5
    assert tree.roots == (1,)
    assert tree.leaves == (0, 3, 4)
    assert tree.path("terrier") == (0, 2, 1)
    assert tree.children(1) == (2, 3) and tree.children("dog") == (0, 4) and tree.children(0) == ()
    np.testing.assert_array_equal(tree.depths, [2, 0, 1, 1, 2])
    assert tree.max_depth == 2
    # group 0: roots; then groups by increasing parent index: parent 1 -> group 1, parent 2 -> group 2
    np.testing.assert_array_equal(tree.group_ids, [2, 0, 1, 1, 2])
    np.testing.assert_array_equal(tree.group_parents, [-1, 1, 2])
    assert tree.group_members(2) == (0, 4)
    assert not tree.groups_are_contiguous
    assert tree.index("cat") == 3 and "cat" in tree and "cow" not in tree
    with pytest.raises(KeyError, match="cow"):
        tree.index("cow")


def test_word_tree_index_tables_follow_paths(tree_case):
    tree, parents, _ = tree_case
    table = tree.ancestor_table()
    assert table.shape == (tree.num_nodes, tree.max_depth + 1)
    for node in range(tree.num_nodes):
        path = ref.path_to_root(parents, node)
        assert tuple(table[node][: len(path)]) == tuple(path)
        assert np.all(table[node][len(path):] == tree.num_nodes)
    levels = tree.levels()
    assert len(levels) == tree.max_depth + 1
    np.testing.assert_array_equal(np.sort(np.concatenate(levels)), np.arange(tree.num_nodes))
    for depth, level in enumerate(levels):
        assert list(level) == sorted(level) and all(len(ref.path_to_root(parents, i)) == depth + 1 for i in level)


def test_from_hierarchy_breadth_first_and_contiguous():
    tree = WordTree.from_hierarchy(
        {"polygon": {"quadrilateral": ["square", "rectangle"], "triangle": None}, "ellipse": ["circle"]}
    )
    assert tree.names == ("polygon", "ellipse", "quadrilateral", "triangle", "circle", "square", "rectangle")
    assert list(tree.parents) == [-1, -1, 0, 0, 1, 2, 2]
    assert tree.groups_are_contiguous
    mixed = WordTree.from_hierarchy({"a": ["b", {"c": ["d"]}]})
    assert mixed.names == ("a", "b", "c", "d") and list(mixed.parents) == [-1, 0, 0, 2]


def test_config_round_trip_and_equality():
    tree = make_tree([-1, 0, 0, 1, -1, 4])
    config = tree.get_config()
    assert json.loads(json.dumps(config)) == config
    again = WordTree.from_config(config)
    assert again == tree and hash(again) == hash(tree)
    assert WordTree.coerce(config) == tree and WordTree.coerce(tree) is tree
    assert tree != make_tree([-1, 0, 0, 1, -1, 0])
    assert "num_nodes=6" in repr(tree)


@pytest.mark.parametrize(
    "names, parents, error, match",
    [
        ("abc", [-1], TypeError, "names"),
        ([], [], ValueError, "empty"),
        (["a", "b"], [-1], ValueError, "length 1"),
        (["a", "a"], [-1, 0], ValueError, r"names\[1\].*repeats"),
        (["a", ""], [-1, 0], ValueError, r"names\[1\]"),
        (["a", 3], [-1, 0], TypeError, r"names\[1\]"),
        (["a", "b"], [-1, 2], ValueError, r"parents\[1\].*out of range"),
        (["a", "b"], [-1, -2], ValueError, r"parents\[1\]"),
        (["a", "b"], [-1, 1.0], TypeError, r"parents\[1\]"),
        (["a", "b"], [-1, True], TypeError, r"parents\[1\]"),
        (["a", "b"], [-1, 1], ValueError, "own parent"),
        (["a", "b", "c", "d"], [-1, 2, 3, 1], ValueError, "cycle"),
        (["a", "b"], 5, TypeError, "parents"),
    ],
)
def test_word_tree_rejects_bad_input(names, parents, error, match):
    with pytest.raises(error, match=match):
        WordTree(names, parents)


def test_from_hierarchy_and_coerce_errors():
    with pytest.raises(TypeError, match="hierarchy"):
        WordTree.from_hierarchy(["a"])
    with pytest.raises(ValueError, match="empty"):
        WordTree.from_hierarchy({})
    with pytest.raises(TypeError, match=r"hierarchy\['a'\]"):
        WordTree.from_hierarchy({"a": 3})
    with pytest.raises(ValueError, match="repeats"):
        WordTree.from_hierarchy({"a": ["b"], "c": ["b"]})
    with pytest.raises(TypeError, match="word_tree"):
        HierarchicalSoftmax([1, 2])
    with pytest.raises(ValueError, match="keys"):
        WordTree.from_config({"names": ["a"]})


# -- the layer against the reference ----------------------------------------------------------------


def test_conditional_and_absolute_probabilities_match_reference(tree_case):
    tree, parents, rng = tree_case
    logits = rng.normal(scale=3.0, size=(3, 4, tree.num_nodes)).astype(np.float32)
    layer = HierarchicalSoftmax(tree)
    conditional = np.asarray(layer(logits))
    assert conditional.dtype == np.float32 and conditional.shape == logits.shape
    np.testing.assert_allclose(conditional, ref.batched(ref.conditional_probabilities, parents, logits), rtol=1e-5, atol=1e-6)
    absolute = np.asarray(layer.absolute_probabilities(conditional))
    expected = ref.batched(ref.absolute_probabilities, parents, conditional.astype(np.float64))
    np.testing.assert_allclose(absolute, expected, rtol=1e-5, atol=1e-7)
    # every sibling group sums to one
    for members in ref.sibling_groups(parents).values():
        np.testing.assert_allclose(conditional[..., members].sum(-1), 1.0, rtol=1e-5)


def test_log_probabilities_stable_for_huge_logits():
    tree = make_tree([-1, -1, 0, 0, 2, 2, 2, 1])
    logits = np.array([[1e4, -1e4, 3e4, 3e4 - 5, 0.0, -8e3, 1.0, 7.0]], np.float32)
    layer = HierarchicalSoftmax(tree)
    log_probs = np.asarray(layer.log_conditional_probabilities(logits))
    assert np.all(np.isfinite(log_probs))
    expected = ref.log_conditional_probabilities(tree.parents, logits[0])
    np.testing.assert_allclose(log_probs[0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_probs[0, [1, 7]], [-2e4, 0.0], rtol=1e-6)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_top_prediction_matches_reference(tree_case, threshold):
    tree, parents, rng = tree_case
    layer = HierarchicalSoftmax(tree)
    # continuous logits and small integers (which make exact ties within groups)
    logits = np.concatenate(
        [rng.normal(scale=2.0, size=(20, tree.num_nodes)), rng.integers(0, 3, size=(20, tree.num_nodes))]
    ).astype(np.float32)
    conditional = np.asarray(layer(logits))
    nodes, scores = layer.top_prediction(conditional, threshold=threshold)
    nodes, scores = np.asarray(nodes), np.asarray(scores)
    assert nodes.dtype == np.int32 and nodes.shape == (40,) and scores.shape == (40,)
    for row in range(40):
        node, score = ref.top_prediction(parents, conditional[row].astype(np.float64), threshold)
        assert nodes[row] == node, f"row {row}"
        np.testing.assert_allclose(scores[row], score, rtol=1e-5)


def test_top_prediction_by_hand():
    #        animal(0)            plant(1)
    #     dog(2)     cat(3)        tree(6)
    #  terrier(4) hound(5)
    tree = WordTree(["animal", "plant", "dog", "cat", "terrier", "hound", "tree"], [-1, -1, 0, 0, 2, 2, 1])
    conditional = np.array(
        [
            [0.9, 0.1, 0.8, 0.2, 0.4, 0.6, 1.0],  # hound: 0.9*0.8*0.6 = 0.432
            [0.9, 0.1, 0.5, 0.5, 0.5, 0.5, 1.0],  # tie dog/cat -> dog (lower index), then terrier 0.225
            [0.3, 0.7, 0.5, 0.5, 0.5, 0.5, 1.0],  # plant, then tree with 0.7
            [0.9, 0.1, 0.8, 0.2, 0.4, 0.6, 1.0],
        ],
        np.float32,
    )
    layer = HierarchicalSoftmax(tree)
    nodes, scores = layer.top_prediction(conditional, threshold=0.0)
    np.testing.assert_array_equal(nodes, [5, 4, 6, 5])
    np.testing.assert_allclose(scores, [0.432, 0.225, 0.7, 0.432], rtol=1e-6)
    nodes, scores = layer.top_prediction(conditional, threshold=0.5)
    np.testing.assert_array_equal(nodes, [2, 0, 6, 2])  # dog 0.72 > 0.5, hound 0.432 is not
    nodes, _ = layer.top_prediction(conditional, threshold=0.95)
    np.testing.assert_array_equal(nodes, [0, 0, 1, 0])  # the best root is always taken
    with pytest.raises(ValueError, match="threshold"):
        layer.top_prediction(conditional, threshold=1.5)


def test_top_prediction_graph_and_jit_agree():
    rng = np.random.default_rng(7)
    parents = random_parents(rng, 30, "bushy")
    layer = HierarchicalSoftmax(make_tree(parents))
    conditional = np.asarray(layer(rng.normal(size=(2, 5, 30)).astype(np.float32)))
    eager = [np.asarray(t) for t in layer.top_prediction(conditional, 0.4)]
    for jit in (False, True):
        fn = tf.function(lambda c: layer.top_prediction(c, 0.4), jit_compile=jit)
        for got, want in zip(fn(conditional), eager):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    empty = layer.top_prediction(np.zeros((0, 30), np.float32))
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_input_validation():
    layer = HierarchicalSoftmax(make_tree([-1, 0, 0]))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\].*\(2, 4\)"):
        layer(np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="float"):
        layer.absolute_probabilities(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="conditional_probabilities"):
        layer.absolute_probabilities(np.zeros((2, 5), np.float32))


def test_layer_harness():
    rng = np.random.default_rng(3)
    parents = random_parents(rng, 24, "bushy")
    tree = make_tree(parents)
    logits = rng.normal(size=(2, 6, 24)).astype(np.float32)

    def empty_check(outputs, args):
        assert np.asarray(outputs).shape == args[0].shape

    check_layer(
        HierarchicalSoftmax,
        {"word_tree": tree},
        (logits,),
        empty_args=[(logits[:0],), (logits[:, :0],)],
        empty_check=empty_check,
        fp16_atol=1e-6,
        fp16_rtol=1e-6,
    )
    check_layer(HierarchicalSoftmax, {"word_tree": tree.get_config()}, (logits[:, 0],), save_load=False, fp16=False)


# -- the loss ------------------------------------------------------------------------------------------


def test_loss_matches_reference(tree_case):
    tree, parents, rng = tree_case
    logits = rng.normal(scale=2.0, size=(4, 5, tree.num_nodes)).astype(np.float32)
    labels = labels_for(rng, parents, (4, 5))
    labels[0, 0], labels[0, 1] = -1, tree.roots[0]  # an ignored label and a root label
    inner = [i for i in range(tree.num_nodes) if tree.children(i)]
    if inner:
        labels[1, 0] = inner[-1]  # an inner-node label
    expected = np.array([[ref.loss(parents, logits[b, m], labels[b, m]) for m in range(5)] for b in range(4)])

    per_label = np.asarray(HierarchicalSoftmaxLoss(tree, reduction=None)(labels, logits))
    np.testing.assert_allclose(per_label, expected, rtol=1e-5, atol=1e-5)
    total = HierarchicalSoftmaxLoss(tree, reduction="sum")(labels, logits)
    np.testing.assert_allclose(total, expected.sum(), rtol=1e-5)
    mean = HierarchicalSoftmaxLoss(tree)(labels[..., None], logits)  # [..., 1] labels accepted
    np.testing.assert_allclose(mean, expected.sum() / (labels >= 0).sum(), rtol=1e-5)
    # from probabilities
    conditional = np.asarray(HierarchicalSoftmax(tree)(logits))
    from_probs = HierarchicalSoftmaxLoss(tree, from_logits=False, reduction=None)(labels, conditional)
    np.testing.assert_allclose(from_probs, expected, rtol=1e-4, atol=1e-4)


def test_inner_label_trains_only_groups_above_it():
    tree = WordTree(["animal", "plant", "dog", "cat", "terrier", "hound"], [-1, -1, 0, 0, 2, 2])
    loss = HierarchicalSoftmaxLoss(tree, reduction="sum")
    logits = tf.Variable(np.random.default_rng(0).normal(size=(1, 6)).astype(np.float32))
    with tf.GradientTape() as tape:
        value = loss(np.array([2]), logits)
    grad = tape.gradient(value, logits).numpy()[0]
    assert np.all(grad[[4, 5]] == 0)  # the children of "dog" are not trained
    assert np.all(grad[[0, 1, 2, 3]] != 0)


def test_loss_gradient_matches_definition(tree_case):
    tree, parents, rng = tree_case
    logits_np = rng.normal(scale=2.0, size=(6, tree.num_nodes)).astype(np.float32)
    labels = labels_for(rng, parents, (6,))
    logits = tf.Variable(logits_np)
    with tf.GradientTape() as tape:
        value = HierarchicalSoftmaxLoss(tree, reduction="sum")(labels, logits)
    grad = tape.gradient(value, logits).numpy()
    assert np.all(np.isfinite(grad))
    # d/dlogits of the cross-entropy of each group on the path: softmax - one_hot
    expected = np.zeros_like(logits_np, np.float64)
    groups = ref.sibling_groups(parents)
    for b, label in enumerate(labels):
        if label < 0:
            continue
        conditional = ref.conditional_probabilities(parents, logits_np[b])
        for node in ref.path_to_root(parents, int(label)):
            members = groups[parents[node]]
            expected[b, members] += conditional[members]
            expected[b, node] -= 1.0
    np.testing.assert_allclose(grad, expected, atol=1e-5)


def test_gradients_finite_for_extreme_logits():
    tree = make_tree([-1, 0, 0, 1, 1, 1, -1, 6])
    logits = tf.Variable(np.array([[80.0, -90.0, 60.0, 1e4, -1e4, 0.0, -50.0, 3.0]] * 2, np.float32))
    layer = HierarchicalSoftmax(tree)
    with tf.GradientTape() as tape:
        loss = HierarchicalSoftmaxLoss(tree)(np.array([4, -1]), logits)
        out = tf.reduce_sum(layer.absolute_probabilities(layer(logits)))
    grads = tape.gradient([loss, out], logits).numpy()
    assert np.all(np.isfinite(grads)) and np.isfinite(float(loss))


def test_loss_all_ignored_and_empty():
    tree = make_tree([-1, 0, 0])
    loss = HierarchicalSoftmaxLoss(tree)
    assert float(loss(np.array([-1, -1]), np.zeros((2, 3), np.float32))) == 0.0
    assert float(loss(np.zeros((0, 5), np.int32), np.zeros((0, 5, 3), np.float32))) == 0.0
    assert float(loss(np.zeros((2, 0), np.int32), np.zeros((2, 0, 3), np.float32))) == 0.0


def test_loss_graph_and_jit_agree():
    rng = np.random.default_rng(11)
    parents = random_parents(rng, 20, "deep")
    loss = HierarchicalSoftmaxLoss(make_tree(parents))
    logits = rng.normal(size=(3, 7, 20)).astype(np.float32)
    labels = labels_for(rng, parents, (3, 7))
    eager = float(loss(labels, logits))
    for jit in (False, True):
        np.testing.assert_allclose(float(tf.function(loss, jit_compile=jit)(labels, logits)), eager, rtol=1e-6)


def test_loss_validation_and_serialization():
    tree = make_tree([-1, 0, 0, 1])
    loss = HierarchicalSoftmaxLoss(tree, from_logits=False, reduction="sum", name="tree_loss")
    with pytest.raises(ValueError, match=r"y_pred.*\[\.\.\., 4\]"):
        loss(np.array([0]), np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match=r"y_true.*\(2, 3\)"):
        loss(np.zeros((2, 3), np.int32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"y_true.*\[7\]"):
        loss(np.array([7]), np.zeros((1, 4), np.float32))
    with pytest.raises(TypeError, match="from_logits"):
        HierarchicalSoftmaxLoss(tree, from_logits="yes")
    config = keras.losses.serialize(loss)
    again = keras.losses.deserialize(json.loads(json.dumps(config)))
    assert isinstance(again, HierarchicalSoftmaxLoss)
    assert again.get_config() == loss.get_config() and again.word_tree == tree and not again.from_logits


def test_loss_trains_a_model():
    rng = np.random.default_rng(5)
    tree = WordTree.from_hierarchy({"a": ["a1", "a2"], "b": {"b1": ["b11", "b12"], "b2": None}})
    features = rng.normal(size=(64, 8)).astype(np.float32)
    labels = rng.integers(-1, tree.num_nodes, size=(64,)).astype(np.int32)
    inputs = keras.Input((8,))
    logits = keras.layers.Dense(tree.num_nodes)(inputs)
    model = keras.Model(inputs, logits)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=HierarchicalSoftmaxLoss(tree))
    history = model.fit(features, labels, epochs=15, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
