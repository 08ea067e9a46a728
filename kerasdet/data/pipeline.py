"""The tf.data input pipeline: RGB conversion, resize/letterbox, box-aware augmentation, batching.

Samples are ``(image [H, W, C], targets)`` with targets a dict of per-object tensors whose first
dimension is the object count M: "boxes" float32 [M, 4] (xyxy pixels), "labels" int32 [M], and
optionally "masks" uint8 [M, H, W], "keypoints" float32 [M, K, 3] (x, y, COCO visibility),
"iscrowd"/"difficult" int32 [M] (DESIGN.md section 3). Every geometric step moves boxes, masks
and keypoints together; when masks are present the boxes are re-derived as the tight boxes of
the transformed masks (so they always agree), and objects left empty are dropped. Images
without objects pass through.

Every random draw of `DetectionAugmenter` is a stateless function of one per-sample seed, and
`prepare` gives each sample its seed from a seeded stream: two pipelines made with one seed give
identical batches, whatever the parallelism of the map. Keras' random layers cannot serve here (they
draw from a stateful generator, whose order under a parallel map is not fixed), nor can Keras 3.15's
`RandomCrop` (it moves boxes wrongly, not relative to the crop window) or `RandomZoom` (it neither drops
emptied boxes nor moves masks with the boxes).

Example:
    >>> from kerasdet.data import pipeline, synthetic
    >>> train = pipeline.prepare(synthetic.dataset("train", 1000), batch_size=8,
    ...                          image_size=256, augmenter=pipeline.DetectionAugmenter(seed=0),
    ...                          shuffle_buffer=256)
    >>> images, y = next(iter(train))   # y["labels"] padded with -1, y["boxes"] with -1
"""

import keras
import tensorflow as tf

from kerasdet.ops.boxes import clip_boxes

PADDING_VALUES = {"boxes": -1.0, "labels": -1, "masks": 0, "keypoints": 0.0, "iscrowd": 0,
                  "difficult": 0, "nodes": -1}


# ---------------------------------------------------------------------------------------------
# Checks and small helpers


def _check_sample(image, targets):
    if not isinstance(targets, dict) or "boxes" not in targets or ("labels" not in targets and "nodes" not in targets):
        raise TypeError("targets must be a dict with 'boxes' and 'labels' (or YOLO9000's 'nodes'); received "
                        f"{type(targets).__name__}"
                        + (f" with keys {sorted(targets)}" if isinstance(targets, dict) else ""))
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"image must be a single image [H, W, C]; received shape {image.shape}"
                         " (call the pipeline before batching)")
    boxes = tf.convert_to_tensor(targets["boxes"])
    if boxes.shape.rank != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"targets['boxes'] must have shape [M, 4]; received {boxes.shape}")
    unknown = set(targets) - set(PADDING_VALUES)
    if unknown:
        raise ValueError(f"targets has unknown keys {sorted(unknown)}; expected a subset of "
                         f"{sorted(PADDING_VALUES)}")
    return image, dict(targets)


def _check_size(size, name="size"):
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"{name} must be a positive int or (height, width); received {size!r}")
    return int(size[0]), int(size[1])


def to_rgb(image):
    """Converts a grayscale [H, W, 1] or RGBA [H, W, 4] image to RGB [H, W, 3] (alpha dropped).

    Args:
        image: tensor [H, W, C] with a static C of 1, 3 or 4 (or [B, H, W, C]).

    Returns:
        The RGB image, same dtype.

    Example:
        >>> to_rgb(tf.zeros([4, 4, 1], tf.uint8)).shape
        TensorShape([4, 4, 3])
    """
    image = tf.convert_to_tensor(image)
    channels = image.shape[-1]
    if image.shape.rank not in (3, 4) or channels not in (1, 3, 4):
        raise ValueError("image must be [H, W, C] or [B, H, W, C] with a known C of 1 "
                         f"(grayscale), 3 (RGB) or 4 (RGBA); received shape {image.shape}")
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    if channels == 4:
        return image[..., :3]
    return image


