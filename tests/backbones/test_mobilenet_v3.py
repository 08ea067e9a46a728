"""MobileNetV3-Large: Table 1's blocks, torchvision's parameter counts, the outputs SSDLite reads, the reduced tail,
config round trip and bad arguments."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.backbones import MobileNetV3Large
from kerasdet.backbones.mobilenet_v3 import make_divisible
from kerasdet.models.ssd.ssd import SSD

ALL_LEVELS = ("C2", "C3", "C4", "C4_expansion", "C5")

#: `sum(p.numel() for p in torchvision.models.mobilenet_v3_large(weights=None, reduced_tail=...).features
#: .parameters())` with torchvision 0.29.1 (benchmarks/.torch-venv): the same layers and widths have the same count
TORCHVISION_FEATURE_PARAMETERS = {False: 2_971_952, True: 1_620_512}


def _count(model, trainable=True):
    weights = model.trainable_weights if trainable else model.weights
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.mark.parametrize("reduced_tail", [False, True])
def test_parameters_equal_torchvisions_features(reduced_tail):
    """Trainable parameters (convolutions, batch-norm scales and offsets) of the whole trunk up to the last
    convolution equal torchvision's `features` (its batch-norm running statistics are buffers, as ours are
    non-trainable)."""
    net = MobileNetV3Large(reduced_tail=reduced_tail, levels=("C5",))
    assert _count(net) == TORCHVISION_FEATURE_PARAMETERS[reduced_tail]


def test_outputs_strides_and_channels_at_320():
    net = MobileNetV3Large(reduced_tail=True, levels=ALL_LEVELS)
    out = net(tf.zeros([1, 320, 320, 3]))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "C2": (1, 80, 80, 24), "C3": (1, 40, 40, 40), "C4": (1, 20, 20, 112),
        "C4_expansion": (1, 20, 20, 672), "C5": (1, 10, 10, 480)}
    assert net.feature_strides == {"C2": 4, "C3": 8, "C4": 16, "C4_expansion": 16, "C5": 32}
    assert MobileNetV3Large(levels=("C5",))(tf.zeros([1, 64, 96, 3]))["C5"].shape == (1, 2, 3, 960)


def test_table1_blocks():
    """15 blocks: squeeze-and-excite on blocks 4-6 and 11-15, ReLU in blocks 1-6 and hard-swish after, a residual
    connection where stride 1 keeps the width, no expansion convolution in block 1 (expansion 16 = input 16)."""
    net = MobileNetV3Large(levels=("C5",))
    names = [layer.name for layer in net.layers]
    se_blocks = sorted({int(n.split("_")[0][5:]) for n in names if n.endswith("_se_scale")})
    assert se_blocks == [4, 5, 6, 11, 12, 13, 14, 15]
    adds = sorted(int(n.split("_")[0][5:]) for n in names if n.endswith("_add"))
    assert adds == [1, 3, 5, 6, 8, 9, 10, 12, 14, 15]
    assert "block1_expand" not in names and "block2_expand" in names
    for index in range(1, 16):
        layer = net.get_layer(f"block{index}_depthwise_act")
        if index <= 6:
            assert isinstance(layer, keras.layers.ReLU), index
        else:
            assert layer.activation is keras.activations.hard_swish, index  # Keras names it hard_silu
    kernels = [net.get_layer(f"block{i}_depthwise").kernel_size[0] for i in range(1, 16)]
    assert kernels == [3, 3, 3, 5, 5, 5, 3, 3, 3, 3, 3, 3, 5, 5, 5]
    # the squeeze of block 4 (expansion 72): make_divisible(72 // 4) = 24 channels
    assert net.get_layer("block4_se_reduce").units == 24


def test_hard_activations_match_their_definitions():
    x = np.linspace(-5, 5, 41).astype(np.float32)
    np.testing.assert_allclose(keras.activations.hard_swish(x), x * np.clip(x + 3, 0, 6) / 6, atol=1e-6)
    np.testing.assert_allclose(keras.activations.hard_sigmoid(x), np.clip(x + 3, 0, 6) / 6, atol=1e-6)


def test_make_divisible():
    assert [make_divisible(v) for v in (16, 18, 72 // 4, 120 // 4, 3, 90, 0.75 * 40)] == [16, 24, 24, 32, 8, 88, 32]


def test_reduced_tail_halves_the_last_blocks_only():
    full, reduced = MobileNetV3Large(levels=("C5",)), MobileNetV3Large(reduced_tail=True, levels=("C5",))
    assert full.get_layer("block13_expand").filters == reduced.get_layer("block13_expand").filters == 672
    assert (full.get_layer("block14_expand").filters, reduced.get_layer("block14_expand").filters) == (960, 480)
    assert (full.get_layer("block15_project").filters, reduced.get_layer("block15_project").filters) == (160, 80)
    assert full.get_layer("block12_project").filters == reduced.get_layer("block12_project").filters == 112


def test_stops_at_the_deepest_requested_output():
    net = MobileNetV3Large(levels=("C3",))
    assert not any(layer.name.startswith("block7") for layer in net.layers)
    assert net(tf.zeros([2, 64, 96, 3]))["C3"].shape == (2, 8, 12, 40)


def test_width_config_round_trip_and_call_equality():
    net = MobileNetV3Large(width=0.5, reduced_tail=True, levels=("C4", "C5"))
    clone = MobileNetV3Large.from_config(net.get_config())
    assert clone.width == 0.5 and clone.reduced_tail and clone.levels == ("C4", "C5")
    clone.set_weights(net.get_weights())
    x = tf.random.uniform([1, 96, 64, 3], 0, 255, seed=1)
    for level in ("C4", "C5"):
        np.testing.assert_allclose(clone(x)[level], net(x)[level], atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [(dict(levels=("C6",)), "levels"), (dict(width=0), "width"),
                                             (dict(weights="imagenet"), "ImageNet"),
                                             (dict(reduced_tail="yes"), "reduced_tail"),
                                             (dict(trainable_layers=6), "trainable_layers")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MobileNetV3Large(**kwargs)


def test_ssdlite_on_it_has_torchvisions_maps():
    """`SSD.ssdlite(backbone="mobilenet_v3_large")` predicts on 20, 10, 5, 3, 2, 1 cells at 320 px (3,234 default
    boxes), its first map the stride-16 expansion, as torchvision's `ssdlite320_mobilenet_v3_large`."""
    model = SSD.ssdlite(num_classes=90, backbone="mobilenet_v3_large")
    model.build_for_size(320)
    assert model.feature_levels == ("C4_expansion", "C5")
    assert model.map_strides[:2] == (16.0, 32.0)
    raw = model(tf.zeros([1, 320, 320, 3]))
    assert raw["class_logits"].shape == (1, 3234, 91)
    clone = SSD.from_config(model.get_config())  # the config (a zoo card's, an export's) rebuilds the same network
    clone.build_for_size(320)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(tf.ones([1, 320, 320, 3]))["class_logits"],
                               model(tf.ones([1, 320, 320, 3]))["class_logits"], atol=1e-5)
    with pytest.raises(ValueError, match="backbone"):
        SSD.ssdlite(num_classes=3, backbone="vgg16")
