"""SSD's training augmentation: photometric distortion, zoom-out, the min-IoU random crop, flip, resize."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.data.pipeline import (
    DetectionAugmenter,
    _finalise,
    _flip_sample,
    _sub_seed,
    _transform,
    _uniform,
)
from kerasdet.ops.boxes import iou

#: the crop modes' minimum IoU with some object, after "the whole image" and before "any patch" (Liu et al. §2.2)
SSD_MIN_IOUS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: ImageNet's mean RGB, the zoom-out canvas's fill
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)


@keras.saving.register_keras_serializable(package="kerasdet")
class SSDAugmenter(DetectionAugmenter):
    """The data augmentation of the SSD paper (Liu et al., 2016, §2.2 "Data augmentation" and §3.6), per sample:

    1. photometric distortion: the colour jitter of `DetectionAugmenter` (brightness, contrast, saturation, hue,
       each applied, in this order; the paper's applies each with probability 1/2, in a random order);
    2. zoom-out (`zoom_out_probability`, 0.5): the image placed at a random position on a canvas `r` times its
       size, `r ~ U(1, max_zoom_out)` (4), filled with `fill` (the ImageNet mean): what the paper credits for
       its gain on small objects (§3.6);
    3. the min-IoU random crop: one of seven modes drawn uniformly, the whole image, a patch whose IoU with some
       object (any object of the image, as Caffe's sampler) is at least 0.1, 0.3, 0.5, 0.7 or 0.9, or any patch;
       a patch has sides `U(0.3, 1)` of the image's (the released models' sampler; the paper's text says
       [0.1, 1]) and an aspect ratio (height / width) in [1/2, 2]; up to `crop_trials` (50) random patches are tried and
       the first that meets the mode and keeps an object is taken (none: the whole image); an object is kept
       when its box's centre lies in the patch, and its box is clipped to it;
    4. horizontal flip with probability 0.5 (keypoints permuted by `keypoint_flip_map`);
    5. resize to `output_size`.

    Boxes, masks and keypoints move together as in the rest of the pipeline (with masks, boxes are the tight boxes
    of the cropped masks; keypoints leaving the image become unlabelled). Every draw is a stateless function of
    the sample's seed, as for `DetectionAugmenter`, so `prepare` gives reproducible batches.

    Args:
        output_size: int or (height, width) of the output (`prepare` sets it to its image size).
        photometric, zoom_out, crop, flip: switch the steps (the paper's ablations of Table 2 and §3.6).
        max_zoom_out: the largest canvas ratio, >= 1.
        zoom_out_probability: in [0, 1].
        min_ious: the crop modes' minimum IoUs.
        any_patch: include the mode "any patch" (no minimum IoU).
        crop_trials: random patches tried per sample.
        fill: RGB value of the zoom-out canvas.
        keypoint_flip_map, min_box_size, seed, brightness, contrast, saturation, hue: as `DetectionAugmenter`.

    Example:
        >>> aug = SSDAugmenter(output_size=300, seed=0)
        >>> batches = prepare(synthetic.dataset("train", 100), 8, 300, augmenter=aug)
        >>> no_zoom = SSDAugmenter(output_size=300, zoom_out=False, seed=0)     # the zoom-out ablation
    """

    def __init__(self, output_size=None, photometric=True, zoom_out=True, crop=True, flip=True, max_zoom_out=4.0,
                 zoom_out_probability=0.5, min_ious=SSD_MIN_IOUS, any_patch=True, crop_trials=50, fill=IMAGENET_MEAN_RGB,
                 keypoint_flip_map=None, min_box_size=1.0, seed=None, brightness=0.15, contrast=0.3,
                 saturation=(0.35, 0.65), hue=0.04):
        super().__init__(flip=flip, scale_range=None, output_size=output_size, color=photometric,
                         brightness=brightness, contrast=contrast, saturation=saturation, hue=hue,
                         keypoint_flip_map=keypoint_flip_map, min_box_size=min_box_size, seed=seed)
        if not isinstance(max_zoom_out, (int, float)) or isinstance(max_zoom_out, bool) or not 1.0 <= max_zoom_out < 64:
            raise ValueError(f"max_zoom_out must be a number in [1, 64); received {max_zoom_out!r}")
        if (isinstance(zoom_out_probability, bool) or not isinstance(zoom_out_probability, (int, float))
                or not 0.0 <= zoom_out_probability <= 1.0):
            raise ValueError(f"zoom_out_probability must be in [0, 1]; received {zoom_out_probability!r}")
        if not isinstance(min_ious, (list, tuple)) or not all(isinstance(v, (int, float)) for v in min_ious):
            raise ValueError(f"min_ious must be a sequence of IoUs in [0, 1]; received {min_ious!r}")
        min_ious = tuple(float(v) for v in min_ious)
        if not all(0.0 <= v <= 1.0 for v in min_ious):
            raise ValueError(f"min_ious must lie in [0, 1]; received {min_ious}")
        if isinstance(crop_trials, bool) or not isinstance(crop_trials, int) or crop_trials < 1:
            raise ValueError(f"crop_trials must be a positive int; received {crop_trials!r}")
        if not isinstance(fill, (list, tuple)) or len(fill) != 3:
            raise ValueError(f"fill must be an RGB triple in 0..255; received {fill!r}")
        fill = tuple(float(v) for v in fill)
        if not all(0.0 <= v <= 255.0 for v in fill):
            raise ValueError(f"fill must be an RGB triple in 0..255; received {fill}")
        self.photometric = bool(photometric)
        self.zoom_out = bool(zoom_out)
        self.crop = bool(crop)
        self.max_zoom_out = float(max_zoom_out)
        self.zoom_out_probability = float(zoom_out_probability)
        self.min_ious = min_ious
        self.any_patch = bool(any_patch)
        self.crop_trials = int(crop_trials)
        self.fill = fill

    def get_config(self):
        return {"output_size": self.output_size, "photometric": self.photometric, "zoom_out": self.zoom_out,
                "crop": self.crop, "flip": self.flip, "max_zoom_out": self.max_zoom_out,
                "zoom_out_probability": self.zoom_out_probability, "min_ious": self.min_ious,
                "any_patch": self.any_patch,
                "crop_trials": self.crop_trials, "fill": self.fill, "keypoint_flip_map": self.keypoint_flip_map,
                "min_box_size": self.min_box_size, "seed": self.seed, "brightness": self.brightness,
                "contrast": self.contrast, "saturation": self.saturation, "hue": self.hue}

    def augment(self, image, targets, seed):
        """The augmented sample; every draw depends on `seed` (int [2]) alone."""
        image, targets, seed = self._start(image, targets, seed)
        if self.photometric:
            image = self._color(image, _sub_seed(seed, 0))
        if self.zoom_out:
            image, targets = self._zoom_out(image, targets, _sub_seed(seed, 1))
        if self.crop:
            image, targets = self._min_iou_crop(image, targets, _sub_seed(seed, 2))
        if self.flip:
            image, targets = tf.cond(_uniform(_sub_seed(seed, 3)) < 0.5,
                                     lambda: _flip_sample(image, targets, self.keypoint_flip_map),
                                     lambda: (image, targets))
        if self.output_size is not None:
            image, targets = _transform(image, targets, self.output_size, (0, 0), self.output_size, 0,
                                        self.min_box_size)
        else:
            shape = tf.shape(image)
            targets = _finalise(targets, shape[0], shape[1], self.min_box_size)
        return tf.clip_by_value(image, 0.0, 255.0), targets

    def _zoom_out(self, image, targets, seed):
        """With probability `zoom_out_probability`, the image at a random place on a canvas `r` times larger."""
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        ratio = _uniform(_sub_seed(seed, 1), 1.0, self.max_zoom_out)
        out_h = tf.cast(tf.round(tf.cast(height, tf.float32) * ratio), tf.int32)
        out_w = tf.cast(tf.round(tf.cast(width, tf.float32) * ratio), tf.int32)
        top = tf.cast(tf.floor(_uniform(_sub_seed(seed, 2)) * tf.cast(out_h - height + 1, tf.float32)), tf.int32)
        left = tf.cast(tf.floor(_uniform(_sub_seed(seed, 3)) * tf.cast(out_w - width + 1, tf.float32)), tf.int32)
        fill = tf.constant(self.fill, tf.float32)

        def expand():
            canvas, moved = _transform(image - fill, targets, (height, width), (top, left), (out_h, out_w), 0.0, 0.0)
            return canvas + fill, moved

        def keep():
            return image, _finalise(targets, height, width, 0.0)

        return tf.cond(_uniform(_sub_seed(seed, 0)) < self.zoom_out_probability, expand, keep)

    def _min_iou_crop(self, image, targets, seed):
        """The paper's patch sampling: a mode, then the first of `crop_trials` random patches that meets it."""
        shape = tf.shape(image)
        height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
        trials = self.crop_trials
        # mode 0: the whole image; 1..len(min_ious): a minimum IoU; the last (with any_patch): any patch
        minimums = (0.0,) + self.min_ious + ((-1.0,) if self.any_patch else ())
        mode = tf.random.stateless_uniform((), _sub_seed(seed, 0), 0, len(minimums), dtype=tf.int32)
        thresholds = tf.constant(minimums, tf.float32)
        draws = tf.random.stateless_uniform((trials, 4), _sub_seed(seed, 1), dtype=tf.float32)
        patch_w = width * (0.3 + 0.7 * draws[:, 0])
        patch_h = height * (0.3 + 0.7 * draws[:, 1])
        x0 = tf.floor(draws[:, 2] * (width - patch_w))
        y0 = tf.floor(draws[:, 3] * (height - patch_h))
        patches = tf.stack([x0, y0, x0 + tf.floor(patch_w), y0 + tf.floor(patch_h)], axis=1)  # [T, 4]
        boxes = targets["boxes"]
        centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])  # [M, 2]
        inside = ((centres[None, :, 0] > patches[:, None, 0]) & (centres[None, :, 0] < patches[:, None, 2])
                  & (centres[None, :, 1] > patches[:, None, 1]) & (centres[None, :, 1] < patches[:, None, 3]))
        overlaps = iou(patches, boxes)  # [T, M]
        best = tf.reduce_max(tf.concat([overlaps, tf.fill([trials, 1], -1.0)], axis=1), axis=1)
        aspect = (patches[:, 3] - patches[:, 1]) / tf.maximum(patches[:, 2] - patches[:, 0], 1.0)
        valid = ((aspect >= 0.5) & (aspect <= 2.0) & tf.reduce_any(inside, axis=1)
                 & (best >= thresholds[mode]) & (patches[:, 2] > patches[:, 0]) & (patches[:, 3] > patches[:, 1]))
        take = tf.logical_and(mode > 0, tf.reduce_any(valid))
        chosen = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)

        def crop():
            patch = tf.cast(patches[chosen], tf.int32)
            kept = {k: tf.boolean_mask(v, inside[chosen]) for k, v in targets.items()}
            size = tf.shape(image)[:2]
            return _transform(image, kept, (size[0], size[1]), (-patch[1], -patch[0]),
                              (patch[3] - patch[1], patch[2] - patch[0]), 0.0, 0.0)

        def whole():
            return image, targets

        return tf.cond(take, crop, whole)


__all__ = ["SSDAugmenter"]
