"""SSDAugmenter: the SSD paper's zoom-out and min-IoU crop move boxes, masks and keypoints together, every draw
follows the sample's seed, and prepare uses it like DetectionAugmenter."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.data import SSDAugmenter, masks_to_boxes, prepare, synthetic
from kerasdet.ops import iou


def _sample(index=0, size=128):
    ds = synthetic.dataset("train", index + 1, image_size=size, with_masks=True, with_keypoints=True)
    image, targets = list(ds)[index]
    return image, targets


def _locate(patch, image):
    """(top, left) where `patch` lies in `image` pixel for pixel (None when it does not)."""
    ph, pw = patch.shape[:2]
    h, w = image.shape[:2]
    for top in range(h - ph + 1):
        for left in range(w - pw + 1):
            if np.array_equal(image[top:top + ph, left:left + pw], patch):
                return top, left
    return None


def test_crop_takes_a_patch_with_the_objects_whose_centres_lie_in_it():
    """Crop alone (no resize): the output is a patch of the input pixel for pixel, with sides >= 0.3 of the
    image and aspect ratio in [1/2, 2]; its objects are those whose box centre lies in it, boxes clipped to it;
    about one sample in seven keeps the whole image (the first mode), more when no patch qualifies."""
    image, targets = _sample(0)
    image_np = image.numpy().astype(np.float32)
    boxes = targets["boxes"].numpy()
    aug = SSDAugmenter(photometric=False, zoom_out=False, flip=False)
    whole = 0
    masks = targets["masks"].numpy()
    for s in range(24):
        out, got = aug.augment(image, {k: v for k, v in targets.items() if k != "keypoints"}, tf.constant([s, 7]))
        out = out.numpy()
        if out.shape == image_np.shape and np.array_equal(out, image_np):
            whole += 1
            np.testing.assert_array_equal(got["masks"].numpy(), masks)
            continue
        h, w = out.shape[:2]
        assert h >= 0.3 * 128 - 1 and w >= 0.3 * 128 - 1 and 0.5 <= h / w <= 2.0
        top, left = _locate(out, image_np)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = ((centres[:, 0] > left) & (centres[:, 0] < left + w) & (centres[:, 1] > top)
                  & (centres[:, 1] < top + h))
        assert inside.any()
        # masks cut at the patch's place; boxes are the tight boxes of the cut masks
        cut = masks[inside][:, top:top + h, left:left + w]
        np.testing.assert_array_equal(got["masks"].numpy(), cut)
        for box, mask in zip(got["boxes"].numpy(), cut):
            ys, xs = np.nonzero(mask)
            np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        np.testing.assert_array_equal(got["labels"].numpy(), targets["labels"].numpy()[inside])
    assert 1 <= whole <= 16


def test_zoom_out_places_the_image_on_a_mean_canvas():
    """Zoom-out alone (probability 1): the image appears unchanged at some offset of a canvas 1-4x its size,
    the rest is the ImageNet mean; boxes and keypoints move by the offset."""
    image, targets = _sample(1)
    aug = SSDAugmenter(photometric=False, crop=False, flip=False, zoom_out_probability=1.0)
    for s in range(3):
        out, got = aug.augment(image, targets, tf.constant([s, 3]))
        out = out.numpy()
        h, w = out.shape[:2]
        assert 128 <= h <= 512 and 128 <= w <= 512 and abs(h - w) <= 1
        top, left = _locate(image.numpy().astype(np.float32), out)
        shift = np.array([left, top, left, top], np.float32)
        np.testing.assert_allclose(got["boxes"].numpy(), targets["boxes"].numpy() + shift, atol=1e-4)
        placed = np.zeros_like(got["masks"].numpy())
        placed[:, top:top + 128, left:left + 128] = targets["masks"].numpy()
        np.testing.assert_array_equal(got["masks"].numpy(), placed)
        corner = out[0, 0] if (top, left) != (0, 0) else out[-1, -1]
        np.testing.assert_allclose(corner, (123.675, 116.28, 103.53), atol=1e-3)
        visible = targets["keypoints"].numpy()[..., 2] > 0
        np.testing.assert_allclose(got["keypoints"].numpy()[..., :2][visible],
                                   targets["keypoints"].numpy()[..., :2][visible] + [left, top], atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_full_augmentation_keeps_masks_boxes_and_keypoints_consistent(seed):
    """Every step on: output at the requested size; boxes are the tight boxes of the masks; labelled keypoints
    lie in the image; the same seed gives the same sample."""
    image, targets = _sample(seed % 3)
    aug = SSDAugmenter(output_size=96, keypoint_flip_map=synthetic.keypoint_flip_map())
    out, got = aug.augment(image, targets, tf.constant([seed, 11]))
    assert out.shape == (96, 96, 3) and float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255
    tight, nonempty = masks_to_boxes(got["masks"])
    assert bool(tf.reduce_all(nonempty))
    np.testing.assert_allclose(got["boxes"].numpy(), tight.numpy())
    kp = got["keypoints"].numpy()
    labelled = kp[..., 2] > 0
    assert np.all((kp[..., 0][labelled] >= 0) & (kp[..., 0][labelled] < 96) & (kp[..., 1][labelled] < 96))
    again, again_targets = aug.augment(image, targets, tf.constant([seed, 11]))
    np.testing.assert_array_equal(out.numpy(), again.numpy())
    np.testing.assert_array_equal(got["boxes"].numpy(), again_targets["boxes"].numpy())


def test_crop_meets_its_minimum_iou():
    """With the modes "whole image" and "minimum IoU 0.7" alone, every crop taken overlaps some object at
    IoU >= 0.7."""
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (128, 128, 3)), tf.uint8)
    boxes = np.array([[20, 10, 100, 110], [5, 5, 15, 20]], np.float32)
    targets = {"boxes": tf.constant(boxes), "labels": tf.constant([0, 1], tf.int32)}
    aug = SSDAugmenter(photometric=False, zoom_out=False, flip=False, min_ious=(0.7,), any_patch=False)
    taken = 0
    for s in range(12):
        out, _ = aug.augment(image, targets, tf.constant([s, 1]))
        out = out.numpy()
        if out.shape[:2] == (128, 128):
            continue
        top, left = _locate(out, image.numpy().astype(np.float32))
        patch = np.array([[left, top, left + out.shape[1], top + out.shape[0]]], np.float32)
        assert iou(patch, boxes).numpy().max() >= 0.7 - 1e-4
        taken += 1
    assert taken >= 2


def test_prepare_gives_reproducible_batches_and_bad_arguments_are_refused():
    ds = synthetic.dataset("train", 8, image_size=96)
    first = [y["boxes"].numpy() for _, y in prepare(ds, 4, 96, augmenter=SSDAugmenter(seed=3))]
    second = [y["boxes"].numpy() for _, y in prepare(ds, 4, 96, augmenter=SSDAugmenter(seed=3))]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    for kwargs, match in (({"max_zoom_out": 0.5}, "max_zoom_out"), ({"zoom_out_probability": 2}, "probability"),
                          ({"min_ious": (1.5,)}, "min_ious"), ({"crop_trials": 0}, "crop_trials"),
                          ({"fill": (1, 2)}, "fill"), ({"fill": 128}, "fill"), ({"min_ious": 0.5}, "min_ious"),
                          ({"zoom_out_probability": True}, "probability")):
        with pytest.raises(ValueError, match=match):
            SSDAugmenter(**kwargs)
    config = SSDAugmenter(output_size=64, zoom_out=False, seed=1).get_config()
    assert SSDAugmenter.from_config(config).get_config() == config
