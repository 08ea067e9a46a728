"""Darknet-19: Table 6's layers, the output levels and strides, width, config round trip and bad arguments."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.backbones import Darknet19


def test_table6_layers_and_levels():
    """18 convolutions up to C5 (Table 6's 19th is the classifier's 1x1), each followed by batch norm and a leaky
    ReLU of slope 0.1; C2..C5 at strides 4..32 with 128 .. 1024 channels."""
    net = Darknet19(levels=("C2", "C3", "C4", "C5"))
    convs = [layer for layer in net._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 18 and all(not c.use_bias for c in convs)
    assert [c.kernel_size[0] for c in convs].count(1) == 6  # Table 6 has 7 with the classifier
    leaky = [layer for layer in net._flatten_layers() if isinstance(layer, keras.layers.LeakyReLU)]
    assert len(leaky) == 18 and all(np.isclose(layer.negative_slope, 0.1) for layer in leaky)
    out = net(tf.zeros([1, 416, 416, 3]))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "C2": (1, 104, 104, 128), "C3": (1, 52, 52, 256), "C4": (1, 26, 26, 512), "C5": (1, 13, 13, 1024)}
    assert net.feature_strides == {"C2": 4, "C3": 8, "C4": 16, "C5": 32}


def test_stops_after_the_highest_level_and_scales_width():
    net = Darknet19(levels=("C3",), width=0.25)
    assert not any("conv5" in layer.name for layer in net._flatten_layers())
    assert net(tf.zeros([2, 64, 96, 3]))["C3"].shape == (2, 8, 12, 64)


def test_config_round_trip_keeps_weights_shape():
    net = Darknet19(levels=("C4",), width=0.125)
    clone = Darknet19.from_config(net.get_config())
    assert clone.levels == ("C4",) and clone.width == 0.125
    assert [w.shape for w in clone.weights] == [w.shape for w in net.weights]


@pytest.mark.parametrize("kwargs, message", [(dict(levels=("C6",)), "levels"), (dict(width=0), "width"),
                                             (dict(weights="imagenet"), "imagenet")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Darknet19(**kwargs)
