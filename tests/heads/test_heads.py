"""kerasdet.heads: the dense tower and level loop, anchor target assignment, the RPN's loss, the RoI box head."""

import numpy as np
import tensorflow as tf

from kerasdet.coders.delta_coder import DeltaCoder
from kerasdet.heads import RegionProposalNetwork, RoIBoxHead, assign_anchor_targets, conv_tower, per_level_outputs
from kerasdet.layers import BoxMatcher


def test_conv_tower_layers_start_from_different_kernels():
    """Each layer gets its own initializer: two hidden convolutions of the same shape must not start equal."""
    tower = conv_tower(2, 8, 4, name="t")
    tower.build((None, None, None, 8))
    a, b = tower.layers[0].kernel.numpy(), tower.layers[1].kernel.numpy()
    assert a.shape == b.shape and not np.allclose(a, b)
    assert abs(float(np.std(a)) - 0.01) < 0.003


def test_per_level_outputs_follow_the_anchor_layout():
    """Row-major (y, x, anchor) per level, levels concatenated: the layout of AnchorGenerator."""
    maps = [tf.reshape(tf.range(2 * 2 * 3 * 2, dtype=tf.float32), [1, 2, 2, 6]), tf.ones([1, 1, 1, 6])]
    out = per_level_outputs(lambda x, training=None: x, maps, 2).numpy()
    assert out.shape == (1, 2 * 2 * 3 + 3, 2)
    np.testing.assert_array_equal(out[0, :6], np.arange(12).reshape(6, 2))


def test_assign_anchor_targets_border_rule_and_safe_boxes():
    anchors = tf.constant([[0.0, 0.0, 10.0, 10.0], [-5.0, 0.0, 8.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    targets = {"boxes": tf.constant([[[0.0, 0.0, 10.0, 10.0], [-1.0, -1.0, -1.0, -1.0]]]), "labels": tf.constant([[2, -1]])}
    out = assign_anchor_targets(BoxMatcher(), anchors, targets, image_hw=tf.constant([40.0, 40.0]), border_tolerance=0)
    np.testing.assert_array_equal(out["states"].numpy(), [[1, -1, 0]])       # anchor 1 crosses the left border
    np.testing.assert_array_equal(out["labels"].numpy(), [[2, -1, -1]])
    np.testing.assert_array_equal(out["indices"].numpy(), [[0, -1, -1]])
    np.testing.assert_allclose(out["boxes"].numpy()[0, 2], [20.0, 20.0, 30.0, 30.0])  # non-positive: the anchor itself
    assert float(out["num_positive"]) == 1.0


def _numpy_rpn_loss(logits, deltas, anchors, states, boxes, mask, beta):
    """The RPN loss from its definition: 2-way softmax cross-entropy over sampled anchors, smooth L1 over sampled
    positives, both divided by the number sampled."""
    z = logits[..., 1] - logits[..., 0]
    p = 1 / (1 + np.exp(-z))
    y = (states == 1).astype(np.float64)
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    count = max(mask.sum(), 1.0)
    targets = DeltaCoder().encode(anchors, boxes).numpy()
    d = np.abs(deltas - targets)
    sl1 = np.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta).sum(-1)
    return (ce * mask).sum() / count, (sl1 * mask * y).sum() / count


def test_rpn_losses_equal_the_definition():
    rng = np.random.default_rng(0)
    rpn = RegionProposalNetwork(sizes=[[16.0, 32.0]], strides=[8], channels=8, batch_size_per_image=8, seed=1)
    images = tf.zeros([2, 32, 32, 3])
    out = rpn([tf.constant(rng.normal(size=(2, 4, 4, 8)), tf.float32)], images)
    targets = {"boxes": tf.constant([[[2.0, 2.0, 18.0, 20.0]], [[10.0, 8.0, 30.0, 30.0]]]), "labels": tf.constant([[0], [1]])}
    sampled = rpn.sample_targets(out, targets, images, training=False)
    terms = rpn.compute_losses(out, sampled)
    mask = sampled["mask"].numpy()
    assert mask.sum(axis=1).max() <= 8 and (sampled["states"].numpy() == 1).sum() > 0
    expected = _numpy_rpn_loss(out["objectness"].numpy().astype(np.float64), out["deltas"].numpy(),
                               out["anchors"].numpy(), sampled["states"].numpy(), sampled["boxes"].numpy(), mask,
                               rpn.box_loss_beta)
    np.testing.assert_allclose([float(terms["rpn_objectness_loss"]), float(terms["rpn_box_loss"])], expected, rtol=1e-4)


def test_roi_box_head_decodes_class_specific_boxes_and_zeroes_padding():
    head = RoIBoxHead(num_classes=2, fc_dims=(8,))
    outputs = head(tf.zeros([1, 2, 3, 3, 4]))
    outputs = {"class_logits": tf.constant([[[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]]]),
               "box_deltas": tf.zeros([1, 2, 2, 4])}
    rois = tf.constant([[[4.0, 4.0, 20.0, 30.0], [-1.0, -1.0, -1.0, -1.0]]])
    boxes, scores = head.decode(outputs, rois, tf.constant([25.0, 40.0]))
    np.testing.assert_allclose(boxes.numpy()[0, 0, 1], [4.0, 4.0, 20.0, 25.0], atol=1e-5)   # zero deltas, clipped
    e = np.exp([2.0, 0.0, 0.0])
    np.testing.assert_allclose(scores.numpy()[0, 0], (e / e.sum())[:2], rtol=1e-6)       # background dropped
    np.testing.assert_array_equal(scores.numpy()[0, 1], [0.0, 0.0])                      # padding RoI
