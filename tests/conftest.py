"""Test-wide settings: quiet TensorFlow, fixed thread counts, a clean dtype policy per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")


@pytest.fixture(autouse=True)
def _reset_dtype_policy():
    """A test that changes the global dtype policy cannot leak it into the next one."""
    yield
    keras.config.set_dtype_policy("float32")
