"""Precision of a loaded model: float32, mixed bfloat16 or mixed float16, or "auto" (bfloat16 where it is fast).

A card (or a run's model.json) records each layer's dtype policy as it was trained, float32, so a global
`keras.config.set_dtype_policy("mixed_bfloat16")` set before `kerasdet.zoo.load` would change nothing.
`with_precision` rewrites those policies to the requested one before the model is built: the variables stay
float32 (Keras' mixed policies), so trained weights load unchanged, and the families keep anchors, rois, box
coders, losses, decoding and NMS in float32 themselves (DESIGN.md §2), exactly as when a model is built under a
global mixed policy.

Example:
    >>> model = kerasdet.zoo.load("retinanet_resnet18_shapes", precision="auto")
    >>> model.dtype_policy.name        # "mixed_bfloat16" on CPUs with AVX512-BF16 or AMX, else "float32"
"""

from __future__ import annotations

import contextlib
import copy

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")


def _cpu_flags():
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _gpu_has_bfloat16():
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and tuple(capability) >= (8, 0):  # Ampere and later
            return True
    return False


def resolve_precision(precision: str) -> str:
    """The dtype policy name for `precision`; "auto" is "mixed_bfloat16" where the hardware computes bfloat16
    natively (a CPU with AMX or AVX512-BF16, or a GPU of compute capability 8.0 and up), else "float32".

    Example:
        >>> resolve_precision("float32")
        'float32'
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}; got {precision!r}")
    if precision != "auto":
        return precision
    flags = _cpu_flags()
    if {"amx_bf16", "avx512_bf16"} & flags or _gpu_has_bfloat16():
        return "mixed_bfloat16"
    return "float32"


@contextlib.contextmanager
def global_policy(precision: str):
    """Keras' global dtype policy set to `precision` (resolved) inside the block, restored after it."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(precision))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def with_precision(config, precision: str):
    """A copy of a model config (`model.get_config()`, a card's "config") whose layers' dtype policies are
    `precision` (resolved by `resolve_precision`); other entries unchanged."""
    policy = resolve_precision(precision)
    config = copy.deepcopy(config)

    def visit(node):
        if isinstance(node, dict):
            dtype = node.get("dtype")
            if isinstance(dtype, dict) and dtype.get("class_name") == "DTypePolicy":
                dtype["config"] = {**dtype.get("config", {}), "name": policy}
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    return config
