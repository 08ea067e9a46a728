"""kerasdet: the object-detection lineage from R-CNN to Mask R-CNN as Keras 3 models.

Example:
    >>> import kerasdet
    >>> model = kerasdet.zoo.load("retinanet_resnet18_shapes")   # or kerasdet.load(name | run folder | export)
    >>> out = model.predict(images)        # boxes, scores, labels, num_detections
"""

__version__ = "0.1.0"

import importlib

#: the subpackages, imported on first use (`kerasdet.zoo`...), so that `import kerasdet.cli` and
#: `kerasdet --help` do not start TensorFlow
_SUBPACKAGES = ("backbones", "coders", "data", "export", "layers", "losses", "metrics", "models", "ops", "zoo")


def __getattr__(name):
    if name == "load":
        from kerasdet.loading import load

        globals()["load"] = load
        return load
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"kerasdet.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'kerasdet' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES) + ["load"])
