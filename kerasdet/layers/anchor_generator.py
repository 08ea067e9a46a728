"""Grid anchors (reference boxes) for Faster R-CNN, FPN, RetinaNet, SSD and YOLOv2/v3."""

from __future__ import annotations

import math
import numbers

import keras
import tensorflow as tf

from kerasdet.ops.boxes import clip_boxes

_UNITS = ("pixels", "cells", "image")

#: SSD300's aspect ratios per feature map (conv4_3, fc7, conv8_2 ... conv11_2): each `a` adds the
#: boxes `a` and `1/a`, so 4, 6, 6, 6, 4, 4 default boxes per location (Liu et al., 2016, §3).
SSD300_ASPECT_RATIOS = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
#: SSD512's seven feature maps (64, 32, 16, 8, 4, 2, 1 cells at 512 pixels).
SSD512_ASPECT_RATIOS = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
#: YOLOv2's five VOC anchors (width, height) in grid cells of 32 pixels, from darknet's yolov2-voc.cfg.
YOLO_V2_VOC_ANCHORS = ((1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892), (9.47112, 4.84053), (11.2364, 10.0071))
#: YOLOv2's five COCO anchors in grid cells, from darknet's yolov2.cfg.
YOLO_V2_COCO_ANCHORS = ((0.57273, 0.677385), (1.87446, 2.06253), (3.33843, 5.47434), (7.88282, 3.52778), (9.77052, 9.16828))
#: YOLOv3's nine COCO anchors (width, height) in pixels at 416, smallest first (Redmon & Farhadi, 2018, §2.3).
YOLO_V3_COCO_ANCHORS = (
    (10.0, 13.0), (16.0, 30.0), (33.0, 23.0), (30.0, 61.0), (62.0, 45.0), (59.0, 119.0),
    (116.0, 90.0), (156.0, 198.0), (373.0, 326.0),
)
#: Which YOLOv3 anchors each scale uses, for strides (8, 16, 32): the three smallest at stride 8.
YOLO_V3_MASKS = ((0, 1, 2), (3, 4, 5), (6, 7, 8))


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_floats(values, name: str) -> list:
    if _is_number(values):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"`{name}` must be a non-empty sequence of positive numbers; got {values!r}")
    out = []
    for v in values:
        if not _is_number(v) or not v > 0 or not math.isfinite(v):
            raise ValueError(f"`{name}` must hold positive finite numbers; got {values!r}")
        out.append(float(v))
    return out


def _per_level(values, name: str):
    """A flat sequence of numbers (shared by all levels) or a sequence of them (one per level).

    Returns (normalised value for get_config, list of per-level lists or None when shared, shared list).
    """
    if isinstance(values, (list, tuple)) and values and all(isinstance(v, (list, tuple)) for v in values):
        levels = [_positive_floats(list(v), f"{name}[{i}]") for i, v in enumerate(values)]
        return levels, levels, None
    shared = _positive_floats(values, name)
    return shared, None, shared


def _shape_pairs(values, name: str) -> list:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"`{name}` must be a non-empty sequence of (width, height) pairs; got {values!r}")
    out = []
    for pair in values:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"`{name}` must hold (width, height) pairs; got {pair!r}")
        out.append(_positive_floats(list(pair), name))
    return out


