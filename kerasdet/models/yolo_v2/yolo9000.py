"""YOLO9000 (Redmon and Farhadi, 2017, §4): YOLOv2 with a hierarchical softmax over a WordTree, trained jointly on
detection and classification-only images."""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf

from kerasdet.layers.hierarchical_softmax import HierarchicalSoftmax
from kerasdet.layers.word_tree import WordTree
from kerasdet.models.detector import checked_indices
from kerasdet.models.yolo_v2._class_logit_initializer import ZeroClassLogits
from kerasdet.models.yolo_v2.yolo_v2 import YOLOv2


@keras.saving.register_keras_serializable(package="kerasdet")
class YOLO9000(YOLOv2):
    """YOLOv2 whose class output is one logit per WordTree node, normalised by a softmax within each sibling group
    (`HierarchicalSoftmax`), so that detection labels may name any node of the tree and classification-only images
    can teach classes that the detection data never names.

    Targets: `{"boxes", "nodes"}` (DESIGN.md §3): node indices in `[-1, tree size)`, -1 padding. A row whose box is
    all -1 and whose node is set is a classification-only label (the image names a class, with no box; one per
    image). `{"boxes", "labels"}` (class indices) are also taken, each class mapped to its node (`class_nodes`).

    Loss: on detection images, YOLOv2's terms with the class term the hierarchical cross-entropy at the object's
    node and every node above it (a label at an inner node trains only the choices above it). On a
    classification-only image (the paper's joint training): only the prediction with the highest probability
    for the labelled node is trained, with the class loss at that node and above and the objectness loss as if it
    overlapped the truth at IoU `classification_iou` (0.3): `object_scale * (sigmoid(t_o) - 0.3)^2`; no other term
    (darknet applies this objectness term only when the objectness is below 0.3; the issue's rule, used here, is
    symmetric).

    Prediction: per box, the descent from the most likely root to the most likely child while the path probability
    stays above `tree_threshold` (`HierarchicalSoftmax.top_prediction`); score = objectness x that path
    probability; NMS per node. Outputs beyond YOLOv2's: `nodes` (the deepest confident node) and `node_scores`
    (its path probability); `labels` is the class of that node (`class_nodes`), or -1 when it is an inner node.

    Args:
        num_classes: the detection classes (each a node of the tree, `class_nodes`).
        word_tree: a `WordTree` or its config.
        class_nodes: the node of each class; None looks the class names up in the tree (then `class_names` is
            needed), else the first `num_classes` leaves.
        tree_threshold: the descent's threshold (0.5).
        classification_iou: the objectness target of classification-only images (0.3).
        **kwargs: `YOLOv2` arguments.

    Example:
        >>> names, parents = kerasdet.data.synthetic.hierarchy()
        >>> model = YOLO9000.compact(num_classes=10, word_tree=WordTree(names, parents),
        ...                          class_names=kerasdet.data.synthetic.class_names())
        >>> model.predict(images)["nodes"].shape
        (B, 100)

    The classification-only prediction is picked by P(node) alone, as the paper words it ("the bounding box that
    predicts the highest probability for that class"). An image with a classification row trains no detection
    term, even if it also has box rows.
    """

    extra_output_keys = ("nodes", "node_scores")

    def __init__(self, num_classes, word_tree, class_nodes=None, tree_threshold=0.5, classification_iou=0.3,
                 **kwargs):
        tree = WordTree.coerce(word_tree)
        # read by `class_outputs` while YOLOv2 builds the predictor (not a layer: kept out of Keras' tracking)
        object.__setattr__(self, "word_tree", tree)
        super().__init__(num_classes=num_classes, **kwargs)
        for name, value in (("tree_threshold", tree_threshold), ("classification_iou", classification_iou)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise ValueError(f"`{name}` must be in [0, 1]; got {value!r}")
        if class_nodes is None:
            if self.class_names is not None and all(name in tree for name in self.class_names):
                class_nodes = [tree.index(name) for name in self.class_names]
            elif len(tree.leaves) >= num_classes:
                class_nodes = list(tree.leaves)[:num_classes]
            else:
                raise ValueError(f"`class_nodes` is needed: the tree has {len(tree.leaves)} leaves for "
                                 f"{num_classes} classes, and the class names are not all tree nodes")
        class_nodes = [int(n) for n in class_nodes]
        if len(class_nodes) != num_classes or len(set(class_nodes)) != num_classes \
                or not all(0 <= n < tree.num_nodes for n in class_nodes):
            raise ValueError(f"`class_nodes` must give {num_classes} distinct node indices in [0, {tree.num_nodes}); "
                             f"got {class_nodes}")
        self.class_nodes = tuple(class_nodes)
        self.tree_threshold = float(tree_threshold)
        self.classification_iou = float(classification_iou)
        self.hierarchical_softmax = HierarchicalSoftmax(tree, name="hierarchical_softmax")
        node_to_class = np.full([tree.num_nodes], -1, np.int32)
        node_to_class[list(class_nodes)] = np.arange(num_classes, dtype=np.int32)
        self._node_to_class = node_to_class

    @property
    def class_outputs(self) -> int:
        return self.word_tree.num_nodes

    def _predictor_initializer(self):
        # class logits start at zero: a sibling group no example reaches stays uniform (docs/decisions.md)
        return ZeroClassLogits(len(self.anchors), self.class_outputs)

    # -- configurations -------------------------------------------------------------------------------

    @classmethod
    def paper_config(cls, num_classes, word_tree, anchors=None, width=1.0, **kwargs):
        """YOLO9000 on Darknet-19: `YOLOv2.paper_config()`'s network (the released YOLO9000 uses 3 anchors; here the
        5 VOC anchors unless `anchors` is given) with the tree-sized class output."""
        return super().paper_config(num_classes=num_classes, anchors=anchors, width=width, word_tree=word_tree,
                                    **kwargs)

    @classmethod
    def compact(cls, num_classes, word_tree, width=0.5, **kwargs):
        """`YOLOv2.compact()`'s network (256 px, stride 16) with the tree-sized class output."""
        return super().compact(num_classes=num_classes, width=width, word_tree=word_tree, **kwargs)

    # -- targets --------------------------------------------------------------------------------------

    def check_target_values(self, y):
        if isinstance(y, dict) and "nodes" in y:
            nodes = y["nodes"]
            if isinstance(nodes, np.ndarray) or tf.is_tensor(nodes) and tf.executing_eagerly():
                values = np.asarray(nodes)
                if values.size and (values.dtype.kind not in "iu" and not np.array_equal(values, np.round(values))):
                    raise ValueError("`y['nodes']` must hold whole WordTree node indices")
                if values.size and (values.max() >= self.word_tree.num_nodes or values.min() < -1):
                    bad = values.max() if values.max() >= self.word_tree.num_nodes else values.min()
                    raise ValueError(f"`y['nodes']` holds the node {int(bad)}, outside the WordTree's "
                                     f"[-1, {self.word_tree.num_nodes}) (-1 is padding)")
            y = {k: v for k, v in y.items() if k != "nodes"}
        super().check_target_values(y)

    def standardize_targets(self, targets, images):
        """`{"boxes", "nodes"}` (or `"labels"`) as the loss reads them: YOLOv2's standard targets for the rows
        with a box (`"labels"` 0 there, -1 elsewhere), `"nodes"` `[B, M + 1]` their nodes, and `"image_nodes"` `[B]`
        the node of each classification-only image (-1 for detection images)."""
        if isinstance(targets, dict) and "image_nodes" in targets:
            return targets  # already standardised
        if not isinstance(targets, dict) or "nodes" not in targets:
            if isinstance(targets, dict) and ("labels" in targets or "classes" in targets):
                labels = tf.convert_to_tensor(targets.get("labels", targets.get("classes")))
                labels = tf.cast(labels, tf.int32)
                table = tf.constant(self.class_nodes, tf.int32)
                nodes = tf.where(labels >= 0, tf.gather(table, tf.maximum(labels, 0)), -1)
                targets = {**{k: v for k, v in targets.items() if k not in ("labels", "classes")}, "nodes": nodes}
            else:
                raise ValueError("YOLO9000 targets must be a dict with 'boxes' [B, M, 4] and 'nodes' [B, M] "
                                 "(WordTree node indices, -1 padding) or 'labels'")
        size = self.word_tree.num_nodes
        nodes = checked_indices(
            targets["nodes"], size, fractional="`y['nodes']` must hold whole WordTree node indices",
            too_large=f"`y['nodes']` must lie in [-1, {size}) (the WordTree's nodes); a node is too large",
            below="`y['nodes']` must lie in [-1, tree size): -1 is the only padding value")
        boxes = tf.cast(targets["boxes"], tf.float32)
        image_level = tf.reduce_all(tf.equal(boxes, -1.0), axis=-1) & (nodes >= 0)                # [B, M]
        detection_labels = tf.where((nodes >= 0) & ~image_level, 0, -1)
        plain = {k: v for k, v in targets.items() if k != "nodes"}
        out = super().standardize_targets({**plain, "labels": detection_labels}, images)
        out["nodes"] = tf.pad(tf.where(out["labels"][:, :-1] >= 0, nodes, -1), [[0, 0], [0, 1]], constant_values=-1)
        first = tf.argmax(tf.cast(image_level, tf.int32), axis=1, output_type=tf.int32)
        out["image_nodes"] = tf.where(tf.reduce_any(image_level, axis=1),
                                      tf.gather(nodes, first, batch_dims=1), -1)
        return out

    # -- loss -----------------------------------------------------------------------------------------

    def _path_log_probabilities(self, class_logits, nodes):
        """`log P(node)` `[...]` of each prediction's hierarchical softmax at `nodes` `[...]` (0 where -1)."""
        log_conditional = self.hierarchical_softmax.log_conditional_probabilities(class_logits)
        return self.hierarchical_softmax.path_log_probabilities(log_conditional, nodes)

    def _class_term(self, class_logits, targets, owner):
        nodes = tf.gather(targets["nodes"], owner, batch_dims=1)
        return -self._path_log_probabilities(class_logits, tf.maximum(nodes, 0))

    def _detection_images(self, targets, batch):
        return tf.cast(targets["image_nodes"] < 0, tf.float32)

    def detection_losses(self, images, targets, raw):
        terms = super().detection_losses(images, targets, raw)
        grid = raw["predictions"]
        batch = tf.shape(grid)[0]
        predictions = tf.reshape(grid, [batch, -1, 5 + self.class_outputs])
        image_nodes = targets["image_nodes"]                                                   # [B]
        classifying = tf.cast(image_nodes >= 0, tf.float32)
        nodes = tf.broadcast_to(tf.maximum(image_nodes, 0)[:, None], tf.shape(predictions)[:2])
        log_p = self._path_log_probabilities(predictions[..., 5:], nodes)                        # [B, K]
        best = tf.argmax(tf.stop_gradient(log_p), axis=1, output_type=tf.int32)                  # [B]
        class_loss = -tf.gather(log_p, best, batch_dims=1)
        objectness = tf.sigmoid(tf.gather(predictions[..., 4], best, batch_dims=1))
        object_loss = self.object_scale * tf.square(objectness - self.classification_iou)
        n = tf.cast(batch, tf.float32)
        terms["class_loss"] += self.class_scale * tf.reduce_sum(classifying * class_loss) / n
        terms["object_loss"] += tf.reduce_sum(classifying * object_loss) / n
        return terms

    # -- prediction -----------------------------------------------------------------------------------

    def _tree_predictions(self, raw):
        """(nodes `[B, K]`, path probabilities `[B, K]`, objectness `[B, K]`) of every prediction."""
        grid = raw["predictions"]
        predictions = tf.reshape(grid, [tf.shape(grid)[0], -1, 5 + self.class_outputs])
        conditional = self.hierarchical_softmax(predictions[..., 5:])
        nodes, path = self.hierarchical_softmax.top_prediction(conditional, self.tree_threshold)
        return nodes, path, tf.sigmoid(predictions[..., 4])

    def decode_candidates(self, raw, images):
        boxes, _ = super().decode_candidates(raw, images)
        nodes, path, objectness = self._tree_predictions(raw)
        scores = tf.one_hot(nodes, self.class_outputs, dtype=tf.float32) * (objectness * path)[..., None]
        return boxes, scores

    def refine_detections(self, detections, raw, inputs):
        """NMS ran per node: its labels are nodes. Adds `nodes`, `node_scores` (the path probability, found by the
        kept score among the candidates of that node) and makes `labels` the node's class (-1 for inner nodes)."""
        nodes = detections["labels"]
        cand_nodes, path, objectness = self._tree_predictions(raw)
        cand_scores = objectness * path
        # the candidate of the same node whose score is nearest the kept one (they are equal: NMS keeps scores as they
        # are; nearest rather than equal, so that a recomputation rounding differently cannot miss it)
        gap = tf.abs(detections["scores"][:, :, None] - cand_scores[:, None, :])                # [B, D, K]
        gap = tf.where(tf.equal(nodes[:, :, None], cand_nodes[:, None, :]), gap, float("inf"))
        index = tf.argmin(gap, axis=-1, output_type=tf.int32)
        node_scores = tf.where(nodes >= 0, tf.gather(path, index, batch_dims=1), 0.0)
        table = tf.constant(self._node_to_class, tf.int32)
        labels = tf.where(nodes >= 0, tf.gather(table, tf.maximum(nodes, 0)), -1)
        return dict(detections, labels=labels, nodes=nodes, node_scores=node_scores)

    def output_signature(self) -> dict:
        n, out = self.max_detections, super().output_signature()
        out["nodes"] = tf.TensorSpec([n], tf.int32)
        out["node_scores"] = tf.TensorSpec([n], tf.float32)
        return out

    # -- config ---------------------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(word_tree=self.word_tree.get_config(), class_nodes=self.class_nodes,
                      tree_threshold=self.tree_threshold, classification_iou=self.classification_iou)
        return config
