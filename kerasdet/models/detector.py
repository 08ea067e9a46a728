"""`Detector`: the base every kerasdet family subclasses."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.ops.nms import batched_non_max_suppression


def _check_images(images, name="images"):
    """Raises TypeError/ValueError naming `name` unless `images` is a uint8/float `[B, H, W, 3]` tensor or array."""
    shape = getattr(images, "shape", None)
    if shape is None or getattr(images, "dtype", None) is None:
        raise TypeError(f"`{name}` must be a tensor or array [B, H, W, 3]; got {type(images).__name__}")
    rank = getattr(shape, "rank", None) if isinstance(shape, tf.TensorShape) else len(shape)
    if rank is None:
        rank, shape = 4, [None, None, None, None]  # unknown rank (a relaxed trace): checked at run time
    if rank != 4 or (shape[-1] is not None and shape[-1] != 3):
        hint = " (convert grayscale/RGBA with kerasdet.data.to_rgb)" if rank == 4 else ""
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


def _check_targets(y, batch=None):
    """Raises TypeError/ValueError naming `y` unless it is the padded target dict of DESIGN.md §3."""
    if not isinstance(y, dict):
        raise TypeError(f"training targets `y` must be a dict with 'boxes' [B, M, 4] and 'labels' [B, M]; got {type(y).__name__}")
    missing = [k for k in ("boxes", "labels") if k not in y]
    if missing:
        raise ValueError(f"training targets `y` lack {missing}; they have {sorted(y)} (DESIGN.md §3)")
    boxes, labels = y["boxes"], y["labels"]
    for key, value in (("boxes", boxes), ("labels", labels)):
        if getattr(value, "shape", None) is None:
            raise TypeError(f"`y['{key}']` must be a tensor or array; got {type(value).__name__}")
    if len(boxes.shape) != 3 or (boxes.shape[-1] is not None and boxes.shape[-1] != 4):
        raise ValueError(f"`y['boxes']` must have shape [B, M, 4] (padded with -1); got {tuple(boxes.shape)}")
    if len(labels.shape) != 2:
        raise ValueError(f"`y['labels']` must have shape [B, M] (padded with -1); got {tuple(labels.shape)}")
    for axis, what in ((0, "B"), (1, "M")):
        b, l = boxes.shape[axis], labels.shape[axis]
        if b is not None and l is not None and b != l:
            raise ValueError(f"`y['boxes']` {tuple(boxes.shape)} and `y['labels']` {tuple(labels.shape)} "
                             f"disagree on {what} (expected [B, M, 4] and [B, M])")
    if batch is not None and boxes.shape[0] is not None and boxes.shape[0] != batch:
        raise ValueError(f"training targets `y` hold {boxes.shape[0]} images but the images batch has {batch}")


def _result(metric):
    result = metric.result()
    return result if isinstance(result, dict) else {metric.name: result}


class Detector(keras.Model):
    """Base class of kerasdet's detectors: input checks, loss from padded targets, decode + NMS in the graph.

    A family subclasses it and implements three methods:

    - `call(images, training=False)`: raw head outputs (a dict) from `[B, H, W, 3]` RGB images in
      0..255 (rescaling happens inside the model, in the backbone);
    - `detection_losses(images, targets, raw)`: a dict of scalar loss terms from the padded targets
      `{"boxes": [B, M, 4], "labels": [B, M]}` (label -1 for padding, DESIGN.md §3); their sum is the loss;
    - `decode_candidates(raw, images)`: `(boxes, scores)` for NMS, boxes `[B, K, 4]` xyxy pixels (or
      `[B, K, C, 4]` per class) and scores `[B, K, C]` probabilities.

    The base class then gives: `detect(images)` and `predict()` returning the prediction dict of
    DESIGN.md §3 (`boxes`, `scores`, `labels`, `num_detections`; NMS inside the graph), `fit()` with a
    per-term loss log, `evaluate()` feeding detection metrics such as `kerasdet.metrics.COCOMetric`
    with decoded predictions (training steps never decode), compile defaults, and `get_config`.
    Calling the model checks the images first (rank 4, 3 channels, uint8 or float), and `detect` /
    `predict` on a batch of 0 images return empty padded outputs without running the network on it.

    Args:
        num_classes: number of object classes (labels 0..num_classes-1; background is internal).
        class_names: optional list of `num_classes` names.
        score_threshold: detections with a lower score are dropped before NMS.
        nms_iou_threshold: per-class NMS IoU threshold.
        max_detections: detections kept per image (the padded size of the outputs).
        **kwargs: `keras.Model` arguments (`name`...).

    Example:
        >>> model = kerasdet.models.RetinaNet.compact(num_classes=10)
        >>> model.compile()                       # AdamW, no XLA (NMS has no XLA kernel)
        >>> model.fit(train_ds, epochs=10)        # (images, {"boxes", "labels"}) batches
        >>> model.predict(images)["boxes"].shape  # (B, 100, 4)
    """

    def __init__(self, num_classes, class_names=None, score_threshold=0.05, nms_iou_threshold=0.5,
                 max_detections=100, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive int; got {num_classes!r}")
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) != num_classes:
                raise ValueError(f"`class_names` has {len(class_names)} names, `num_classes` is {num_classes}")
        if not 0.0 <= float(score_threshold) < 1.0:
            raise ValueError(f"`score_threshold` must be in [0, 1); got {score_threshold}")
        if not 0.0 <= float(nms_iou_threshold) <= 1.0:
            raise ValueError(f"`nms_iou_threshold` must be in [0, 1]; got {nms_iou_threshold}")
        if not isinstance(max_detections, int) or max_detections < 1:
            raise ValueError(f"`max_detections` must be a positive int; got {max_detections!r}")
        self.num_classes = num_classes
        self.class_names = class_names
        self.score_threshold = float(score_threshold)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.max_detections = max_detections
        self._loss_trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_terms}
        self._set_detection_metrics([])

    # -- to implement ---------------------------------------------------------------------------------

    #: names of the terms `detection_losses` returns (each gets a Mean tracker in the training log)
    loss_terms: tuple = ()

    def detection_losses(self, images, targets, raw) -> dict:
        raise NotImplementedError

    def decode_candidates(self, raw, images):
        raise NotImplementedError

    # -- prediction -----------------------------------------------------------------------------------

    def postprocess(self, raw, images) -> dict:
        """Decodes raw outputs and runs per-class NMS: the prediction dict of DESIGN.md §3."""
        boxes, scores = self.decode_candidates(raw, images)
        return batched_non_max_suppression(
            boxes,
            scores,
            iou_threshold=self.nms_iou_threshold,
            score_threshold=self.score_threshold,
            max_detections=self.max_detections,
        )

    def __call__(self, *args, **kwargs):
        images = args[0] if args else kwargs.get("images", kwargs.get("inputs"))
        if isinstance(images, dict):  # families that take extra inputs (e.g. rois) pass a dict with "images"
            images = images.get("images")
        if images is not None:
            _check_images(images)
        return super().__call__(*args, **kwargs)

    def detect(self, images) -> dict:
        """Detections for `[B, H, W, 3]` RGB images in 0..255: dict boxes/scores/labels/num_detections.

        A batch of 0 images gives outputs with batch 0 (the model runs on one blank image, sliced
        away), whether the batch size is known when tracing or only at run time.
        """
        _check_images(images)
        images = tf.convert_to_tensor(images)
        if images.shape.rank is None or images.shape[-1] is None:
            images = _ensure_rgb_batch(images)
        batch = images.shape[0]
        if batch is not None and batch > 0:
            return self._detect(images)
        count = tf.shape(images)[0]
        if batch == 0:
            safe = self._blank_image(images)
        else:
            safe = tf.cond(count > 0, lambda: images, lambda: self._blank_image(images))
        return tf.nest.map_structure(lambda t: t[:count], self._detect(safe))

    def _detect(self, images):
        raw = self(images, training=False)
        return self.postprocess(raw, images)

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
        """`keras.Model.predict` returning the detections dict; an array of 0 images gives empty outputs."""
        shape = getattr(x, "shape", None)
        if shape is not None and len(shape) > 0 and shape[0] == 0:
            return tf.nest.map_structure(lambda t: t.numpy(), self.detect(x))
        return super().predict(x, *args, **kwargs)

    # -- training -------------------------------------------------------------------------------------

    def _term_tracker(self, name):
        if name not in self._loss_trackers:
            raise ValueError(f"{type(self).__name__}.detection_losses returned {name!r}, not listed in `loss_terms`")
        return self._loss_trackers[name]

    def train_step(self, data):
        # detection metrics (COCO AP...) are updated in evaluate() only, not on every training batch
        self._in_train_step = True
        try:
            return super().train_step(data)
        finally:
            self._in_train_step = False

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is None:
            raise ValueError("training a Detector needs targets `y`: dict 'boxes' [B, M, 4] and 'labels' [B, M]")
        if sample_weight is not None:
            raise ValueError("Detector does not take `sample_weight`; give padded rows label -1 instead")
        _check_images(x, "x (images)")
        _check_targets(y, x.shape[0])
        terms = self.detection_losses(x, y, y_pred)
        total = tf.add_n([tf.cast(v, tf.float32) for v in terms.values()])
        for name, value in terms.items():
            self._term_tracker(name).update_state(value)
        if self.losses:
            total = total + tf.add_n([tf.cast(v, tf.float32) for v in self.losses])
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if getattr(self, "_in_train_step", False):
            return {k: v for m in self.metrics if m not in self._detection_metrics for k, v in _result(m).items()}
        if self._detection_metrics:
            detections = self.postprocess(y_pred, x)
            for metric in self._detection_metrics:
                metric.update_state(y, detections)
        return self.get_metrics_result()

    @property
    def metrics(self):
        base = [m for m in super().metrics if m not in self._detection_metrics]
        return base + [m for m in self._loss_trackers.values() if m not in base] + list(self._detection_metrics)

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

    def build(self, input_shape=None):
        """Creates the variables by running the model once on a zero image (256 x 256 unless the shape says)."""
        h = w = None
        if input_shape is not None and len(input_shape) == 4:
            h, w = input_shape[1], input_shape[2]
        self.call(tf.zeros([1, h or 256, w or 256, 3], tf.float32), training=False)
        self.built = True

    def build_for_size(self, image_size):
        """Builds the model for images of `image_size` (int or (h, w)); returns the model."""
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if not self.built:
            self.build((1, h, w, 3))
        return self

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            class_names=self.class_names,
            score_threshold=self.score_threshold,
            nms_iou_threshold=self.nms_iou_threshold,
            max_detections=self.max_detections,
        )
        return config
