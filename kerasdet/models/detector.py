"""`Detector`: the base every kerasdet family subclasses."""

from __future__ import annotations

import contextlib
import os
import math
import re
import threading

import keras
import numpy as np
import tensorflow as tf

from kerasdet.layers.fused_batch_norm import use_fused_batch_norms
from kerasdet.models._non_finite_guard import GuardState, StopOnNonFiniteStep, non_finite_error
from kerasdet.ops.boxes import clip_boxes, convert_format
from kerasdet.ops.nms import batched_non_max_suppression
from kerasdet.ops.replicas import num_replicas, sum_over_replicas


def _check_images(images, name="images"):
    """Raises TypeError/ValueError naming `name` unless `images` is a uint8/float `[B, H, W, 3]` tensor or array."""
    shape = getattr(images, "shape", None)
    if shape is None or getattr(images, "dtype", None) is None:
        raise TypeError(f"`{name}` must be a tensor or array [B, H, W, 3]; got {type(images).__name__}")
    rank = getattr(shape, "rank", None) if isinstance(shape, tf.TensorShape) else len(shape)
    if rank is None:
        rank, shape = 4, [None, None, None, None]  # unknown rank (a relaxed trace): checked at run time
    if rank != 4 or (shape[-1] is not None and shape[-1] != 3):
        hint = (" (convert grayscale/RGBA with kerasdet.data.to_rgb)" if rank == 4 else
                " (a batch is needed here: add the batch axis, e.g. images[None]; predict and detect also take one "
                "[H, W, 3] image or a list of images)" if rank == 3 else "")
        raise ValueError(f"`{name}` must have shape [B, H, W, 3] (RGB, 0..255); got shape {tuple(shape)}{hint}")
    try:
        dtype = tf.as_dtype(images.dtype)
    except TypeError:
        dtype = None
    if dtype is None or not (dtype.is_floating or dtype == tf.uint8):
        raise TypeError(f"`{name}` must be uint8 or float (0..255); got dtype {getattr(dtype, 'name', images.dtype)}")


def _ensure_rgb_batch(images, name="images"):
    """Run-time form of `_check_images`' shape check, for traces where the rank or channels are unknown."""
    message = f"`{name}` must have shape [B, H, W, 3] (RGB, 0..255)"
    checks = [tf.debugging.assert_rank(images, 4, message=message)]
    with tf.control_dependencies(checks):
        checks.append(tf.debugging.assert_equal(tf.shape(images)[-1], 3, message=message))
    with tf.control_dependencies(checks):
        return tf.ensure_shape(tf.identity(images), [None, None, None, 3])


def _ensure_finite(images, name="images"):
    """`images` after a check that every pixel is finite: ValueError naming `name` for an eager tensor, a run-time
    InvalidArgumentError with the same message in a graph. (One NaN pixel would otherwise change every detection:
    TensorFlow's max pooling turns NaN into 3.4e38; one training step on it turns the weights into NaN.)"""
    message = f"`{name}` holds NaN or infinite pixel values; images must be finite RGB values in 0..255"
    if tf.executing_eagerly():
        finite = tf.math.is_finite(images)
        if not bool(tf.reduce_all(finite)):
            first = tf.where(tf.logical_not(finite))[0].numpy().tolist()
            value = float(tf.gather_nd(images, [first]).numpy()[0])
            raise ValueError(f"{message} (the first is {value} at index {first}; or build the model with "
                             "sanitize_images=True to replace them)")
        return images
    return tf.debugging.assert_all_finite(images, message)


def _sanitized(images):
    """`images` with NaN and -inf pixels replaced by 0 and +inf by 255 (finite pixels unchanged)."""
    replacement = tf.where(images > 0, tf.constant(255, images.dtype), tf.constant(0, images.dtype))
    return tf.where(tf.math.is_finite(images), images, replacement)


@contextlib.contextmanager
def _check_failures_as_value_errors():
    """Turns the run-time form of kerasdet's own input checks (an assertion or CheckNumerics inside a traced step,
    met once Keras has retraced with relaxed shapes or for data from a tf.data pipeline) into the ValueError with
    the same message that the first, eager call gives. Other errors pass unchanged."""
    try:
        yield
    except tf.errors.InvalidArgumentError as err:
        text = err.message or ""
        found = (re.search(r"assertion failed: \[((?:`x \(images\)`|`images`|`y\[|training targets).*?)\]"
                           r"(?: \[|\s*$|\n)", text)
                 or re.search(r"(`(?:x \(images\)|images)` holds NaN[^\n]*?) : Tensor had", text))
        if found is None:
            raise
        message = found.group(1).replace("\\'", "'").replace('\\"', '"')
        raise ValueError(f"{message} (found at run time, in a batch)") from err


def _eager_input_checks(model, x, y=None):
    """The checks of the first call, made on every call whose inputs are arrays or eager tensors: images RGB
    `[B, H, W, 3]` and finite, targets well formed for that batch and their values legal."""
    images = x.get("images") if isinstance(x, dict) else x
    concrete = isinstance(images, np.ndarray) or (tf.is_tensor(images) and tf.executing_eagerly())
    if concrete and not isinstance(x, (list, tuple)):
        _check_images(images, "x (images)")
        if tf.as_dtype(images.dtype).is_floating and not getattr(model, "sanitize_images", False):
            finite = np.isfinite(images).all() if isinstance(images, np.ndarray) else tf.reduce_all(
                tf.math.is_finite(images))
            if not bool(finite):
                _ensure_finite(tf.convert_to_tensor(images), "x (images)")  # raises, naming the argument
        if isinstance(y, dict):
            named = {k: np.asarray(v) if isinstance(v, (list, tuple)) else v for k, v in y.items()}
            if "classes" in named and "labels" not in named:  # keras-cv's name
                named["labels"] = named["classes"]
            _check_targets(named, images.shape[0])
    if y is not None:
        model.check_target_values(y)


def _for_workers(logs):
    """A step's logs as Keras' `fit` / `evaluate` can reduce them under MultiWorkerMirroredStrategy: Keras 3 reduces
    each value with `strategy.reduce("MEAN", value, axis=0)` there, which fails on a scalar, so each becomes `[1]` (the
    mean over the workers and that axis is the value again: the loss logged is the global batch's on every worker)."""
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) \
            or not strategy.extended._in_multi_worker_mode():  # Keras' own test for that reduction
        return logs
    return {k: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v for k, v in logs.items()}


def _apply_over_replicas(model, gradients, variables):
    """The update of one model trained on several replicas: the gradients summed over the replicas (each the gradient
    of its share of the global loss), clipped as the optimizer clips (by the whole batch's norm, as on one device;
    Keras would clip each replica's share before summing), then applied. Keras' optimizer sums what it is given over
    the replicas once more, so each replica gives it a 1/R share of the clipped sum; the optimizer's own clipping
    leaves such a share as it is (its norm is at most the limit / R). This costs a second all-reduce of the
    gradients per step. The optimizer's settings are only read here: the replicas run this in parallel threads,
    and one replica changing them would change what the others trace."""
    if not getattr(model, "_prepared_for_replicas", False):
        raise ValueError(f"{type(model).__name__} is training on {num_replicas()} replicas without "
                         "kerasdet.models.distribution.prepare_for_replicas(model): its loss normalisers and batch "
                         "norms would be per replica (docs/scaling.md)")
    optimizer = model.optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) or optimizer.loss_scale_factor is not None:
        raise ValueError("training on several replicas takes float32 or mixed_bfloat16 without loss scaling (not "
                         "mixed_float16, nor `loss_scale_factor`): the gradients would be clipped while still scaled")
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    present = [i for i, g in enumerate(gradients) if g is not None]
    summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [gradients[i] for i in present])
    summed = optimizer._clip_gradients(summed)  # the optimizer's own clipping (clipnorm, global_clipnorm or clipvalue)
    optimizer.apply_gradients(zip([g / replicas for g in summed], [variables[i] for i in present]))


