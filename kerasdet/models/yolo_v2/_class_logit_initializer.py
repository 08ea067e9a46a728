"""The initializer of YOLO9000's predictor: class logits start at exactly zero (uniform sibling groups)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="kerasdet")
class ZeroClassLogits(keras.initializers.Initializer):
    """Glorot-uniform for a YOLO predictor's box and objectness outputs, zeros for its class logits.

    The predictor's outputs are `anchors` groups of `5 + class_outputs` (4 box terms, objectness, class logits).
    A WordTree sibling group that no training example reaches receives no gradient: started at zero (and kept there
    by decoupled weight decay), its conditional probabilities stay exactly uniform, so prediction never descends
    into it by chance.

    Example:
        >>> init = ZeroClassLogits(anchors=5, class_outputs=15, seed=0)
        >>> kernel = init((1, 1, 64, 5 * 20))
        >>> bool(keras.ops.all(kernel[..., 5:20] == 0)), bool(keras.ops.any(kernel[..., :5] != 0))
        (True, True)
    """

    def __init__(self, anchors, class_outputs, seed=None):
        self.anchors = int(anchors)
        self.class_outputs = int(class_outputs)
        self.seed = seed
        self._glorot = keras.initializers.GlorotUniform(seed=seed)

    def __call__(self, shape, dtype=None):
        per_anchor = 5 + self.class_outputs
        if shape[-1] != self.anchors * per_anchor:
            raise ValueError(f"ZeroClassLogits expects {self.anchors} x {per_anchor} outputs; got shape {shape}")
        kernel = self._glorot(shape, dtype=dtype)
        keep = keras.ops.tile(keras.ops.concatenate([keras.ops.ones([5]), keras.ops.zeros([self.class_outputs])]),
                              [self.anchors])
        return kernel * keras.ops.cast(keep, kernel.dtype)

    def get_config(self):
        return {"anchors": self.anchors, "class_outputs": self.class_outputs, "seed": self.seed}
