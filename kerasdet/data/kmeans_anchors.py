"""YOLOv2's dimension clusters: k-means on the training boxes' widths and heights with the distance 1 - IoU."""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf


def box_sizes(dataset, image_size):
    """`[N, 2]` float64 (width, height) in pixels of the non-padding boxes of `dataset`: an array of xyxy boxes
    `[N, 4]` or sizes `[N, 2]`, or a tf.data / iterable of `(image, targets)`; with `image_size`, each image's
    boxes are scaled as `prepare` letterboxes it (longest side to `image_size`)."""
    if isinstance(dataset, np.ndarray) or (isinstance(dataset, (list, tuple)) and dataset
                                           and isinstance(dataset[0], (list, tuple, np.ndarray))
                                           and np.ndim(dataset[0]) == 1):
        boxes = np.asarray(dataset, np.float64)
        if boxes.ndim != 2 or boxes.shape[1] not in (2, 4):
            raise ValueError(f"an array `dataset` must be [N, 4] xyxy boxes or [N, 2] sizes; got shape {boxes.shape}")
        return boxes if boxes.shape[1] == 2 else boxes[:, 2:] - boxes[:, :2]
    sizes = []
    for sample in dataset:
        if not (isinstance(sample, (list, tuple)) and len(sample) == 2 and isinstance(sample[1], dict)):
            raise ValueError("`dataset` must yield (image, targets) pairs with targets['boxes'] (xyxy pixels)")
        image, targets = sample
        boxes = np.asarray(targets["boxes"], np.float64).reshape(-1, 4)
        labels = np.asarray(targets.get("labels", np.zeros(len(boxes))), np.float64).reshape(-1)
        boxes = boxes[labels >= 0]
        if image_size is not None:
            height, width = np.shape(image)[:2]
            boxes = boxes * (image_size / max(height, width))
        sizes.append(boxes[:, 2:] - boxes[:, :2])
    return np.concatenate(sizes) if sizes else np.zeros([0, 2])


def shape_iou(sizes, anchors):
    """IoU `[N, K]` of boxes of `sizes` `[N, 2]` with anchors `[K, 2]` (width, height), all centred on one point."""
    sizes, anchors = np.asarray(sizes, np.float64), np.asarray(anchors, np.float64)
    inter = np.minimum(sizes[:, None, 0], anchors[None, :, 0]) * np.minimum(sizes[:, None, 1], anchors[None, :, 1])
    union = sizes[:, None].prod(-1) + anchors[None].prod(-1) - inter
    return inter / union


def mean_best_iou(sizes, anchors):
    """The mean over boxes of the IoU with their best anchor (the YOLO9000 paper's "Avg IOU", Table 1)."""
    return float(shape_iou(sizes, anchors).max(axis=1).mean())


def kmeans_anchors(dataset, k, image_size=None, stride=1, seed=0, restarts=5, max_iterations=300):
    """Anchor shapes found by k-means on the training boxes with the distance `1 - IoU(box, centroid)`.

    YOLOv2's dimension clusters (Redmon and Farhadi, 2017, §2 and Table 1): boxes and centroids are compared by
    shape alone, both centred on one point, so that large boxes do not dominate as they would under Euclidean
    distance. Each iteration assigns every box to the centroid of highest IoU and moves each centroid to the mean
    width and height of its boxes, until no assignment changes. Initial centroids are drawn k-means++-style (each
    next one among the boxes with probability proportional to its distance to the nearest centroid so far);
    `restarts` seeded runs, the one of highest mean IoU kept.

    Args:
        dataset: tf.data or iterable of `(image, targets)` (targets["boxes"] xyxy pixels, labels -1 for padding), or
            an array of boxes `[N, 4]` xyxy or sizes `[N, 2]`.
        k: number of anchors.
        image_size: scale each image's boxes as `prepare` does for this training size (longest side); None keeps
            the pixels as they are.
        stride: the returned shapes are in units of `stride` pixels (YOLOv2's grid units: 32, or the compact
            model's output stride); 1 gives pixels.
        seed: seed of the initialisations.
        restarts: k-means runs from different initialisations.
        max_iterations: bound per run.

    Returns:
        float64 `[k, 2]` (width, height) in units of `stride`, sorted by area.

    Example:
        >>> from kerasdet.data import synthetic
        >>> anchors = kmeans_anchors(synthetic.dataset("train", 1000, with_masks=False), k=5, stride=16)
        >>> mean_best_iou(np.array([[32.0, 32.0]]), anchors * 16) > 0.5
        True
    """
    for name, value, low in (("k", k, 1), ("restarts", restarts, 1), ("max_iterations", max_iterations, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}; got {value!r}")
    if isinstance(stride, bool) or not isinstance(stride, numbers.Real) or not 0 < stride < np.inf:
        raise ValueError(f"`stride` must be a positive number; got {stride!r}")
    if isinstance(dataset, tf.data.Dataset):
        dataset = dataset.as_numpy_iterator()
    sizes = box_sizes(dataset, image_size)
    if not np.all(np.isfinite(sizes)):
        raise ValueError("the boxes hold NaN or infinite coordinates")
    sizes = sizes[(sizes[:, 0] > 0) & (sizes[:, 1] > 0)]
    if len(sizes) < k:
        raise ValueError(f"k-means with k={k} needs at least {k} boxes of positive size; the data has {len(sizes)}")
    rng = np.random.default_rng(seed)
    best, best_iou = None, -1.0
    for _ in range(restarts):
        centroids = _plus_plus_init(sizes, k, rng)
        assignment = None
        for _ in range(max_iterations):
            new = shape_iou(sizes, centroids).argmax(axis=1)
            if assignment is not None and np.array_equal(new, assignment):
                break
            assignment = new
            for j in range(k):
                members = sizes[assignment == j]
                if len(members):  # an empty cluster keeps its centroid
                    centroids[j] = members.mean(axis=0)
        score = mean_best_iou(sizes, centroids)
        if score > best_iou:
            best, best_iou = centroids.copy(), score
    best = best[np.argsort(best.prod(axis=1), kind="stable")]
    return best / float(stride)


def _plus_plus_init(sizes, k, rng):
    centroids = [sizes[rng.integers(len(sizes))]]
    for _ in range(1, k):
        distance = 1.0 - shape_iou(sizes, np.array(centroids)).max(axis=1)
        total = distance.sum()
        pick = rng.integers(len(sizes)) if total <= 0 else rng.choice(len(sizes), p=distance / total)
        centroids.append(sizes[pick])
    return np.array(centroids, np.float64)


def faster_rcnn_anchors(image_size=256, reference_size=600):
    """The 9 hand-picked anchors of Faster R-CNN (sizes 128, 256, 512 px at aspect ratios 1:2, 1:1, 2:1, for
    images of shorter side `reference_size`), scaled to `image_size`: `[9, 2]` (width, height) in pixels."""
    scale = image_size / reference_size
    out = []
    for size in (128.0, 256.0, 512.0):
        for ratio in (0.5, 1.0, 2.0):  # height / width
            out.append((size * scale / np.sqrt(ratio), size * scale * np.sqrt(ratio)))
    return np.array(out)
