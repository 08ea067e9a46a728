"""The one table of families: family name -> model class, the architectures `kerasdet train --arch`
builds, and the family's training recipe (augmentation, optimiser and schedule defaults).

The CLI, the zoo and the run folders all read this table: a run's `model.json` and a card name the
family (a key here) whose class rebuilds the model. A later family adds one row.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable


@dataclasses.dataclass(frozen=True)
class TrainingRecipe:
    """How `kerasdet train` trains a family unless the command line says otherwise.

    Attributes:
        learning_rate: peak learning rate (AdamW, linear warm-up then cosine decay).
        warmup_steps: warm-up steps.
        weight_decay: AdamW weight decay.
        clipnorm: global gradient-norm clip.
        scale_range: the random scale jitter of the default augmenter.
        make_augmenter: `(image_size, scale_range, seed) -> callable (image, targets) -> (image, targets)`,
            or None for the default `DetectionAugmenter` (flip, scale jitter, colour).
    """

    learning_rate: float = 1e-3
    warmup_steps: int = 300
    weight_decay: float = 1e-4
    clipnorm: float = 10.0
    scale_range: tuple = (0.75, 1.25)
    make_augmenter: Callable | None = None

    def augmenter(self, image_size, scale_range=None, seed=None):
        """The training augmenter for images of `image_size`."""
        scale_range = tuple(scale_range or self.scale_range)
        if self.make_augmenter is not None:
            return self.make_augmenter(image_size, scale_range, seed)
        from kerasdet.data import DetectionAugmenter

        return DetectionAugmenter(flip=True, scale_range=scale_range, output_size=image_size, color=True, seed=seed)


@dataclasses.dataclass(frozen=True)
class Family:
    """One row of the table: `class_path` ("module:Class", imported on use), `archs` (name -> builder
    `(num_classes, class_names) -> Detector`) and the training `recipe`."""

    name: str
    class_path: str
    archs: dict
    recipe: TrainingRecipe = TrainingRecipe()

    @property
    def model_class(self):
        module, cls = self.class_path.split(":")
        return getattr(importlib.import_module(module), cls)


def _retinanet(method, *args, **kwargs):
    def build(num_classes, class_names):
        from kerasdet.models.retinanet import RetinaNet

        extra = dict(kwargs)
        if extra.pop("giou", False):
            from kerasdet.losses.giou import GIoULoss

            extra["box_loss"] = GIoULoss(reduction="sum")
        return getattr(RetinaNet, method)(*args, num_classes=num_classes, class_names=class_names, **extra)

    return build


def _faster_rcnn(method, *args, **kwargs):
    def build(num_classes, class_names):
        from kerasdet.models.faster_rcnn import FasterRCNN

        return getattr(FasterRCNN, method)(*args, num_classes=num_classes, class_names=class_names, **kwargs)

    return build


FAMILIES = {
    "retinanet": Family(
        name="retinanet",
        class_path="kerasdet.models.retinanet.retinanet:RetinaNet",
        archs={
            "retinanet-compact": _retinanet("compact"),
            "retinanet-compact-giou": _retinanet("compact", giou=True),
            "retinanet-resnet50": _retinanet("paper_config", "resnet50"),
        },
    ),
    "faster_rcnn": Family(
        name="faster_rcnn",
        class_path="kerasdet.models.faster_rcnn.faster_rcnn:FasterRCNN",
        archs={
            "faster-rcnn-compact": _faster_rcnn("compact"),
            "faster-rcnn-resnet50-fpn": _faster_rcnn("paper_config", "resnet50_fpn"),
        },
        recipe=TrainingRecipe(learning_rate=1e-3, warmup_steps=300),
    ),
}


def family(name: str) -> Family:
    """The table's row for `name`; ValueError naming the known families otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def arch_names() -> tuple:
    """Every architecture name `kerasdet train --arch` accepts."""
    return tuple(a for f in FAMILIES.values() for a in f.archs)


def family_of_arch(arch: str) -> Family:
    """The family whose table row lists `arch`; ValueError naming the choices otherwise."""
    for f in FAMILIES.values():
        if arch in f.archs:
            return f
    raise ValueError(f"unknown architecture {arch!r}; choose one of {arch_names()}")


def family_of_model(model) -> str:
    """The table's name for a model instance (its class, or a subclass of a registered class)."""
    for f in FAMILIES.values():
        if isinstance(model, f.model_class):
            return f.name
    raise ValueError(f"{type(model).__name__} is not a registered family; known: {sorted(FAMILIES)}")
