"""Sampling of training anchors / proposals: balanced random sampling (Fast/Faster R-CNN) and hard
negative mining (SSD).

Inputs are match states from `kerasdet.ops.matching` (1 positive, 0 negative, -1 ignore).
Randomness comes from `random_keys`, an integer hash of a seed and the element position, so that a
sample is the same in eager mode, in `tf.function`, under `jit_compile=True` and on any device.
"""

from __future__ import annotations

import numbers

import tensorflow as tf

from kerasdet.ops._checks import as_float_tensor, check_rank

_MASK32 = 0xFFFFFFFF


_and = tf.bitwise.bitwise_and
_xor = tf.bitwise.bitwise_xor
_shr = tf.bitwise.right_shift
_shl = tf.bitwise.left_shift


def _c(value: int) -> tf.Tensor:
    return tf.constant(value, tf.int64)


def _mul32(x, constant: int):
    """`(x * constant) mod 2**32` for int64 `x` in [0, 2**32), exact in int64 (no overflow)."""
    hi, lo = constant >> 16, constant & 0xFFFF
    high_part = _shl(_and(x * _c(hi), _c(0xFFFF)), _c(16))
    return _and(x * _c(lo) + high_part, _c(_MASK32))


def _hash32(x):
    """A 32-bit integer mixing function (xor-shift-multiply, "lowbias32") on int64 values < 2**32."""
    x = _xor(x, _shr(x, _c(16)))
    x = _mul32(x, 0x7FEB352D)
    x = _xor(x, _shr(x, _c(15)))
    x = _mul32(x, 0x846CA68B)
    return _xor(x, _shr(x, _c(16)))


def _as_seed(seed) -> tf.Tensor:
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        seed = [int(seed), 0]
    s = tf.convert_to_tensor(seed)
    if not s.dtype.is_integer:
        raise TypeError(f"`seed` must be an int or an integer tensor of shape [2]; got dtype {s.dtype.name}")
    if s.shape.rank is not None and (s.shape.rank != 1 or s.shape[0] not in (None, 2)):
        raise ValueError(f"`seed` must be an int or an integer tensor of shape [2]; got shape {tuple(s.shape)}")
    return _and(tf.cast(s, tf.int64), _c(_MASK32))


def random_keys(seed, shape) -> tf.Tensor:
    """Pseudo-random int32 keys in [0, 2**31) for every element of `shape`, from a seed.

    Key `i` (row-major position) is a hash of `(seed, i)`: the same on every device and under XLA,
    different for different seeds.

    Args:
        seed: an int or an integer tensor `[2]`.
        shape: the output shape (a list or a 1-D int tensor).

    Example:
        >>> random_keys(7, [2, 3]).shape
        TensorShape([2, 3])
    """
    s = _as_seed(seed)
    base = _hash32(_xor(_hash32(s[0]), s[1]))
    n = tf.reduce_prod(tf.cast(shape, tf.int64))
    positions = _and(tf.range(n, dtype=tf.int64), _c(_MASK32))
    keys = _hash32(_xor(_hash32(_xor(positions, base)), _shr(base, _c(7))))
    return tf.reshape(tf.cast(_shr(keys, _c(1)), tf.int32), shape)


def _check_states(match_states):
    states = tf.convert_to_tensor(match_states)
    if not states.dtype.is_integer:
        raise TypeError(f"`match_states` must be an integer tensor [B, A]; got dtype {states.dtype.name}")
    check_rank(states, "match_states", 2, "[B, A] (1 positive, 0 negative, -1 ignore)")
    return tf.cast(states, tf.int32)


def _top_keys(keys, k):
    """Indices and validity of the k largest non-negative keys per row (ties: lower index first)."""
    values, indices = tf.math.top_k(keys, k=k, sorted=True)
    return indices, values >= 0


