"""Detector families; `Detector` is their common base, `families` the table the CLI and the zoo read.

The classes are imported on first use, so that reading the families table (`kerasdet.models.families`, e.g. for
`kerasdet --help`) does not start TensorFlow.
"""

import importlib

_CLASSES = {
    "Detector": "kerasdet.models.detector",
    "FasterRCNN": "kerasdet.models.faster_rcnn",
    "MaskRCNN": "kerasdet.models.mask_rcnn",
    "RetinaNet": "kerasdet.models.retinanet",
    "SSD": "kerasdet.models.ssd",
    "FastYOLO": "kerasdet.models.yolo_v1",
    "YOLOv1": "kerasdet.models.yolo_v1",
    "YOLO9000": "kerasdet.models.yolo_v2",
    "YOLOv2": "kerasdet.models.yolo_v2",
}

__all__ = sorted(_CLASSES)


def __getattr__(name):
    if name in _CLASSES:
        value = getattr(importlib.import_module(_CLASSES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kerasdet.models' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_CLASSES))
