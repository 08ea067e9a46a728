"""MultiScaleBatches: YOLOv2's multi-scale training as a batch transform."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.data.multi_scale import MultiScaleBatches, yolo_v2_sizes


def _batches(n=25, size=64):
    images = tf.cast(tf.reshape(tf.range(n * size * size * 3) % 255, [n, size, size, 3]), tf.uint8)
    boxes = tf.tile(tf.constant([[[8.0, 16.0, 32.0, 48.0], [-1.0, -1.0, -1.0, -1.0]]]), [n, 1, 1])
    keypoints = tf.tile(tf.constant([[[[10.0, 20.0, 2.0]], [[0.0, 0.0, 0.0]]]]), [n, 1, 1, 1])
    targets = {"boxes": boxes, "labels": tf.tile(tf.constant([[1, -1]]), [n, 1]), "keypoints": keypoints}
    return tf.data.Dataset.from_tensor_slices((images, targets)).batch(1)


def test_paper_sizes():
    assert yolo_v2_sizes(416) == tuple(range(320, 609, 32))


def test_one_size_per_group_of_batches_deterministic_and_resumable():
    transform = MultiScaleBatches((32, 64, 96, 128), every=10, seed=7)
    sizes = [int(x.shape[1]) for x, _ in transform(_batches())]
    assert len(set(sizes[:10])) == 1 and len(set(sizes[10:20])) == 1 and len(set(sizes)) > 1
    assert sizes == [int(x.shape[1]) for x, _ in transform(_batches())]
    # a run resumed at batch 13 sees the sizes of batches 13.. of the uninterrupted one
    assert [int(x.shape[1]) for x, _ in transform(_batches().skip(13), first_batch=13)] == sizes[13:]


def test_boxes_and_keypoints_follow_padding_stays():
    transform = MultiScaleBatches((128,), seed=0)
    images, targets = next(iter(transform(_batches(1))))
    assert images.dtype == tf.uint8 and images.shape == (1, 128, 128, 3)
    np.testing.assert_allclose(targets["boxes"][0].numpy(), [[16, 32, 64, 96], [-1, -1, -1, -1]])
    np.testing.assert_allclose(targets["keypoints"][0, 0, 0].numpy(), [20, 40, 2])


@pytest.mark.parametrize("kwargs", [dict(sizes=()), dict(sizes=(0,)), dict(sizes=(32,), every=0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        MultiScaleBatches(**kwargs)