def _check_targets(y, batch=None):
    """Raises TypeError/ValueError naming `y` unless it is the padded target dict of DESIGN.md §3."""
    if not isinstance(y, dict):
        raise TypeError(f"training targets `y` must be a dict with 'boxes' [B, M, 4] and 'labels' [B, M]; got {type(y).__name__}")
    label_key = "nodes" if "nodes" in y and "labels" not in y else "labels"  # YOLO9000 names WordTree nodes
    missing = [k for k in ("boxes", label_key) if k not in y]
    if missing:
        raise ValueError(f"training targets `y` lack {missing}; they have {sorted(y)} (DESIGN.md §3)")
    boxes, labels = y["boxes"], y[label_key]
    for key, value in (("boxes", boxes), (label_key, labels)):
        if getattr(value, "shape", None) is None:
            raise TypeError(f"`y['{key}']` must be a tensor or array; got {type(value).__name__}")
    if len(boxes.shape) != 3 or (boxes.shape[-1] is not None and boxes.shape[-1] != 4):
        raise ValueError(f"`y['boxes']` must have shape [B, M, 4] (padded with -1); got {tuple(boxes.shape)}")
    if len(labels.shape) != 2:
        raise ValueError(f"`y['{label_key}']` must have shape [B, M] (padded with -1); got {tuple(labels.shape)}")
    for axis, what in ((0, "B"), (1, "M")):
        b, l = boxes.shape[axis], labels.shape[axis]
        if b is not None and l is not None and b != l:
            raise ValueError(f"`y['boxes']` {tuple(boxes.shape)} and `y['{label_key}']` {tuple(labels.shape)} "
                             f"disagree on {what} (expected [B, M, 4] and [B, M])")
    crowd = y.get("is_crowd")
    if crowd is not None and (getattr(crowd, "shape", None) is None or tuple(crowd.shape) != tuple(labels.shape)):
        raise ValueError(f"`y['is_crowd']` must be a bool array shaped like `y['labels']` {tuple(labels.shape)}; "
                         f"got {tuple(getattr(crowd, 'shape', ())) or type(crowd).__name__}")
    if batch is not None and boxes.shape[0] is not None and boxes.shape[0] != batch:
        raise ValueError(f"training targets `y` hold {boxes.shape[0]} images but the images batch has {batch}")


def _real_number(value, name):
    """`value` as a float, or a TypeError naming `name` (strings and bools are not numbers here)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number; got {type(value).__name__} {value!r}")
    return float(value)


def checked_indices(given, upper, fractional, too_large, below):
    """`given` (class or node indices, -1 padding) as int32, with graph checks that raise `fractional` for a
    non-whole float (0.7 or 1.9 would be truncated to an index: refused instead), `too_large` for an index >= `upper`
    and `below` for one below -1 (the messages name the key)."""
    given = tf.convert_to_tensor(given)
    integral = []
    if given.dtype.is_floating:
        integral = [tf.debugging.assert_equal(given, tf.round(given), message=fractional)]
    with tf.control_dependencies(integral):
        indices = tf.cast(given, tf.int32)
    checks = [tf.debugging.assert_less(indices, upper, message=too_large),
              tf.debugging.assert_greater_equal(indices, -1, message=below)]
    with tf.control_dependencies(checks):
        return tf.identity(indices)


def check_finite_scales(**scales):
    """Each keyword a loss weight: a finite number >= 0 (not a bool), else ValueError naming it."""
    for name, value in scales.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}")


def _warn_if_unit_range(images):
    """Warns once per call site when float images look like 0..1 (every kerasdet model takes 0..255)."""
    import warnings

    values = np.asarray(images)
    if values.dtype.kind == "f" and values.size and np.nanmax(values) <= 1.0 and np.any(values != 0):
        warnings.warn("the images are floats with a maximum of at most 1.0: kerasdet models take RGB pixel values "
                      "0..255 (multiply by 255), and on 0..1 images they find almost nothing", UserWarning,
                      stacklevel=3)


def _image_list(inputs):
    """The list of `[H, W, 3]` images of a list/tuple input, or None for other inputs."""
    if not isinstance(inputs, (list, tuple)):
        return None
    images = list(inputs)
    for i, image in enumerate(images):
        shape = getattr(image, "shape", None)
        if shape is None or len(shape) != 3:
            raise ValueError(f"a list of images must hold [H, W, 3] arrays; `images[{i}]` has shape "
                             f"{None if shape is None else tuple(shape)}")
    return images


def _result(metric):
    result = metric.result()
    return result if isinstance(result, dict) else {metric.name: result}


#: the prediction keys every family returns (DESIGN.md §3); families add theirs in `extra_output_keys`
BASE_OUTPUT_KEYS = ("boxes", "scores", "labels", "num_detections")

#: box formats accepted by `bounding_box_format` (Keras' names)
BOX_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw", "rel_xyxy", "rel_yxyx", "rel_xywh",
               "rel_center_xywh")


def split_inputs(inputs, needs_rois=False, takes_rois=None):
    """`(images, rois)` from a model input: an image batch, or a dict `{"images", "rois"}`.

    Raises TypeError / ValueError naming the key when the dict is malformed, or when `needs_rois`
    and no rois were given.
    """
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - {"images", "rois"})
        if unknown:
            raise ValueError(f"model inputs as a dict take the keys 'images' and 'rois'; got extra keys {unknown}")
        if "images" not in inputs:
            raise ValueError(f"model inputs as a dict need 'images'; got keys {sorted(inputs)}")
        images, rois = inputs["images"], inputs.get("rois")
    else:
        images, rois = inputs, None
    if rois is not None and not (needs_rois if takes_rois is None else takes_rois):
        raise ValueError("this family computes its own proposals: its inputs are the images alone, not 'rois' "
                         "(families that classify external proposals, such as Fast R-CNN, take them)")
    if needs_rois and rois is None:
        raise ValueError("this family detects on external region proposals: pass inputs as "
                         "{'images': [B, H, W, 3], 'rois': [B, R, 4] xyxy pixels (padding rows -1)}")
    if rois is not None:
        if getattr(rois, "shape", None) is None:
            raise TypeError(f"`rois` must be a tensor or array [B, R, 4]; got {type(rois).__name__}")
        shape = tuple(rois.shape)
        if len(shape) != 3 or shape[-1] not in (None, 4):
            raise ValueError(f"`rois` must have shape [B, R, 4] (xyxy pixels, padding rows -1); got {shape}")
    return images, rois


def pad_images(images, divisor, value=(0.0, 0.0, 0.0), min_size=0):
    """Pads `[B, H, W, 3]` images at the bottom and right to multiples of `divisor` (and to at least `min_size`
    per side, rounded up to the divisor) with the RGB `value` (float32 out). Boxes in the input's pixels stay
    valid in the padded image."""
    images = tf.cast(images, tf.float32)
    divisor = max(int(divisor), 1)
    least = -(-int(min_size) // divisor) * divisor
    if divisor <= 1 and least <= 1:
        return images
    hw = tf.shape(images)[1:3]
    extra = tf.maximum((-hw) % divisor, least - hw)
    value = tf.constant(value, tf.float32)
    padded = tf.pad(images - value, [[0, 0], [0, extra[0]], [0, extra[1]], [0, 0]]) + value
    height, width = images.shape[1], images.shape[2]
    static = [images.shape[0], None if height is None else max(-(-height // divisor) * divisor, least),
              None if width is None else max(-(-width // divisor) * divisor, least), images.shape[3]]
    return tf.ensure_shape(padded, static)


def with_layer_config(serialized, **changes):
    """A serialized layer (`keras.saving.serialize_keras_object`'s dict) with `changes` in its config; None (the
    model's default layer, made from the model's own arguments) stays None."""
    if serialized is None:
        return None
    if not isinstance(serialized, dict) or "config" not in serialized:
        raise ValueError(f"expected a serialized layer (a dict with a 'config'); got {type(serialized).__name__}")
    return dict(serialized, config=dict(serialized["config"], **changes))


def _parts(obj):
    """The public attributes of `obj` that are Keras layers or non-empty lists of them."""
    def is_part(value):
        return isinstance(value, keras.layers.Layer) or (
            isinstance(value, (list, tuple)) and value and all(isinstance(v, keras.layers.Layer) for v in value))
    return sorted(k for k, v in vars(obj).items() if not k.startswith("_") and is_part(v))


def _layers_at(model, path):
    """The layers at a dotted attribute `path` of `model` ("backbone", "box_head.fcs"); ValueError naming the parts
    there are when a step names none."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"a part to freeze is a name such as 'backbone'; got {path!r}")
    obj, walked = model, type(model).__name__
    for step in path.split("."):
        value = getattr(obj, step, None) if not step.startswith("_") else None
        if step not in _parts(obj):
            raise ValueError(f"{walked} has no part {step!r} to freeze; its parts are {_parts(obj)}")
        obj, walked = value, f"{walked}.{step}"
    return list(obj) if isinstance(obj, (list, tuple)) else [obj]


