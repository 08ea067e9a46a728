"""The harness itself: it passes a correct layer and catches a broken config and a missing jit note."""

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