def masks_to_boxes(masks):
    """Tight xyxy boxes of masks [M, H, W] and whether each mask is non-empty.

    Returns:
        (boxes float32 [M, 4] (zeros for empty masks), nonempty bool [M]).
    """
    masks = tf.cast(masks, tf.bool)
    rows = tf.reduce_any(masks, axis=2)  # [M, H]
    cols = tf.reduce_any(masks, axis=1)  # [M, W]
    height = tf.shape(masks)[1]
    width = tf.shape(masks)[2]
    nonempty = tf.reduce_any(rows, axis=1)
    y1 = tf.argmax(tf.cast(rows, tf.int32), axis=1, output_type=tf.int32)
    y2 = height - tf.argmax(tf.cast(rows[:, ::-1], tf.int32), axis=1, output_type=tf.int32)
    x1 = tf.argmax(tf.cast(cols, tf.int32), axis=1, output_type=tf.int32)
    x2 = width - tf.argmax(tf.cast(cols[:, ::-1], tf.int32), axis=1, output_type=tf.int32)
    boxes = tf.cast(tf.stack([x1, y1, x2, y2], axis=1), tf.float32)
    boxes = tf.where(nonempty[:, None], boxes, tf.zeros_like(boxes))
    return boxes, nonempty


def _resize_masks(masks, height, width):
    """Nearest-neighbour resize of masks [M, H, W] to [M, height, width]."""
    count = tf.shape(masks)[0]
    hwm = tf.transpose(masks, [1, 2, 0])
    # one spare channel: TF's resize refuses zero channels (an image without objects)
    spare = tf.zeros(tf.concat([tf.shape(hwm)[:2], [1]], axis=0), hwm.dtype)
    hwm = tf.concat([hwm, spare], axis=-1)
    out = tf.image.resize(hwm, tf.stack([height, width]), method="nearest")[..., :count]
    return tf.transpose(tf.cast(out, masks.dtype), [2, 0, 1])


def _affine_keypoints(keypoints, scale_x, scale_y, dx, dy):
    """x -> x * scale_x + dx, y -> y * scale_y + dy; visibility unchanged."""
    x = keypoints[..., 0] * scale_x + dx
    y = keypoints[..., 1] * scale_y + dy
    return tf.stack([x, y, keypoints[..., 2]], axis=-1)


def _clean_keypoints(keypoints, height, width):
    """Keypoints unlabelled (v = 0) or outside the image become (0, 0, 0), as in COCO."""
    keypoints = tf.cast(keypoints, tf.float32)
    x, y, v = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2]
    keep = ((v > 0) & (x >= 0) & (y >= 0) & (x < tf.cast(width, tf.float32))
            & (y < tf.cast(height, tf.float32)))
    return tf.where(keep[..., None], keypoints, tf.zeros_like(keypoints))


def _finalise(targets, height, width, min_size):
    """Re-derives boxes from masks (or clips them), then drops objects smaller than min_size.

    An object is kept when its box is at least `min_size` wide and high (strictly positive
    when min_size is 0).
    """
    if "masks" in targets:
        boxes, nonempty = masks_to_boxes(targets["masks"])
    else:
        boxes = clip_boxes(tf.cast(targets["boxes"], tf.float32),
                           tf.stack([tf.cast(height, tf.float32), tf.cast(width, tf.float32)]))
        nonempty = tf.ones_like(boxes[:, 0], tf.bool)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    big = (w >= min_size) & (h >= min_size) if min_size > 0 else (w > 0) & (h > 0)
    keep = nonempty & big
    targets = dict(targets)
    targets["boxes"] = boxes
    if "keypoints" in targets:
        targets["keypoints"] = _clean_keypoints(targets["keypoints"], height, width)
    return {k: tf.boolean_mask(v, keep) for k, v in targets.items()}


def _cast_like(image, dtype):
    if dtype == tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    return tf.cast(image, dtype)


# ---------------------------------------------------------------------------------------------
# Geometric transform shared by resize, letterbox and scale jitter


