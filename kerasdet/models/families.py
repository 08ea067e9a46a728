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
        make_augmenter: `(image_size, scale_range, seed, keypoint_flip_map) -> callable (image, targets) ->
            (image, targets)`, or None for the default `DetectionAugmenter` (flip, scale jitter, colour).
        needs: target keys beyond boxes and labels that the family trains on (e.g. "masks"): the CLI loads
            them and refuses a dataset without them.
        augmentation: the entry of `AUGMENTATIONS` used unless `kerasdet train --augment` names another.
        make_batch_transform: None, or `(image_size, seed) -> transform` with `transform(batches, first_batch)`
            applied to each epoch's batched dataset (YOLOv2's multi-scale training: `MultiScaleBatches`).
    """

    learning_rate: float = 1e-3
    warmup_steps: int = 300
    weight_decay: float = 1e-4
    clipnorm: float = 10.0
    scale_range: tuple = (0.75, 1.25)
    make_augmenter: Callable | None = None
    needs: tuple = ()
    augmentation: str = "standard"
    make_batch_transform: Callable | None = None

    def augmenter(self, image_size, scale_range=None, seed=None, keypoint_flip_map=None, augmentation=None):
        """The training augmenter for images of `image_size` (`keypoint_flip_map`: the dataset's keypoint
        permutation under a horizontal flip, for data with keypoints): `make_augmenter` when the recipe has one,
        else the entry `augmentation` (default: the recipe's) of `AUGMENTATIONS`."""
        scale_range = tuple(scale_range or self.scale_range)
        if self.make_augmenter is not None and augmentation is None:
            return self.make_augmenter(image_size, scale_range, seed, keypoint_flip_map)
        name = augmentation or self.augmentation
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {name!r}; choose one of {sorted(AUGMENTATIONS)}")
        return AUGMENTATIONS[name](image_size, scale_range, seed, keypoint_flip_map)


def _standard_augmenter(image_size, scale_range, seed, keypoint_flip_map):
    from kerasdet.data import DetectionAugmenter

    return DetectionAugmenter(flip=True, scale_range=scale_range, output_size=image_size, color=True, seed=seed,
                              keypoint_flip_map=keypoint_flip_map)


def _flip_resize_augmenter(image_size, scale_range, seed, keypoint_flip_map):
    from kerasdet.data import DetectionAugmenter

    return DetectionAugmenter(flip=True, scale_range=None, output_size=image_size, color=False, seed=seed,
                              keypoint_flip_map=keypoint_flip_map)


def _ssd_augmenter(zoom_out=True):
    def make(image_size, scale_range, seed, keypoint_flip_map):
        from kerasdet.data import SSDAugmenter

        return SSDAugmenter(output_size=image_size, zoom_out=zoom_out, seed=seed, keypoint_flip_map=keypoint_flip_map)

    return make


#: the training augmentations `kerasdet train --augment` names: `(image_size, scale_range, seed, keypoint_flip_map)
#: -> augmenter`. "standard": flip, scale jitter with crop or pad, colour jitter; "flip-resize": flip and resize only
#: (the baseline of SSD's augmentation ablation); "ssd": the SSD paper's (photometric, zoom-out, min-IoU crop, flip,
#: resize: `SSDAugmenter`); "ssd-no-zoom-out": the same without the zoom-out (the paper's small-object ablation).
AUGMENTATIONS = {
    "standard": _standard_augmenter,
    "flip-resize": _flip_resize_augmenter,
    "ssd": _ssd_augmenter(),
    "ssd-no-zoom-out": _ssd_augmenter(zoom_out=False),
}


@dataclasses.dataclass(frozen=True)
class Family:
    """One row of the table: `class_path` ("module:Class", imported on use), `archs` (name -> builder
    `(num_classes, class_names, keypoints=None) -> Detector`, where `keypoints` is the dataset's
    `{class name: keypoint names}`, read by the families that have a keypoint head) and the training `recipe`."""

    name: str
    class_path: str
    archs: dict
    recipe: TrainingRecipe = TrainingRecipe()

    @property
    def model_class(self):
        module, cls = self.class_path.split(":")
        return getattr(importlib.import_module(module), cls)


def _retinanet(method, *args, **kwargs):
    def build(num_classes, class_names, keypoints=None):
        from kerasdet.models.retinanet import RetinaNet

        extra = dict(kwargs)
        if extra.pop("giou", False):
            from kerasdet.losses.giou import GIoULoss

            extra["box_loss"] = GIoULoss(reduction="sum")
        return getattr(RetinaNet, method)(*args, num_classes=num_classes, class_names=class_names, **extra)

    return build


def _classmethod_builder(class_path):
    """Builders `(method, *args, **kwargs) -> build` calling `Class.method(*args, num_classes=..., class_names=...,
    **kwargs)` for the class at `class_path` ("module:Class", imported on use)."""

    def builder(method, *args, **kwargs):
        def build(num_classes, class_names, keypoints=None):
            module, name = class_path.split(":")
            cls = getattr(importlib.import_module(module), name)
            return getattr(cls, method)(*args, num_classes=num_classes, class_names=class_names, **kwargs)

        return build

    return builder


_faster_rcnn = _classmethod_builder("kerasdet.models.faster_rcnn:FasterRCNN")
_ssd = _classmethod_builder("kerasdet.models.ssd:SSD")
_yolo_v2 = _classmethod_builder("kerasdet.models.yolo_v2:YOLOv2")
_yolo_v1 = _classmethod_builder("kerasdet.models.yolo_v1:YOLOv1")
_fast_yolo = _classmethod_builder("kerasdet.models.yolo_v1:FastYOLO")


def _yolo9000(method, *args, **kwargs):
    """YOLO9000 builders: the WordTree is the dataset's class hierarchy `(names, parents)` (the CLI's
    `synthetic-tree` dataset gives the embedded one); each class is the node of its name."""

    def build(num_classes, class_names, keypoints=None, word_tree=None):
        from kerasdet.layers import WordTree
        from kerasdet.models.yolo_v2 import YOLO9000

        if word_tree is None:
            raise ValueError("YOLO9000 needs a class hierarchy (a WordTree): train it on --dataset synthetic-tree, "
                             "whose targets name WordTree nodes")
        tree = WordTree(*word_tree)
        missing = [name for name in class_names if name not in tree]
        if missing:
            raise ValueError(f"the classes {missing} are not nodes of the dataset's WordTree")
        return getattr(YOLO9000, method)(*args, num_classes=num_classes, word_tree=tree, class_names=class_names,
                                         **kwargs)

    return build


def _yolo_v2_multi_scale(image_size, seed):
    """YOLOv2's multi-scale training scaled to `image_size`: a new size every 10 batches among the multiples of 32
    from `image_size * 320 / 416` to `image_size * 608 / 416`."""
    from kerasdet.data.multi_scale import MultiScaleBatches, yolo_v2_sizes

    return MultiScaleBatches(yolo_v2_sizes(image_size), every=10, seed=seed)


def _mask_rcnn(method, *args, single_map_pooler=None, **kwargs):
    """Mask R-CNN builders: a keypoint head when the dataset has keypoints (on the classes that carry them).
    `single_map_pooler` ("roi_align" / "roi_pool") pools boxes and masks from P4 alone with that pooler, and
    builds no keypoint head (the RoIAlign-against-RoIPool comparison of the paper's Table 2c, on masks)."""

    def build(num_classes, class_names, keypoints=None):
        from kerasdet.layers import RoIAlign, RoIPool
        from kerasdet.models.mask_rcnn import MaskRCNN

        extra = dict(kwargs)
        if keypoints and single_map_pooler is None:
            counts = {len(v) for v in keypoints.values()}
            if len(counts) != 1:
                raise ValueError(f"the keypoint head needs one keypoint count for every class; the dataset has {keypoints}")
            extra.update(num_keypoints=counts.pop(), keypoint_classes=[class_names.index(c) for c in keypoints])
        if single_map_pooler is not None:
            make = RoIAlign if single_map_pooler == "roi_align" else RoIPool
            options = {"sampling_ratio": 2} if single_map_pooler == "roi_align" else {}
            extra.update(roi_pooler=make(7, spatial_scale=1 / 16, name="roi_pooler", **options), roi_features="P4",
                         mask_pooler=make(14, spatial_scale=1 / 16, name="mask_pooler", **options))
        return getattr(MaskRCNN, method)(*args, num_classes=num_classes, class_names=class_names, **extra)

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
    "mask_rcnn": Family(
        name="mask_rcnn",
        class_path="kerasdet.models.mask_rcnn.mask_rcnn:MaskRCNN",
        archs={
            "mask-rcnn-compact": _mask_rcnn("compact"),
            "mask-rcnn-compact-p4-roialign": _mask_rcnn("compact", single_map_pooler="roi_align"),
            "mask-rcnn-compact-p4-roipool": _mask_rcnn("compact", single_map_pooler="roi_pool"),
            # the keypoint head on boxes enlarged 1.5x: star tips hidden by other objects lie outside the visible
            # part's box (docs/decisions.md, Mask R-CNN keypoints)
            "mask-rcnn-compact-keypoint-box-1.5": _mask_rcnn("compact", keypoint_box_scale=1.5),
            "mask-rcnn-resnet50-fpn": _mask_rcnn("paper_config", "resnet50_fpn"),
        },
        recipe=TrainingRecipe(learning_rate=1e-3, warmup_steps=300, needs=("masks",)),
    ),
    "ssd": Family(
        name="ssd",
        class_path="kerasdet.models.ssd.ssd:SSD",
        archs={
            "ssd-compact": _ssd("compact"),
            "ssd-compact-resnet18": _ssd("compact", backbone="resnet18"),
            "ssd-compact-resnet18-all-negatives": _ssd("compact", backbone="resnet18", neg_pos_ratio=None),
            "ssd300-vgg16": _ssd("paper_config", 300),
            "ssd512-vgg16": _ssd("paper_config", 512),
        },
        recipe=TrainingRecipe(learning_rate=1e-3, warmup_steps=300, augmentation="ssd"),
    ),
    "yolo_v1": Family(
        name="yolo_v1",
        class_path="kerasdet.models.yolo_v1.yolo_v1:YOLOv1",
        archs={"yolo-v1-compact": _yolo_v1("compact"), "yolo-v1-paper": _yolo_v1("paper_config")},
        recipe=TrainingRecipe(learning_rate=1e-3, warmup_steps=300),
    ),
    "fast_yolo": Family(
        name="fast_yolo",
        class_path="kerasdet.models.yolo_v1.fast_yolo:FastYOLO",
        archs={"fast-yolo-compact": _fast_yolo("compact"), "fast-yolo-paper": _fast_yolo("paper_config")},
        recipe=TrainingRecipe(learning_rate=1e-3, warmup_steps=300),
    ),
    "yolo_v2": Family(
        name="yolo_v2",
        class_path="kerasdet.models.yolo_v2.yolo_v2:YOLOv2",
        archs={
            "yolo-v2-compact": _yolo_v2("compact"),
            "yolo-v2-darknet19": _yolo_v2("paper_config"),
        },
        recipe=TrainingRecipe(learning_rate=1e-3, warmup_steps=300, make_batch_transform=_yolo_v2_multi_scale),
    ),
    "yolo9000": Family(
        name="yolo9000",
        class_path="kerasdet.models.yolo_v2.yolo9000:YOLO9000",
        archs={"yolo9000-compact": _yolo9000("compact"), "yolo9000-darknet19": _yolo9000("paper_config")},
        recipe=TrainingRecipe(learning_rate=1e-3, warmup_steps=300, make_batch_transform=_yolo_v2_multi_scale),
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
    """The table's name for a model instance: its class's row, else the row of its nearest registered base class."""
    for cls in type(model).__mro__:
        for f in FAMILIES.values():
            if f.model_class is cls:
                return f.name
    raise ValueError(f"{type(model).__name__} is not a registered family; known: {sorted(FAMILIES)}")
