"""YOLOv2's multi-scale training: every few batches, the batches are resized to a new randomly chosen size."""

from __future__ import annotations

import numbers

import tensorflow as tf


def yolo_v2_sizes(image_size, step=32):
    """The paper's sizes {320, 352, ..., 608} for a 416 px model, scaled to `image_size`: the multiples of `step`
    from `image_size * 320 / 416` to `image_size * 608 / 416` (rounded to the nearest multiple)."""
    low = max(step, int(round(image_size * 320 / 416 / step)) * step)
    high = max(low, int(round(image_size * 608 / 416 / step)) * step)
    return tuple(range(low, high + 1, step))


class MultiScaleBatches:
    """Resizes a batched detection dataset to a size drawn from `sizes`, a new draw every `every` batches.

    YOLOv2 (Redmon and Farhadi, 2017, §2 "Multi-Scale Training") draws a new input size from {320, 352, ..., 608}
    every 10 batches. Batch `i` (counted from `first_batch`, so that a resumed run sees the sizes an uninterrupted
    one does) belongs to group `i // every`, whose size is drawn with a stateless generator from
    `(seed, group)`. Images are resized bilinearly (their dtype kept); boxes and keypoint coordinates are scaled
    (padding rows, -1, stay -1), masks resized by nearest neighbour.

    Args:
        sizes: the square sizes to draw from (multiples of the model's stride).
        every: batches per draw (10).
        seed: int seed of the draws.

    Example:
        >>> batches = prepare(synthetic.dataset("train", 800), 8, 256)
        >>> resized = MultiScaleBatches(yolo_v2_sizes(256), seed=1)(batches)
    """

    def __init__(self, sizes, every=10, seed=0):
        sizes = tuple(sizes)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError(f"`sizes` must be a non-empty sequence of positive ints; got {sizes!r}")
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"`every` must be a positive int; got {every!r}")
        self.sizes = tuple(int(s) for s in sizes)
        self.every = int(every)
        self.seed = int(seed)

    def size_of_batch(self, index):
        """The size of batch `index` (an int or a scalar tensor), as an int32 tensor."""
        group = tf.cast(index, tf.int64) // self.every
        draw = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(self.seed, tf.int64), group]),
                                           maxval=len(self.sizes), dtype=tf.int32)
        return tf.gather(tf.constant(self.sizes, tf.int32), draw)

    def resize(self, images, targets, size):
        """One batch (`images` `[B, S, S, 3]`, targets dict) resized to `size` x `size`."""
        old = tf.cast(tf.shape(images)[1:3], tf.float32)
        scale = tf.cast(size, tf.float32) / old                                 # (y, x)
        resized = tf.image.resize(tf.cast(images, tf.float32), [size, size], method="bilinear")
        if images.dtype.is_integer:
            resized = tf.clip_by_value(tf.round(resized), images.dtype.min, images.dtype.max)
        out = dict(targets)
        boxes = tf.cast(targets["boxes"], tf.float32)
        padding = tf.reduce_all(tf.equal(boxes, -1.0), axis=-1, keepdims=True)
        xyxy_scale = tf.stack([scale[1], scale[0], scale[1], scale[0]])
        out["boxes"] = tf.where(padding, boxes, boxes * xyxy_scale)
        if "keypoints" in targets:
            points = tf.cast(targets["keypoints"], tf.float32)
            out["keypoints"] = tf.concat([points[..., :1] * scale[1], points[..., 1:2] * scale[0], points[..., 2:]], -1)
        if "masks" in targets:
            masks = targets["masks"]
            shape = tf.shape(masks)
            flat = tf.reshape(masks, tf.concat([[-1], shape[2:4], [1]], 0))
            flat = tf.image.resize(flat, [size, size], method="nearest")
            out["masks"] = tf.cast(tf.reshape(flat, tf.concat([shape[:2], [size, size]], 0)), masks.dtype)
        return tf.cast(resized, images.dtype), out

    def __call__(self, batches, first_batch=0):
        """`batches` (a tf.data of `(images, targets)` batches) resized; its first batch has index `first_batch`."""
        def apply(index, batch):
            images, targets = batch
            return self.resize(images, targets, self.size_of_batch(index))

        return batches.enumerate(start=first_batch).map(apply, num_parallel_calls=tf.data.AUTOTUNE)