class StandardTargets(dict):
    """Targets already through `Detector.standardize_targets` (xyxy pixels, int32 labels, checked)."""


#: where `shuffle` comes among `keras.Model.fit`'s positional arguments after x and y (batch_size, epochs, verbose,
#: callbacks, validation_split, validation_data, shuffle)
_FIT_SHUFFLE_POSITION = 6


class Detector(keras.Model):
    """Base class of kerasdet's detectors: input checks, targets in the forward pass, losses per term,
    decode + NMS (+ heads on the kept boxes) in the graph.

    A family subclasses it and implements:

    - `call(inputs, training=False, targets=None)`: raw outputs (a dict). `inputs` is a `[B, H, W, 3]`
      RGB batch in 0..255 or a dict `{"images", "rois"}` (`split_inputs` unpacks it); `targets` are the
      padded training targets (xyxy pixels, key `"labels"`), given in training and evaluation steps so
      that two-stage families can sample proposals against them;
    - `detection_losses(images, targets, raw)`: a dict of scalar loss terms (their sum is the loss),
      named in `loss_terms` (a class attribute or a property that depends on the constructor);
    - `decode_candidates(raw, images)`: `(boxes, scores)` for NMS, boxes `[B, K, 4]` xyxy pixels (or
      `[B, K, C, 4]` per class) and scores `[B, K, C]` probabilities;
    - optionally `refine_detections(detections, raw, inputs)`: heads that run on the boxes NMS keeps
      (masks, keypoints), adding the keys listed in `extra_output_keys`.

    The base class then gives: `detect(inputs)` and `predict()` returning the prediction dict of
    DESIGN.md §3 (`output_keys`; NMS inside the graph), a training step whose forward pass sees the
    targets, `fit()` with a per-term loss log, `evaluate()` feeding detection metrics such as
    `kerasdet.metrics.COCOMetric` with decoded predictions (training steps never decode), compile
    defaults, and `get_config`. Targets may use `"classes"` for `"labels"` (keras-hub / keras-cv) and
    boxes in `bounding_box_format`; predictions come back in the same format. Labels must lie in
    [-1, num_classes) (-1 is padding); `"is_crowd"` rows are never negatives. Calling the model checks the
    images first (rank 4, 3 channels, uint8 or float), and `detect` / `predict` on a batch of 0 images
    return empty padded outputs without running the network on it.

    Args:
        num_classes: number of object classes (labels 0..num_classes-1; background is internal).
        class_names: optional list of `num_classes` names.
        score_threshold: detections with a lower score are dropped before NMS.
        nms_iou_threshold: per-class NMS IoU threshold.
        max_detections: detections kept per image (the padded size of the outputs).
        bounding_box_format: format of the targets' and the predictions' boxes, one of Keras' names
            (`"xyxy"` pixels by default, `"yxyx"`, `"xywh"`, `"center_xywh"`, `"rel_xyxy"`...).
        sanitize_images: False (default): an image with a NaN or infinite pixel is a `ValueError` naming `images`
            and the first such pixel's index, at every call (predict, detect, fit, evaluate, the model itself).
            True: such pixels are replaced instead (NaN and -inf by 0, +inf by 255); finite pixels are untouched.
            Saved in the config, so an export of the model sanitises too.
        xla_forward: True compiles the network's forward pass (backbone, neck, heads) with XLA for `detect` and
            `predict`, decoding and NMS outside it (TensorFlow has no XLA kernel for NMS); images are padded to the
            family's `size_divisor` first, so each padded size compiles once. Off by default: on the CPUs measured
            (docs/decisions.md, `benchmarks/models.py --xla`) it was slower than TensorFlow's own kernels. Families
            whose forward pass holds NMS or RoI pooling (Faster / Mask R-CNN) refuse it. Training is unaffected
            (`compile(jit_compile=...)` decides there); `kerasdet.export.saved_model` leaves XLA out unless asked.
        **kwargs: `keras.Model` arguments (`name`...).

    Example:
        >>> model = kerasdet.models.RetinaNet.compact(num_classes=10)
        >>> model.compile()                       # AdamW, no XLA (NMS has no XLA kernel)
        >>> model.fit(train_ds, epochs=10)        # (images, {"boxes", "labels"}) batches
        >>> model.predict(images)["boxes"].shape  # (B, 100, 4)
    """

    #: names of the terms `detection_losses` returns (each gets a Mean tracker in the training log)
    loss_terms: tuple = ()
    #: prediction keys beyond boxes/scores/labels/num_detections (e.g. "masks", "keypoints")
    extra_output_keys: tuple = ()
    #: True for families that detect on external proposals: inputs are {"images", "rois"}
    needs_rois: bool = False
    #: True for families whose `call` takes `image_sizes` (int `[B, 2]`, each image's height and width before
    #: padding; `__call__` passes them) to keep proposals inside each image's own pixels
    takes_image_sizes: bool = False
    #: True for families whose loss normalisers are global under a `tf.distribute` strategy (summed over the replicas,
    #: `kerasdet.ops.replicas`) and whose training step keeps no per-replica state: their replicas train one model,
    #: the one single-device training on the global batch trains (`kerasdet train --strategy`; docs/scaling.md)
    trains_on_replicas: bool = False
    #: False for families whose forward pass (`call`) holds ops without XLA kernels (NMS, RoI pooling)
    supports_xla_forward: bool = True

    def __init__(self, num_classes, class_names=None, score_threshold=0.05, nms_iou_threshold=0.5,
                 max_detections=100, bounding_box_format="xyxy", sanitize_images=False, xla_forward=False, **kwargs):
        super().__init__(**kwargs)
        for name, flag in (("sanitize_images", sanitize_images), ("xla_forward", xla_forward)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"`{name}` must be a bool; got {flag!r}")
        if xla_forward and (not self.supports_xla_forward or self.needs_rois):
            raise ValueError(f"{type(self).__name__} cannot take `xla_forward=True`: its forward pass holds ops that "
                             "have no XLA kernel (NMS, RoI pooling)")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive int; got {num_classes!r}")
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) != num_classes:
                raise ValueError(f"`class_names` has {len(class_names)} names, `num_classes` is {num_classes}")
        score_threshold = _real_number(score_threshold, "score_threshold")
        nms_iou_threshold = _real_number(nms_iou_threshold, "nms_iou_threshold")
        if not 0.0 <= score_threshold < 1.0:
            raise ValueError(f"`score_threshold` must be in [0, 1); got {score_threshold}")
        if not 0.0 <= nms_iou_threshold <= 1.0:
            raise ValueError(f"`nms_iou_threshold` must be in [0, 1]; got {nms_iou_threshold}")
        if not isinstance(max_detections, int) or max_detections < 1:
            raise ValueError(f"`max_detections` must be a positive int; got {max_detections!r}")
        if bounding_box_format not in BOX_FORMATS:
            raise ValueError(f"`bounding_box_format` must be one of {BOX_FORMATS}; got {bounding_box_format!r}")
        self.num_classes = num_classes
        self.class_names = class_names
        self.score_threshold = float(score_threshold)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.max_detections = max_detections
        self.bounding_box_format = bounding_box_format
        self.sanitize_images = bool(sanitize_images)
        self.xla_forward = bool(xla_forward)
        object.__setattr__(self, "_xla_suspension", threading.local())  # per thread: set while an export traces
        # inputs are converted by __call__ (images keep their dtype; targets stay float32 under mixed precision)
        self._convert_input_args = False
        object.__setattr__(self, "_loss_trackers", {})
        self._set_detection_metrics([])

    # -- to implement ---------------------------------------------------------------------------------

    def detection_losses(self, images, targets, raw) -> dict:
        raise NotImplementedError

    def decode_candidates(self, raw, images):
        raise NotImplementedError

    def refine_detections(self, detections, raw, inputs) -> dict:
        """Heads that run on the boxes NMS kept (xyxy pixels); the base class returns `detections` as is."""
        return detections

    @property
    def size_divisor(self) -> int:
        """Images are padded (bottom/right, with `input_pad_value`) to multiples of this before the network sees
        them, so that every stride-2 layer and pyramid level lines up at any input size; boxes are reported
        in the input's pixels. Families with a feature pyramid return its largest stride."""
        return 1

    @property
    def min_input_size(self) -> int:
        """Images are padded (as for `size_divisor`) to at least this many pixels per side: families whose
        network has unpadded layers (SSD300's last extras) need a smallest input."""
        return 0

    @property
    def input_pad_value(self) -> tuple:
        """The RGB pixel images are padded with: the one the backbone's preprocessing maps to zero."""
        from kerasdet.backbones._common import zero_input_value

        backbone = getattr(self, "backbone", None)
        return zero_input_value(backbone) if backbone is not None else (0.0, 0.0, 0.0)

    @property
    def output_keys(self) -> tuple:
        """The keys `predict`, the export and the CLI return for this model."""
        return BASE_OUTPUT_KEYS + tuple(self.extra_output_keys)

    def output_signature(self) -> dict:
        """`tf.TensorSpec` of each of one image's outputs (no batch axis; `None` where the image's size decides).
        Families with extra outputs add theirs."""
        n = self.max_detections
        return {"boxes": tf.TensorSpec([n, 4], tf.float32), "scores": tf.TensorSpec([n], tf.float32),
                "labels": tf.TensorSpec([n], tf.int32), "num_detections": tf.TensorSpec([], tf.int32)}

    # -- inputs and targets ---------------------------------------------------------------------------

    def split_inputs(self, inputs):
        """`(images, rois)` of a model input (see `split_inputs`); rois are None for image-only inputs."""
        return split_inputs(inputs, needs_rois=self.needs_rois)

    def standardize_targets(self, targets, images):
        """Training targets as the families read them: float32 xyxy pixel `"boxes"` clipped to the image, int32
        `"labels"` in [-1, num_classes) (checked), bool `"is_crowd"`; `"classes"` accepted for `"labels"`; other
        keys (masks, keypoints) passed through. Boxes with no area inside the image (zero-area, inverted,
        wholly outside) become padding rows. Raises naming the key for a malformed dict."""
        if isinstance(targets, dict) and "labels" not in targets and "classes" in targets:
            targets = {("labels" if k == "classes" else k): v for k, v in targets.items()}
        if isinstance(targets, StandardTargets):
            return targets
        _check_targets(targets, images.shape[0])
        out = StandardTargets(targets)
        boxes = tf.cast(targets["boxes"], tf.float32)
        labels = checked_indices(
            targets["labels"], self.num_classes,
            fractional="`y['labels']` must hold whole class indices; got a fractional label",
            too_large=(f"`y['labels']` must lie in [-1, {self.num_classes}) for a model with "
                       f"num_classes={self.num_classes}; a label is too large (do the dataset's classes match the "
                       "model's?)"),
            below="`y['labels']` must lie in [-1, num_classes): -1 is the only padding value; got a label below -1")
        hw = tf.cast(tf.shape(images)[1:3], tf.float32)
        if self.bounding_box_format != "xyxy":
            converted = convert_format(boxes, self.bounding_box_format, "xyxy", height=hw[0], width=hw[1])
            boxes = tf.where(labels[..., None] >= 0, converted, -1.0)
        with tf.control_dependencies([tf.debugging.assert_all_finite(
                boxes, message="`y['boxes']` holds NaN or infinite values")]):
            boxes, labels = self._drop_degenerate(boxes, labels, hw)
        # one padding row more, so that gathers by matched index stay valid when an image batch has no rows (M = 0)
        out["boxes"] = tf.pad(boxes, [[0, 0], [0, 1], [0, 0]], constant_values=-1.0)
        out["labels"] = tf.pad(labels, [[0, 0], [0, 1]], constant_values=-1)
        if "is_crowd" in targets:
            out["is_crowd"] = tf.pad(tf.cast(targets["is_crowd"], tf.bool), [[0, 0], [0, 1]])
        return out

    @staticmethod
    def _drop_degenerate(boxes, labels, hw):
        """Boxes clipped to the image; rows left with no area (zero-area, inverted, wholly outside) become
        padding (box -1, label -1), so that no family encodes a degenerate box."""
        clipped = clip_boxes(boxes, hw)
        keep = (labels >= 0) & (clipped[..., 2] > clipped[..., 0]) & (clipped[..., 3] > clipped[..., 1])
        return tf.where(keep[..., None], clipped, -1.0), tf.where(keep, labels, -1)

    # -- prediction -----------------------------------------------------------------------------------

    def postprocess(self, raw, inputs, image_sizes=None) -> dict:
        """Decodes raw outputs, runs per-class NMS and the heads on the kept boxes: the prediction dict.
        `image_sizes` `[B, 2]` (height, width) clips each image's boxes to its own size (images of different
        sizes padded into one batch)."""
        images, _ = self.split_inputs(inputs)
        detections = self.decode_and_suppress(raw, images)
        if image_sizes is not None:
            clipped = clip_boxes(detections["boxes"], tf.cast(image_sizes, tf.float32)[:, None, :])
            detections = dict(detections, boxes=tf.where(detections["labels"][..., None] >= 0, clipped, -1.0))
        detections = self.refine_detections(detections, raw, inputs)
        return self._to_output_format(detections, images)

    def decode_and_suppress(self, raw, images) -> dict:
        """The decoding and final NMS of `postprocess`: `decode_candidates`, then per-class NMS with the model's
        thresholds -> `{"boxes", "scores", "labels", "num_detections"}` (xyxy pixels), before the heads that run
        on the kept boxes. `benchmarks/models.py --share` times it alone.

        Example:
            >>> raw = model(images, training=False)
            >>> model.decode_and_suppress(raw, images)["num_detections"]
        """
        boxes, scores = self.decode_candidates(raw, images)
        # a candidate whose box has no area inside the image (e.g. from an anchor in the padding) is no detection
        has_area = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
        scores = tf.where(has_area if has_area.shape.rank == scores.shape.rank else has_area[..., None], scores, 0.0)
        return batched_non_max_suppression(
            boxes,
            scores,
            iou_threshold=self.nms_iou_threshold,
            score_threshold=self.score_threshold,
            max_detections=self.max_detections,
        )

    def _to_output_format(self, detections, images):
        if self.bounding_box_format == "xyxy":
            return detections
        hw = tf.cast(tf.shape(images)[1:3], tf.float32)
        converted = convert_format(detections["boxes"], "xyxy", self.bounding_box_format, height=hw[0], width=hw[1])
        return dict(detections, boxes=tf.where(detections["labels"][..., None] >= 0, converted, -1.0))

    def __call__(self, *args, **kwargs):
        self._fuse_batch_norms()
        inputs = args[0] if args else kwargs.get("inputs")
        targets = kwargs.get("targets")
        if targets is not None:
            if not isinstance(targets, StandardTargets) and inputs is not None:
                targets = self.standardize_targets(targets, tf.convert_to_tensor(self.split_inputs(inputs)[0]))
            kwargs["targets"] = dict(targets)  # layers take plain nested structures
        image_sizes = kwargs.pop("image_sizes", None)
        if inputs is not None:
            images, rois = self.split_inputs(inputs)
            _check_images(images)
            if not isinstance(images, keras.KerasTensor):
                images = tf.convert_to_tensor(images)
                if images.shape.rank is None or images.shape[-1] is None:
                    images = _ensure_rgb_batch(images)
                images = self._finite_pixels(images)
                if self.takes_image_sizes:
                    if image_sizes is None:  # the batch's own size, before padding to the size divisor
                        image_sizes = tf.tile(tf.shape(images)[None, 1:3], [tf.shape(images)[0], 1])
                    kwargs["image_sizes"] = tf.cast(image_sizes, tf.int32)
                # the network sees the images padded to its size divisor; boxes stay in the input's pixels
                images = self._pad_for_network(images)
                rois = None if rois is None else tf.cast(rois, tf.float32)
                inputs = images if rois is None else {"images": images, "rois": rois}
                args = (inputs,) + tuple(args[1:]) if args else args
                if not args:
                    kwargs["inputs"] = inputs
        return super().__call__(*args, **kwargs)

    def detect(self, inputs) -> dict:
        """Detections for `[B, H, W, 3]` RGB images in 0..255 (or `{"images", "rois"}`): the dict of
        `output_keys` (boxes/scores/labels/num_detections, plus the family's extra keys).

        Also takes one `[H, W, 3]` image (outputs without the batch axis) or a list of `[H, W, 3]` images of
        any sizes (a list of per-image dicts: images of one size are detected as one batch, each size apart, so an
        image's detections are those it gets alone). A batch of 0 images gives
        outputs with batch 0 (the model runs on one blank image, sliced away), whether the batch size is known
        when tracing or only at run time.
        """
        listed = _image_list(inputs)
        if listed is not None:
            return self._detect_list(listed)
        single = getattr(inputs, "shape", None)
        if single is not None and len(single) == 3:
            return tf.nest.map_structure(lambda t: t[0], self.detect(tf.convert_to_tensor(inputs)[None]))
        if tf.executing_eagerly() and not isinstance(inputs, dict):
            _warn_if_unit_range(inputs)
        return self.detect_padded(inputs)

    def detect_padded(self, inputs, image_sizes=None) -> dict:
        """`detect` for a batch of images of different sizes padded at the bottom/right into one tensor (as the
        export's `serving_bytes` decodes them): `image_sizes` int `[B, 2]` (height, width) gives each image's own
        size. Each image is then cropped to its size and detected on alone (padded only to the model's
        `size_divisor`), so its detections do not depend on its batch mates: they equal those of the image given
        alone. Pasted masks come at the batch's padded size (zero outside the image)."""
        images, rois = self.split_inputs(inputs)
        _check_images(images)
        images = tf.convert_to_tensor(images)
        if images.shape.rank is None or images.shape[-1] is None:
            images = _ensure_rgb_batch(images)
        if rois is not None:
            rois = tf.cast(rois, tf.float32)
        detect = self._detect if image_sizes is None else self._detect_each
        batch = images.shape[0]
        if batch is not None and batch > 0:
            return detect(images, rois, image_sizes)
        count = tf.shape(images)[0]
        if batch == 0:
            safe = self._blank_image(images)
            safe_rois = None if rois is None else -tf.ones([1, 1, 4], tf.float32)
        else:
            safe = tf.cond(count > 0, lambda: images, lambda: self._blank_image(images))
            safe_rois = None if rois is None else tf.cond(count > 0, lambda: rois, lambda: -tf.ones([1, 1, 4]))
        safe_sizes = None
        if image_sizes is not None:
            hw = tf.shape(safe)[1:3]
            safe_sizes = tf.cond(count > 0, lambda: tf.cast(image_sizes, tf.int32), lambda: hw[None])
        return tf.nest.map_structure(lambda t: t[:count], detect(safe, safe_rois, safe_sizes))

    def _detect(self, images, rois=None, image_sizes=None):
        inputs = images if rois is None else {"images": images, "rois": rois}
        if self.xla_forward and not getattr(self._xla_suspension, "active", False):
            raw = self._compiled_forward(self._padded_for_network(images))
        else:
            raw = self(inputs, training=False, image_sizes=image_sizes)
        return self.postprocess(raw, inputs, image_sizes)

    def _padded_for_network(self, images):
        """`images` checked (or sanitised) and padded as `__call__` does it, before the compiled call: XLA then
        compiles once per padded size, and the finiteness check runs outside XLA, whose CPU kernel for it lets
        everything through."""
        _check_images(images)
        return self._pad_for_network(self._finite_pixels(tf.convert_to_tensor(images)))

    def _finite_pixels(self, images):
        """Float `images` checked finite, or sanitised with `sanitize_images`; integer images as they are."""
        if not images.dtype.is_floating:
            return images
        return _sanitized(images) if self.sanitize_images else _ensure_finite(images)

    def _pad_for_network(self, images):
        """`images` padded (bottom/right) to the size the network sees; boxes stay in the input's pixels."""
        return pad_images(images, self.size_divisor, self.input_pad_value, self.min_input_size)

    @property
    def _compiled_forward(self):
        """The forward pass under `tf.function(jit_compile=True)`, made once per model (not tracked by Keras)."""
        compiled = self.__dict__.get("_xla_forward_fn")
        if compiled is None:
            compiled = tf.function(lambda images: self(images, training=False), jit_compile=True)
            object.__setattr__(self, "_xla_forward_fn", compiled)
        return compiled

    @contextlib.contextmanager
    def without_xla_forward(self):
        """Traces `detect` without XLA inside the block, whatever `xla_forward` says (exports use it).

        Example:
            >>> with model.without_xla_forward():
            ...     graph = tf.function(model.detect).get_concrete_function(tf.TensorSpec([None, None, None, 3]))
        """
        state = self._xla_suspension  # this thread's: a detect traced in another thread meanwhile keeps XLA
        before = getattr(state, "active", False)
        state.active = True
        try:
            yield self
        finally:
            state.active = before

    def _detect_each(self, images, rois, image_sizes):
        """Detections of each image of a padded batch on its own: cropped to its `image_sizes` row, detected as a
        batch of one, pasted masks padded back to the batch's size."""
        sizes = tf.cast(image_sizes, tf.int32)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        signature = {k: v for k, v in self.output_signature().items() if k in self.output_keys}
        missing = set(self.output_keys) - set(signature)
        if missing:
            raise NotImplementedError(f"{type(self).__name__}.output_signature() lacks {sorted(missing)}")
        checks = [tf.debugging.assert_rank(sizes, 2, message="`image_sizes` must be [B, 2] (height, width)"),
                  tf.debugging.assert_positive(sizes, message="`image_sizes` must be positive"),
                  tf.debugging.assert_less_equal(sizes, tf.shape(images)[1:3][None],
                                                 message="`image_sizes` must fit in the batch's height and width")]
        with tf.control_dependencies(checks):
            sizes = tf.identity(sizes)

        def one(i):
            image = images[i:i + 1, : sizes[i, 0], : sizes[i, 1]]
            out = {k: v[0] for k, v in self._detect(image, None if rois is None else rois[i:i + 1]).items()}
            if "masks" in out and getattr(self, "mask_output", "pasted") == "pasted":
                out["masks"] = tf.pad(out["masks"], [[0, 0], [0, height - sizes[i, 0]], [0, width - sizes[i, 1]]])
            return {k: out[k] for k in signature}

        return tf.map_fn(one, tf.range(tf.shape(images)[0]), fn_output_signature=signature)

    def _detect_list(self, images):
        """Detections for a list of `[H, W, 3]` images, one dict per image. Images of the same size are detected
        as one batch, each size apart, so an image's detections do not depend on the others in the list."""
        if self.needs_rois:
            raise ValueError("a list of images carries no rois: this family detects on {'images', 'rois'} batches")
        if not images:
            return []
        for image in images:
            _check_images(tf.convert_to_tensor(image)[None], "images")
        tensors = [tf.cast(tf.convert_to_tensor(image), tf.float32) for image in images]
        if tf.executing_eagerly():
            for image in tensors:
                _warn_if_unit_range(image)
        shapes = [tuple(t.shape[:2]) for t in tensors]
        if any(None in shape for shape in shapes):  # sizes known only when the graph runs: one padded batch
            sizes = tf.stack([tf.shape(t)[:2] for t in tensors])
            height, width = tf.reduce_max(sizes[:, 0]), tf.reduce_max(sizes[:, 1])
            batch = tf.stack([tf.pad(t, [[0, height - tf.shape(t)[0]], [0, width - tf.shape(t)[1]], [0, 0]])
                              for t in tensors])
            out = self.detect_padded(batch, sizes)
            results = [{k: v[i] for k, v in out.items()} for i in range(len(tensors))]
            for one, t in zip(results, tensors):
                if "masks" in one and getattr(self, "mask_output", "pasted") == "pasted":
                    one["masks"] = one["masks"][:, : tf.shape(t)[0], : tf.shape(t)[1]]
            return results
        results = [None] * len(tensors)
        for shape in dict.fromkeys(shapes):
            members = [i for i, s in enumerate(shapes) if s == shape]
            out = self.detect_padded(tf.stack([tensors[i] for i in members]))
            for row, i in enumerate(members):
                results[i] = {k: v[row] for k, v in out.items()}
        return results

    @staticmethod
    def _blank_image(images):
        """One zero image of the batch's size (256 where a side is 0), standing in for an empty batch."""
        hw = tf.shape(images)[1:3]
        hw = tf.where(hw > 0, hw, 256)
        return tf.zeros(tf.concat([[1], hw, [3]], axis=0), images.dtype)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.detect(x)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict` returning the detections dict (numpy). Also takes one `[H, W, 3]` image (outputs
        without the batch axis) or a list of images of any sizes (a list of per-image dicts, see `detect`); an
        array of 0 images gives empty outputs. Warns when float images look like 0..1 (models take 0..255)."""
        if isinstance(x, (str, bytes, os.PathLike)):
            raise TypeError(f"`x` must be images (an array [B, H, W, 3] or [H, W, 3], a list of images or a dataset); "
                            f"got the {type(x).__name__} {x!r}: read files with kerasdet.data.read_image(path)")
        if _image_list(x) is not None:
            return [tf.nest.map_structure(lambda t: np.asarray(t), one) for one in self.detect(x)]
        images = x.get("images") if isinstance(x, dict) else x
        shape = getattr(images, "shape", None)
        if shape is not None and len(shape) == 3 and not isinstance(x, dict):
            return {k: v[0] for k, v in self.predict(np.asarray(x)[None], *args, **kwargs).items()}
        if shape is not None and len(shape) > 0 and shape[0] == 0:
            return tf.nest.map_structure(lambda t: t.numpy(), self.detect(x))
        if isinstance(images, np.ndarray) or tf.is_tensor(images) and tf.executing_eagerly():
            _eager_input_checks(self, x)
            _warn_if_unit_range(images)
        with _check_failures_as_value_errors():
            return super().predict(x, *args, **kwargs)

    # -- training -------------------------------------------------------------------------------------

    def check_target_values(self, y):
        """Eager check of targets given as arrays (fit / train_on_batch / evaluate with `y`): labels in
        [-1, num_classes), finite boxes. Raises ValueError naming `y['labels']` / `y['boxes']` and the value.
        (Targets inside a tf.data pipeline are checked in the graph, with the same rules.)"""
        if not isinstance(y, dict):
            return
        key = "labels" if "labels" in y else "classes"
        labels = y.get(key)
        if labels is not None and (isinstance(labels, np.ndarray) or tf.is_tensor(labels) and tf.executing_eagerly()):
            values = np.asarray(labels)
            if values.dtype.kind == "f" and values.size and not np.array_equal(values, np.round(values)):
                bad = values[values != np.round(values)].ravel()[0]
                raise ValueError(f"`y['{key}']` holds the label {bad:g}: labels must be whole class indices "
                                 f"(a fractional label would be truncated to a class)")
            if values.dtype.kind not in "iuf" and values.size:
                raise TypeError(f"`y['{key}']` must hold integer class indices; got dtype {values.dtype}")
            if values.size and values.max() >= self.num_classes:
                raise ValueError(f"`y['{key}']` holds the label {int(values.max())}, but this model has "
                                 f"num_classes={self.num_classes}: labels must lie in [-1, {self.num_classes}) "
                                 "(do the dataset's classes match the model's?)")
            if values.size and values.min() < -1:
                raise ValueError(f"`y['{key}']` holds the label {int(values.min())}: labels must lie in "
                                 f"[-1, {self.num_classes}), with -1 the only padding value")
        boxes = y.get("boxes")
        if boxes is not None and (isinstance(boxes, np.ndarray) or tf.is_tensor(boxes) and tf.executing_eagerly()):
            if not np.isfinite(np.asarray(boxes, np.float64)).all():
                raise ValueError("`y['boxes']` holds NaN or infinite values")

    def _non_finite_guard(self):
        """The `GuardState` of this model (made on first use, outside any graph, untracked by Keras)."""
        state = self.__dict__.get("_guard_state")
        if state is None:
            with tf.init_scope():
                state = GuardState()
            self.__dict__["_guard_state"] = state
        return state

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds a model made under a strategy from the first batch averaged over the replicas with an eager
        # `strategy.reduce`, which MultiWorkerMirroredStrategy cannot do on the batch's per-replica images: the first
        # replica's share is taken instead (only its shapes and dtypes matter for the build)
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            break
        else:
            return super()._maybe_symbolic_build(data_batch=data_batch)
        data_batch = tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v,
            batch)
        return super()._maybe_symbolic_build(data_batch=data_batch)

    def fit(self, x=None, y=None, *args, stop_on_non_finite=True, first_batch=0, **kwargs):
        """`keras.Model.fit`, with the targets checked and, unless `stop_on_non_finite=False`, training stopped by
        a `FloatingPointError` naming the batch at the first step whose loss or gradients are not finite (that
        step is not applied: the weights stay as they were before it; see `kerasdet.models._non_finite_guard`).
        `first_batch`: the batch of `initial_epoch` that the data starts at (a run resumed in the middle of an
        epoch), so that the batch named is the epoch's own. A `tf.data.Dataset` is taken in its own order:
        `shuffle` defaults to False for one (Keras' default True cannot shuffle a dataset and only warns that it
        does not)."""
        _eager_input_checks(self, x, y)
        if isinstance(x, tf.data.Dataset) and "shuffle" not in kwargs and len(args) <= _FIT_SHUFFLE_POSITION:
            kwargs["shuffle"] = False
        self._non_finite_guard().reset()
        self._build_optimizer_before_tracing()
        if stop_on_non_finite:
            callbacks = list(kwargs.pop("callbacks", None) or [])
            kwargs["callbacks"] = callbacks + [StopOnNonFiniteStep(self._non_finite_guard(), first_batch=first_batch)]
        with _check_failures_as_value_errors():
            return super().fit(x, y, *args, **kwargs)

    def _build_optimizer_before_tracing(self):
        """Makes the optimizer's variables eagerly once every layer has made its own. Without a distribution strategy Keras
        leaves them to the first trace of the training step, and a `tf.function` that creates variables is traced
        twice: for a detector that is 10-15 s more before the first step on 2 CPU cores."""
        optimizer = getattr(self, "optimizer", None)
        if (optimizer is None or optimizer.built or getattr(self, "_distribute_strategy", None) is not None
                or not all(layer.built or type(layer).build is keras.layers.Layer.build  # (no variables to make)
                           for layer in self._flatten_layers())):
            return
        optimizer.build(self.trainable_variables)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        """`keras.Model.train_on_batch`; a step whose loss or gradients are not finite is not applied and raises
        `FloatingPointError`."""
        _eager_input_checks(self, x, y)
        self._non_finite_guard().reset()
        self._build_optimizer_before_tracing()
        with _check_failures_as_value_errors():
            out = super().train_on_batch(x, y, *args, **kwargs)
        step = self._non_finite_guard().take_failure()
        if step is not None:
            raise non_finite_error(step)
        return out

    def evaluate(self, x=None, y=None, *args, **kwargs):
        _eager_input_checks(self, x, y)
        with _check_failures_as_value_errors():
            return super().evaluate(x, y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        _eager_input_checks(self, x, y)
        with _check_failures_as_value_errors():
            return super().test_on_batch(x, y, *args, **kwargs)

    def predict_on_batch(self, x):
        _eager_input_checks(self, x)
        with _check_failures_as_value_errors():
            return super().predict_on_batch(x)

    def _unpack(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError("training a Detector needs targets `y`: dict 'boxes' [B, M, 4] and 'labels' [B, M]")
        if sample_weight is not None:
            raise ValueError("Detector does not take `sample_weight`; give padded rows label -1 instead")
        images, _ = self.split_inputs(x)
        _check_images(images, "x (images)")
        return x, self.standardize_targets(y, images)

    def train_step(self, data):
        """One optimisation step: the forward pass sees the targets and `training=True` (two-stage
        families sample proposals against them), then the loss terms, gradients and update."""
        x, y = self._unpack(data)
        guard = self._non_finite_guard()
        snapshot = guard.snapshot(self)  # batch-norm statistics before this step's forward pass (read first: automatic
        with tf.GradientTape() as tape:  # control dependencies keep reads and the forward pass's writes in order
            raw = self(x, training=True, targets=y)
            loss = self.compute_loss(x, y, raw, training=True)
            # under a strategy each replica's loss is its share of the global batch's (global normalisers): the sum
            # is the loss single-device training logs
            self._loss_tracker.update_state(sum_over_replicas(loss))
            scaled = self.optimizer.scale_loss(loss) if self.optimizer is not None else loss
        variables = self.trainable_weights
        gradients = tape.gradient(scaled, variables)
        # no update at all (AdamW's weight decay does not wait for the gradients) unless the images are finite,
        # and none when the loss or a gradient is not finite (the guard records the step; fit then stops)
        images = tf.convert_to_tensor(self.split_inputs(x)[0])
        gate = [_ensure_finite(images, "x (images)")] if images.dtype.is_floating and not self.sanitize_images else []
        with tf.control_dependencies(gate):
            if num_replicas() > 1:  # one model on several replicas (the guard is off under a strategy)
                _apply_over_replicas(self, gradients, variables)
            else:
                guard.apply_if_finite(self, loss, gradients, variables, snapshot)
        # detection metrics (COCO AP...) are updated in evaluate() only, not on every training batch
        return _for_workers({k: v for m in self.metrics if m not in self._detection_metrics
                             for k, v in _result(m).items()})

    def test_step(self, data):
        """Loss terms with the targets in the forward pass; detection metrics from `detect` on the images, fed
        with the targets as given (both in `bounding_box_format`, "classes" read as "labels")."""
        x, y = self._unpack(data)
        raw = self(x, training=False, targets=y)
        loss = self.compute_loss(x, y, raw, training=False)
        self._loss_tracker.update_state(sum_over_replicas(loss))
        if self._detection_metrics:
            given = keras.utils.unpack_x_y_sample_weight(data)[1]
            given = {("labels" if k == "classes" and "labels" not in given else k): v for k, v in given.items()}
            detections = self.detect(x)
            for metric in self._detection_metrics:
                metric.update_state(given, detections)
        return _for_workers(self.get_metrics_result())

    def _term_tracker(self, name):
        if name not in self.loss_terms:
            raise ValueError(f"{type(self).__name__}.detection_losses returned {name!r}, not listed in `loss_terms`")
        return self._loss_trackers.get(name)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The sum of the family's loss terms (each logged as a metric) and the layers' own losses.

        `x` is the model input, `y` the targets (standardised when they come through `fit`), `y_pred`
        the raw outputs of `call(x, training=training, targets=y)`."""
        if y is None:
            raise ValueError("training a Detector needs targets `y`: dict 'boxes' [B, M, 4] and 'labels' [B, M]")
        if sample_weight is not None:
            raise ValueError("Detector does not take `sample_weight`; give padded rows label -1 instead")
        images, _ = self.split_inputs(x)
        _check_images(images, "x (images)")
        y = self.standardize_targets(y, images)  # no-op for targets the training step standardised
        terms = self.detection_losses(images, y, y_pred)
        total = tf.add_n([tf.cast(v, tf.float32) for v in terms.values()])
        for name, value in terms.items():
            tracker = self._term_tracker(name)
            if tracker is not None:
                tracker.update_state(sum_over_replicas(value))
        if self.losses:  # (a share of them on each replica: the replicas' losses sum to the global batch's)
            total = total + tf.add_n([tf.cast(v, tf.float32) for v in self.losses]) / float(num_replicas())
        return total

    @property
    def metrics(self):
        base = [m for m in super().metrics if m not in self._detection_metrics]
        return base + [m for m in self._loss_trackers.values() if m not in base] + list(self._detection_metrics)

    def freeze(self, *parts):
        """Freezes the named parts: attributes that are Keras layers (or lists of them), e.g. "backbone", "fpn",
        "rpn", or dotted paths into them such as "box_head.fcs" (Faster R-CNN's fully connected layers). Their
        weights stop training and their batch norms stay in inference mode. For fine-tuning on little data: what
        the trained model learned is kept while the class-specific layers learn the new classes. Call before
        `compile`.

        Example:
            >>> model = kerasdet.zoo.load("faster_rcnn_resnet18_shapes", num_classes=3)
            >>> model.freeze("backbone", "fpn", "rpn", "box_head.fcs").compile()
        """
        frozen = []
        for name in parts:
            frozen += _layers_at(self, name)
        for layer in frozen:
            layer.trainable = False
        return self

    def compile(self, optimizer="default", metrics=None, jit_compile=False, learning_rate=1e-3, **kwargs):
        """Compiles with detector defaults.

        Args:
            optimizer: "default" gives AdamW(learning_rate, weight_decay 1e-4, global clipnorm 10), or
                any Keras optimizer.
            metrics: `keras.metrics.Metric` objects updated with `(targets, detections)` in `evaluate()`
                only (training steps do not decode), e.g. `[kerasdet.metrics.COCOMetric()]`.
            jit_compile: XLA for the training step (True or False, default False); `predict` and
                `evaluate` never use XLA, whose kernels the NMS lacks.
            learning_rate: used by the default optimizer.
            **kwargs: other `keras.Model.compile` arguments (`steps_per_execution`, `run_eagerly`...).
                `loss`, `loss_weights` and `weighted_metrics` are refused: each family computes its own loss.

        Raises:
            ValueError naming `loss` / `loss_weights` / `weighted_metrics`; TypeError naming `metrics`.
        """
        for key in ("loss", "loss_weights", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(f"Detector.compile does not take `{key}`: each family computes its own loss terms "
                                 "(detection metrics go in `metrics`)")
            kwargs.pop(key, None)
        metrics = list(metrics or [])
        for metric in metrics:
            if not isinstance(metric, keras.metrics.Metric):
                raise TypeError("`metrics` must hold keras.metrics.Metric objects fed with (targets, detections), "
                                f"e.g. kerasdet.metrics.COCOMetric(); got {metric!r}")
        if isinstance(optimizer, str) and optimizer == "default":
            optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=1e-4, global_clipnorm=10.0)
        self._set_detection_metrics(metrics)
        # one Mean per loss term, made here because `loss_terms` may depend on the constructor's arguments
        trackers = dict(self._loss_trackers)
        for name in self.loss_terms:
            if name not in trackers:
                trackers[name] = keras.metrics.Mean(name=name)
        object.__setattr__(self, "_loss_trackers", trackers)
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)

    def _set_detection_metrics(self, metrics):
        # a plain attribute, not tracked by Keras: compile() may add metrics to a built model, and their
        # state (accumulated detections) is not part of the model's weights
        object.__setattr__(self, "_detection_metrics", list(metrics))

    def _without_jit(self, make):
        jit, self.jit_compile = self.jit_compile, False
        try:
            return make()
        finally:
            self.jit_compile = jit

    def make_test_function(self, force=False):
        # evaluate() decodes and runs NMS, which has no XLA kernel: never compiled with XLA
        return self._without_jit(lambda: super(Detector, self).make_test_function(force))

    def make_predict_function(self, force=False):
        return self._without_jit(lambda: super(Detector, self).make_predict_function(force))

    def get_compile_config(self):
        return {"jit_compile": bool(self.jit_compile)}

    def compile_from_config(self, config):
        """After `keras.models.load_model`: compiled with the defaults (the optimizer state is not restored)."""
        self.compile(jit_compile=config.get("jit_compile", False))

    # -- building and config --------------------------------------------------------------------------

    @property
    def _default_save_signature(self):
        # TensorFlow's SavedModel writer asks tracked Keras models for a default `self(inputs)` signature built
        # from the build shapes (images only, raw nested outputs); a Detector's signatures are the ones
        # `kerasdet.export.saved_model` declares (detections, images and rois), so it offers none of its own
        return None

    def example_inputs(self, height=256, width=256, batch=1):
        """Zero inputs of the given size for building: images, plus one roi per image where the family takes rois."""
        images = tf.zeros([batch, height, width, 3], tf.float32)
        if not self.needs_rois:
            return images
        rois = tf.tile(tf.constant([[[0.0, 0.0, width / 2.0, height / 2.0]]]), [batch, 1, 1])
        return {"images": images, "rois": rois}

    def _fuse_batch_norms(self):
        """Once, before the first call: every Keras batch norm of the model runs TensorFlow's fused kernel
        (`kerasdet.layers.FusedBatchNormalization`: the same variables and results, a faster training step)."""
        if self.__dict__.get("_batch_norms_fused"):
            return
        use_fused_batch_norms(self)
        self.__dict__["_batch_norms_fused"] = True  # not a tracked attribute

    def build(self, input_shape=None):
        """Creates the variables by running the model once on a zero image (256 x 256 unless the shape says)."""
        self._fuse_batch_norms()
        if isinstance(input_shape, dict):
            input_shape = input_shape.get("images")
        h = w = None
        if input_shape is not None and len(input_shape) == 4:
            h, w = input_shape[1], input_shape[2]
        least = self.min_input_size  # padded as __call__ pads (a smaller example would not fit the network)
        self.call(self.example_inputs(max(h or 256, least), max(w or 256, least)), training=False)
        self.built = True

    def build_for_size(self, image_size):
        """Builds the model for images of `image_size` (int or (h, w)); returns the model."""
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if not self.built:
            self.build((1, h, w, 3))
        return self

    @classmethod
    def config_for_num_classes(cls, config: dict, num_classes: int) -> dict:
        """A copy of `config` (from `get_config`) for a model of `num_classes` classes: what a fine-tune on other
        classes builds before copying every weight whose shape still fits. Families whose heads record their
        own class count override it.

        Example:
            >>> tuned = RetinaNet.from_config(RetinaNet.config_for_num_classes(model.get_config(), 3))
        """
        config = dict(config, num_classes=int(num_classes))
        config.pop("class_names", None)
        return config

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            class_names=self.class_names,
            score_threshold=self.score_threshold,
            nms_iou_threshold=self.nms_iou_threshold,
            max_detections=self.max_detections,
            bounding_box_format=self.bounding_box_format,
            sanitize_images=self.sanitize_images,
            xla_forward=self.xla_forward,
        )
        return config
