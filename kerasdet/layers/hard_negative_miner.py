"""Keras layer over `kerasdet.ops.sampling.hard_negative_mask` (SSD's hard negative mining)."""

from __future__ import annotations

import keras

from kerasdet.ops.sampling import check_mining_args, hard_negative_mask


@keras.saving.register_keras_serializable(package="kerasdet")
class HardNegativeMiner(keras.layers.Layer):
    """Selects, per image, the negatives with the highest loss at a fixed ratio to the positives.

    With `P` positives and `N` negatives in an image, keeps the `min(max(floor(neg_pos_ratio * P),
    min_negatives), N)` negatives of highest loss (ties: lower index first); ignored anchors are
    never kept (Liu et al., 2016, §2.2 "Hard negative mining": at most 3:1). The selection carries
    no gradient. Computed in float32 whatever the dtype policy.

    Args:
        neg_pos_ratio: negatives per positive, >= 0 (3 in SSD).
        min_negatives: int >= 0, negatives kept even without positives (0 in SSD).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        losses: float `[B, A]` per-anchor classification loss (as if the anchor were background).
        match_states: int `[B, A]` (1 positive, 0 negative, -1 ignore).

    Returns:
        float32 `[B, A]` mask of the selected negatives (positives are not included).

    Example:
        >>> miner = HardNegativeMiner(neg_pos_ratio=3.0)
        >>> states = tf.constant([[1, 0, 0, 0, 0, -1]])
        >>> negatives = miner(tf.constant([[0.1, 0.9, 0.2, 0.5, 0.7, 2.0]]), states)
        >>> negatives.numpy()
        array([[0., 1., 0., 1., 1., 0.]], dtype=float32)
        >>> weights = tf.cast(states == 1, tf.float32) + negatives   # classification loss weights
    """

    def __init__(self, neg_pos_ratio: float = 3.0, min_negatives: int = 0, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        check_mining_args(neg_pos_ratio, min_negatives)
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.min_negatives = int(min_negatives)

    def call(self, losses, match_states):
        return hard_negative_mask(losses, match_states, self.neg_pos_ratio, self.min_negatives)

    def compute_output_spec(self, losses, match_states):
        return keras.KerasTensor(tuple(losses.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"neg_pos_ratio": self.neg_pos_ratio, "min_negatives": self.min_negatives})
        return config
