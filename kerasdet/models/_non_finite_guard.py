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
        """(variables, their values): the moving statistics of the batch-norm layers that update them in training
        (trainable ones), read now: the only variables a forward pass writes."""
        variables = []
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable and layer.built:
                variables += [layer.moving_mean, layer.moving_variance]
        return variables, [tf.identity(v.value) for v in variables]

    def apply_if_finite(self, model, loss, gradients, variables, snapshot):
        """Applies `gradients` when `loss`, the snapshot's variables as the forward pass left them and (without
        loss scaling) every gradient are finite; otherwise restores `snapshot` and records the step."""
        optimizer = model.optimizer
        if tf.distribute.has_strategy():
            # under a tf.distribute strategy apply_gradients must run in cross-replica context, not inside a
            # per-replica tf.cond: the guard is off there (docs/decisions.md), Keras' behaviour is kept
            optimizer.apply_gradients(zip(gradients, variables))
            return tf.constant(True)
        # after a refused step the rest of an execution (steps_per_execution > 1) is refused too, so that the
        # weights stay those from before the first refused step, whose number is the one recorded
        finite = tf.logical_and(self.failed_step < 0, tf.math.is_finite(tf.cast(loss, tf.float32)))
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
            self.failed_step.assign(tf.where(self.failed_step < 0, tf.cast(step, tf.int64), self.failed_step))
            return tf.constant(False)

        return tf.cond(finite, update, skip)

    def reset(self):
        """Forgets a recorded step (at the start of `fit` / `train_on_batch`)."""
        self.failed_step.assign(-1)

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

    `Detector.fit` adds it unless `stop_on_non_finite=False`. The batch named is the refused step's own, also when
    Keras runs several steps per execution.
    """

    def __init__(self, state, first_batch=0):
        super().__init__()
        self.state = state
        self.first_batch = int(first_batch)  # the first epoch's batches before this fit (a mid-epoch resume)
        self.epoch, self.epoch_start, self.epochs_begun = 0, 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        offset = self.first_batch if self.epochs_begun == 0 else 0
        self.epoch_start = int(self.model.optimizer.iterations.numpy()) - offset
        self.epochs_begun += 1

    def on_train_batch_end(self, batch, logs=None):
        step = self.state.take_failure()
        if step is not None:
            raise non_finite_error(step, self.epoch, step - self.epoch_start)
