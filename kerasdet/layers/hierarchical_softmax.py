"""YOLO9000's hierarchical softmax over a WordTree."""

import numbers

import keras
import numpy as np
from keras import ops

from kerasdet.layers.word_tree import WordTree


@keras.saving.register_keras_serializable(package="kerasdet")
class HierarchicalSoftmax(keras.layers.Layer):
    """Softmax within every sibling group of a `WordTree` (YOLO9000's hierarchical softmax).

    The input holds one logit per tree node. Within every sibling group (the children
    of one node; the roots form one more group) the layer applies a softmax, so output
    ``i`` is the conditional probability ``P(node i | parent of i)``, and each group
    sums to one. The computation is vectorised with segment reductions and gathers
    (no Python loop over nodes; products along paths run one tree level at a time),
    numerically stable (max-shifted log-softmax), runs eagerly, in `tf.function` and
    under ``jit_compile=True``, and is done in float32 whatever the dtype policy (inputs
    are not autocast); the outputs are float32.

    Besides `call`, the layer offers the tree-wide operations built on it:
    `log_conditional_probabilities`, `absolute_probabilities` (products of the
    conditionals along the path to the root), `path_log_probabilities` (the log of
    those products for given labels, the negative of `HierarchicalSoftmaxLoss`) and
    `top_prediction` (descend from the root while the absolute probability stays above
    a threshold).

    Reference: Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017, §4
    ("Hierarchical classification").

    Args:
        word_tree: a `kerasdet.layers.word_tree.WordTree`, or its config dict
            (`WordTree.get_config`); `get_config` stores the dict.
        **kwargs: standard `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: float tensor ``[..., num_nodes]`` of logits.

    Returns:
        float32 tensor ``[..., num_nodes]`` of conditional probabilities.

    Example:

    ```python
    tree = WordTree.from_hierarchy({"animal": {"dog": ["terrier", "hound"], "cat": None}})
    softmax = HierarchicalSoftmax(tree)
    conditional = softmax(keras.random.normal((2, tree.num_nodes)))
    absolute = softmax.absolute_probabilities(conditional)
    nodes, scores = softmax.top_prediction(conditional, threshold=0.5)
    ```
    """

    def __init__(self, word_tree, **kwargs):
        # Inputs are not cast to a float16 compute dtype: the math is float32 anyway.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.word_tree = WordTree.coerce(word_tree)
        self._path_tables = _PathTables(self.word_tree)

    # -- Layer API ----------------------------------------------------------------------

    def call(self, inputs):
        return ops.exp(self.log_conditional_probabilities(inputs))

    def compute_output_shape(self, input_shape):
        self._check_last_dim(input_shape, "inputs")
        return tuple(input_shape)

    def compute_output_spec(self, inputs):
        self._check_last_dim(inputs.shape, "inputs")
        return keras.KerasTensor(inputs.shape, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config["word_tree"] = self.word_tree.get_config()
        return config

    # -- tree operations ------------------------------------------------------------------

    def log_conditional_probabilities(self, logits):
        """Log-softmax within every sibling group.

        Args:
            logits: float tensor ``[..., num_nodes]``.

        Returns:
            float32 tensor ``[..., num_nodes]``: ``log P(node | parent)``.
        """
        logits = self._as_float32(logits, "logits")
        return self._from_rows(self._log_softmax_rows(self._to_rows(logits)), ops.shape(logits))

    def absolute_probabilities(self, conditional_probabilities):
        """Products of conditional probabilities along each node's path to its root.

        Args:
            conditional_probabilities: float tensor ``[..., num_nodes]`` (the output of
                the layer).

        Returns:
            float32 tensor ``[..., num_nodes]``: ``P(node) = prod P(a | parent of a)``
            over ``a`` in `WordTree.path(node)`.
        """
        probs = self._as_float32(conditional_probabilities, "conditional_probabilities")
        absolute = self._along_paths_rows(self._to_rows(probs), ops.multiply)
        return self._from_rows(absolute, ops.shape(probs))

    def path_log_probabilities(self, log_conditional_probabilities, labels):
        """``log P(label)``: the sum of the log-conditionals on each label's path to its root.

        Args:
            log_conditional_probabilities: float tensor ``[..., num_nodes]``.
            labels: int tensor ``[...]`` of node indices; entries equal to -1 give 0.

        Returns:
            float32 tensor ``[...]``.
        """
        log_probs = self._as_float32(log_conditional_probabilities, "log_conditional_probabilities")
        labels = ops.cast(labels, "int32")
        path_nodes, on_path = self._path_nodes(labels)  # [..., D + 1]
        gathered = ops.take_along_axis(log_probs, path_nodes, axis=-1)
        return _sum_on_path(gathered, on_path, labels)

    def top_prediction(self, conditional_probabilities, threshold=0.5):
        """YOLO9000's prediction: descend from the roots taking the most likely child.

        The descent starts with the most likely root, which is always taken (as in
        darknet). From a node, it moves to the most likely of its children (ties go to
        the lower index) as long as that child's absolute probability is strictly
        greater than ``threshold``, and stops at a leaf.

        Args:
            conditional_probabilities: float tensor ``[..., num_nodes]``.
            threshold: float in [0, 1].

        Returns:
            Tuple ``(nodes, probabilities)``: int32 ``[...]`` index of the deepest node
            reached and float32 ``[...]`` its absolute probability.
        """
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 <= threshold <= 1:
            raise ValueError(f"`threshold` must be a float in [0, 1]; received {threshold!r}.")
        probs = self._as_float32(conditional_probabilities, "conditional_probabilities")
        tree = self.word_tree
        rows = self._to_rows(probs)  # [N, M]
        absolute = self._along_paths_rows(rows, ops.multiply)
        on_best_path = self._along_paths_rows(self._is_group_argmax_rows(rows), ops.logical_and)
        depths = ops.expand_dims(ops.convert_to_tensor(tree.depths, "int32"), -1)  # [N, 1]
        reached = ops.logical_and(on_best_path, ops.logical_or(absolute > threshold, depths == 0))
        # the reached nodes form one chain from a root: the deepest one is the prediction
        score = ops.where(reached, depths, -ops.ones_like(depths))
        nodes = ops.cast(ops.argmax(score, axis=0), "int32")  # [M]
        columns = ops.shape(rows)[1]
        flat_index = nodes * columns + ops.arange(columns, dtype="int32")
        scores = ops.take(ops.reshape(absolute, (-1,)), flat_index, axis=0)
        leading = ops.shape(probs)[:-1]
        return ops.reshape(nodes, leading), ops.reshape(scores, leading)

    # -- helpers: everything runs on "rows", the values transposed to [num_nodes, M] ----------

    def _to_rows(self, values):
        return ops.transpose(ops.reshape(values, (-1, self.word_tree.num_nodes)))

    def _from_rows(self, rows, shape):
        return ops.reshape(ops.transpose(rows), shape)

    def _log_softmax_rows(self, rows):
        tree = self.word_tree
        group_ids = ops.convert_to_tensor(tree.group_ids, "int32")
        group_max = ops.segment_max(rows, group_ids, num_segments=tree.num_groups)
        shifted = rows - ops.take(ops.stop_gradient(group_max), group_ids, axis=0)
        group_sum = ops.segment_sum(ops.exp(shifted), group_ids, num_segments=tree.num_groups)
        return shifted - ops.take(ops.log(group_sum), group_ids, axis=0)

    def _path_log_probabilities_rows(self, log_rows, labels):
        """Like `path_log_probabilities` for rows ``[N, M]`` and flat labels ``[M]``."""
        path_nodes, on_path = self._path_nodes(labels)  # [M, D + 1]
        columns = ops.shape(log_rows)[1]
        flat_index = path_nodes * columns + ops.expand_dims(ops.arange(columns, dtype="int32"), -1)
        gathered = ops.take(ops.reshape(log_rows, (-1,)), flat_index, axis=0)
        return _sum_on_path(gathered, on_path, labels)

    def _path_nodes(self, labels):
        """``(nodes, on_path)``, both ``[..., D + 1]``: each label's path, padding marked False."""
        n = self.word_tree.num_nodes
        table = ops.convert_to_tensor(self.word_tree.ancestor_table(), "int32")
        nodes = ops.take(table, ops.clip(labels, 0, n - 1), axis=0)
        return ops.minimum(nodes, n - 1), nodes < n

    def _is_group_argmax_rows(self, rows):
        """Bool rows: True at the first (lowest index) maximum of every sibling group."""
        tree = self.word_tree
        n, num_groups = tree.num_nodes, tree.num_groups
        group_ids = ops.convert_to_tensor(tree.group_ids, "int32")
        group_max = ops.segment_max(rows, group_ids, num_segments=num_groups)
        is_max = rows >= ops.take(group_max, group_ids, axis=0)
        negative_index = ops.expand_dims(-ops.arange(n, dtype="int32"), -1)  # [N, 1]
        candidates = ops.where(is_max, negative_index, ops.full_like(rows, -n, dtype="int32"))
        first = ops.segment_max(candidates, group_ids, num_segments=num_groups)
        return ops.logical_and(is_max, candidates == ops.take(first, group_ids, axis=0))

    def _along_paths_rows(self, rows, combine):
        """``out[i] = combine(rows[i], out[parent of i])``, level by level from the roots."""
        tables = self._path_tables
        if tables.inverse is None:  # nodes already sorted by depth: levels are row slices
            levels = [rows[start:end] for start, end in tables.bounds]
        else:
            levels = [ops.take(rows, level, axis=0) for level in tables.levels]
        out = [levels[0]]
        for level, parents in zip(levels[1:], tables.parent_positions):
            out.append(combine(level, ops.take(out[-1], parents, axis=0)))
        stacked = ops.concatenate(out, axis=0) if len(out) > 1 else out[0]
        return stacked if tables.inverse is None else ops.take(stacked, tables.inverse, axis=0)

    def _as_float32(self, tensor, argument):
        tensor = ops.convert_to_tensor(tensor)
        self._check_last_dim(tensor.shape, argument)
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if not (dtype.startswith("float") or dtype.startswith("bfloat")):
            raise TypeError(f"`{argument}` must be a float tensor; received dtype {dtype}.")
        return ops.cast(tensor, "float32")

    def _check_last_dim(self, shape, argument):
        shape = tuple(shape)
        if len(shape) < 1:
            raise ValueError(
                f"`{argument}` must have shape [..., {self.word_tree.num_nodes}] (one value per tree "
                f"node); received a scalar."
            )
        if shape[-1] is not None and shape[-1] != self.word_tree.num_nodes:
            raise ValueError(
                f"`{argument}` must have shape [..., {self.word_tree.num_nodes}] (one value per tree "
                f"node); received shape {shape}."
            )


def _sum_on_path(gathered, on_path, labels):
    """Sums `gathered [..., D + 1]` over the entries `on_path`; 0 where `labels [...]` is negative."""
    total = ops.sum(ops.where(on_path, gathered, ops.zeros_like(gathered)), axis=-1)
    return ops.where(labels >= 0, total, ops.zeros_like(total))


class _PathTables:
    """Index tables for walking the tree level by level (nodes grouped by depth)."""

    def __init__(self, tree):
        self.levels = tree.levels()
        self.parent_positions = []
        for previous, level in zip(self.levels[:-1], self.levels[1:]):
            position = np.zeros(tree.num_nodes, np.int32)
            position[previous] = np.arange(len(previous), dtype=np.int32)
            self.parent_positions.append(position[tree.parents[level]])
        order = np.concatenate(self.levels)
        sizes = np.cumsum([0] + [len(level) for level in self.levels])
        self.bounds = [(int(a), int(b)) for a, b in zip(sizes[:-1], sizes[1:])]
        depth_sorted = np.array_equal(order, np.arange(tree.num_nodes))
        self.inverse = None if depth_sorted else np.argsort(order).astype(np.int32)
