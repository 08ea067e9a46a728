from kerasdet.models.retinanet.retinanet import RetinaNet

__all__ = ["RetinaNet"]
