"""Which backbone layers train: frozen batch norm and the `trainable_backbone_layers` rule."""

from __future__ import annotations

import re

import keras

_STAGE_OF_NAME = (re.compile(r"^conv(\d)_"), re.compile(r"^block(\d)_"), re.compile(r"^conv(\d)$"))


def stage_from_name(layer_name):
    """Stage of a layer named `conv{k}_...` (ResNet), `block{k}_...` (VGG16) or `conv{k}` (ZF net); None otherwise."""
    for pattern in _STAGE_OF_NAME:
        m = pattern.match(layer_name)
        if m:
            return int(m.group(1))
    return None


def set_backbone_training(backbone, frozen_batch_norm=False, trainable_layers=None):
    """Freezes a backbone's batch norm and / or its first stages, in place; returns the backbone.

    - `frozen_batch_norm`: every `BatchNormalization` layer gets `trainable = False`, which in Keras 3
      also makes it use its moving statistics in training (the usual practice for two-stage detectors
      trained at batch 1-2, where batch statistics are noise).
    - `trainable_layers`: None trains everything; otherwise the number of stages, counted from the
      last, that train (torchvision's `trainable_backbone_layers`, 0-5): the stem and earlier stages
      are frozen. Every backbone has five stages, stage 1 the stem: ResNet's conv1..conv5, VGG16's
      block1..block5, ZF net's conv1..conv5, Darknet-19's stages ending at C2..C5 after a stem of its
      first two, MobileNets' blocks grouped by the stride they end at (2, 4, 8, 16, 32; torchvision's MobileNet
      extractors make the last 1x1 convolution a sixth stage of its own, so their `k + 1` is our `k`). Each
      backbone maps its layer names to stages with its `stage_of_layer` method.

    Example:
        >>> backbone = set_backbone_training(ResNet(50, levels=("C4",)), frozen_batch_norm=True, trainable_layers=3)
    """
    if trainable_layers is not None and not (isinstance(trainable_layers, int) and 0 <= trainable_layers <= 5):
        raise ValueError(f"`trainable_layers` must be None or an int in [0, 5]; got {trainable_layers!r}")
    if not isinstance(frozen_batch_norm, bool):
        raise TypeError(f"`frozen_batch_norm` must be a bool; got {type(frozen_batch_norm).__name__}")
    # kept on the model: its get_config returns them, and `reapply_training_modes` restores them after a
    # part was frozen and unfrozen as a whole (Keras' `trainable` setter is recursive)
    object.__setattr__(backbone, "frozen_batch_norm", frozen_batch_norm)
    object.__setattr__(backbone, "trainable_layers", trainable_layers)
    first_trainable = None if trainable_layers is None else 6 - trainable_layers
    stage_of_layer = getattr(backbone, "stage_of_layer", stage_from_name)
    if frozen_batch_norm:  # every batch norm, also those inside blocks (Darknet-19's conv + BN + leaky units)
        for layer in backbone._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    for layer in backbone.layers:
        if first_trainable is not None and layer.weights:
            stage = stage_of_layer(layer.name)
            if stage is not None and stage < first_trainable:
                layer.trainable = False
    return backbone


def reapply_training_modes(part):
    """Re-freezes what `set_backbone_training` froze in every backbone inside `part` (after
    `part.trainable = True`, which unfreezes every layer below it)."""
    for layer in part._flatten_layers(include_self=True, recursive=True):
        if hasattr(layer, "frozen_batch_norm") and isinstance(layer, keras.Model):
            set_backbone_training(layer, layer.frozen_batch_norm, layer.trainable_layers)
