"""The training guard of every Detector: a step whose loss or gradients are not finite is not applied, and
training stops with a message naming the step.

Without it one bad batch (a loss that overflows, a learning rate too high) turns every weight into NaN while
Keras goes on logging, and the run ends "successfully" with a model that detects nothing.

- `train_step` takes `GuardState.snapshot` of the float non-trainable variables (batch-norm statistics) before
  the forward pass and calls `GuardState.apply_if_finite` instead of `apply_gradients`: with a finite loss,
  finite gradients and finite batch-norm statistics after the forward pass the update happens; otherwise nothing is updated (no optimizer step, no weight decay, the
  batch-norm statistics restored) and the step's number is recorded. Under `mixed_float16` the
  `LossScaleOptimizer` skips steps whose scaled gradients overflow on purpose (and lowers the scale); there
  only a non-finite loss trips the guard.
- `StopOnNonFiniteStep` (added by `Detector.fit`) and `Detector.train_on_batch` read the record after each
  batch and raise `FloatingPointError` naming the epoch, batch and step.

The record lives in a variable that Keras does not track (it is not part of the model's weights or exports).
"""

from __future__ import annotations

import keras
import tensorflow as tf


class GuardState:
    """Holds the variable that records the first step whose loss or gradients were not finite (-1: none)."""

    def __init__(self):
        self.failed_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="non_finite_step")

    @staticmethod
    def snapshot(model):
        """(variables, their values): the model's float non-trainable variables, read now."""
        variables = [v for v in model.non_trainable_variables if tf.as_dtype(v.dtype).is_floating]
        return variables, [tf.identity(v.value) for v in variables]

    def apply_if_finite(self, model, loss, gradients, variables, snapshot):
        """Applies `gradients` when `loss`, the snapshot's variables as the forward pass left them and (without
        loss scaling) every gradient are finite; otherwise restores `snapshot` and records the step."""
        optimizer = model.optimizer
        finite = tf.math.is_finite(tf.cast(loss, tf.float32))
        for variable in snapshot[0]:  # the forward pass's own updates (a batch-norm variance can overflow alone)
            finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(variable.value)))
        if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            for g in gradients:
                if g is not None:
                    finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(g)))
        if not optimizer.built:
            optimizer.build(variables)  # variables must exist before the conditional update
        step = optimizer.iterations

        def update():
            optimizer.apply_gradients(zip(gradients, variables))
            return tf.constant(True)

        def skip():
            for variable, value in zip(*snapshot):
                variable.assign(value)
            self.failed_step.assign(tf.cast(step, tf.int64))
            return tf.constant(False)

        return tf.cond(finite, update, skip)

    def take_failure(self):
        """The recorded step (int) and a reset of the record, or None when every step was finite."""
        step = int(self.failed_step.numpy())
        if step < 0:
            return None
        self.failed_step.assign(-1)
        return step


def non_finite_error(step, epoch=None, batch=None):
    """The FloatingPointError raised when a step was not applied."""
    where = f"epoch {epoch + 1}, batch {batch + 1} (step {step + 1})" if epoch is not None else f"step {step + 1}"
    return FloatingPointError(
        f"training stopped at {where}: the loss, a gradient or a batch-norm statistic was not finite, so the step was not applied and the "
        "weights are those from before it. Usual causes: a learning rate too high for this batch size, or "
        "targets the model cannot fit (boxes far outside the image); lower --lr / the learning rate or check the "
        "batch.")


class StopOnNonFiniteStep(keras.callbacks.Callback):
    """Raises `FloatingPointError` after the first batch whose step the guard refused (see the module docstring).

    `Detector.fit` adds it unless `stop_on_non_finite=False`.
    """

    def __init__(self, state):
        super().__init__()
        self.state = state
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.state.take_failure()
        if step is not None:
            self.model.stop_training = True
            raise non_finite_error(step, self.epoch, batch)
