"""YOLO9000's hierarchical classification loss over a WordTree."""

import numpy as np
import tensorflow as tf
import keras
from keras import ops

from kerasdet.layers.hierarchical_softmax import HierarchicalSoftmax
from kerasdet.layers.word_tree import WordTree


@keras.saving.register_keras_serializable(package="kerasdet")
class HierarchicalSoftmaxLoss(keras.losses.Loss):
    """Cross-entropy of a hierarchical softmax, summed over the groups on the label's path.

    For a label ``y`` (a tree node), every sibling group that contains ``y`` or one of
    its ancestors contributes the cross-entropy of its softmax with that node as the
    target; the other groups contribute nothing. The per-label loss is therefore
    ``-sum log P(a | parent of a)`` over ``a`` in ``WordTree.path(y)``, i.e.
    ``-log P(y)``. A label at an inner node ("dog") trains only the groups above it,
    not the choice among its children. Labels equal to -1 are ignored: their loss is
    0, and the ``"sum_over_batch_size"`` / ``"mean"`` reductions average over the
    labelled entries only (as Keras does for ``ignore_class``). Computed in float32.

    Reference: Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017, §4.

    Args:
        word_tree: a `kerasdet.layers.word_tree.WordTree` or its config dict.
        from_logits: True (default) when ``y_pred`` holds logits; False when it holds the
            conditional probabilities of `HierarchicalSoftmax` (clipped to
            ``[1e-7, 1]`` before the log).
        reduction: a Keras reduction (``"sum_over_batch_size"`` default, ``"sum"``,
            ``"mean"``, ``"mean_with_sample_weight"``, ``"none"`` or None).
        name: loss name.
        dtype: Keras loss dtype; the computation is float32 regardless.

    Call arguments:
        y_true: int tensor ``[...]`` (or ``[..., 1]``) of node indices, -1 to ignore.
        y_pred: float tensor ``[..., num_nodes]``.
        sample_weight: optional weights broadcastable to ``[...]``.

    Returns:
        The reduced loss (float32 scalar), or the per-label losses ``[...]`` with
        ``reduction=None``.

    Example:

    ```python
    tree = WordTree.from_hierarchy({"animal": {"dog": ["terrier", "hound"], "cat": None}})
    loss = HierarchicalSoftmaxLoss(tree)
    value = loss(np.array([3, 1, -1]), np.random.randn(3, tree.num_nodes))
    ```
    """

    def __init__(
        self,
        word_tree,
        from_logits=True,
        reduction="sum_over_batch_size",
        name="hierarchical_softmax_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.word_tree = WordTree.coerce(word_tree)
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"`from_logits` must be a bool; received {from_logits!r}.")
        self.from_logits = bool(from_logits)
        self._softmax = HierarchicalSoftmax(self.word_tree)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        labels = ops.convert_to_tensor(y_true)
        if len(labels.shape) == len(y_pred.shape) and labels.shape[-1] == 1:
            labels = ops.squeeze(labels, -1)
        self._check_shapes(labels.shape, y_pred.shape)
        if "float" in keras.backend.standardize_dtype(labels.dtype):
            labels = ops.round(labels)
        labels = ops.cast(labels, "int32")
        self._check_label_values(labels)
        softmax = self._softmax
        y_pred = softmax._as_float32(y_pred, "y_pred")
        flat_labels = ops.reshape(labels, (-1,))
        if self.from_logits:
            # stay in the layer's [num_nodes, M] layout: no transpose back
            log_rows = softmax._log_softmax_rows(softmax._to_rows(y_pred))
            log_likelihood = softmax._path_log_probabilities_rows(log_rows, flat_labels)
        else:
            flat_probs = ops.reshape(y_pred, (-1, self.word_tree.num_nodes))
            path_nodes, on_path = softmax._path_nodes(flat_labels)
            path_probs = ops.take_along_axis(flat_probs, path_nodes, axis=-1)
            log_path = ops.where(on_path, ops.log(ops.clip(path_probs, 1e-7, 1.0)), 0.0)
            log_likelihood = ops.where(flat_labels >= 0, ops.sum(log_path, axis=-1), 0.0)
        losses = -ops.reshape(log_likelihood, ops.shape(labels))
        if self.reduction in ("sum_over_batch_size", "mean"):
            valid = ops.cast(labels >= 0, "float32")
            total = ops.cast(ops.size(valid), "float32")
            losses = losses * ops.divide_no_nan(total, ops.sum(valid))
        return losses

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "word_tree": self.word_tree.get_config(),
                "from_logits": self.from_logits,
            }
        )
        return config

    def _check_shapes(self, label_shape, pred_shape):
        num_nodes = self.word_tree.num_nodes
        label_shape, pred_shape = tuple(label_shape), tuple(pred_shape)
        if len(pred_shape) < 1 or (pred_shape[-1] is not None and pred_shape[-1] != num_nodes):
            raise ValueError(
                f"`y_pred` must have shape [..., {num_nodes}] (one value per tree node); "
                f"received shape {pred_shape}."
            )
        compatible = len(label_shape) == len(pred_shape) - 1 and all(
            a is None or b is None or a == b for a, b in zip(label_shape, pred_shape[:-1])
        )
        if not compatible:
            raise ValueError(
                f"`y_true` must have shape {pred_shape[:-1]} (or with a trailing 1) to match `y_pred` "
                f"of shape {pred_shape}; received shape {label_shape}."
            )

    def _check_label_values(self, labels):
        if not tf.executing_eagerly():
            return
        values = np.asarray(labels)
        bad = (values < -1) | (values >= self.word_tree.num_nodes)
        if bad.any():
            raise ValueError(
                f"`y_true` must hold node indices in [0, {self.word_tree.num_nodes}) or -1 (ignored); "
                f"received {values[bad].ravel()[:5].tolist()}."
            )
