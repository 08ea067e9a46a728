"""The R-CNN box parameterisation shared by R-CNN, Fast/Faster R-CNN, R-FCN, SSD and RetinaNet."""

from __future__ import annotations

import math

import tensorflow as tf

from kerasdet.ops._checks import as_float_tensor, check_last_dim

DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16.0)


def _encodable(boxes):
    """Bool `[...]`: finite boxes with positive width and height."""
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    return tf.reduce_all(tf.math.is_finite(boxes), axis=-1) & (x2 - x1 > 0.0) & (y2 - y1 > 0.0)


class DeltaCoder:
    """Encodes boxes as deltas from reference boxes (anchors, proposals) and decodes them back.

    With reference box p (centre p_x, p_y, size p_w, p_h) and target g (Girshick et al., 2014):
    `t_x = w_x (g_x - p_x) / p_w`, `t_y = w_y (g_y - p_y) / p_h`, `t_w = w_w log(g_w / p_w)`,
    `t_h = w_h log(g_h / p_h)`. Decoding divides by the weights and clamps `t_w / w_w` and `t_h / w_h`
    at `scale_clamp` (default log(1000/16), as Detectron2) before the exponential. Computed in float32.

    Per-family weights: RPN (1, 1, 1, 1); Fast/Faster R-CNN box head (10, 10, 5, 5); SSD's variances
    (0.1, 0.1, 0.2, 0.2) are the reciprocal weights, see `from_variances`.

    Args:
        weights: four floats (w_x, w_y, w_w, w_h), all > 0.
        scale_clamp: upper bound for the decoded log-scale deltas.

    Example:
        >>> coder = DeltaCoder(weights=(10.0, 10.0, 5.0, 5.0))
        >>> anchors = [[0.0, 0.0, 10.0, 10.0]]
        >>> deltas = coder.encode(anchors, [[1.0, 1.0, 11.0, 11.0]])
        >>> coder.decode(anchors, deltas).numpy()
        array([[ 1.,  1., 11., 11.]], dtype=float32)
    """

    def __init__(self, weights=(1.0, 1.0, 1.0, 1.0), scale_clamp: float = DEFAULT_SCALE_CLAMP):
        weights = tuple(float(w) for w in weights)
        if len(weights) != 4 or any(w <= 0 for w in weights):
            raise ValueError(f"`weights` must be four positive floats (w_x, w_y, w_w, w_h); got {weights}")
        if not scale_clamp > 0:
            raise ValueError(f"`scale_clamp` must be > 0; got {scale_clamp}")
        self.weights = weights
        self.scale_clamp = float(scale_clamp)

    @classmethod
    def from_variances(cls, variances=(0.1, 0.1, 0.2, 0.2), scale_clamp: float = DEFAULT_SCALE_CLAMP):
        """SSD's convention: deltas divided by `variances`, i.e. weights `1 / variances`."""
        variances = tuple(float(v) for v in variances)
        if len(variances) != 4 or any(v <= 0 for v in variances):
            raise ValueError(f"`variances` must be four positive floats; got {variances}")
        return cls(weights=tuple(1.0 / v for v in variances), scale_clamp=scale_clamp)

    def get_config(self) -> dict:
        return {"weights": self.weights, "scale_clamp": self.scale_clamp}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @staticmethod
    def _centres(boxes):
        x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
        w = x2 - x1
        h = y2 - y1
        return x1 + 0.5 * w, y1 + 0.5 * h, w, h

    def encode(self, reference, boxes) -> tf.Tensor:
        """Deltas `[..., 4]` of `boxes` relative to `reference` (both `xyxy` `[..., 4]`, broadcastable).

        Reference and target boxes must be finite with positive width and height (the deltas divide by the
        reference's size and take the log of the size ratio). Values known eagerly are checked: a ValueError
        names the argument and the first bad box. Inside a graph a pair with such a box gets deltas 0, never
        inf or NaN (the detectors encode only valid boxes: matched ground truth, or for non-positives the
        anchor or roi itself, weighted 0).
        """
        ref = as_float_tensor(reference, "reference")
        tgt = as_float_tensor(boxes, "boxes")
        check_last_dim(ref, "reference", 4, "[..., 4] xyxy")
        check_last_dim(tgt, "boxes", 4, "[..., 4] xyxy")
        ref_ok, tgt_ok = _encodable(ref), _encodable(tgt)
        for name, value, ok in (("reference", ref, ref_ok), ("boxes", tgt, tgt_ok)):
            if tf.executing_eagerly() and not bool(tf.reduce_all(ok)):
                index = tuple(int(i) for i in tf.where(tf.logical_not(ok))[0].numpy())
                raise ValueError(f"`{name}` must hold finite boxes with positive width and height to encode; "
                                 f"box {index} is {value[index].numpy().tolist()}")
        ok = tf.logical_and(ref_ok, tgt_ok)[..., None]
        unit = tf.constant([0.0, 0.0, 1.0, 1.0])
        px, py, pw, ph = self._centres(tf.where(ref_ok[..., None], ref, unit))
        gx, gy, gw, gh = self._centres(tf.where(tgt_ok[..., None], tgt, unit))
        wx, wy, ww, wh = self.weights
        deltas = tf.stack(
            [wx * (gx - px) / pw, wy * (gy - py) / ph, ww * tf.math.log(gw / pw), wh * tf.math.log(gh / ph)], axis=-1
        )
        return tf.where(ok, deltas, 0.0)

    def decode(self, reference, deltas) -> tf.Tensor:
        """`xyxy` boxes `[..., 4]` from `deltas` relative to `reference` (broadcastable)."""
        ref = as_float_tensor(reference, "reference")
        d = as_float_tensor(deltas, "deltas")
        check_last_dim(ref, "reference", 4, "[..., 4] xyxy")
        check_last_dim(d, "deltas", 4, "[..., 4] (t_x, t_y, t_w, t_h)")
        px, py, pw, ph = self._centres(ref)
        wx, wy, ww, wh = self.weights
        dx, dy, dw, dh = tf.unstack(d, 4, axis=-1)
        dx = dx / wx
        dy = dy / wy
        dw = tf.minimum(dw / ww, self.scale_clamp)
        dh = tf.minimum(dh / wh, self.scale_clamp)
        cx = px + dx * pw
        cy = py + dy * ph
        w = pw * tf.exp(dw)
        h = ph * tf.exp(dh)
        return tf.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)
