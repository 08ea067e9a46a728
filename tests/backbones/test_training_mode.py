"""`trainable_layers` on every backbone: the last k of five stages train, whatever the backbone names its layers.

Until each backbone mapped its own layer names to stages, MobileNetV2 (keras.applications' `block_{k}_...` names)
froze nothing for any `trainable_layers`, and Darknet-19 (six blocks) always trained one stage more than asked.
"""

from __future__ import annotations

import keras
import pytest

from kerasdet.backbones import Darknet19, MobileNetV2, MobileNetV3Large, ResNet, VGG16, ZFNet

BACKBONES = {
    "resnet18": lambda **kw: ResNet(18, **kw),
    "vgg16": lambda **kw: VGG16(**kw),
    "zf": lambda **kw: ZFNet(**kw),
    "darknet19": lambda **kw: Darknet19(levels=("C2", "C3", "C4", "C5"), width=0.25, **kw),
    "mobilenet_v2": lambda **kw: MobileNetV2(alpha=0.35, **kw),
    "mobilenet_v3_large": lambda **kw: MobileNetV3Large(width=0.5, **kw),
}

# the first layer (with weights) of each stage 1..5, by the networks' published layouts
FIRST_LAYER_OF_STAGE = {
    "resnet18": ("conv1_conv", "conv2_block1_1_conv", "conv3_block1_1_conv", "conv4_block1_1_conv",
                 "conv5_block1_1_conv"),
    "vgg16": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
    "zf": ("conv1", "conv2", "conv3", "conv4", "conv5"),
    "darknet19": ("conv1_1", "conv3_1", "conv4_1", "conv5_1", "conv6_1"),
    "mobilenet_v2": ("Conv1", "block_1_expand", "block_3_expand", "block_6_expand", "block_13_expand"),
    "mobilenet_v3_large": ("stem_conv", "block2_expand", "block4_expand", "block7_expand", "block13_expand"),
}


def _weighted_layers(backbone):
    return [layer for layer in backbone.layers if layer.weights]


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_weighted_layer_has_a_stage_and_stages_are_in_network_order(name):
    backbone = BACKBONES[name]()
    stages = [backbone.stage_of_layer(layer.name) for layer in _weighted_layers(backbone)]
    assert None not in stages
    assert stages == sorted(stages) and set(stages) == {1, 2, 3, 4, 5}
    firsts = [next(layer.name for layer in _weighted_layers(backbone) if backbone.stage_of_layer(layer.name) == k)
              for k in range(1, 6)]
    assert tuple(firsts) == FIRST_LAYER_OF_STAGE[name]


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("trainable_layers", [0, 1, 3, 5])
def test_the_last_k_stages_train(name, trainable_layers):
    backbone = BACKBONES[name](trainable_layers=trainable_layers)
    training = {backbone.stage_of_layer(layer.name) for layer in _weighted_layers(backbone) if layer.trainable}
    assert training == set(range(6 - trainable_layers, 6))
    frozen_weights = [w for layer in _weighted_layers(backbone) if not layer.trainable for w in layer.weights]
    assert all(not w.trainable for w in frozen_weights)
    if trainable_layers == 0:
        assert backbone.trainable_weights == []
    else:
        assert backbone.trainable_weights


@pytest.mark.parametrize("name", ["mobilenet_v2", "darknet19"])
def test_frozen_stages_do_not_move_in_training(name):
    """The frozen stem keeps its weights through an optimizer step; the last stage's change."""
    backbone = BACKBONES[name](trainable_layers=1)
    first, last = (backbone.get_layer(FIRST_LAYER_OF_STAGE[name][k]) for k in (0, 4))
    before = [w.numpy().copy() for w in (first.weights[0], last.weights[0])]
    optimizer = keras.optimizers.SGD(0.1)
    import tensorflow as tf

    images = tf.random.uniform([2, 64, 64, 3], 0, 255, seed=0)
    with tf.GradientTape() as tape:
        loss = sum(tf.reduce_mean(tf.square(v)) for v in backbone(images, training=True).values())
    variables = backbone.trainable_weights
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    assert (first.weights[0].numpy() == before[0]).all()
    assert not (last.weights[0].numpy() == before[1]).all()


def test_the_setting_survives_the_config_round_trip():
    backbone = BACKBONES["mobilenet_v2"](trainable_layers=2)
    again = MobileNetV2.from_config(backbone.get_config())
    assert len(again.trainable_weights) == len(backbone.trainable_weights) < len(MobileNetV2(alpha=0.35).weights)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_frozen_batch_norm_reaches_every_batch_norm(name):
    """Also those inside blocks: Darknet-19's are inside one Sequential per conv + BN + leaky unit."""
    backbone = BACKBONES[name](frozen_batch_norm=True)
    norms = [layer for layer in backbone._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.BatchNormalization)]
    if name in ("vgg16", "zf"):
        assert norms == []
        return
    assert norms and not any(layer.trainable for layer in norms)
