"""Drawing detections on images: boxes with class names and scores, masks, keypoints."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np


def palette(n: int) -> list[tuple[int, int, int]]:
    """`n` well-separated RGB colours (golden-ratio hues), stable for a given index."""
    colours = []
    for i in range(max(n, 1)):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def draw_detections(
    image,
    boxes,
    labels=None,
    scores=None,
    class_names=None,
    masks=None,
    keypoints=None,
    colour=None,
    thickness: int = 1,
    scale: int = 1,
) -> np.ndarray:
    """Returns a copy of `image` with `xyxy` pixel `boxes` drawn, captioned with class names and scores.

    Args:
        image: uint8 or float `[H, W, 3]` RGB, 0..255.
        boxes: `[N, 4]` xyxy pixels; rows whose label is -1 are skipped. Higher-scoring detections are drawn
            over lower ones, and captions stay inside the image.
        labels: optional int `[N]`; colours and captions follow them.
        scores: optional `[N]` shown beside the name.
        class_names: optional list mapping labels to names.
        masks: optional `[N, H, W]` in 0..1, blended in the box colour.
        keypoints: optional `[N, K, 3]` (x, y, visibility), visible ones drawn as dots.
        colour: one RGB colour for every box, instead of per-class colours.
        thickness: line width in output pixels.
        scale: integer upscaling of the output, so that small images stay readable.

    Example:
        >>> out = draw_detections(np.zeros((64, 64, 3), np.uint8), [[4, 4, 40, 30]], [0], [0.9], ["square"])
        >>> out.shape
        (64, 64, 3)
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"`image` must have shape [H, W, 3]; got {img.shape}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    labels = np.zeros(n, np.int64) if labels is None else np.asarray(labels).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"`labels` must have {n} entries, one per box; got {len(labels)}")
    out = np.clip(img, 0, 255).astype(np.uint8)
    if scale != 1:
        out = cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    out = np.ascontiguousarray(out)
    if class_names is not None and n and labels.max() >= len(class_names):
        raise ValueError(f"`labels` holds {int(labels.max())}, but `class_names` has {len(class_names)} names")
    # a box that is not finite is not drawn; coordinates far outside the image are clipped (OpenCV takes int32)
    finite = np.all(np.isfinite(boxes), axis=1)
    labels = np.where(finite, labels, -1)
    limit = 4.0 * max(img.shape[:2]) + 16.0
    boxes = np.clip(np.where(finite[:, None], boxes, 0.0), -limit, limit)
    colours = palette(int(labels.max()) + 1 if n and labels.max() >= 0 else 1)
    score_values = None if scores is None else np.asarray(scores, np.float64).reshape(-1)
    if score_values is not None and len(score_values) != n:
        raise ValueError(f"`scores` must have {n} entries, one per box; got {len(score_values)}")
    # lowest score first: the best detections' boxes and captions are drawn last, on top of the others
    order = [i for i in (np.argsort(score_values, kind="stable") if score_values is not None else range(n))
             if labels[i] >= 0]
    height, width = out.shape[:2]
    for i in order:
        c = colour or colours[int(labels[i])]
        if masks is not None:
            m = np.asarray(masks[i], np.float32)
            if scale != 1:
                m = cv2.resize(m, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_NEAREST)
            alpha = 0.45 * np.clip(m, 0, 1)[..., None]
            out = (out * (1 - alpha) + np.array(c, np.float32) * alpha).astype(np.uint8)
        x1, y1, x2, y2 = (int(round(v * scale)) for v in boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), c, thickness, lineType=cv2.LINE_AA)
        if keypoints is not None:
            for x, y, v in np.asarray(keypoints[i]).reshape(-1, 3):
                if v > 0:
                    cv2.circle(out, (int(round(x * scale)), int(round(y * scale))), max(2, scale), (255, 255, 255), -1)
    font_scale = 0.35 * max(scale, 1) / 2 + 0.2
    for i in order:
        c = colour or colours[int(labels[i])]
        caption = class_names[int(labels[i])] if class_names is not None else str(int(labels[i]))
        if score_values is not None:
            caption += f" {score_values[i]:.2f}"
        (tw, th), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        # the caption sits on the box's top edge, moved inside the image where the box touches its border
        tx = int(min(max(boxes[i][0] * scale, 0), max(width - tw - 2, 0)))
        ty = int(min(max(boxes[i][1] * scale, th + 2), height))
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 2, ty), c, -1)
        cv2.putText(out, caption, (tx + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def save_png(path, image) -> None:
    """Writes an RGB uint8 image to `path` as PNG (creating no folders)."""
    ok = cv2.imwrite(str(path), cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not write PNG to {path}")
