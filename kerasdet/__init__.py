"""kerasdet: the object-detection lineage from R-CNN to Mask R-CNN as Keras 3 models.

Example:
    >>> import kerasdet
    >>> model = kerasdet.zoo.load("retinanet_resnet18_shapes")
    >>> out = model.predict(images)        # boxes, scores, labels, num_detections
"""

__version__ = "0.1.0"

from kerasdet import backbones, coders, data, export, layers, losses, metrics, models, ops, zoo  # noqa: E402,F401