def sample_balanced(match_states, num_samples: int, positive_fraction: float, seed):
    """Random balanced sample of positives and negatives per image (Fast R-CNN, Faster R-CNN).

    Per image: `P = min(int(num_samples * positive_fraction), #positives)` positives, then
    `min(num_samples - P, #negatives)` negatives, uniformly at random without replacement; ignored
    anchors (-1) are never sampled (Girshick, 2015, §2.3: 128 RoIs, 25% foreground; Ren et al., 2015,
    §3.1.3: 256 anchors, up to 1:1). The random choice takes, within each group, the elements with
    the largest `random_keys(seed, shape(match_states))` (ties by lower index), so it is a function
    of the seed.

    Args:
        match_states: int `[B, A]` states (1, 0, -1).
        num_samples: samples per image, > 0.
        positive_fraction: upper bound of the positive share, in [0, 1].
        seed: an int or an integer tensor `[2]`.

    Returns:
        dict with `"indices"` int32 `[B, num_samples]` (positives first, then negatives, then -1
        padding), `"states"` int32 `[B, num_samples]` (1, 0, -1 for padding) and `"mask"` float32
        `[B, A]` (1 where the anchor is sampled).

    Example:
        >>> states = tf.constant([[1, 0, 0, -1, 0, 1]])
        >>> out = sample_balanced(states, num_samples=4, positive_fraction=0.25, seed=0)
        >>> out["states"].numpy()
        array([[1, 0, 0, 0]], dtype=int32)
    """
    check_sampling_args(num_samples, positive_fraction)
    states = _check_states(match_states)
    shape = tf.shape(states)
    batch, num_anchors = shape[0], shape[1]
    static_a = states.shape[1]
    keys = random_keys(seed, shape)

    max_pos = int(num_samples * positive_fraction)
    k_pos = min(max_pos, static_a) if static_a is not None else tf.minimum(max_pos, num_anchors)
    k_neg = min(num_samples, static_a) if static_a is not None else tf.minimum(num_samples, num_anchors)
    pos_idx, pos_ok = _top_keys(tf.where(states == 1, keys, -1), k_pos)
    neg_idx, neg_ok = _top_keys(tf.where(states == 0, keys, -1), k_neg)
    num_pos = tf.reduce_sum(tf.cast(pos_ok, tf.int32), axis=1, keepdims=True)
    neg_rank = tf.range(tf.shape(neg_idx)[1], dtype=tf.int32)[None, :]
    neg_ok = neg_ok & (neg_rank < num_samples - num_pos)

    # Slot of each candidate in the output: positives at 0..P-1, negatives at P..; rejects at `num_samples`.
    pos_slot = tf.where(pos_ok, tf.range(tf.shape(pos_idx)[1], dtype=tf.int32)[None, :], num_samples)
    neg_slot = tf.where(neg_ok, num_pos + neg_rank, num_samples)
    slots = tf.concat([pos_slot, neg_slot], axis=1)
    cand_idx = tf.concat([pos_idx, neg_idx], axis=1)
    cand_state = tf.concat([tf.ones_like(pos_idx), tf.zeros_like(neg_idx)], axis=1)
    rows = tf.broadcast_to(tf.range(batch, dtype=tf.int32)[:, None], tf.shape(slots))
    scatter_at = tf.stack([rows, slots], axis=-1)
    out_shape = tf.stack([batch, num_samples + 1])
    indices = tf.tensor_scatter_nd_update(tf.fill(out_shape, -1), scatter_at, cand_idx)[:, :num_samples]
    sampled_states = tf.tensor_scatter_nd_update(tf.fill(out_shape, -1), scatter_at, cand_state)[:, :num_samples]

    mask_at = tf.stack([rows, tf.where(slots < num_samples, cand_idx, num_anchors)], axis=-1)
    mask = tf.tensor_scatter_nd_update(
        tf.zeros(tf.stack([batch, num_anchors + 1]), tf.float32), mask_at, tf.ones(tf.shape(slots), tf.float32)
    )[:, :num_anchors]
    return {"indices": indices, "states": sampled_states, "mask": mask}


def check_sampling_args(num_samples, positive_fraction) -> None:
    """Validates `num_samples` (int > 0) and `positive_fraction` (in [0, 1])."""
    if not isinstance(num_samples, numbers.Integral) or isinstance(num_samples, bool) or num_samples <= 0:
        raise ValueError(f"`num_samples` must be a positive int; got {num_samples!r}")
    if not isinstance(positive_fraction, numbers.Real) or not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"`positive_fraction` must be a number in [0, 1]; got {positive_fraction!r}")


def check_mining_args(neg_pos_ratio, min_negatives) -> None:
    """Validates `neg_pos_ratio` (>= 0) and `min_negatives` (int >= 0)."""
    if not isinstance(neg_pos_ratio, numbers.Real) or isinstance(neg_pos_ratio, bool) or not neg_pos_ratio >= 0:
        raise ValueError(f"`neg_pos_ratio` must be a number >= 0; got {neg_pos_ratio!r}")
    if not isinstance(min_negatives, numbers.Integral) or isinstance(min_negatives, bool) or min_negatives < 0:
        raise ValueError(f"`min_negatives` must be an int >= 0; got {min_negatives!r}")


def hard_negative_mask(losses, match_states, neg_pos_ratio: float = 3.0, min_negatives: int = 0):
    """Hard negative mining (SSD, Liu et al., 2016, §2.2 "Hard negative mining").

    Per image, with `P` positives (state 1) and `N` negatives (state 0), keeps the
    `min(max(floor(neg_pos_ratio * P), min_negatives), N)` negatives with the highest loss (ties by
    lower index). Ignored anchors (-1) are never kept. No gradient flows through the selection.

    Args:
        losses: float `[B, A]` per-anchor loss (e.g. background cross-entropy).
        match_states: int `[B, A]` states (1, 0, -1).
        neg_pos_ratio: negatives per positive (3 in SSD).
        min_negatives: negatives kept even in images with few or no positives.

    Returns:
        float32 `[B, A]`: 1 for the selected negatives, 0 elsewhere (positives are not included).

    Example:
        >>> losses = tf.constant([[0.1, 0.9, 0.5, 0.7, 0.2]])
        >>> hard_negative_mask(losses, tf.constant([[1, 0, 0, 0, 0]]), neg_pos_ratio=2).numpy()
        array([[0., 1., 0., 1., 0.]], dtype=float32)
    """
    check_mining_args(neg_pos_ratio, min_negatives)
    loss = tf.stop_gradient(as_float_tensor(losses, "losses"))
    states = _check_states(match_states)
    check_rank(loss, "losses", 2, "[B, A]")
    if loss.shape.is_fully_defined() and states.shape.is_fully_defined() and loss.shape != states.shape:
        raise ValueError(
            f"`losses` and `match_states` must have the same shape [B, A]; got {tuple(loss.shape)} and {tuple(states.shape)}"
        )
    negative = states == 0
    num_pos = tf.reduce_sum(tf.cast(states == 1, tf.float32), axis=1)
    num_neg = tf.reduce_sum(tf.cast(negative, tf.int32), axis=1)
    quota = tf.maximum(tf.cast(tf.floor(neg_pos_ratio * num_pos), tf.int32), min_negatives)
    quota = tf.minimum(quota, num_neg)
    ranked = tf.where(negative, loss, float("-inf"))
    order = tf.argsort(ranked, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)  # inverse permutation
    return tf.cast(negative & (rank < quota[:, None]), tf.float32)
