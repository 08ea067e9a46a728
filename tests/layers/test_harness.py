"""The harness itself: it passes correct layers and catches a broken config, a missing jit note and a layer whose
functional model computes something else than its eager call."""

import keras
import numpy as np
import pytest

from tests.layers.harness import check_layer


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class ScaleLayer(keras.layers.Layer):
    """Multiplies by a constant (a well-behaved layer)."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class ForgetfulLayer(ScaleLayer):
    """Drops its argument from the config (a defect the harness must catch)."""

    def get_config(self):
        config = super().get_config()
        config.pop("factor")
        return config


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class BatchBlindLayer(ScaleLayer):
    """Fixes its scale in `build` from the static batch size, which a functional model on `keras.Input` does not
    know: built there, it computes something else than built eagerly (a defect the harness must catch)."""

    def build(self, shape):
        self.scale = self.factor * (shape[0] or 1)

    def call(self, x):
        return x * self.scale


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class ProjectionLayer(keras.layers.Layer):
    """A layer with random weights (correct): its functional model must use the same weights as the eager call."""

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, kernel_initializer="random_normal", bias_initializer="random_normal")

    def build(self, shape):
        self.dense.build(shape)

    def call(self, x):
        return self.dense(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_harness_accepts_a_correct_layer():
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    check_layer(ScaleLayer, {"factor": 3.0}, (x,), empty_args=[(x[:0],)])


def test_harness_catches_missing_config_argument():
    x = np.ones((1, 2), np.float32)
    with pytest.raises(AssertionError, match="lacks __init__ arguments"):
        check_layer(ForgetfulLayer, {"factor": 3.0}, (x,))


def test_harness_requires_a_reason_when_jit_is_skipped():
    x = np.ones((1, 2), np.float32)
    with pytest.raises(AssertionError, match="docstring does not say why"):
        check_layer(ScaleLayer, {"factor": 3.0}, (x,), jit=False)


def test_harness_accepts_a_correct_layer_with_weights():
    x = np.random.default_rng(1).normal(size=(2, 5)).astype(np.float32)
    check_layer(ProjectionLayer, {"units": 3}, (x,), fp16_compare=False)


def test_harness_catches_a_functional_model_that_differs_from_the_eager_call():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(AssertionError, match="functional model"):
        check_layer(BatchBlindLayer, {"factor": 3.0}, (x,))
