"""Mask R-CNN's mask and keypoint heads: shapes, losses against numpy definitions, config round trips."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.heads import KeypointHead, MaskHead


def _sigmoid_bce(logits, labels):
    return np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))


def test_mask_head_shapes_and_config_round_trip():
    head = MaskHead(num_classes=4, conv_dims=(8, 8), deconv_dim=6, name="mask_head")
    out = head(tf.zeros([2, 3, 14, 14, 5]))
    assert out.shape == (2, 3, 28, 28, 4) and out.dtype == tf.float32
    again = MaskHead.from_config(json.loads(json.dumps(head.get_config())))
    assert again.get_config() == head.get_config()
    c4 = MaskHead(num_classes=4, conv_dims=(), deconv_dim=6)
    assert c4(tf.zeros([1, 2, 7, 7, 16])).shape == (1, 2, 14, 14, 4)
    with pytest.raises(ValueError, match="num_classes"):
        MaskHead(num_classes=0)


def test_mask_loss_is_the_mean_bce_of_the_labelled_class_over_positive_rois():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 4, 5)).astype(np.float32)
    labels = np.array([[1, 4, -1], [0, 2, 3]], np.int32)
    targets = rng.uniform(size=(2, 3, 4, 4)).astype(np.float32)
    weights = np.array([[1, 1, 0], [0, 1, 1]], np.float32)
    maps = MaskHead.class_maps(tf.constant(logits), tf.constant(labels)).numpy()
    for b in range(2):
        for r in range(3):
            np.testing.assert_array_equal(maps[b, r], logits[b, r, :, :, max(labels[b, r], 0)])
    loss = float(MaskHead.loss(tf.constant(maps), tf.constant(targets), tf.constant(weights)))
    binary = (targets >= 0.5).astype(np.float32)
    per_roi = _sigmoid_bce(maps, binary).mean(axis=(2, 3))
    np.testing.assert_allclose(loss, (per_roi * weights).sum() / weights.sum(), rtol=1e-5)
    assert float(MaskHead.loss(tf.constant(maps), tf.constant(targets), tf.zeros([2, 3]))) == 0.0


def test_keypoint_head_shapes_and_config_round_trip():
    head = KeypointHead(num_keypoints=5, conv_dims=(8,) * 2, name="keypoint_head")
    assert head(tf.zeros([2, 3, 14, 14, 4])).shape == (2, 3, 56, 56, 5)
    assert KeypointHead(3, conv_dims=(4,), upsample=1)(tf.zeros([1, 1, 7, 7, 2])).shape == (1, 1, 14, 14, 3)
    again = KeypointHead.from_config(json.loads(json.dumps(head.get_config())))
    assert again.get_config() == head.get_config()
    for bad in (dict(num_keypoints=0), dict(num_keypoints=2, upsample=0)):
        with pytest.raises(ValueError):
            KeypointHead(**bad)


def test_keypoint_loss_is_the_spatial_softmax_cross_entropy_of_valid_keypoints():
    rng = np.random.default_rng(1)
    s, k = 4, 3
    heatmaps = rng.normal(size=(2, 2, s, s, k)).astype(np.float32)
    indices = rng.integers(0, s * s, size=(2, 2, k)).astype(np.int32)
    valid = rng.uniform(size=(2, 2, k)) < 0.6
    valid[0, 0, 0] = True
    loss = float(KeypointHead.loss(tf.constant(heatmaps), tf.constant(indices), tf.constant(valid)))
    total, count = 0.0, 0
    for b in range(2):
        for r in range(2):
            for j in range(k):
                if not valid[b, r, j]:
                    continue
                flat = heatmaps[b, r, :, :, j].reshape(-1).astype(np.float64)
                log_softmax = flat - np.log(np.exp(flat - flat.max()).sum()) - flat.max()
                total += -log_softmax[indices[b, r, j]]
                count += 1
    np.testing.assert_allclose(loss, total / count, rtol=1e-5)
    assert float(KeypointHead.loss(tf.constant(heatmaps), tf.constant(indices), tf.zeros_like(valid))) == 0.0


def test_heads_run_under_mixed_precision_and_return_float32():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mask = MaskHead(num_classes=2, conv_dims=(4,), deconv_dim=4)(tf.zeros([1, 2, 14, 14, 3]))
        heat = KeypointHead(2, conv_dims=(4,))(tf.zeros([1, 2, 14, 14, 3]))
    finally:
        keras.config.set_dtype_policy("float32")
    assert mask.dtype == tf.float32 and heat.dtype == tf.float32
