"""Keras layer over `kerasdet.ops.sampling.sample_balanced` (Fast R-CNN / Faster R-CNN minibatches)."""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf

from kerasdet.ops.sampling import check_sampling_args, sample_balanced


@keras.saving.register_keras_serializable(package="kerasdet")
class RoISampler(keras.layers.Layer):
    """Balanced random sample of positive and negative anchors / proposals per image.

    Per image, up to `int(num_samples * positive_fraction)` positives (match state 1), then
    negatives (state 0) to fill `num_samples`, uniformly at random without replacement; ignored
    entries (-1) are never drawn and short images are padded. Settings of the papers: Fast R-CNN's
    head 128 RoIs at 25% foreground (Girshick, 2015, §2.3), the default; Faster R-CNN's RPN 256
    anchors at 50% (Ren et al., 2015, §3.1.3).

    Randomness: the draw is a function of a seed (`kerasdet.ops.sampling.random_keys`, an integer
    hash, identical eagerly, in `tf.function`, under `jit_compile=True` and on every device). In
    training (`training` True or None) each call takes a fresh seed from a
    `keras.random.SeedGenerator(seed)`, so a given `seed` reproduces the whole sequence of samples
    and `seed=None` draws an unpredictable one. With `training=False` every call uses the fixed
    seed `[seed or 0, 0]`, so the same input gives the same sample (evaluation, tests).

    Args:
        num_samples: samples per image (> 0).
        positive_fraction: the largest share of positives, in [0, 1].
        seed: int or None, see above.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        match_states: int `[B, A]` states from `BoxMatcher` (1 positive, 0 negative, -1 ignore).
        training: bool or None.

    Returns:
        dict with `"indices"` int32 `[B, num_samples]` (positives first, then negatives, then -1
        padding), `"states"` int32 `[B, num_samples]` (1, 0, or -1 for padding) and `"mask"` float32
        `[B, A]` (1 for the sampled entries; e.g. the RPN loss weights).

    Example:
        >>> sampler = RoISampler(num_samples=4, positive_fraction=0.5, seed=1)   # RPN-style, tiny
        >>> out = sampler(tf.constant([[1, 0, -1, 0, 0, 1, 1]]), training=False)
        >>> out["states"].numpy()
        array([[1, 1, 0, 0]], dtype=int32)
    """

    def __init__(self, num_samples: int = 128, positive_fraction: float = 0.25, seed=None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        check_sampling_args(num_samples, positive_fraction)
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)):
            raise TypeError(f"`seed` must be an int or None; got {type(seed).__name__}")
        self.num_samples = int(num_samples)
        self.positive_fraction = float(positive_fraction)
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def call(self, match_states, training=None):
        if training is False:
            seed = tf.constant([self.seed or 0, 0], tf.int64)
        else:
            seed = self.seed_generator.next()
        return sample_balanced(match_states, self.num_samples, self.positive_fraction, seed)

    def compute_output_spec(self, match_states, training=None):
        batch, num = match_states.shape[0], match_states.shape[1]
        return {
            "indices": keras.KerasTensor((batch, self.num_samples), dtype="int32"),
            "states": keras.KerasTensor((batch, self.num_samples), dtype="int32"),
            "mask": keras.KerasTensor((batch, num), dtype="float32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update({"num_samples": self.num_samples, "positive_fraction": self.positive_fraction, "seed": self.seed})
        return config