def _place(content, off_y, off_x, out_h, out_w, pad_value, static_hw):
    """Puts content [h, w, C] on an [out_h, out_w, C] canvas with its corner at (off_y, off_x).

    Negative offsets crop the content, positive ones pad it with `pad_value`; the offsets must
    keep ``min(h, out_h)`` x ``min(w, out_w)`` of the content on the canvas.
    """
    shape = tf.shape(content)
    top = tf.maximum(-off_y, 0)
    left = tf.maximum(-off_x, 0)
    h = tf.minimum(shape[0] - top, out_h - tf.maximum(off_y, 0))
    w = tf.minimum(shape[1] - left, out_w - tf.maximum(off_x, 0))
    cropped = content[top:top + h, left:left + w]
    pad_top = tf.maximum(off_y, 0)
    pad_left = tf.maximum(off_x, 0)
    paddings = tf.stack([tf.stack([pad_top, out_h - pad_top - h]),
                         tf.stack([pad_left, out_w - pad_left - w]),
                         tf.constant([0, 0])])
    out = tf.pad(cropped, paddings, constant_values=tf.cast(pad_value, content.dtype))
    return tf.ensure_shape(out, [static_hw[0], static_hw[1], content.shape[-1]])


def _transform(image, targets, new_hw, offset, out_hw, pad_value, min_size):
    """Resizes the sample to new_hw, places it at offset on an out_hw canvas, moves targets.

    Boxes and keypoints get ``x * new_w / W + off_x`` (and likewise y); masks are resized with
    nearest neighbours and placed like the image. Returns float32 image and finalised targets.
    """
    shape = tf.shape(image)
    new_h, new_w = (tf.cast(v, tf.int32) for v in new_hw)
    off_y, off_x = (tf.cast(v, tf.int32) for v in offset)
    out_h, out_w = (tf.cast(v, tf.int32) for v in out_hw)
    static_hw = tuple(v if isinstance(v, int) else None for v in out_hw)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]))
    canvas = _place(resized, off_y, off_x, out_h, out_w, float(pad_value), static_hw)
    scale_x = tf.cast(new_w, tf.float32) / tf.cast(shape[1], tf.float32)
    scale_y = tf.cast(new_h, tf.float32) / tf.cast(shape[0], tf.float32)
    dx = tf.cast(off_x, tf.float32)
    dy = tf.cast(off_y, tf.float32)
    targets = dict(targets)
    boxes = tf.cast(targets["boxes"], tf.float32)
    targets["boxes"] = tf.stack([boxes[:, 0] * scale_x + dx, boxes[:, 1] * scale_y + dy,
                                 boxes[:, 2] * scale_x + dx, boxes[:, 3] * scale_y + dy], axis=1)
    if "keypoints" in targets:
        targets["keypoints"] = _affine_keypoints(tf.cast(targets["keypoints"], tf.float32),
                                                 scale_x, scale_y, dx, dy)
    if "masks" in targets:
        masks = _resize_masks(targets["masks"], new_h, new_w)
        placed = _place(tf.transpose(masks, [1, 2, 0]), off_y, off_x, out_h, out_w, 0, static_hw)
        targets["masks"] = tf.transpose(placed, [2, 0, 1])
    return canvas, _finalise(targets, out_h, out_w, min_size)


def resize(image, targets, size):
    """Resizes an image to `size` (aspect ratio not kept), moving boxes, masks and keypoints.

    Args:
        image: [H, W, 3] uint8 or float.
        targets: dict of per-object tensors (see module docstring).
        size: int or (height, width).

    Returns:
        (image of the input dtype [h, w, 3], targets) with emptied objects dropped.

    Example:
        >>> image, targets = resize(image, targets, 320)
    """
    image, targets = _check_sample(image, targets)
    out_h, out_w = _check_size(size)
    out, targets = _transform(image, targets, (out_h, out_w), (0, 0), (out_h, out_w), 0, 0.0)
    return _cast_like(out, image.dtype), targets


