"""YOLO (Redmon et al., 2016): an S x S grid, B boxes and C class probabilities per cell, from fully connected
layers."""

from __future__ import annotations


import keras
import tensorflow as tf

from kerasdet.backbones._common import ImagePreprocessing
from kerasdet.heads.grid_targets import slot_owners
from kerasdet.models.detector import Detector, check_finite_scales
from kerasdet.ops.boxes import clip_boxes, iou
from kerasdet.ops.replicas import sum_over_replicas

#: the paper's network (Figure 3) as (filters, kernel, stride) per convolution, "M" for a 2x2 stride-2 max pool:
#: 24 convolutions, stride 64 (7x7 at 448 px)
YOLO_V1_LAYERS = ((64, 7, 2), "M", (192, 3, 1), "M", (128, 1, 1), (256, 3, 1), (256, 1, 1), (512, 3, 1), "M",
                  *((256, 1, 1), (512, 3, 1)) * 4, (512, 1, 1), (1024, 3, 1), "M",
                  *((512, 1, 1), (1024, 3, 1)) * 2, (1024, 3, 1), (1024, 3, 2), (1024, 3, 1), (1024, 3, 1))
#: Fast YOLO's 9 convolutions (darknet's tiny-yolo): 16 .. 512 each followed by a max pool, then 1024, 1024, 256
FAST_YOLO_LAYERS = ((16, 3, 1), "M", (32, 3, 1), "M", (64, 3, 1), "M", (128, 3, 1), "M", (256, 3, 1), "M",
                    (512, 3, 1), "M", (1024, 3, 1), (1024, 3, 1), (256, 3, 1))


def _check_layers(layers):
    out = []
    for i, spec in enumerate(layers):
        if spec == "M":
            out.append("M")
            continue
        if (not isinstance(spec, (list, tuple)) or len(spec) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in spec)):
            raise ValueError(f"`conv_layers[{i}]` must be (filters, kernel, stride) as positive ints or 'M'; "
                             f"got {spec!r}")
        out.append(tuple(spec))
    if not any(spec != "M" for spec in out):
        raise ValueError("`conv_layers` needs at least one convolution")
    return tuple(out)


