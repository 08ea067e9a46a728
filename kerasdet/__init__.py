"""kerasdet: the object-detection lineage from R-CNN to Mask R-CNN as Keras 3 models."""

__version__ = "0.1.0"