def letterbox_params(height, width, size):
    """Scale and padding of `letterbox`: returns (scale_y, scale_x, top, left, new_h, new_w).

    The image is resized by about ``min(size_h / height, size_w / width)`` to
    ``(new_h, new_w)`` (rounded) and pasted at ``(top, left)`` of the padded canvas; the
    per-axis scales are ``new_h / height`` and ``new_w / width``. Works on Python numbers and
    on scalar tensors.
    """
    out_h, out_w = _check_size(size)
    height_f = tf.cast(height, tf.float32)
    width_f = tf.cast(width, tf.float32)
    scale = tf.minimum(out_h / height_f, out_w / width_f)
    new_h = tf.clip_by_value(tf.cast(tf.round(height_f * scale), tf.int32), 1, out_h)
    new_w = tf.clip_by_value(tf.cast(tf.round(width_f * scale), tf.int32), 1, out_w)
    top = (out_h - new_h) // 2
    left = (out_w - new_w) // 2
    return (tf.cast(new_h, tf.float32) / height_f, tf.cast(new_w, tf.float32) / width_f,
            top, left, new_h, new_w)


def letterbox(image, targets, size, pad_value=114):
    """Resizes keeping the aspect ratio and pads (centred) to `size`, moving all targets.

    Args:
        image: [H, W, 3] uint8 or float.
        targets: dict of per-object tensors.
        size: int or (height, width) of the output.
        pad_value: value of the padding pixels (YOLO's grey 114 by default).

    Returns:
        (image [size_h, size_w, 3] of the input dtype, targets); `letterbox_params` gives the
        transform and `unletterbox_boxes` maps predicted boxes back to the original image.

    Example:
        >>> image, targets = letterbox(tf.zeros([100, 200, 3], tf.uint8),
        ...                            {"boxes": tf.constant([[0., 0., 200., 100.]]),
        ...                             "labels": tf.constant([0])}, 64)
        >>> targets["boxes"].numpy().tolist()
        [[0.0, 16.0, 64.0, 48.0]]
    """
    image, targets = _check_sample(image, targets)
    out_hw = _check_size(size)
    shape = tf.shape(image)
    _, _, top, left, new_h, new_w = letterbox_params(shape[0], shape[1], out_hw)
    out, targets = _transform(image, targets, (new_h, new_w), (top, left), out_hw, pad_value,
                              0.0)
    return _cast_like(out, image.dtype), targets


def unletterbox_boxes(boxes, original_size, size):
    """Maps xyxy boxes predicted on a letterboxed image back to the original image.

    Args:
        boxes: [..., 4] xyxy in letterboxed pixels.
        original_size: (height, width) of the original image (ints or scalar tensors).
        size: the `letterbox` size.

    Returns:
        float32 boxes [..., 4] in original pixels, clipped to the original image.
    """
    height, width = original_size
    scale_y, scale_x, top, left, _, _ = letterbox_params(height, width, size)
    boxes = tf.cast(boxes, tf.float32)
    x1 = (boxes[..., 0] - tf.cast(left, tf.float32)) / scale_x
    y1 = (boxes[..., 1] - tf.cast(top, tf.float32)) / scale_y
    x2 = (boxes[..., 2] - tf.cast(left, tf.float32)) / scale_x
    y2 = (boxes[..., 3] - tf.cast(top, tf.float32)) / scale_y
    return clip_boxes(tf.stack([x1, y1, x2, y2], axis=-1),
                      tf.stack([tf.cast(height, tf.float32), tf.cast(width, tf.float32)]))


# ---------------------------------------------------------------------------------------------
# Augmentation


def _flip_sample(image, targets, flip_map):
    """Horizontal mirror of a sample: image columns reversed, x -> width - x for boxes and keypoints, masks
    mirrored, keypoints permuted by `flip_map` (left/right swaps; None for none). Boxes come back float32."""
    width = tf.cast(tf.shape(image)[1], tf.float32)
    targets = dict(targets)
    boxes = tf.cast(targets["boxes"], tf.float32)
    targets["boxes"] = tf.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
    if "keypoints" in targets:
        kp = tf.cast(targets["keypoints"], tf.float32)
        kp = tf.concat([width - kp[..., :1], kp[..., 1:]], axis=-1)
        if flip_map is not None:
            kp = tf.gather(kp, flip_map, axis=1)
        targets["keypoints"] = kp
    if "masks" in targets:
        targets["masks"] = tf.reverse(targets["masks"], axis=[2])
    return tf.reverse(image, axis=[1]), targets


