"""Input pipeline: augmentation keeps boxes, masks and keypoints consistent; resize, batching."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.data import pipeline, synthetic


def _tf(targets):
    return {k: tf.constant(v) for k, v in targets.items()}


def _np(targets):
    return {k: v.numpy() for k, v in targets.items()}


def _check_consistent(image, targets, min_size=0.0):
    height, width = image.shape[:2]
    boxes = targets["boxes"]
    assert boxes.shape[0] == targets["labels"].shape[0]
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= width) and np.all(
        boxes[:, 3] <= height)
    assert np.all(boxes[:, 2] - boxes[:, 0] >= max(min_size, 1e-6))
    assert np.all(boxes[:, 3] - boxes[:, 1] >= max(min_size, 1e-6))
    if "masks" in targets:
        masks = targets["masks"]
        assert masks.shape == (boxes.shape[0], height, width)
        for j in range(masks.shape[0]):
            rows, cols = np.flatnonzero(masks[j].any(1)), np.flatnonzero(masks[j].any(0))
            assert boxes[j].tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    if "keypoints" in targets:
        kp = targets["keypoints"]
        labelled = kp[..., 2] > 0
        assert np.all(kp[labelled][:, 0] < width) and np.all(kp[labelled][:, 1] < height)
        assert np.all(kp[labelled][:, :2] >= 0)
        assert np.all(kp[~labelled] == 0)


def test_augmentation_keeps_boxes_masks_and_keypoints_consistent():
    aug = pipeline.DetectionAugmenter(output_size=(112, 128), seed=5, min_box_size=2.0,
                                      keypoint_flip_map=synthetic.keypoint_flip_map())
    ds = synthetic.dataset("train", 24, image_size=96).map(aug)  # graph mode, in tf.data
    counts = []
    for image, targets in ds:
        assert image.dtype == tf.float32 and image.shape == (112, 128, 3)
        assert 0 <= float(tf.reduce_min(image)) and float(tf.reduce_max(image)) <= 255
        _check_consistent(image.numpy(), _np(targets), min_size=2.0)
        counts.append(int(targets["labels"].shape[0]))
    assert sum(counts) > 50 and min(counts) >= 0


def test_box_only_path_agrees_with_mask_path():
    """Two augmenters with one seed draw the same transforms; boxes moved as boxes must match
    the tight boxes of the moved masks, up to the rounding of the resized mask, wherever the
    crop did not cut the object (a cut changes the tight box in a way only the mask knows)."""
    with_masks = pipeline.DetectionAugmenter(seed=11, color=False, scale_range=(0.6, 1.6))
    boxes_only = pipeline.DetectionAugmenter(seed=11, color=False, scale_range=(0.6, 1.6))
    matched = 0
    for i in range(12):
        image, targets = synthetic.render(i, 96, seed=3)
        a_img, a = with_masks(image, _tf({k: targets[k] for k in ("boxes", "labels", "masks")}))
        b_img, b = boxes_only(image, _tf({k: targets[k] for k in ("boxes", "labels")}))
        np.testing.assert_array_equal(a_img.numpy(), b_img.numpy())
        a, b = _np(a), _np(b)
        _check_consistent(a_img.numpy(), a)
        _check_consistent(b_img.numpy(), b)
        # mask-derived boxes can only lose objects that the box path keeps as slivers
        assert len(a["labels"]) <= len(b["labels"])
        if len(a["labels"]) != len(b["labels"]):
            continue
        np.testing.assert_array_equal(a["labels"], b["labels"])
        inner = ((b["boxes"][:, 0] > 0) & (b["boxes"][:, 1] > 0) & (b["boxes"][:, 2] < 96)
                 & (b["boxes"][:, 3] < 96))
        np.testing.assert_allclose(a["boxes"][inner], b["boxes"][inner], atol=2.2)
        matched += int(inner.sum())
    assert matched > 20


def test_flip_moves_everything_and_permutes_keypoints():
    image, targets = synthetic.render(0, 96, seed=1)
    star = synthetic.class_names().index("star")
    assert np.any(targets["labels"] == star)
    aug = pipeline.DetectionAugmenter(scale_range=None, color=False, seed=2,
                                      keypoint_flip_map=synthetic.keypoint_flip_map())
    outcomes = set()
    for _ in range(12):
        out_image, out = aug(image, _tf(targets))
        out = _np(out)
        flipped = not np.array_equal(out_image.numpy(), image.astype(np.float32))
        outcomes.add(flipped)
        if not flipped:
            for key in targets:  # Keras round-trips boxes through relative coordinates
                np.testing.assert_allclose(out[key], targets[key], atol=1e-4)
            continue
        np.testing.assert_array_equal(out_image.numpy(), image[:, ::-1].astype(np.float32))
        np.testing.assert_array_equal(out["masks"], targets["masks"][:, :, ::-1])
        w = image.shape[1]
        want_boxes = np.stack([w - targets["boxes"][:, 2], targets["boxes"][:, 1],
                               w - targets["boxes"][:, 0], targets["boxes"][:, 3]], 1)
        np.testing.assert_allclose(out["boxes"], want_boxes)
        kp = targets["keypoints"]
        want = kp[:, synthetic.keypoint_flip_map()].copy()
        want[..., 0] = np.where(want[..., 2] > 0, w - want[..., 0], 0)
        np.testing.assert_allclose(out["keypoints"], want, atol=1e-4)
        for j in np.flatnonzero(targets["labels"] == star):
            if np.all(out["keypoints"][j, :, 2] > 0):
                assert np.argmin(out["keypoints"][j, :, 1]) == 0  # tip_1 still the topmost
    assert outcomes == {True, False}


def test_crop_drops_emptied_boxes_and_keeps_images_without_objects():
    image = np.zeros((64, 64, 3), np.uint8)
    targets = {"boxes": np.array([[0, 0, 6, 6], [58, 58, 64, 64], [20, 20, 44, 44]], np.float32),
               "labels": np.array([0, 1, 2], np.int32)}
    aug = pipeline.DetectionAugmenter(flip=False, color=False, scale_range=(2.5, 3.0), seed=4)
    dropped = 0
    for _ in range(10):
        out_image, out = aug(image, _tf(targets))
        out = _np(out)
        _check_consistent(out_image.numpy(), out, min_size=1.0)
        dropped += 3 - len(out["labels"])
        assert set(out["labels"].tolist()) <= {0, 1, 2}
    assert dropped > 0
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros((0,), np.int32),
             "masks": np.zeros((0, 64, 64), np.uint8)}
    out_image, out = aug(image, _tf(empty))
    assert out_image.shape == (64, 64, 3) and out["boxes"].shape == (0, 4)
    assert out["masks"].shape == (0, 64, 64)


def test_same_seed_same_augmentation():
    image, targets = synthetic.render(2, 96, seed=0)
    a = pipeline.DetectionAugmenter(seed=9)
    b = pipeline.DetectionAugmenter.from_config(a.get_config())
    for _ in range(3):
        ia, ta = a(image, _tf(targets))
        ib, tb = b(image, _tf(targets))
        np.testing.assert_array_equal(ia.numpy(), ib.numpy())
        np.testing.assert_array_equal(ta["boxes"].numpy(), tb["boxes"].numpy())


def test_letterbox_and_inverse():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 40:100] = 255
    mask = np.zeros((1, 100, 200), np.uint8)
    mask[0, 20:60, 40:100] = 1
    targets = {"boxes": np.array([[40, 20, 100, 60]], np.float32), "labels": np.array([3]),
               "masks": mask, "keypoints": np.array([[[50, 30, 2], [0, 0, 0]]], np.float32)}
    out_image, out = pipeline.letterbox(image, _tf(targets), 64)
    out = _np(out)
    assert out_image.dtype == tf.uint8 and out_image.shape == (64, 64, 3)
    np.testing.assert_array_equal(out["boxes"], [[13, 22, 32, 35]])  # from the mask
    _check_consistent(out_image.numpy(), out)
    assert np.all(out_image.numpy()[:16] == 114) and np.all(out_image.numpy()[48:] == 114)
    np.testing.assert_allclose(out["keypoints"], [[[16, 25.6, 2], [0, 0, 0]]], atol=1e-4)
    back = pipeline.unletterbox_boxes(tf.constant([[12.8, 22.4, 32, 35.2]]), (100, 200), 64)
    np.testing.assert_allclose(back.numpy(), [[40, 20, 100, 60]], atol=1e-4)
    # boxes without masks are moved exactly
    _, moved = pipeline.letterbox(image, _tf({"boxes": targets["boxes"],
                                              "labels": targets["labels"]}), 64)
    np.testing.assert_allclose(moved["boxes"].numpy(), [[12.8, 22.4, 32, 35.2]], atol=1e-5)


def test_resize_keeps_dtype_and_consistency():
    image, targets = synthetic.render(1, 96, seed=2)
    out_image, out = pipeline.resize(image, _tf(targets), (48, 80))
    assert out_image.dtype == tf.uint8 and out_image.shape == (48, 80, 3)
    _check_consistent(out_image.numpy(), _np(out))


def test_grayscale_and_rgba_are_converted():
    gray = tf.fill([5, 6, 1], tf.constant(7, tf.uint8))
    assert pipeline.to_rgb(gray).shape == (5, 6, 3)
    assert np.all(pipeline.to_rgb(gray).numpy() == 7)
    rgba = tf.concat([tf.fill([5, 6, 3], 9.0), tf.zeros([5, 6, 1])], -1)
    np.testing.assert_array_equal(pipeline.to_rgb(rgba).numpy(), np.full((5, 6, 3), 9.0))
    with pytest.raises(ValueError, match="channels|C of 1"):
        pipeline.to_rgb(tf.zeros([5, 6, 2]))
    targets = {"boxes": tf.constant([[1.0, 1.0, 4.0, 4.0]]), "labels": tf.constant([0])}
    ds = tf.data.Dataset.from_tensors((gray, targets)).concatenate(
        tf.data.Dataset.from_tensors((tf.fill([5, 6, 1], tf.constant(1, tf.uint8)), targets)))
    batch_images, _ = next(iter(pipeline.prepare(ds, 2, 16)))
    assert batch_images.shape == (2, 16, 16, 3) and batch_images.dtype == tf.float32
    aug = pipeline.DetectionAugmenter(seed=0)
    assert aug(tf.zeros([8, 8, 4], tf.uint8), targets)[0].shape == (8, 8, 3)


def test_padded_batch_pads_with_minus_one():
    def gen():
        for m, size in ((2, 10), (0, 12), (5, 8)):
            yield (np.ones((size, size, 3), np.uint8),
                   {"boxes": np.tile(np.array([[1, 1, 3, 3]], np.float32), (m, 1)),
                    "labels": np.arange(m, dtype=np.int32),
                    "masks": np.ones((m, size, size), np.uint8)})
    spec = (tf.TensorSpec([None, None, 3], tf.uint8),
            {"boxes": tf.TensorSpec([None, 4], tf.float32),
             "labels": tf.TensorSpec([None], tf.int32),
             "masks": tf.TensorSpec([None, None, None], tf.uint8)})
    ds = tf.data.Dataset.from_generator(gen, output_signature=spec)
    images, y = next(iter(pipeline.padded_batch(ds, 3)))
    assert images.shape == (3, 12, 12, 3) and y["boxes"].shape == (3, 5, 4)
    np.testing.assert_array_equal(y["labels"].numpy()[0], [0, 1, -1, -1, -1])
    assert np.all(y["labels"].numpy()[1] == -1) and np.all(y["boxes"].numpy()[1] == -1)
    assert y["masks"].shape == (3, 5, 12, 12) and y["masks"].numpy()[0, 2:].sum() == 0
    images, y = next(iter(pipeline.padded_batch(ds, 2, max_boxes=3)))
    assert y["boxes"].shape.as_list() == [2, 3, 4]  # static: good for XLA
    _, y = list(pipeline.padded_batch(ds, 2, max_boxes=3))[1]
    np.testing.assert_array_equal(y["labels"].numpy(), [[0, 1, 2]])  # truncated to max_boxes
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.padded_batch(ds, 0)
    with pytest.raises(ValueError, match="unbatched"):
        pipeline.padded_batch(ds.batch(2), 2)


def test_prepare_end_to_end():
    aug = pipeline.DetectionAugmenter(seed=1, keypoint_flip_map=synthetic.keypoint_flip_map())
    ds = pipeline.prepare(synthetic.dataset("train", 6, image_size=96), batch_size=3,
                          image_size=128, augmenter=aug, max_boxes=16, shuffle_buffer=6, seed=0)
    assert ds.element_spec[0].shape.as_list() == [None, 128, 128, 3]
    for images, y in ds:
        assert images.dtype == tf.float32
        assert y["labels"].shape[1] == 16 and y["keypoints"].shape[1:] == (16, 5, 3)
        for b in range(images.shape[0]):
            keep = y["labels"].numpy()[b] >= 0
            sample = {k: v.numpy()[b][keep] for k, v in y.items()}
            _check_consistent(images.numpy()[b], sample)


def test_argument_errors():
    with pytest.raises(ValueError, match="scale_range"):
        pipeline.DetectionAugmenter(scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="scale_range"):
        pipeline.DetectionAugmenter(scale_range=(1.0, float("inf")))  # every box would be cropped away
    with pytest.raises(ValueError, match="keypoint_flip_map"):
        pipeline.DetectionAugmenter(keypoint_flip_map=[0, 0, 1])
    with pytest.raises(ValueError, match="output_size"):
        pipeline.DetectionAugmenter(output_size=(0, 3))
    with pytest.raises(TypeError, match="'boxes' and 'labels'"):
        pipeline.letterbox(tf.zeros([4, 4, 3]), {"boxes": tf.zeros([0, 4])}, 8)
    with pytest.raises(ValueError, match=r"\[M, 4\]"):
        pipeline.resize(tf.zeros([4, 4, 3]), {"boxes": tf.zeros([3]), "labels": tf.zeros([3])}, 8)
    with pytest.raises(ValueError, match="single image"):
        pipeline.resize(tf.zeros([2, 4, 4, 3]), {"boxes": tf.zeros([0, 4]),
                                                 "labels": tf.zeros([0])}, 8)
    with pytest.raises(ValueError, match="unknown keys"):
        pipeline.resize(tf.zeros([4, 4, 3]), {"boxes": tf.zeros([0, 4]), "labels": tf.zeros([0]),
                                              "scores": tf.zeros([0])}, 8)


def test_mixed_precision_policy_keeps_float32_targets():
    import keras
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        aug = pipeline.DetectionAugmenter(seed=1)
        image, targets = synthetic.render(0, 64, seed=0)
        out_image, out = aug(image, _tf(targets))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert out_image.dtype == tf.float32 and out["boxes"].dtype == tf.float32
    _check_consistent(out_image.numpy(), _np(out))


def _batches(ds):
    return [(x.numpy(), {k: v.numpy() for k, v in y.items()}) for x, y in ds]


def _equal_batches(a, b):
    return len(a) == len(b) and all(np.array_equal(xa, xb) and all(np.array_equal(ya[k], yb[k]) for k in ya)
                                    for (xa, ya), (xb, yb) in zip(a, b))


def test_one_seed_gives_identical_batches_whatever_the_parallelism():
    """Two pipelines made with one augmenter seed give the same batches (the map runs in parallel, so a stateful
    generator would hand the draws to samples in a varying order); a second epoch draws anew; another seed differs."""
    def make(seed):
        aug = pipeline.DetectionAugmenter(seed=seed, keypoint_flip_map=synthetic.keypoint_flip_map())
        return pipeline.prepare(synthetic.dataset("train", 24, image_size=96), batch_size=4, image_size=96,
                                augmenter=aug, shuffle_buffer=24, seed=3)

    first = make(7)
    epoch_1, epoch_2 = _batches(first), _batches(first)
    assert _equal_batches(epoch_1, _batches(make(7)))
    assert _equal_batches(epoch_2, _batches(_after_one_epoch(make(7))))
    assert not _equal_batches(epoch_1, epoch_2)
    assert not _equal_batches(epoch_1, _batches(make(8)))


def _after_one_epoch(ds):
    """`ds`, iterated once: its next iteration is its second epoch."""
    for _ in ds:
        pass
    return ds


def test_augmenter_draws_every_transform_from_the_sample_seed():
    """`augment` with one seed gives one result; the flip, scale and colour draws all vary with the seed."""
    image, targets = synthetic.render(3, 96, seed=0)
    aug = pipeline.DetectionAugmenter(seed=None, keypoint_flip_map=synthetic.keypoint_flip_map())
    a = aug.augment(image, _tf(targets), tf.constant([5, 6]))
    b = aug.augment(image, _tf(targets), tf.constant([5, 6]))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1]["keypoints"].numpy(), b[1]["keypoints"].numpy())
    flips, scales, means = set(), set(), set()
    plain = pipeline.DetectionAugmenter(color=False, scale_range=None)
    sized = pipeline.DetectionAugmenter(flip=False, color=False)
    coloured = pipeline.DetectionAugmenter(flip=False, scale_range=None)
    for k in range(16):
        seed = tf.constant([k, 1])
        flips.add(bool(np.array_equal(plain.augment(image, _tf(targets), seed)[0].numpy(), image[:, ::-1])))
        scales.add(round(float(sized.augment(image, _tf(targets), seed)[1]["boxes"].numpy()[0, 2]), 3))
        means.add(round(float(tf.reduce_mean(coloured.augment(image, _tf(targets), seed)[0])), 3))
    assert flips == {True, False} and len(scales) > 8 and len(means) > 8
    with pytest.raises(ValueError, match="contrast"):
        pipeline.DetectionAugmenter(contrast=1.5)
    with pytest.raises(ValueError, match="saturation"):
        pipeline.DetectionAugmenter(saturation=0.5)


def test_skip_leaves_out_the_first_samples_and_keeps_the_draws_of_the_rest():
    """A resumed run's position: `skip=k` gives the batches the full pipeline gives after its first k samples."""
    def make(skip):
        aug = pipeline.DetectionAugmenter(seed=4)
        return pipeline.prepare(synthetic.dataset("train", 12, image_size=96), batch_size=3, image_size=96,
                                augmenter=aug, shuffle_buffer=12, seed=5, skip=skip)

    full = _batches(make(0))
    assert _equal_batches(full[2:], _batches(make(6)))
    with pytest.raises(ValueError, match="skip"):
        make(-1)