@keras.saving.register_keras_serializable(package="kerasdet")
class YOLOv1(Detector):
    """YOLO: the image, resized to `input_size`, through convolutions and fully connected layers to an S x S x
    (5 B + C) tensor; each cell predicts B boxes `(x, y, sqrt(w), sqrt(h), confidence)` and one set of C class
    probabilities.

    Network: `conv_layers` (leaky ReLU 0.1; batch norm after each with `batch_norm`, which the paper's v1 has not),
    then a fully connected layer of `hidden_units` (leaky ReLU, dropout `dropout`; None leaves it out, as Fast YOLO)
    and a linear one with `S * S * (5 B + C)` outputs. `x, y` are the box centre's offsets in its cell, `w, h`
    fractions of the image (the network predicts their square roots, so that an error matters more in a small box
    than in a large one); the class probabilities are linear outputs regressed with squared error to the one-hot
    class, as eq. 3 and darknet's detection layer (`softmax=0` in the released cfgs) do; decoding clips them to
    [0, 1].

    Loss (§2.2, eq. 3), summed over the grid and averaged over images: an object belongs to the cell holding its
    centre (the later one when two share a cell; darknet v1 keeps the first after shuffling the objects: either is
    an arbitrary pick by the data's order), and in that cell to the predictor whose current box has the
    highest IoU with it ("responsible"):
    `lambda_coord * [(x - x*)^2 + (y - y*)^2 + (sqrt(w) - sqrt(w*))^2 + (sqrt(h) - sqrt(h*))^2]` and
    `(C - IoU)^2` for the responsible predictor, `lambda_noobj * C^2` for every other predictor, and
    `sum_c (p(c) - p*(c))^2` for every cell holding an object. Prediction: class-specific confidence
    `p(c) * C` per box, per-class NMS.

    Inputs of any size are resized (stretched) to `input_size` inside the model, as darknet does: the fully
    connected layers fix the grid; boxes come back in the input's pixels.

    Reference: J. Redmon, S. Divvala, R. Girshick, A. Farhadi, "You Only Look Once: Unified, Real-Time Object
    Detection", CVPR 2016.

    Args:
        num_classes: C.
        input_size: the side the network sees (448 in the paper); a multiple of the network's stride.
        conv_layers: (filters, kernel, stride) per convolution, "M" for a 2x2 max pool.
        boxes_per_cell: B (2).
        hidden_units: the first fully connected layer's width (4096), or None.
        dropout: after it (0.5).
        batch_norm: batch norm after every convolution (not in the paper's v1).
        width: channel multiplier of `conv_layers`.
        lambda_coord, lambda_noobj: 5 and 0.5.
        class_names, score_threshold, nms_iou_threshold, max_detections: see `Detector`.
        **kwargs: `keras.Model` arguments.

    Call arguments:
        inputs: `[B, H, W, 3]` RGB, 0..255, any size.
        training: Keras' training flag.
        targets: unused.

    Returns (`call`):
        dict `{"predictions": [B, S * S, 5 B + C]}` (cells in row-major order; per cell B x (x, y, sqrt w, sqrt h,
        confidence), then C class probabilities).

    Example:
        >>> model = YOLOv1.compact(num_classes=10)
        >>> model.compile()
        >>> YOLOv1.paper_config(num_classes=20)(tf.zeros([1, 448, 448, 3]))["predictions"].shape
        TensorShape([1, 49, 30])
    """

    loss_terms = ("coord_loss", "object_loss", "noobject_loss", "class_loss")
    trains_on_replicas = True

    def __init__(
        self,
        num_classes,
        input_size=448,
        conv_layers=YOLO_V1_LAYERS,
        boxes_per_cell=2,
        hidden_units=4096,
        dropout=0.5,
        batch_norm=False,
        width=1.0,
        lambda_coord=5.0,
        lambda_noobj=0.5,
        class_names=None,
        score_threshold=0.005,
        nms_iou_threshold=0.45,
        max_detections=100,
        **kwargs,
    ):
        super().__init__(num_classes=num_classes, class_names=class_names, score_threshold=score_threshold,
                         nms_iou_threshold=nms_iou_threshold, max_detections=max_detections, **kwargs)
        conv_layers = _check_layers(conv_layers)
        stride = 1
        for spec in conv_layers:
            stride *= 2 if spec == "M" else spec[2]
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < stride \
                or input_size % stride:
            raise ValueError(f"`input_size` must be a positive multiple of the network's stride {stride}; "
                             f"got {input_size!r}")
        for name, value, low in (("boxes_per_cell", boxes_per_cell, 1),):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an int >= {low}; got {value!r}")
        if hidden_units is not None and (isinstance(hidden_units, bool) or not isinstance(hidden_units, int)
                                         or hidden_units < 1):
            raise ValueError(f"`hidden_units` must be a positive int or None; got {hidden_units!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}")
        check_finite_scales(width=width, lambda_coord=lambda_coord, lambda_noobj=lambda_noobj)
        if width == 0:
            raise ValueError(f"`width` must be a finite number > 0; got {width!r}")
        self.input_size = input_size
        self.conv_layers = conv_layers
        self.boxes_per_cell = boxes_per_cell
        self.hidden_units = hidden_units
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.width = float(width)
        self.lambda_coord = float(lambda_coord)
        self.lambda_noobj = float(lambda_noobj)
        self.grid_size = input_size // stride

        layers = [ImagePreprocessing("tf", name="preprocessing")]
        pools = convs = 0
        for spec in conv_layers:
            if spec == "M":
                pools += 1
                layers.append(keras.layers.MaxPooling2D(2, strides=2, padding="same", name=f"pool{pools}"))
                continue
            convs += 1
            filters, kernel, step = spec
            layers.append(keras.layers.Conv2D(max(8, int(round(filters * width))), kernel, strides=step,
                                              padding="same", use_bias=not batch_norm, name=f"conv{convs}"))
            if batch_norm:
                layers.append(keras.layers.BatchNormalization(epsilon=1e-5, name=f"conv{convs}_bn"))
            layers.append(keras.layers.LeakyReLU(negative_slope=0.1, name=f"conv{convs}_leaky"))
        layers.append(keras.layers.Flatten(name="flatten"))
        if hidden_units is not None:
            layers += [keras.layers.Dense(hidden_units, name="fc1"),
                       keras.layers.LeakyReLU(negative_slope=0.1, name="fc1_leaky"),
                       keras.layers.Dropout(self.dropout, name="fc1_dropout")]
        per_cell = 5 * boxes_per_cell + num_classes
        layers.append(keras.layers.Dense(self.grid_size ** 2 * per_cell, name="predictor"))
        self.network = keras.Sequential(layers, name="network")

    # -- configurations -------------------------------------------------------------------------------

    @classmethod
    def paper_config(cls, num_classes=20, **kwargs):
        """The paper's YOLO: 448 px, the 24 convolutions of Figure 3, fc 4096 + dropout 0.5, S = 7, B = 2."""
        defaults = dict(input_size=448, conv_layers=YOLO_V1_LAYERS, hidden_units=4096)
        defaults.update(kwargs)
        return cls(num_classes=num_classes, **defaults)

    @classmethod
    def compact(cls, num_classes, width=0.25, **kwargs):
        """A YOLO that trains on 2 CPU cores at 256 px: the paper's 24 convolutions at `width` (0.25) with batch norm,
        the stride-2 convolution made stride 1 (so the grid is 8 x 8 at 256 px, the paper's 7 x 7 at 448 scaled),
        and fc 512."""
        layers = tuple(spec if spec == "M" or spec[2] == 1 or spec[0] != 1024 else (spec[0], spec[1], 1)
                       for spec in YOLO_V1_LAYERS)
        defaults = dict(input_size=256, conv_layers=layers, hidden_units=512, batch_norm=True, width=width)
        defaults.update(kwargs)
        return cls(num_classes=num_classes, **defaults)

    # -- forward --------------------------------------------------------------------------------------

    def call(self, inputs, training=False, targets=None):
        images, _ = self.split_inputs(inputs)
        x = tf.cast(images, tf.float32)
        shape = tf.shape(x)
        resized = tf.cond(tf.reduce_all(tf.equal(shape[1:3], self.input_size)), lambda: x,
                          lambda: tf.image.resize(x, [self.input_size, self.input_size], method="bilinear"))
        resized = tf.ensure_shape(resized, [None, self.input_size, self.input_size, 3])
        out = self.network(resized, training=training)
        per_cell = 5 * self.boxes_per_cell + self.num_classes
        return {"predictions": tf.reshape(tf.cast(out, tf.float32), [-1, self.grid_size ** 2, per_cell])}

    def _decode(self, predictions, hw):
        """Boxes `[B, S * S, B_cell, 4]` xyxy pixels of an image of size `hw`, and confidences `[B, S*S, B_cell]`."""
        s = self.grid_size
        boxes = tf.reshape(predictions[..., :5 * self.boxes_per_cell], [-1, s * s, self.boxes_per_cell, 5])
        cells = tf.range(s * s)
        col = tf.cast(cells % s, tf.float32)[None, :, None]
        row = tf.cast(cells // s, tf.float32)[None, :, None]
        cx = (col + boxes[..., 0]) / s * hw[1]
        cy = (row + boxes[..., 1]) / s * hw[0]
        w = tf.square(tf.maximum(boxes[..., 2], 0.0)) * hw[1]
        h = tf.square(tf.maximum(boxes[..., 3], 0.0)) * hw[0]
        return tf.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1), boxes[..., 4]

    # -- loss and decoding ----------------------------------------------------------------------------

    def detection_losses(self, images, targets, raw):
        predictions = raw["predictions"]
        s, nb = self.grid_size, self.boxes_per_cell
        hw = tf.cast(tf.shape(images)[1:3], tf.float32)
        batch = tf.shape(predictions)[0]
        boxes, labels = targets["boxes"], targets["labels"]
        valid = labels >= 0
        if targets.get("is_crowd") is not None:
            valid &= ~targets["is_crowd"]
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        col = tf.clip_by_value(tf.cast(tf.floor(centre[..., 0] / hw[1] * s), tf.int32), 0, s - 1)
        row = tf.clip_by_value(tf.cast(tf.floor(centre[..., 1] / hw[0] * s), tf.int32), 0, s - 1)
        cell = tf.where(valid, row * s + col, -1)
        # the object of each cell (the last one when several share it), -1 for none
        owner = slot_owners(cell, s * s)
        has_object = owner >= 0
        truth = tf.gather(boxes, tf.maximum(owner, 0), batch_dims=1)                        # [B, S*S, 4]
        truth_labels = tf.gather(labels, tf.maximum(owner, 0), batch_dims=1)

        pred_boxes, confidence = self._decode(predictions, hw)                              # [B, S*S, nb, 4]
        overlaps = iou(pred_boxes, truth[:, :, None, :], aligned=True)                      # [B, S*S, nb]
        overlaps = tf.stop_gradient(overlaps)
        best = tf.one_hot(tf.argmax(overlaps, axis=-1), nb, dtype=tf.float32)
        responsible = best * tf.cast(has_object, tf.float32)[..., None]
        cell_f = tf.cast(has_object, tf.float32)

        raw_boxes = tf.reshape(predictions[..., :5 * nb], [-1, s * s, nb, 5])
        truth_x = (truth[..., 0] + truth[..., 2]) / 2 / hw[1] * s
        truth_y = (truth[..., 1] + truth[..., 3]) / 2 / hw[0] * s
        cols = tf.cast(tf.range(s * s) % s, tf.float32)[None]
        rows_f = tf.cast(tf.range(s * s) // s, tf.float32)[None]
        target_x = truth_x - cols
        target_y = truth_y - rows_f
        target_w = tf.sqrt(tf.maximum(truth[..., 2] - truth[..., 0], 0.0) / hw[1])
        target_h = tf.sqrt(tf.maximum(truth[..., 3] - truth[..., 1], 0.0) / hw[0])
        target = tf.stack([target_x, target_y, target_w, target_h], -1)[:, :, None, :]
        coord = tf.reduce_sum(tf.square(raw_boxes[..., :4] - target), -1)
        coord_loss = self.lambda_coord * tf.reduce_sum(responsible * coord)
        object_loss = tf.reduce_sum(responsible * tf.square(confidence - overlaps))
        noobject_loss = self.lambda_noobj * tf.reduce_sum((1.0 - responsible) * tf.square(confidence))
        probabilities = predictions[..., 5 * nb:]  # linear outputs regressed to the one-hot class (darknet: softmax=0)
        one_hot = tf.one_hot(tf.maximum(truth_labels, 0), self.num_classes)
        class_loss = tf.reduce_sum(cell_f * tf.reduce_sum(tf.square(probabilities - one_hot), -1))
        n = sum_over_replicas(tf.cast(batch, tf.float32))  # the global batch's images under a tf.distribute strategy
        return {"coord_loss": coord_loss / n, "object_loss": object_loss / n, "noobject_loss": noobject_loss / n,
                "class_loss": class_loss / n}

    def decode_candidates(self, raw, images):
        predictions = raw["predictions"]
        hw = tf.cast(tf.shape(images)[1:3], tf.float32)
        boxes, confidence = self._decode(predictions, hw)
        probabilities = tf.clip_by_value(predictions[..., 5 * self.boxes_per_cell:], 0.0, 1.0)   # [B, S*S, C]
        scores = tf.clip_by_value(confidence, 0.0, 1.0)[..., None] * probabilities[:, :, None, :]
        boxes = clip_boxes(tf.reshape(boxes, [tf.shape(boxes)[0], -1, 4]), hw)
        return boxes, tf.reshape(scores, [tf.shape(scores)[0], -1, self.num_classes])

    # -- config ---------------------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            input_size=self.input_size,
            conv_layers=self.conv_layers,
            boxes_per_cell=self.boxes_per_cell,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            batch_norm=self.batch_norm,
            width=self.width,
            lambda_coord=self.lambda_coord,
            lambda_noobj=self.lambda_noobj,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
