"""Times kerasdet's YOLOv2 (Darknet-19, 416x416) against keras-cv's YOLOV8Detector of about the same size, side by
side in one process.

    .venv/bin/python benchmarks/yolo.py                                    # batches 1 and 8 + training; RESULTS.md
    .venv/bin/python benchmarks/yolo.py --rounds 1 --warmup 1 --batches 1 --print-only   # smoke

No TensorFlow peer has YOLOv2; keras-cv's YOLOv8 (in the `bench` extra) is the nearest Keras single-shot detector:
ours `YOLOv2.paper_config(num_classes=20)` (Darknet-19, passthrough, 13x13x5 predictions, 50.68 M parameters)
against `YOLOV8Detector` on the "l" backbone configuration (channels 128/256/512/512, depths 3/6/6/3, 41.07 M
parameters with 20 classes; the "xl" one is farther from ours), both built from constructor arguments (random
weights, no download).

Same detection settings on both: score threshold 0.05, NMS IoU 0.45, 100 detections per image (ours per-class
NMS; keras-cv's `NonMaxSuppression` decoder, with `confidence_threshold` 0.05 and `iou_threshold` 0.45).
Inference: `tf.function` of ours `model.detect` and of keras-cv's forward pass + `decode_predictions` (what its
`predict_step` runs; its `predict_on_batch` fails under Keras 3 with keras-cv 0.9: `predict_step` reads the images
from the wrong argument): network, decoding and NMS on both.
Inference also runs ours in `precision="auto"` (`--precisions`; a copy built under the policy, same weights)
against keras-cv's float32; the section names the CPU's bfloat16 flags.
Training: `tf.function(model.train_step)` on both (what `train_on_batch` compiles; keras-cv 0.9's `train_step`
cannot take the data `train_on_batch` passes under Keras 3), `keras.optimizers.SGD(1e-4)` each, each model's own
loss (ours darknet's region loss; keras-cv's CIoU + binary cross-entropy with its task-aligned assigner).

Calibration, so that NMS gets the same load on both: batch-norm statistics from the benchmark images on both;
ours: box offsets of std 0.5, class logits of std 1, objectness logits of std 1 shifted until 0.05% of the
(prediction, class) scores `sigmoid(t_o) * softmax(classes)` pass 0.05; keras-cv: its class logits (before its
sigmoid) of std 1, shifted until 0.05% of the (anchor point, class) scores pass 0.05. Fixed thread counts
(2 intra-op, 1 inter-op), warm-up (tracing included) excluded, medians of interleaved rounds. Run it on an
otherwise idle machine.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

from benchmarks.calibration import offset_for_share  # noqa: E402
from benchmarks.two_stage import set_batch_norm_statistics  # noqa: E402  (same thread counts as set above)

from benchmarks.timing import (  # noqa: E402
    command_line,
    Case, detector_parser, machine_description, markdown_table, print_over_limit, run_cases, write_section,
)
from benchmarks.precision import (  # noqa: E402
    add_precision_argument, bf16_support, copy_in_precision, precision_label)
from kerasdet.models.yolo_v2 import YOLOv2  # noqa: E402

START, END = "<!-- yolo:start -->", "<!-- yolo:end -->"
NUM_CLASSES = 20
SCORE_THRESHOLD = 0.05
IOU_THRESHOLD = 0.45
MAX_DETECTIONS = 100
CANDIDATE_FRACTION = 5e-4
LEARNING_RATE = 1e-4


def build_ours(size: int) -> YOLOv2:
    model = YOLOv2.paper_config(num_classes=NUM_CLASSES, score_threshold=SCORE_THRESHOLD,
                                nms_iou_threshold=IOU_THRESHOLD, max_detections=MAX_DETECTIONS)
    model.build_for_size(size)
    return model


def build_peer(size: int):
    import keras_cv

    backbone = keras_cv.models.YOLOV8Backbone(stackwise_channels=[128, 256, 512, 512], stackwise_depth=[3, 6, 6, 3],
                                              include_rescaling=True, activation="swish")
    peer = keras_cv.models.YOLOV8Detector(num_classes=NUM_CLASSES, bounding_box_format="xyxy", backbone=backbone,
                                          fpn_depth=3)
    peer.prediction_decoder = keras_cv.layers.NonMaxSuppression(
        bounding_box_format="xyxy", from_logits=False, iou_threshold=IOU_THRESHOLD,
        confidence_threshold=SCORE_THRESHOLD, max_detections=MAX_DETECTIONS)
    peer(tf.zeros([1, size, size, 3]))
    return peer


def calibrate_ours(model: YOLOv2, images) -> dict:
    set_batch_norm_statistics(model, images)
    layer = model.predictor
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.zeros_like(bias)])
    per_anchor = 5 + NUM_CLASSES
    raw = model(images)["predictions"].numpy().reshape(-1, per_anchor)
    classes = (raw[:, 5:] - raw[:, 5:].mean()) / raw[:, 5:].std()
    probabilities = np.exp(classes - classes.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    objectness = (raw[:, 4] - raw[:, 4].mean()) / raw[:, 4].std()

    def share(b):
        return float(((1 / (1 + np.exp(-(objectness + b))))[:, None] * probabilities > SCORE_THRESHOLD).mean())

    shift = offset_for_share(share, CANDIDATE_FRACTION, -40.0, 40.0)
    scale = np.ones(per_anchor)
    offset = np.zeros(per_anchor)
    scale[:4] = 0.5 / raw[:, :4].std(0)
    offset[:4] = -scale[:4] * raw[:, :4].mean(0)
    scale[4], offset[4] = 1 / raw[:, 4].std(), -raw[:, 4].mean() / raw[:, 4].std() + shift
    scale[5:], offset[5:] = 1 / raw[:, 5:].std(), -raw[:, 5:].mean() / raw[:, 5:].std()
    anchors = len(model.anchors)
    layer.set_weights([kernel * np.tile(scale, anchors), np.tile(offset, anchors)])
    return {"candidates": share(shift) * raw.shape[0] * NUM_CLASSES / len(images)}


def calibrate_peer(peer, images) -> dict:
    set_batch_norm_statistics(peer, images)
    names = [f"yolo_v8_head_{i}_class_3_conv" for i in (1, 2, 3)]
    layers = [peer.get_layer(n) for n in names]
    for layer in layers:
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, np.zeros_like(bias)])
    taps = keras.Model(peer.input, [layer.output for layer in layers])
    outputs = [o.numpy() for o in taps(images)]
    logits = np.concatenate([o.reshape(-1, o.shape[-1]) for o in outputs])
    mean, std = logits.mean(), logits.std()
    z = (logits - mean) / std

    def share(b):
        return float((1 / (1 + np.exp(-(z + b))) > SCORE_THRESHOLD).mean())

    shift = offset_for_share(share, CANDIDATE_FRACTION, -40.0, 40.0)
    for layer in layers:
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel / std, np.full_like(bias, -mean / std + shift)])
    return {"candidates": share(shift) * logits.size / len(images)}


def make_targets(batch: int, size: int, seed: int, num_boxes: int = 8, padded: int = 16):
    rng = np.random.default_rng(seed)
    boxes = np.full((batch, padded, 4), -1.0, np.float32)
    labels = np.full((batch, padded), -1, np.int32)
    for b in range(batch):
        xy = rng.uniform(0, size * 0.7, (num_boxes, 2))
        wh = rng.uniform(size * 0.05, size * 0.3, (num_boxes, 2))
        boxes[b, :num_boxes] = np.concatenate([xy, np.minimum(xy + wh, size)], 1)
        labels[b, :num_boxes] = rng.integers(0, NUM_CLASSES, num_boxes)
    return boxes, labels


def main(argv=None) -> int:
    parser = detector_parser(__doc__.splitlines()[0], batches=(1, 8), image_size=416, multiple=32)
    add_precision_argument(parser, "keras-cv")
    args = parser.parse_args(argv)
    size = args.image_size
    keras.utils.set_random_seed(0)
    print(f"[bench] building both models for {size}x{size} ...", flush=True)
    ours, peer = build_ours(size), build_peer(size)
    base = tf.random.uniform([max(args.batches), size, size, 3], 0, 255, seed=1)
    counts = {"ours": calibrate_ours(ours, base), "peer": calibrate_peer(peer, base)}
    params = f"parameters: ours {ours.count_params() / 1e6:.2f} M, keras-cv {peer.count_params() / 1e6:.2f} M"
    print(f"[bench] {params}; candidates per image above {SCORE_THRESHOLD}: ours {counts['ours']['candidates']:.0f}, "
          f"keras-cv {counts['peer']['candidates']:.0f}", flush=True)

    ours_detect = tf.function(ours.detect)
    # one training step each as `tf.function(model.train_step)` (what `train_on_batch` compiles): keras-cv 0.9's
    # train_step cannot take Keras 3's `train_on_batch` data, which carries a sample-weight slot
    ours_step = tf.function(lambda x, y: ours.train_step((x, y)))
    peer_step = tf.function(lambda x, y: peer.train_step((x, y)))
    peer_detect = tf.function(lambda x: peer.decode_predictions(peer(x, training=False), x))

    def inference_cases():
        for precision in args.precisions:
            detect = ours_detect if precision == "float32" else tf.function(
                copy_in_precision(lambda: build_ours(size), ours, precision, size).detect)
            suffix = "" if precision == "float32" else f", ours {precision} vs keras-cv float32"
            for b in args.batches:
                yield Case(name=f"inference, batch {b}{suffix}",
                           ours=lambda x=base[:b], d=detect: tf.nest.map_structure(np.asarray, d(x)),
                           peer=lambda x=base[:b]: tf.nest.map_structure(np.asarray, peer_detect(x)),
                           peer_name="keras-cv YOLOV8Detector",
                           note="" if precision == "float32" else f"ours {precision_label(precision)}")

    def training_cases():
        ours.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
        peer.compile(classification_loss="binary_crossentropy", box_loss="ciou",
                     optimizer=keras.optimizers.SGD(LEARNING_RATE))
        for b in args.batches:
            boxes, labels = make_targets(b, size, seed=100 + b)
            ours_y = {"boxes": tf.constant(boxes), "labels": tf.constant(labels)}
            peer_y = {"boxes": tf.constant(boxes), "classes": tf.constant(labels, tf.float32)}
            yield Case(name=f"training step, batch {b}",
                       ours=lambda x=base[:b], y=ours_y: float(ours_step(x, y)["loss"]),
                       peer=lambda x=base[:b], y=peer_y: float(peer_step(x, y)["loss"]),
                       peer_name="keras-cv YOLOV8Detector")

    def cases():
        if args.only in (None, "inference"):
            yield from inference_cases()
        if args.only in (None, "training"):
            yield from training_cases()

    rows = run_cases(cases(), rounds=args.rounds, warmup=args.warmup, peer_label="keras-cv", precision=1)
    table = markdown_table(rows)
    print(table)
    print_over_limit(rows)
    if args.print_only or args.only:
        return 0
    import keras_cv

    body = "\n".join([
        "## YOLOv2 against keras-cv's YOLOv8 (`benchmarks/yolo.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on {machine_description()}; "
        f"{bf16_support()};",
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, keras-cv {keras_cv.__version__}, 2 intra-op threads, "
        f"1 inter-op thread, CPU, medians of {args.rounds} interleaved rounds after {args.warmup} warm-up calls.",
        "",
        f"Ours: YOLOv2 on Darknet-19 ({size}x{size}, {NUM_CLASSES} classes). Peer: keras-cv `YOLOV8Detector`, \"l\" "
        f"backbone configuration, the nearest Keras single-shot detector (no TensorFlow YOLOv2 exists); {params}. "
        f"Random weights, calibrated so that NMS gets about the same load (candidates per image above "
        f"{SCORE_THRESHOLD}: ours {counts['ours']['candidates']:.0f}, keras-cv {counts['peer']['candidates']:.0f}). "
        f"Inference: `tf.function` of ours `detect`, of keras-cv's forward + `decode_predictions` (score {SCORE_THRESHOLD}, "
        f"IoU {IOU_THRESHOLD}, {MAX_DETECTIONS} detections); training: `tf.function(train_step)` (SGD, each model's "
        "own loss).",
        "",
        table,
    ])
    write_section(ROOT / "benchmarks" / "RESULTS.md", START, END, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
