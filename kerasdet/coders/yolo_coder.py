"""YOLOv2 / YOLOv3 box parameterisation (Redmon & Farhadi, 2017 and 2018)."""

from __future__ import annotations

import tensorflow as tf

from kerasdet.ops._checks import as_float_tensor, check_last_dim, check_rank


class YoloCoder:
    """Decodes YOLOv2/v3 grid predictions to `xyxy` pixel boxes and encodes targets for them.

    For a cell (c_x, c_y) of a grid with `stride` pixels per cell and an anchor (p_w, p_h):
    `b_x = (sigmoid(t_x) + c_x) * stride`, `b_y = (sigmoid(t_y) + c_y) * stride`,
    `b_w = p_w exp(t_w)`, `b_h = p_h exp(t_h)`, where anchors are in grid cells for YOLOv2
    (`anchor_units="cells"`, multiplied by the stride) and in pixels for YOLOv3 (`anchor_units="pixels"`).
    `t_w`, `t_h` are clamped at `scale_clamp` before the exponential. Computed in float32.

    Args:
        stride: pixels per grid cell (32 for YOLOv2's 13x13 grid at 416).
        anchor_units: "cells" (YOLOv2) or "pixels" (YOLOv3).
        scale_clamp: upper bound for t_w and t_h.

    Example:
        >>> coder = YoloCoder(stride=32, anchor_units="cells")
        >>> raw = tf.zeros([1, 13, 13, 5, 4])          # t_x, t_y, t_w, t_h
        >>> anchors = [[1.08, 1.19], [3.42, 4.41], [6.63, 11.38], [9.42, 5.11], [16.62, 10.52]]
        >>> coder.decode(raw, anchors).shape
        TensorShape([1, 13, 13, 5, 4])
    """

    def __init__(self, stride: float, anchor_units: str = "cells", scale_clamp: float = 10.0):
        if not stride > 0:
            raise ValueError(f"`stride` must be > 0; got {stride}")
        if anchor_units not in ("cells", "pixels"):
            raise ValueError(f"`anchor_units` must be 'cells' or 'pixels'; got {anchor_units!r}")
        self.stride = float(stride)
        self.anchor_units = anchor_units
        self.scale_clamp = float(scale_clamp)

    def get_config(self) -> dict:
        return {"stride": self.stride, "anchor_units": self.anchor_units, "scale_clamp": self.scale_clamp}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _anchor_pixels(self, anchors):
        a = as_float_tensor(anchors, "anchors")
        check_rank(a, "anchors", 2, "[A, 2] (width, height)")
        check_last_dim(a, "anchors", 2, "[A, 2] (width, height)")
        return a * self.stride if self.anchor_units == "cells" else a

    @staticmethod
    def _grid(height, width):
        cy, cx = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
        return cx[:, :, None], cy[:, :, None]

    def decode(self, raw, anchors) -> tf.Tensor:
        """Boxes `[B, H, W, A, 4]` xyxy pixels from raw predictions `[B, H, W, A, 4]` (t_x, t_y, t_w, t_h)."""
        t = as_float_tensor(raw, "raw")
        check_rank(t, "raw", 5, "[B, H, W, A, 4]")
        check_last_dim(t, "raw", 4, "[B, H, W, A, 4]")
        anchors_px = self._anchor_pixels(anchors)
        shape = tf.shape(t)
        cx, cy = self._grid(shape[1], shape[2])
        tx, ty, tw, th = tf.unstack(t, 4, axis=-1)
        bx = (tf.sigmoid(tx) + cx) * self.stride
        by = (tf.sigmoid(ty) + cy) * self.stride
        bw = anchors_px[:, 0] * tf.exp(tf.minimum(tw, self.scale_clamp))
        bh = anchors_px[:, 1] * tf.exp(tf.minimum(th, self.scale_clamp))
        return tf.stack([bx - 0.5 * bw, by - 0.5 * bh, bx + 0.5 * bw, by + 0.5 * bh], axis=-1)

    def encode(self, boxes, cells, anchors) -> tf.Tensor:
        """Targets `[..., 4]` = (sigmoid(t_x), sigmoid(t_y), t_w, t_h) for `xyxy` `boxes` `[..., 4]`.

        Args:
            boxes: ground-truth boxes `[..., 4]` in pixels, positive width and height.
            cells: `[..., 2]` (c_x, c_y) integer grid cell each box is assigned to.
            anchors: `[..., 2]` (p_w, p_h) of the anchor each box is assigned to, in `anchor_units`.

        The first two targets are the centre's offset within its cell in [0, 1): what the sigmoid of
        t_x, t_y must equal; the last two are the log-scale targets themselves.
        """
        b = as_float_tensor(boxes, "boxes")
        c = as_float_tensor(cells, "cells")
        a = as_float_tensor(anchors, "anchors")
        check_last_dim(b, "boxes", 4, "[..., 4] xyxy")
        check_last_dim(c, "cells", 2, "[..., 2] (c_x, c_y)")
        check_last_dim(a, "anchors", 2, "[..., 2] (width, height)")
        if self.anchor_units == "cells":
            a = a * self.stride
        x1, y1, x2, y2 = tf.unstack(b, 4, axis=-1)
        gx = 0.5 * (x1 + x2) / self.stride - c[..., 0]
        gy = 0.5 * (y1 + y2) / self.stride - c[..., 1]
        tw = tf.math.log((x2 - x1) / a[..., 0])
        th = tf.math.log((y2 - y1) / a[..., 1])
        return tf.stack([gx, gy, tw, th], axis=-1)
