"""NumPy-only helpers that give two randomly initialised detectors the same output distributions.

Shared by benchmarks/two_stage.py (TensorFlow side) and benchmarks/torch_peer.py (run by the separate
torch virtualenv), so both sides are calibrated by the same arithmetic. Random weights leave the load of
the NMS steps to chance (a fresh box classifier puts every softmax score near 1 / num_logits, below the
0.05 threshold, so the final NMS gets no candidates); re-scaling the last layers pins that load.

Example:
    >>> scale = softmax_scale(logits, object_columns=slice(1, None), fraction=0.005)
    >>> kernel *= scale                                  # with the layer's bias set to 0
"""

from __future__ import annotations

import numpy as np

#: share of the (RoI, object class) pairs whose softmax score passes the detector's score threshold
CANDIDATE_FRACTION = 5e-3
#: standard deviation given to the RPN's and the box head's box deltas
BOX_DELTA_STD = 0.1


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fraction_above(logits: np.ndarray, object_columns: slice, threshold: float) -> float:
    """Share of the (row, object class) softmax scores of `logits` [N, K] above `threshold`."""
    probabilities = _softmax(np.asarray(logits, np.float64))[:, object_columns]
    return float((probabilities > threshold).mean())


def softmax_scale(logits: np.ndarray, object_columns: slice, fraction: float = CANDIDATE_FRACTION,
                  threshold: float = 0.05) -> float:
    """The factor `s` such that `fraction` of the softmax(s * logits) object scores lie above `threshold`.

    `logits` [N, K] are the outputs of the classifier with its bias set to 0 (so they are linear in its
    kernel: scaling the kernel by `s` scales them by `s`); `object_columns` selects the object classes
    (the background column is excluded from the count). The share rises from 0 (s = 0, every score
    1 / K) with `s`; the smallest `s` reaching `fraction` is found by doubling, then bisection.
    """
    logits = np.asarray(logits, np.float64).reshape(-1, np.shape(logits)[-1])
    low, high = 0.0, 1e-3
    while fraction_above(high * logits, object_columns, threshold) < fraction:
        low, high = high, high * 2.0
        if high > 1e6:
            raise ValueError(f"no scale puts {fraction:.2%} of the object scores above {threshold}")
    for _ in range(60):
        mid = 0.5 * (low + high)
        if fraction_above(mid * logits, object_columns, threshold) < fraction:
            low = mid
        else:
            high = mid
    return high


def std_scale(values: np.ndarray, std: float = BOX_DELTA_STD) -> tuple[float, float]:
    """`(scale, offset)` turning `values` z into `scale * z + offset` with mean 0 and standard deviation `std`.

    `values` are the outputs of a layer whose bias was set to 0: multiplying its kernel by `scale` and
    setting its bias to `offset` gives the re-scaled outputs.
    """
    values = np.asarray(values, np.float64)
    scale = std / float(values.std())
    return scale, -scale * float(values.mean())


def background_offset(logits: np.ndarray, fraction: float = CANDIDATE_FRACTION, threshold: float = 0.05,
                      background: int = 0) -> float:
    """The bias `b` that, added to the background column of `logits` [N, K], leaves `fraction` of the object
    scores of the softmax above `threshold`.

    For single-shot detectors with a low threshold (SSD's 0.01 with 91 logits, where every score of a fresh
    classifier, about 1 / 91, passes): scaling the logits cannot lower the share below that of s = 0, but a
    larger background logit lowers every object score, so the share falls as `b` grows; bisection on `b`.
    """
    logits = np.asarray(logits, np.float64).reshape(-1, np.shape(logits)[-1])
    objects = np.ones(logits.shape[-1], bool)
    objects[background] = False
    shift = np.zeros(logits.shape[-1])
    shift[background] = 1.0

    def share(b):
        return fraction_above(logits + b * shift, objects, threshold)

    try:
        return offset_for_share(share, fraction, -64.0, 64.0)
    except ValueError:
        raise ValueError(f"no background bias in [-64, 64] leaves {fraction:.2%} of the object scores above "
                         f"{threshold}") from None


def offset_for_share(share, fraction: float, low: float, high: float) -> float:
    """The offset `b` in [low, high] at which `share(b)` (monotonic in `b`, rising or falling) crosses `fraction`:
    bisection, returning the end of the last bracket where `share` is at most `fraction`."""
    rising = share(high) >= share(low)
    below, above = (low, high) if rising else (high, low)
    if not share(below) <= fraction <= share(above):
        raise ValueError(f"no offset in [{low}, {high}] gives a share of {fraction}")
    for _ in range(60):
        mid = 0.5 * (below + above)
        if share(mid) > fraction:
            above = mid
        else:
            below = mid
    return below
