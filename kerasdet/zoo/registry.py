"""The zoo's explicit table of released models and the loader.

A released model is a folder `zoo/<name>/` at the top of the repository (shipped in the wheel under
`share/kerasdet/zoo/`) holding `card.json` and the weights file it names. The card stores the
model's full Keras config, so the architecture is rebuilt exactly; `weights` and `sha256` pin the file.
"""

from __future__ import annotations

import json
import numbers
import os
import pathlib
import sys

from kerasdet.zoo import weights as weights_io
from kerasdet.zoo.precision import global_policy, resolve_precision, with_precision

#: Released models: name -> folder under the zoo directory. Add a row when a model is released.
RELEASED = {
    "faster_rcnn_resnet18_shapes": "faster_rcnn_resnet18_shapes",
    "mask_rcnn_resnet18_shapes": "mask_rcnn_resnet18_shapes",
    "retinanet_resnet18_shapes": "retinanet_resnet18_shapes",
    "ssd_resnet18_shapes": "ssd_resnet18_shapes",
    "yolo_v2_shapes": "yolo_v2_shapes",
}


REQUIRED_CARD_KEYS = ("name", "family", "config", "num_classes", "class_names", "image_size", "weights", "sha256",
                      "dataset", "train_command", "eval_command", "metrics")


def zoo_dir() -> pathlib.Path:
    """The folder holding the released models: $KERASDET_ZOO_DIR, the checkout's `zoo/`, or the installed copy."""
    env = os.environ.get("KERASDET_ZOO_DIR")
    if env and not pathlib.Path(env).is_dir():
        raise FileNotFoundError(f"KERASDET_ZOO_DIR={env} is not a folder (unset it to use the zoo kerasdet ships)")
    candidates = [pathlib.Path(env)] if env else []
    candidates += [
        pathlib.Path(__file__).resolve().parents[2] / "zoo",
        pathlib.Path(sys.prefix) / "share" / "kerasdet" / "zoo",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"no zoo folder found; looked in {[str(c) for c in candidates]} (set KERASDET_ZOO_DIR)")


def list() -> list:  # noqa: A001 - the public name DESIGN.md gives it
    """Names of the released models.

    Example:
        >>> "retinanet_resnet18_shapes" in kerasdet.zoo.list()
        True
    """
    return sorted(RELEASED)


def _folder(name: str) -> pathlib.Path:
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a string; got {type(name).__name__}")
    if name not in RELEASED:
        raise ValueError(f"`name` {name!r} is not a released model; choose one of {sorted(RELEASED)}")
    return zoo_dir() / RELEASED[name]


def weights_file(name: str) -> pathlib.Path:
    """The path of a released model's weights file (its card's `weights`, sha256 in the card's `sha256`): for
    building the model with other settings, e.g.
    `kerasdet.zoo.build(dict(card, config=dict(card["config"], mask_output="roi")), weights=weights_file(name),
    sha256=card["sha256"])`.

    Example:
        >>> kerasdet.zoo.registry.weights_file("retinanet_resnet18_shapes").name
        'retinanet_resnet18_shapes.weights.h5'
    """
    return _folder(name) / card(name)["weights"]


def card(name: str) -> dict:
    """The card of a released model: family, config, dataset, training and evaluation commands, metrics.

    Example:
        >>> kerasdet.zoo.card("retinanet_resnet18_shapes")["metrics"]["AP50"]
    """
    path = _folder(name) / "card.json"
    if not path.is_file():
        raise FileNotFoundError(f"card {path} of zoo model {name!r} is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"card {path} is not valid JSON: {err}") from err
    missing = [k for k in REQUIRED_CARD_KEYS if k not in data]
    if missing:
        raise ValueError(f"card {path} lacks the keys {missing}")
    return data


def family_class(family: str):
    """The model class of a card's family (`kerasdet.models.families`)."""
    from kerasdet.models.families import family as family_row

    return family_row(family).model_class


def _instantiate(model_card: dict, num_classes: int | None, precision: str = "float32"):
    cls = family_class(model_card["family"])
    config = with_precision(model_card["config"], precision)
    if num_classes is not None:
        config = cls.config_for_num_classes(config, num_classes)
    with global_policy(precision):  # layers a model makes in __init__ (a backbone's) take the global policy
        model = cls.from_config(config)
        model.build_for_size(model_card["image_size"])
    return model


def build(model_card: dict, num_classes: int | None = None, compile: bool = True, weights=None,  # noqa: A002
          sha256: str | None = None, what: str = "model", precision: str = "float32"):
    """Builds the model a card (or a training run's model.json) describes: built, with `weights` loaded
    when given (sha256-checked when `sha256` is given) and, by default, compiled. `precision` ("float32",
    "mixed_bfloat16", "mixed_float16" or "auto") sets the layers' dtype policy (`kerasdet.zoo.precision`).

    With `num_classes` other than the card's, the class-specific head is rebuilt for that many classes
    and every other layer keeps the loaded weights; `model.reinitialised_weights` lists the variables
    that did not.

    Example:
        >>> model = kerasdet.zoo.build(kerasdet.zoo.card("retinanet_resnet18_shapes"), num_classes=3)
    """
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
                                    or num_classes < 1):
        raise ValueError(f"`num_classes` must be a positive int or None; got {num_classes!r}")
    resolve_precision(precision)
    model = _instantiate(model_card, None, precision)
    if weights is not None:  # before compile(): weight files hold no optimizer state
        weights_io.load_into(model, weights, sha256, what=what)
    if num_classes is not None and num_classes != model_card["num_classes"]:
        tuned = _instantiate(model_card, num_classes, precision)
        tuned.reinitialised_weights = weights_io.transfer_matching(model, tuned)
        model = tuned
    if compile:
        model.compile()
    return model


def load(name: str, weights="default", num_classes: int | None = None, precision: str = "float32"):
    """A released model, compiled, with its trained weights.

    Args:
        name: a name from `kerasdet.zoo.list()`.
        weights: "default" (the card's file, sha256-checked), None (random initialisation) or a path
            to a `.weights.h5` file of the same architecture.
        num_classes: to fine-tune on other classes: the class-specific head is rebuilt for this many
            classes and every other layer keeps its trained weights.
        precision: "float32" (as trained), "mixed_bfloat16", "mixed_float16", or "auto" (bfloat16 on hardware
            that computes it natively: AMX / AVX512-BF16 CPUs, Ampere+ GPUs). Weights stay float32.

    Returns:
        A compiled `kerasdet.models.Detector`.

    Example:
        >>> model = kerasdet.zoo.load("retinanet_resnet18_shapes")
        >>> out = model.predict(images)          # boxes, scores, labels, num_detections
        >>> tuned = kerasdet.zoo.load("retinanet_resnet18_shapes", num_classes=3)
    """
    model_card = card(name)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"`num_classes` must be a positive int or None; got {num_classes!r}")
    sha256 = None
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f'`weights` must be "default", None or the path of a .weights.h5 file; got '
                        f"{type(weights).__name__} {weights!r}")
    if weights == "default":
        weights, sha256 = _folder(name) / model_card["weights"], model_card["sha256"]
    return build(model_card, num_classes=num_classes, weights=weights, sha256=sha256, what=f"zoo model {name!r}",
                 precision=precision)
