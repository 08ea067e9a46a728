"""`kerasdet.load`: one call for every place a model can come from."""

from __future__ import annotations

import json
import pathlib


def load(source, num_classes: int | None = None, precision: str = "float32"):
    """Loads a model from a zoo name, a training run folder, a `.keras` file or an exported SavedModel.

    Args:
        source: a name from `kerasdet.zoo.list()`; a folder written by `kerasdet train` (holding `model.json` and
            the weights); a `.keras` file (`model.save`); or a folder written by `kerasdet.export.saved_model`
            (holding `saved_model.pb`).
        num_classes: for zoo models and run folders, rebuild the class-specific head for this many classes
            (fine-tuning); every other layer keeps its trained weights.
        precision: for zoo models and run folders, "float32", "mixed_bfloat16", "mixed_float16" or "auto"
            (`kerasdet.zoo.precision`).

    Returns:
        A compiled `kerasdet.models.Detector` (zoo name, run folder, `.keras` file), or for a SavedModel the
        object `tf.saved_model.load` returns (call `.signatures["serving_default"](images=uint8 batch)`).

    Raises:
        ValueError naming `source` when it is none of these.

    Example:
        >>> model = kerasdet.load("retinanet_resnet18_shapes")
        >>> tuned = kerasdet.load("runs/my_run")               # a `kerasdet train --out runs/my_run` folder
        >>> served = kerasdet.load("serving/1")                # an export
    """
    from kerasdet import zoo
    from kerasdet.zoo import registry

    if not isinstance(source, (str, pathlib.PurePath)):
        raise TypeError(f"`source` must be a zoo name or a path; got {type(source).__name__}")
    if isinstance(source, str) and source in zoo.list():
        return zoo.load(source, num_classes=num_classes, precision=precision)
    path = pathlib.Path(source)
    if (path / "model.json").is_file():
        meta = json.loads((path / "model.json").read_text())
        return registry.build(meta, num_classes=num_classes, weights=path / meta["weights"], what=f"run {path}",
                              precision=precision)
    if path.is_file() and path.suffix == ".keras":
        import keras

        import kerasdet.models  # noqa: F401 - registers the families' classes for deserialisation

        if num_classes is not None or precision != "float32":
            raise ValueError("`num_classes` and `precision` apply to zoo models and run folders, not to .keras files")
        return keras.models.load_model(path)
    if (path / "saved_model.pb").is_file():
        import tensorflow as tf

        if num_classes is not None or precision != "float32":
            raise ValueError("`num_classes` and `precision` apply to zoo models and run folders, not to exported "
                             "SavedModels")
        return tf.saved_model.load(str(path))
    raise ValueError(f"`source` {str(source)!r} is not a zoo model ({', '.join(zoo.list())}), a training run folder "
                     "(model.json), a .keras file or a SavedModel folder (saved_model.pb)")