def _uniform(seed, low=0.0, high=1.0):
    """One float32 draw from U[low, high) that depends on `seed` (int [2]) alone."""
    return tf.random.stateless_uniform((), seed, minval=low, maxval=high, dtype=tf.float32)


def _sub_seed(seed, index):
    """The seed of the `index`-th independent draw of a sample."""
    return tf.random.experimental.stateless_fold_in(seed, index)


@keras.saving.register_keras_serializable(package="kerasdet")
class DetectionAugmenter:
    """Box-, mask- and keypoint-aware augmentation for single samples in a tf.data pipeline.

    Applies, in order: a random horizontal flip (probability 0.5; keypoints permuted by
    `keypoint_flip_map`), a random scale jitter followed by a random crop or pad back to the output
    size (large-scale jitter, Ghiasi et al. 2021; a scale above 1 crops, below 1 pads), and colour
    jitter (brightness, contrast, saturation, hue, in that order). Boxes stay inside the image; with
    masks, boxes are the tight boxes of the transformed masks; objects left smaller than
    `min_box_size` are dropped.

    Every draw is a stateless function of one seed per sample (`augment(image, targets, seed)`):
    `prepare` draws those seeds from a stream seeded with `seed`, so two pipelines with one seed give
    identical batches whatever the map's parallelism, and each epoch gets new draws. Called
    directly (`augmenter(image, targets)`), a sample's seed comes from the augmenter's own
    generator: reproducible for calls in a fixed order only.

    Args:
        flip: apply the random horizontal flip.
        scale_range: (low, high) scale factors, or None for no scale jitter/crop.
        output_size: int or (height, width) of the output; None keeps each input's size.
        color: apply colour jitter.
        brightness: adds U(-brightness, brightness) x 255 to every pixel.
        contrast: scales each channel about its mean by U(1 - contrast, 1 + contrast).
        saturation: (low, high): with u ~ U(low, high), saturation is multiplied by u / (1 - u)
            (0.5 = unchanged), as `keras.layers.RandomSaturation`.
        hue: shifts hue by U(-hue, hue) / 2 of the colour circle, as `keras.layers.RandomHue`.
        keypoint_flip_map: permutation applied to keypoints on a flip (e.g. left/right
            swaps; `synthetic.keypoint_flip_map()`), or None for no permutation.
        min_box_size: objects whose box is narrower or lower than this (pixels) are dropped.
        pad_value: value of padded pixels.
        seed: int seed of the per-sample seeds (in `prepare`) and of direct calls; None for
            irreproducible draws.

    Call arguments:
        image: [H, W, 3] uint8 or float, values 0..255.
        targets: dict of per-object tensors ("boxes", "labels", optional "masks", "keypoints",
            "iscrowd", "difficult").
        seed: optional int [2] tensor: the sample's seed (see above).

    Returns:
        (image float32 [h, w, 3] in 0..255, targets).

    Example:
        >>> aug = DetectionAugmenter(output_size=256, seed=1,
        ...                          keypoint_flip_map=synthetic.keypoint_flip_map())
        >>> ds = synthetic.dataset("train", 100).map(aug)          # draws in call order
        >>> batches = prepare(synthetic.dataset("train", 100), 8, 256, augmenter=aug)  # per-sample seeds
    """

    def __init__(self, flip=True, scale_range=(0.5, 1.5), output_size=None, color=True,
                 brightness=0.15, contrast=0.3, saturation=(0.35, 0.65), hue=0.04,
                 keypoint_flip_map=None, min_box_size=1.0, pad_value=114, seed=None):
        if scale_range is not None:
            if (not isinstance(scale_range, (tuple, list)) or len(scale_range) != 2
                    or not 0 < scale_range[0] <= scale_range[1] < float("inf")):
                raise ValueError("scale_range must be (low, high) with 0 < low <= high < inf, or None; "
                                 f"received {scale_range!r}")
            scale_range = (float(scale_range[0]), float(scale_range[1]))
        if output_size is not None:
            output_size = _check_size(output_size, "output_size")
        if keypoint_flip_map is not None:
            keypoint_flip_map = [int(i) for i in keypoint_flip_map]
            if sorted(keypoint_flip_map) != list(range(len(keypoint_flip_map))):
                raise ValueError("keypoint_flip_map must be a permutation of 0..K-1; received "
                                 f"{keypoint_flip_map}")
        if min_box_size < 0:
            raise ValueError(f"min_box_size must be >= 0; received {min_box_size}")
        self.flip = bool(flip)
        self.scale_range = scale_range
        self.output_size = output_size
        self.color = bool(color)
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.keypoint_flip_map = keypoint_flip_map
        self.min_box_size = float(min_box_size)
        self.pad_value = pad_value
        for name, value in (("brightness", brightness), ("contrast", contrast), ("hue", hue)):
            if not 0 <= float(value) <= 1:
                raise ValueError(f"{name} must be in [0, 1]; received {value!r}")
        if (not isinstance(saturation, (tuple, list)) or len(saturation) != 2
                or not 0 <= saturation[0] <= saturation[1] < 1):
            raise ValueError(f"saturation must be (low, high) with 0 <= low <= high < 1; received {saturation!r}")
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(None if seed is None else int(seed) + 3)

    def get_config(self):
        return {"flip": self.flip, "scale_range": self.scale_range,
                "output_size": self.output_size, "color": self.color,
                "brightness": self.brightness, "contrast": self.contrast,
                "saturation": self.saturation, "hue": self.hue,
                "keypoint_flip_map": self.keypoint_flip_map, "min_box_size": self.min_box_size,
                "pad_value": self.pad_value, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __call__(self, image, targets, seed=None):
        if seed is None:
            seed = self._seed_generator.next()
        return self.augment(image, targets, seed)

    def _start(self, image, targets, seed):
        """What every `augment` starts from: the seed as an int tensor, the image float32 RGB, the targets checked
        (keypoints against `keypoint_flip_map`) with float32 boxes and keypoints."""
        seed = tf.convert_to_tensor(seed)
        if seed.dtype not in (tf.int32, tf.int64):
            seed = tf.cast(seed, tf.int64)
        image, targets = _check_sample(image, targets)
        if image.shape[-1] != 3:
            image = to_rgb(image)
        image = tf.cast(image, tf.float32)
        if "keypoints" in targets and self.keypoint_flip_map is not None:
            k = targets["keypoints"].shape[1]
            if k is not None and k != len(self.keypoint_flip_map):
                raise ValueError(f"keypoint_flip_map has {len(self.keypoint_flip_map)} entries "
                                 f"but targets['keypoints'] has K={k}")
        targets = dict(targets, boxes=tf.cast(targets["boxes"], tf.float32))
        if "keypoints" in targets:
            targets["keypoints"] = tf.cast(targets["keypoints"], tf.float32)
        return image, targets, seed

    def augment(self, image, targets, seed):
        """The augmented sample; every draw depends on `seed` (int [2]) alone."""
        image, targets, seed = self._start(image, targets, seed)
        if self.flip:
            image, targets = tf.cond(_uniform(_sub_seed(seed, 0)) < 0.5,
                                     lambda: _flip_sample(image, targets, self.keypoint_flip_map),
                                     lambda: (image, targets))
        # targets are finalised (boxes re-derived or clipped, small objects dropped) exactly
        # once: by the geometric transform when there is one, else here
        if self.scale_range is not None:
            image, targets = self._scale_crop(image, targets, _sub_seed(seed, 1))
        elif self.output_size is not None:
            image, targets = _transform(image, targets, self.output_size, (0, 0),
                                        self.output_size, 0, self.min_box_size)
        else:
            shape = tf.shape(image)
            targets = _finalise(targets, shape[0], shape[1], self.min_box_size)
        if self.color:
            image = self._color(image, _sub_seed(seed, 2))
        return tf.clip_by_value(image, 0.0, 255.0), targets

    def _color(self, image, seed):
        """Brightness, contrast, saturation and hue jitter of a float32 0..255 image."""
        image = tf.clip_by_value(image + 255.0 * _uniform(_sub_seed(seed, 0), -self.brightness, self.brightness),
                                 0.0, 255.0)
        mean = tf.reduce_mean(image, axis=[0, 1], keepdims=True)
        factor = _uniform(_sub_seed(seed, 1), 1.0 - self.contrast, 1.0 + self.contrast)
        image = tf.clip_by_value((image - mean) * factor + mean, 0.0, 255.0)
        u = _uniform(_sub_seed(seed, 2), self.saturation[0], self.saturation[1])
        image = tf.image.adjust_saturation(image / 255.0, u / (1.0 - u))
        image = tf.image.adjust_hue(image, 0.5 * _uniform(_sub_seed(seed, 3), -self.hue, self.hue))
        return image * 255.0

    def _scale_crop(self, image, targets, seed):
        shape = tf.shape(image)
        height = tf.cast(shape[0], tf.float32)
        width = tf.cast(shape[1], tf.float32)
        out_hw = self.output_size if self.output_size is not None else (shape[0], shape[1])
        out_h = tf.cast(out_hw[0], tf.int32)
        out_w = tf.cast(out_hw[1], tf.int32)
        # scale 1.0 = the letterbox fit of the input into the output
        fit = tf.minimum(tf.cast(out_h, tf.float32) / height, tf.cast(out_w, tf.float32) / width)
        scale = fit * _uniform(_sub_seed(seed, 0), self.scale_range[0], self.scale_range[1])
        new_h = tf.maximum(tf.cast(tf.round(height * scale), tf.int32), 1)
        new_w = tf.maximum(tf.cast(tf.round(width * scale), tf.int32), 1)
        # corner of the resized image on the canvas: negative crops, positive pads
        offset = (_offset(new_h, out_h, _sub_seed(seed, 1)), _offset(new_w, out_w, _sub_seed(seed, 2)))
        return _transform(image, targets, (new_h, new_w), offset, out_hw, self.pad_value,
                          self.min_box_size)


def _offset(size, out, seed):
    """Where a side of `size` starts on a side of `out`, uniform over every placement that keeps the
    smaller inside the larger (negative: the image is cropped)."""
    low = tf.minimum(0, out - size)
    high = tf.maximum(0, out - size)
    return tf.random.stateless_uniform((), seed, minval=low, maxval=high + 1, dtype=tf.int32)


# ---------------------------------------------------------------------------------------------
# Batching


def padded_batch(dataset, batch_size, max_boxes=None, drop_remainder=False):
    """Batches (image, targets) samples, padding targets to a common object count.

    Labels are padded with -1 and boxes with -1 (DESIGN.md section 3); masks, keypoints and
    flags with 0. Images (and masks) of different sizes are padded with 0 at the bottom/right.

    Args:
        dataset: unbatched tf.data.Dataset of ``(image, targets)``.
        batch_size: int > 0.
        max_boxes: pad every batch to exactly this many objects (static shape, good for XLA);
            samples with more objects keep their first `max_boxes`. None pads to the most
            objects in each batch.
        drop_remainder: drop the last smaller batch.

    Returns:
        Batched dataset of ``(images [B, H, W, 3], targets)`` with "boxes" [B, M, 4], "labels"
        [B, M], ...

    Example:
        >>> batches = padded_batch(synthetic.dataset("val", 16), 4, max_boxes=32)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int; received {batch_size!r}")
    if max_boxes is not None and (isinstance(max_boxes, bool) or not isinstance(max_boxes, int)
                                  or max_boxes <= 0):
        raise ValueError(f"max_boxes must be a positive int or None; received {max_boxes!r}")
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict)):
        raise TypeError("dataset must yield (image, targets dict) pairs; received element_spec "
                        f"{spec}")
    image_spec, target_spec = spec
    if image_spec.shape.rank != 3:
        raise ValueError(f"dataset must be unbatched: images [H, W, C]; received "
                         f"{image_spec.shape}")
    unknown = set(target_spec) - set(PADDING_VALUES)
    if unknown:
        raise ValueError(f"targets has unknown keys {sorted(unknown)}; expected a subset of "
                         f"{sorted(PADDING_VALUES)}")
    if max_boxes is not None:
        dataset = dataset.map(
            lambda image, targets: (image, {k: v[:max_boxes] for k, v in targets.items()}))
    # unknown dimensions pad to the largest in the batch; known ones stay static
    padded_shapes = (image_spec.shape,
                     {k: tf.TensorShape([max_boxes] + list(s.shape[1:]))
                      for k, s in target_spec.items()})
    padding_values = (tf.constant(0, image_spec.dtype),
                      {k: tf.constant(PADDING_VALUES[k], s.dtype)
                       for k, s in target_spec.items()})
    return dataset.padded_batch(batch_size, padded_shapes=padded_shapes,
                                padding_values=padding_values, drop_remainder=drop_remainder)


def prepare(dataset, batch_size, image_size, augmenter=None, shuffle_buffer=0, max_boxes=None,
            drop_remainder=False, seed=None, skip=0):
    """The usual input pipeline: RGB, shuffle, letterbox, augment, pad-batch, prefetch.

    Args:
        dataset: unbatched tf.data.Dataset of ``(image, targets)`` (e.g. `synthetic.dataset`,
            `CocoDataset.dataset()`).
        batch_size: int > 0.
        image_size: int or (height, width): every image is letterboxed to it.
        augmenter: a `DetectionAugmenter` (its output size is forced to `image_size`), any
            callable ``(image, targets) -> (image, targets)``, or None.
        shuffle_buffer: shuffle buffer size (0 = no shuffle).
        max_boxes: see `padded_batch`.
        drop_remainder: see `padded_batch`.
        seed: shuffle seed.
        skip: samples to leave out after shuffling (where a resumed run stands in its epoch); they
            are neither letterboxed nor augmented, and with a seeded `DetectionAugmenter` the samples
            after them get the same draws as without the skip.

    Returns:
        Batched, prefetched dataset of ``(images float32 [B, h, w, 3], targets)``.

    Example:
        >>> val = prepare(synthetic.dataset("val", 500), batch_size=16, image_size=256)
    """
    size = _check_size(image_size, "image_size")
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValueError(f"skip must be an int >= 0; received {skip!r}")
    ds = dataset.map(lambda image, targets: (to_rgb(image), targets),
                     num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if isinstance(augmenter, DetectionAugmenter) and augmenter.output_size != size:
        config = augmenter.get_config()
        config["output_size"] = size
        augmenter = type(augmenter).from_config(config)
    seeded = isinstance(augmenter, DetectionAugmenter) and augmenter.seed is not None
    if seeded:
        # one seed per sample from a seeded stream (new draws each epoch, the same in every run), paired with the
        # samples before anything is skipped: neither the map's parallelism nor a resume's skip changes which
        # sample gets which draws
        seeds = tf.data.Dataset.random(seed=augmenter.seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))
    if skip:
        ds = ds.skip(skip)
    if seeded:
        ds = ds.map(lambda sample, sample_seed: augmenter.augment(*letterbox(*sample, size), sample_seed),
                    num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda image, targets: letterbox(image, targets, size), num_parallel_calls=tf.data.AUTOTUNE)
        if augmenter is not None:
            ds = ds.map(augmenter, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda image, targets: (tf.cast(image, tf.float32), targets),
                num_parallel_calls=tf.data.AUTOTUNE)
    return padded_batch(ds, batch_size, max_boxes=max_boxes,
                        drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
