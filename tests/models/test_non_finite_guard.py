"""The training guard: a step whose loss, gradients or batch-norm statistics are not finite is not applied, and
training stops naming it. Most checks run on the toy detector (fast); the batch-norm one on a tiny RetinaNet."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.models.test_detector import images, make_model, targets
from tests.models.toy_detector import ToyDetector


def _weights(model):
    return [np.array(v.numpy()) for v in model.weights]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _overflowing(model):
    """Sets the class output's kernel and bias to 3e38 (finite) so that the loss overflows float32 whatever the
    features: every logit is at least 3e38, and the mean of the cross-entropies sums many of them."""
    model.class_out.kernel.assign(np.full(model.class_out.kernel.shape, 3e38, np.float32))
    model.class_out.bias.assign(np.full(model.class_out.bias.shape, 3e38, np.float32))


def _data(batch=2):
    return images(batch).astype(np.float32), targets(batch)


def test_a_non_finite_step_is_not_applied_and_raises_naming_the_step():
    model = make_model()
    model.compile(learning_rate=1e-3)
    x, y = _data()
    model.train_on_batch(x, y)  # a normal step
    assert int(model.optimizer.iterations.numpy()) == 1
    _overflowing(model)
    before = _weights(model)
    with pytest.raises(FloatingPointError, match=r"step 2\b.*not finite.*weights are those from before it"):
        model.train_on_batch(x, y)
    assert _same(before, _weights(model))
    assert int(model.optimizer.iterations.numpy()) == 1  # no optimizer step (no weight decay) either
    assert model._non_finite_guard().take_failure() is None  # the record was reset
    model.class_out.kernel.assign(np.zeros(model.class_out.kernel.shape, np.float32))
    model.class_out.bias.assign(np.zeros(model.class_out.bias.shape, np.float32))
    model.train_on_batch(x, y)  # training can go on once the cause is gone
    assert int(model.optimizer.iterations.numpy()) == 2


def test_fit_stops_at_the_first_non_finite_batch_and_names_it():
    model = make_model()
    model.compile(learning_rate=1e-3)
    x, y = _data(4)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    history = model.fit(ds, epochs=1, verbose=0)  # finite: trains as usual
    assert np.isfinite(history.history["loss"]).all()
    _overflowing(model)
    before = _weights(model)
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 1 \(step 3\)"):
        model.fit(ds, epochs=2, verbose=0)
    assert _same(before, _weights(model))
    # a run resumed at batch 5 of its third epoch: the failing batch is named as the epoch's own (6, not 1)
    with pytest.raises(FloatingPointError, match=r"epoch 3, batch 6 \(step 3\)"):
        model.fit(ds, epochs=3, initial_epoch=2, first_batch=5, verbose=0)
    # opting out: nothing raises, and the refused steps are still not applied
    model.fit(ds.take(1), epochs=1, verbose=0, stop_on_non_finite=False)
    assert _same(before, _weights(model))


def test_with_several_steps_per_execution_the_first_refused_step_is_named_and_later_ones_refused():
    model = make_model()
    model.compile(learning_rate=1e-3, steps_per_execution=3)
    x, y = _data(6)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)  # 3 batches: one execution
    model.fit(ds, epochs=1, verbose=0)
    _overflowing(model)
    before = _weights(model)
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 1 \(step 4\)"):
        model.fit(ds, epochs=1, verbose=0)
    assert _same(before, _weights(model)) and int(model.optimizer.iterations.numpy()) == 3


def test_a_refused_step_is_not_reported_by_a_later_call():
    model = make_model()
    model.compile(learning_rate=1e-3)
    x, y = _data(2)
    kernel, bias = model.class_out.kernel.numpy(), model.class_out.bias.numpy()
    _overflowing(model)
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(2), verbose=0, stop_on_non_finite=False)
    model.class_out.kernel.assign(kernel)
    model.class_out.bias.assign(bias)
    model.train_on_batch(x, y)  # a good step: no error for the earlier refused one
    assert int(model.optimizer.iterations.numpy()) == 1


def test_loss_scaling_skips_are_not_failures():
    # the LossScaleOptimizer of mixed_float16 skips steps whose scaled gradients overflow, on purpose, and lowers
    # its scale: a huge initial scale makes the first steps overflow with a finite loss
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = make_model()
    finally:
        keras.config.set_dtype_policy("float32")
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1e-3), initial_scale=2.0**126)
    model.compile(optimizer=optimizer)
    for _ in range(3):
        model.train_on_batch(*_data())  # does not raise
    assert float(optimizer.dynamic_scale.numpy()) < 2.0**126  # the optimizer did skip and lower its scale
    assert all(np.isfinite(w).all() for w in _weights(model))


def test_the_guard_is_not_part_of_the_weights():
    model = make_model()
    model.compile()
    paths = [v.path for v in model.weights]
    model.train_on_batch(*_data())
    assert [v.path for v in model.weights] == paths and not any("non_finite" in p for p in paths)


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class ToyWithBatchNorm(ToyDetector):
    """The toy detector with a batch norm after its convolution (a forward pass that writes statistics)."""

    def __init__(self, num_classes, num_boxes=4, **kwargs):
        super().__init__(num_classes, num_boxes=num_boxes, **kwargs)
        self.norm = keras.layers.BatchNormalization(name="norm")

    def call(self, inputs, training=False, targets=None):
        images, _ = self.split_inputs(inputs)
        x = self.pool(self.norm(self.conv(self.rescale(tf.cast(images, tf.float32))), training=training))
        return {"logits": tf.reshape(self.class_out(x), [-1, self.num_boxes, self.num_classes]),
                "box_params": tf.reshape(self.box_out(x), [-1, self.num_boxes, 4])}


def test_a_batch_norm_statistic_that_is_not_finite_alone_is_a_failure():
    # batch norm trains on batch statistics, so an infinite moving variance leaves the loss and every gradient
    # finite; only the guard's look at the statistics the forward pass wrote refuses the step
    model = ToyWithBatchNorm(num_classes=2, num_boxes=4)
    model.build_for_size(32)
    model.compile(learning_rate=1e-3)
    infinite = np.full(model.norm.moving_variance.shape, np.inf, np.float32)
    model.norm.moving_variance.assign(infinite)
    x, y = _data(2)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x, y, model(x, training=True, targets=model.standardize_targets(y, x)))
    gradients = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(loss.numpy()) and all(np.isfinite(g.numpy()).all() for g in gradients if g is not None)
    assert not np.isfinite(model.norm.moving_variance.numpy()).all()  # what the forward pass wrote
    model.norm.moving_variance.assign(infinite)  # as it was before that forward pass
    before = _weights(model)
    with pytest.raises(FloatingPointError, match="not finite"):
        model.train_on_batch(x, y)
    assert _same(before, _weights(model))