def _anchor_shapes(values):
    """anchor_shapes: pairs (shared by all levels) or a sequence of per-level sequences of pairs."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"`anchor_shapes` must be a non-empty sequence of (width, height) pairs; got {values!r}")
    first = values[0]
    if isinstance(first, (list, tuple)) and first and isinstance(first[0], (list, tuple)):
        levels = [_shape_pairs(v, f"anchor_shapes[{i}]") for i, v in enumerate(values)]
        return levels, levels, None
    shared = _shape_pairs(values, "anchor_shapes")
    return shared, None, shared


def _check_level_counts(level_counts: dict) -> None:
    if len(set(level_counts.values())) > 1:
        raise ValueError(f"per-level arguments disagree on the number of levels: {level_counts}")


def _size_ratio_shapes(sizes, ratios) -> list:
    """(w, h) for every (size, ratio) pair, sizes-major; ratio = height / width, area = size**2."""
    return [[s / math.sqrt(r), s * math.sqrt(r)] for s in sizes for r in ratios]


@keras.saving.register_keras_serializable(package="kerasdet")
class AnchorGenerator(keras.layers.Layer):
    """Anchors (default boxes, priors) on the grid of one or several feature maps, `xyxy` pixels.

    At level `l` with stride `(s_y, s_x)`, the anchors of feature-map cell (row `y`, column `x`) are
    centred on `((x + offset) * s_x, (y + offset) * s_y)`. Their widths and heights come either from
    `sizes` x `aspect_ratios` (Faster R-CNN, Ren et al., 2015, §3.1.1: an anchor of size `s` and ratio
    `r = height / width` has area `s**2`, width `s / sqrt(r)`, height `s * sqrt(r)`) or from explicit
    `anchor_shapes` (SSD's default boxes, Liu et al., 2016; YOLOv2/v3's clustered priors, Redmon &
    Farhadi, 2017 and 2018).

    Order: levels in the order of the feature maps; within a level the cells row-major (y, then x);
    within a cell the anchor shapes in order, which for `sizes` x `aspect_ratios` is **sizes-major**
    (all ratios of the first size, then all ratios of the second size, ...), as Detectron2. Anchor
    `i` of cell `(y, x)` at a level with `A` anchors per cell is row `(y * W + x) * A + i` of that
    level, which is what a head output `[B, H, W, A * 4]` reshaped to `[B, H * W * A, 4]` gives.

    Strides: one number per level; `None` infers them per axis as `image_size / feature_size`,
    which places centres at `(x + offset) / W_l` of the image as in the SSD paper. The layer reads
    the image and feature-map sizes from the tensors given in the call (dynamically when unknown),
    so one model serves any image size.

    Units of the anchor shapes (`units`): `"pixels"`; `"cells"`, multiplied by the level's stride
    (YOLOv2); `"image"`, fractions of the image width and height (SSD). Anchors are computed in
    float32 whatever the dtype policy, and are not clipped unless `clip=True` (Detectron2 does not
    clip; SSD implementations differ).

    Constructors for the papers' settings: `faster_rcnn`, `fpn`, `retinanet`, `ssd`, `yolo_v2`,
    `yolo_v3`.

    Args:
        sizes: anchor sizes (square root of the area) in pixels: a flat sequence shared by all
            levels, or one sequence per level. Default (128, 256, 512) when `anchor_shapes` is None.
        aspect_ratios: `height / width` ratios, flat or one sequence per level. Default (0.5, 1, 2).
        strides: a number or one number per level; None infers them from the image size.
        offset: position of the anchor centre inside its cell, in [0, 1] (0.5: the cell centre;
            Detectron2 uses 0); or one number >= 0 per level, in cells, for maps whose cell 0 is not
            centred in the image's first stride (SSD300's unpadded 3x3 extras: cell `x` of conv10_2
            sees the input cells `x .. x + 2`, so its centre lies at `(x + 1 + o) * stride`).
        anchor_shapes: instead of sizes and aspect ratios, explicit `(width, height)` pairs, flat
            (shared) or one sequence per level.
        units: `"pixels"`, `"cells"` or `"image"`, the unit of `sizes` / `anchor_shapes`.
        clip: clip the anchors to the image.
        per_level: return a list with one `[N_l, 4]` tensor per level instead of their concatenation.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        images: `[B, H, W, C]` images (only their height and width are read; B may be 0).
        *feature_maps: the feature maps `[B, H_l, W_l, C_l]`, one per level, given as separate
            arguments or as one list / dict (dict values in insertion order).

    Returns:
        float32 `[N, 4]` anchors in `xyxy` pixels, `N = sum_l H_l * W_l * A_l` (no batch dimension:
        the same anchors serve every image), or a list of `[N_l, 4]` when `per_level=True`.

    Example:
        >>> gen = AnchorGenerator()                           # Faster R-CNN: 9 anchors, stride 16
        >>> images = tf.zeros([2, 600, 800, 3])
        >>> gen(images, tf.zeros([2, 38, 50, 512])).shape
        TensorShape([17100, 4])
        >>> ssd = AnchorGenerator.ssd()                       # 8732 default boxes for SSD300
        >>> maps = [tf.zeros([1, n, n, 1]) for n in (38, 19, 10, 5, 3, 1)]
        >>> ssd(tf.zeros([1, 300, 300, 3]), maps).shape
        TensorShape([8732, 4])
    """

    def __init__(
        self,
        sizes=None,
        aspect_ratios=None,
        strides=16,
        offset: float = 0.5,
        anchor_shapes=None,
        units: str = "pixels",
        clip: bool = False,
        per_level: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if units not in _UNITS:
            raise ValueError(f"`units` must be one of {_UNITS}; got {units!r}")
        if isinstance(offset, (list, tuple)):
            if not offset or any(not _is_number(o) or not 0.0 <= o < math.inf for o in offset):
                raise ValueError(f"`offset` per level must hold finite numbers >= 0; got {offset!r}")
        elif not _is_number(offset) or not 0.0 <= offset <= 1.0:
            raise ValueError(f"`offset` must be a number in [0, 1] or one number >= 0 per level; got {offset!r}")
        for name, flag in (("clip", clip), ("per_level", per_level)):
            if not isinstance(flag, bool):
                raise TypeError(f"`{name}` must be a bool; got {type(flag).__name__}")
        if anchor_shapes is not None and (sizes is not None or aspect_ratios is not None):
            raise ValueError("pass either `anchor_shapes` or `sizes` / `aspect_ratios`, not both")

        level_counts = {}
        if isinstance(offset, (list, tuple)):
            level_counts["offset"] = len(offset)
        if strides is None:
            self.strides = None
        else:
            if isinstance(strides, (list, tuple)) and any(isinstance(v, (list, tuple)) for v in strides):
                raise ValueError(f"`strides` must be a number or a flat sequence of numbers; got {strides!r}")
            self.strides = _positive_floats(strides, "strides")
            level_counts["strides"] = len(self.strides)

        if anchor_shapes is not None:
            self.sizes = self.aspect_ratios = None
            self.anchor_shapes, shape_levels, shared_shapes = _anchor_shapes(anchor_shapes)
            if shape_levels is not None:
                level_counts["anchor_shapes"] = len(shape_levels)
        else:
            self.anchor_shapes = None
            size_config, size_levels, size_shared = _per_level((128, 256, 512) if sizes is None else sizes, "sizes")
            ratio_config, ratio_levels, ratio_shared = _per_level(
                (0.5, 1.0, 2.0) if aspect_ratios is None else aspect_ratios, "aspect_ratios"
            )
            self.sizes = None if sizes is None else size_config
            self.aspect_ratios = None if aspect_ratios is None else ratio_config
            for name, levels in (("sizes", size_levels), ("aspect_ratios", ratio_levels)):
                if levels is not None:
                    level_counts[name] = len(levels)
            n = max([len(v) for v in (size_levels, ratio_levels) if v is not None], default=0)
            if n:
                size_levels = size_levels or [size_shared] * n
                ratio_levels = ratio_levels or [ratio_shared] * n
                shape_levels = [_size_ratio_shapes(s, r) for s, r in zip(size_levels, ratio_levels)]
                shared_shapes = None
            else:
                shape_levels = None
                shared_shapes = _size_ratio_shapes(size_shared, ratio_shared)

        _check_level_counts(level_counts)
        self.num_levels = next(iter(level_counts.values()), None)
        if self.num_levels is not None and shape_levels is None:
            shape_levels = [shared_shapes] * self.num_levels
        self._shapes_per_level = shape_levels
        self._shared_shapes = shared_shapes
        self.offset = [float(o) for o in offset] if isinstance(offset, (list, tuple)) else float(offset)
        self.units = units
        self.clip = clip
        self.per_level = per_level

    # -- constructors for the papers' settings ----------------------------------------------------

    @classmethod
    def faster_rcnn(cls, sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), stride=16, **kwargs):
        """Faster R-CNN's 9 anchors per location on one stride-16 map (Ren et al., 2015, §3.1.1)."""
        return cls(sizes=sizes, aspect_ratios=aspect_ratios, strides=stride, **kwargs)

    @classmethod
    def fpn(cls, sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), strides=(4, 8, 16, 32, 64), **kwargs):
        """FPN's RPN anchors: one size per level P2-P6, three ratios (Lin et al., 2017, §4.1)."""
        return cls(sizes=[[s] for s in sizes], aspect_ratios=aspect_ratios, strides=strides, **kwargs)

    @classmethod
    def retinanet(
        cls, base_sizes=(32, 64, 128, 256, 512), scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
        aspect_ratios=(0.5, 1.0, 2.0), strides=(8, 16, 32, 64, 128), **kwargs,
    ):
        """RetinaNet's 9 anchors per location on P3-P7: sizes `base * {2^0, 2^1/3, 2^2/3}` x 3 ratios
        (Lin et al., 2017, "Focal Loss for Dense Object Detection", §4)."""
        sizes = [[b * s for s in scales] for b in base_sizes]
        return cls(sizes=sizes, aspect_ratios=aspect_ratios, strides=strides, **kwargs)

    @classmethod
    def ssd(
        cls,
        aspect_ratios=SSD300_ASPECT_RATIOS,
        min_scale: float = 0.2,
        max_scale: float = 0.9,
        first_scale=None,
        last_scale: float = 1.0,
        scales=None,
        extra_box: bool = True,
        strides=None,
        units="image",
        **kwargs,
    ):
        """SSD's default boxes (Liu et al., 2016, §2.2 "Choosing scales and aspect ratios").

        For `m` feature maps, the scale of map `k` (0-based) is `s_k = min_scale + (max_scale -
        min_scale) * k / (m - 1)`. Each location has a box of ratio 1 and scale `s_k`, an extra box
        of ratio 1 and scale `sqrt(s_k * s_{k+1})` (`extra_box`), then for every `a` in the map's
        `aspect_ratios` the boxes `width = s_k sqrt(a), height = s_k / sqrt(a)` and the transposed
        one (ratio `1/a`), in this order. Widths and heights are fractions of the image's; centres
        are at `(x + 0.5) / W_k` of the image (`strides=None`), or use `strides` in pixels as many
        implementations do ((8, 16, 32, 64, 100, 300) for SSD300).

        Args:
            aspect_ratios: per map, the ratios `a > 1` (each adds `a` and `1/a`); SSD300 by default,
                `SSD512_ASPECT_RATIOS` for SSD512.
            min_scale, max_scale: the linear range of scales over the maps.
            first_scale: if given, the first map gets this scale and the others are spread linearly
                from `min_scale` to `max_scale` (the released SSD300 uses 0.1 on conv4_3).
            last_scale: `s_m`, used only by the last map's extra box (1.0 as the TF Object Detection API).
            scales: explicit `m + 1` scales overriding the above.
            extra_box: whether to add the `sqrt(s_k s_{k+1})` box.
            strides: None (the paper) or one stride per map in pixels.
            units: `"image"` (the paper: scales are fractions of the image's width and height) or
                `"pixels"` (scales are box sizes in pixels, e.g. the paper's fractions times the training size,
                so that the boxes keep their size in pixels at any input size).
            **kwargs: other `AnchorGenerator` arguments (offset, clip, per_level, name...).
        """
        if not isinstance(aspect_ratios, (list, tuple)) or not aspect_ratios:
            raise ValueError(f"`aspect_ratios` must be one sequence of ratios per feature map; got {aspect_ratios!r}")
        m = len(aspect_ratios)
        if scales is not None:
            scales = _positive_floats(scales, "scales")
            if len(scales) != m + 1:
                raise ValueError(f"`scales` must hold {m + 1} values (one per map plus s_m); got {len(scales)}")
        else:
            for name, v in (("min_scale", min_scale), ("max_scale", max_scale), ("last_scale", last_scale)):
                _positive_floats([v], name)
            if max_scale < min_scale:
                raise ValueError(f"`max_scale` ({max_scale}) must be >= `min_scale` ({min_scale})")
            linear_maps = m if first_scale is None else m - 1
            linear = [
                min_scale + (max_scale - min_scale) * k / (linear_maps - 1) if linear_maps > 1 else min_scale
                for k in range(linear_maps)
            ]
            head = [] if first_scale is None else _positive_floats([first_scale], "first_scale")
            scales = head + linear + [float(last_scale)]
        shapes = []
        for k, ratios in enumerate(aspect_ratios):
            ratios = _positive_floats(list(ratios) if isinstance(ratios, (list, tuple)) else ratios, f"aspect_ratios[{k}]")
            s = scales[k]
            level = [[s, s]]
            if extra_box:
                e = math.sqrt(s * scales[k + 1])
                level.append([e, e])
            for a in ratios:
                level.append([s * math.sqrt(a), s / math.sqrt(a)])
                level.append([s / math.sqrt(a), s * math.sqrt(a)])
            shapes.append(level)
        if strides is not None and (_is_number(strides) or len(strides) != m):
            raise ValueError(f"`strides` must be None or one stride per feature map ({m}); got {strides!r}")
        if units not in ("image", "pixels"):
            raise ValueError(f"SSD's `units` must be 'image' or 'pixels'; got {units!r}")
        return cls(anchor_shapes=shapes, units=units, strides=strides, **kwargs)

    @classmethod
    def yolo_v2(cls, anchors=YOLO_V2_VOC_ANCHORS, stride=32, **kwargs):
        """YOLOv2's priors: `(width, height)` pairs in grid cells on one stride-32 grid (Redmon &
        Farhadi, 2017, §2 "Dimension Clusters"); `YOLO_V2_VOC_ANCHORS` (default) or `YOLO_V2_COCO_ANCHORS`."""
        return cls(anchor_shapes=[anchors], units="cells", strides=stride, **kwargs)

    @classmethod
    def yolo_v3(cls, anchors=YOLO_V3_COCO_ANCHORS, masks=YOLO_V3_MASKS, strides=(8, 16, 32), **kwargs):
        """YOLOv3's nine pixel anchors, three per scale (Redmon & Farhadi, 2018, §2.3): level `l`
        (stride `strides[l]`) uses `anchors[i] for i in masks[l]`; the smallest at stride 8."""
        anchors = _shape_pairs(anchors, "anchors")
        if not isinstance(masks, (list, tuple)) or not masks:
            raise ValueError(f"`masks` must be one sequence of anchor indices per scale; got {masks!r}")
        levels = []
        for mask in masks:
            if not isinstance(mask, (list, tuple)) or not mask or any(
                not isinstance(i, numbers.Integral) or not 0 <= i < len(anchors) for i in mask
            ):
                raise ValueError(f"`masks` must hold indices into `anchors` (0..{len(anchors) - 1}); got {masks!r}")
            levels.append([anchors[i] for i in mask])
        return cls(anchor_shapes=levels, units="pixels", strides=strides, **kwargs)

    # -- API --------------------------------------------------------------------------------------

    def num_anchors_per_location(self, num_levels: int | None = None) -> list:
        """Anchors per feature-map cell, one int per level (`num_levels` needed when not fixed)."""
        return [len(s) for s in self._level_shapes(num_levels)]

    def _level_shapes(self, num_levels):
        if self.num_levels is not None:
            if num_levels is not None and num_levels != self.num_levels:
                raise ValueError(
                    f"AnchorGenerator is configured for {self.num_levels} level(s) "
                    f"(from strides / per-level sizes); got {num_levels} feature map(s)"
                )
            return self._shapes_per_level
        if num_levels is None:
            return [self._shared_shapes]
        return [self._shared_shapes] * num_levels

    def generate(self, image_shape, feature_shapes) -> list:
        """Per-level anchors `[N_l, 4]` float32 for an image size and feature-map sizes.

        Args:
            image_shape: `(height, width)` (ints or scalar tensors).
            feature_shapes: a sequence of `(height, width)` per level.

        Returns:
            A list of float32 `[H_l * W_l * A_l, 4]` tensors, `xyxy` pixels.
        """
        if not isinstance(image_shape, (list, tuple)) or len(image_shape) < 2:
            raise ValueError(f"`image_shape` must be (height, width); got {image_shape!r}")
        if not isinstance(feature_shapes, (list, tuple)) or not feature_shapes:
            raise ValueError(f"`feature_shapes` must be a non-empty sequence of (height, width); got {feature_shapes!r}")
        for i, fs in enumerate(feature_shapes):
            if not isinstance(fs, (list, tuple)) or len(fs) < 2:
                raise ValueError(f"`feature_shapes[{i}]` must be (height, width); got {fs!r}")
        shapes = self._level_shapes(len(feature_shapes))
        img_h, img_w = image_shape[0], image_shape[1]
        out = []
        for level, (fs, wh) in enumerate(zip(feature_shapes, shapes)):
            out.append(self._level_anchors(level, fs[0], fs[1], img_h, img_w, wh))
        return out

    def _level_anchors(self, level, fh, fw, img_h, img_w, wh):
        f32 = tf.float32
        img_hf = tf.cast(img_h, f32)
        img_wf = tf.cast(img_w, f32)
        if self.strides is not None:
            stride_y = stride_x = tf.constant(self.strides[level], f32)
        else:
            stride_y = img_hf / tf.cast(fh, f32)
            stride_x = img_wf / tf.cast(fw, f32)
        wh = tf.constant(wh, f32)  # [A, 2]
        if self.units == "cells":
            wh = wh * tf.stack([stride_x, stride_y])
        elif self.units == "image":
            wh = wh * tf.stack([img_wf, img_hf])
        offset = self.offset[level] if isinstance(self.offset, list) else self.offset
        xs = (tf.range(fw, dtype=f32) + offset) * stride_x
        ys = (tf.range(fh, dtype=f32) + offset) * stride_y
        cy, cx = tf.meshgrid(ys, xs, indexing="ij")
        centres = tf.stack([cx, cy], axis=-1)[:, :, None, :]  # [H, W, 1, 2]
        half = 0.5 * wh
        boxes = tf.concat([centres - half, centres + half], axis=-1)  # [H, W, A, 4]
        boxes = tf.reshape(boxes, [fh * fw * int(wh.shape[0]), 4])
        if self.clip:
            boxes = clip_boxes(boxes, tf.stack([img_hf, img_wf]))
        return boxes

    @staticmethod
    def _flatten_maps(feature_maps):
        if len(feature_maps) == 1 and isinstance(feature_maps[0], (list, tuple, dict)):
            maps = feature_maps[0]
            return list(maps.values()) if isinstance(maps, dict) else list(maps)
        return list(feature_maps)

    @staticmethod
    def _spatial_dims(t, name):
        if t.shape.rank is not None and t.shape.rank != 4:
            raise ValueError(f"`{name}` must have shape [B, H, W, C]; got shape {tuple(t.shape)}")
        dynamic = tf.shape(t)
        return [t.shape[i] if t.shape[i] is not None else dynamic[i] for i in (1, 2)]

    def call(self, images, *feature_maps):
        maps = self._flatten_maps(feature_maps)
        if not maps:
            raise ValueError("AnchorGenerator needs at least one feature map after `images`")
        images = tf.convert_to_tensor(images)
        img_h, img_w = self._spatial_dims(images, "images")
        feature_shapes = [self._spatial_dims(tf.convert_to_tensor(m), f"feature_maps[{i}]") for i, m in enumerate(maps)]
        levels = self.generate((img_h, img_w), feature_shapes)
        if self.per_level:
            return levels
        return levels[0] if len(levels) == 1 else tf.concat(levels, axis=0)

    def compute_output_spec(self, images, *feature_maps):
        maps = self._flatten_maps(feature_maps)
        shapes = self._level_shapes(len(maps))
        counts = []
        for m, wh in zip(maps, shapes):
            h, w = m.shape[1], m.shape[2]
            counts.append(None if h is None or w is None else h * w * len(wh))
        specs = [keras.KerasTensor((n, 4), dtype="float32") for n in counts]
        if self.per_level:
            return specs
        total = None if any(n is None for n in counts) else sum(counts)
        return keras.KerasTensor((total, 4), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sizes": self.sizes,
                "aspect_ratios": self.aspect_ratios,
                "strides": self.strides,
                "offset": self.offset,
                "anchor_shapes": self.anchor_shapes,
                "units": self.units,
                "clip": self.clip,
                "per_level": self.per_level,
            }
        )
        return config
