"""Times kerasdet's RetinaNet against keras-hub's RetinaNetObjectDetector, side by side in one process.

    .venv/bin/python benchmarks/models.py                      # batches 1 and 8 at 512x512, writes RESULTS.md
    .venv/bin/python benchmarks/models.py --batches 1 --rounds 2 --image-size 128 --print-only   # quick check
    .venv/bin/python benchmarks/models.py --lineage            # images/s of every family's compact model
    .venv/bin/python benchmarks/models.py --share --batches 8  # decoding + NMS share of each compact model
    .venv/bin/python benchmarks/models.py --xla --batches 8    # detect with and without XLA for the forward pass

`--lineage` times instead the compact model of every family (the zoo's trained weights where a model of that
architecture is released, random weights otherwise, said in the table) on embedded test images at 256 px,
`tf.function(model.detect)` with NMS at batch 1 and 8, all models interleaved in each round, and writes the
"Compact models" section of RESULTS.md (images per second, and each model's ratio to the fastest).

Both sides are RetinaNet ResNet-50-FPN (P3-P7, 256 channels, subnets of 4 convs, 9 anchors per location
of sizes 32..512, `num_classes` 80) with random weights, built from constructor arguments (no presets,
no downloads). For each batch size two things are timed:

- inference with NMS: ours `tf.function(model.detect)`; theirs `tf.function` of the image converter
  (scale + offset, the work our backbone's preprocessing layer does inside the model) and
  `RetinaNetObjectDetector.predict_step` (forward + anchor decode + its NonMaxSuppression layer).
  Score threshold 0.05, IoU 0.5, 100 detections per image on both sides; ours runs per-class NMS
  (the paper's), keras-hub runs its only mode, class-agnostic NMS on each anchor's best class.
  Inference runs in three precisions (`--precisions`): both sides float32; ours in `precision="auto"` (bfloat16
  where the CPU computes it natively) against keras-hub's default float32; both sides in mixed_bfloat16 (copies
  built under the policy, same weights). The section names the CPU's bfloat16 flags.
- one training step (float32): `model.train_on_batch` on both sides (Keras' compiled train function, no XLA),
  each with its own loss (ours: sigmoid focal loss + smooth L1 beta 0.1 on deltas; keras-hub:
  `BinaryFocalCrossentropy` + `Huber`, both reduction "sum", normalised by the positives) and
  the same optimizer (SGD, learning rate 1e-4, momentum 0.9, one instance each).

The output layers of both class and box subnets are re-scaled after construction (`calibrate`) so that
both models give NMS the same load: class logits centred on the prior -log(99) with 0.05% of the
(anchor, class) scores above 0.05 (about 2,000 of an image's 49,104 x 80 at 512x512, the order a trained
detector has) and box deltas of standard deviation 0.1. With their initialisers alone the loads would
differ: ours starts at p = 0.01 everywhere, below the threshold (NMS gets no candidates), while keras-hub
0.32 puts the prior bias on its box head instead of its class head (class scores start at 0.5).

Fixed thread counts (2 intra-op, 1 inter-op, set before TensorFlow starts), warm-up (tracing
included) excluded, medians of interleaved rounds (benchmarks/timing.py). Inference cases run before
training cases because training changes the weights. The default run takes about 15 minutes on
2 CPU cores (the batch-8 training step dominates) and needs about 8 GB of memory; run it on an
otherwise idle machine. `keras-hub` comes with the `bench` extra (`pip install -e .[bench]`).
"""

from __future__ import annotations

import datetime
import math
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

from benchmarks.timing import command_line, write_section, Case, detector_parser, interleaved_medians, machine_description, markdown_table, print_over_limit, run_cases  # noqa: E402
from benchmarks.precision import bf16_support, copy_in_precision, has_amx, precision_label  # noqa: E402
from kerasdet.models.retinanet.retinanet import RetinaNet  # noqa: E402

START, END = "<!-- models:start -->", "<!-- models:end -->"
NUM_CLASSES = 80
SCORE_THRESHOLD = 0.05
IOU_THRESHOLD = 0.5
MAX_DETECTIONS = 100
PRIOR_LOGIT = -math.log((1.0 - 0.01) / 0.01)
CANDIDATE_FRACTION = 5e-4  # of the (anchor, class) scores above SCORE_THRESHOLD
BOX_DELTA_STD = 0.1
LEARNING_RATE = 1e-4
# issue 14's bars for inference: float32 against float32 on any CPU; "auto" against keras-hub's float32 (judged on
# a CPU with AMX); both sides in mixed_bfloat16
FLOAT32_LIMIT, AUTO_LIMIT, BF16_LIMIT = 0.95, 0.5, 1.0
#: (ours, keras-hub) precisions of the inference cases
PRECISION_PAIRS = {"float32": ("float32", "float32"), "auto": ("auto", "float32"),
                   "mixed_bfloat16": ("mixed_bfloat16", "mixed_bfloat16")}
# ImageNet statistics of keras-hub's ResNet image converter: x * scale + offset == (x / 255 - mean) / std
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- models


def build_ours(image_size: int) -> RetinaNet:
    """kerasdet's paper RetinaNet, ResNet-50-FPN, random weights, built for `image_size`."""
    model = RetinaNet.paper_config(
        "resnet50",
        num_classes=NUM_CLASSES,
        score_threshold=SCORE_THRESHOLD,
        nms_iou_threshold=IOU_THRESHOLD,
        max_detections=MAX_DETECTIONS,
    )
    return model.build_for_size(image_size)


def build_peer(image_size: int):
    """keras-hub's RetinaNetObjectDetector, ResNet-50 (v1.5) + FPN P3-P7, random weights, and its image converter.

    Returns:
        (detector, converter): the converter maps RGB 0..255 to ImageNet-normalised floats, as
        keras-hub's RetinaNet preprocessor does (no resizing: the images already have the model's size).
    """
    import keras_hub

    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="bottleneck_block",
        use_pre_activation=False,
        image_shape=(image_size, image_size, 3),
    )
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder,
        min_level=3,
        max_level=7,
        use_p5=True,  # keras-hub's naming: P6 from the backbone's last map (C5), as in the paper and ours
        image_shape=(image_size, image_size, 3),
    )
    decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format="yxyx",
        from_logits=True,
        iou_threshold=IOU_THRESHOLD,
        confidence_threshold=SCORE_THRESHOLD,
        max_detections=MAX_DETECTIONS,
    )
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone,
        num_classes=NUM_CLASSES,
        bounding_box_format="yxyx",
        prediction_decoder=decoder,
    )
    converter = keras_hub.layers.RetinaNetImageConverter(
        image_size=None,
        scale=[1.0 / (255.0 * s) for s in _STD],
        offset=[-m / s for m, s in zip(_MEAN, _STD)],
    )
    return detector, converter


def _final_conv_outputs(layers, run) -> list[np.ndarray]:
    """Zeroes the biases of `layers` (final conv layers) and returns `run()`'s outputs, then pure kernel terms."""
    for layer in layers:
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, np.zeros_like(bias)])
    return [np.asarray(o, np.float64) for o in run()]


def _rescale(layer: keras.layers.Conv2D, scale: float, offset: float) -> None:
    """kernel *= scale, bias = offset: the layer's outputs z become scale * z + offset."""
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * scale, np.full_like(bias, offset)])


def calibrate(class_layer, box_layer, run) -> None:
    """Gives a model's class and box output layers the benchmark's score and delta distributions.

    Class logits become `PRIOR_LOGIT + s * (z - mean z)` with `s` chosen so that a fraction
    `CANDIDATE_FRACTION` of the (anchor, class) scores of the calibration batch lies above
    `SCORE_THRESHOLD`; box deltas become `(z - mean z) * 0.1 / std z`. Both are exact because the
    outputs are linear in the output layer's kernel for fixed inputs.

    Args:
        class_layer, box_layer: the final Conv2D of the class and box subnets.
        run: zero-argument callable returning (class logits, box deltas) of the calibration batch.
    """
    logits, deltas = _final_conv_outputs([class_layer, box_layer], run)
    centred = logits - logits.mean()
    tail = float(np.quantile(centred, 1.0 - CANDIDATE_FRACTION))
    gap = math.log(SCORE_THRESHOLD / (1.0 - SCORE_THRESHOLD)) - PRIOR_LOGIT
    if not tail > 0:
        raise ValueError(f"cannot calibrate {class_layer.name}: its outputs are constant ({logits.shape})")
    scale = gap / tail
    _rescale(class_layer, scale, PRIOR_LOGIT - scale * logits.mean())
    scale = BOX_DELTA_STD / float(deltas.std())
    _rescale(box_layer, scale, -scale * deltas.mean())


def calibrate_ours(model: RetinaNet, images: tf.Tensor) -> None:
    def run():
        raw = model(images, training=False)
        return raw["class_logits"], raw["box_deltas"]

    calibrate(model.class_head.layers[-1], model.box_head.layers[-1], run)


def calibrate_peer(detector, converter, images: tf.Tensor) -> None:
    def run():
        raw = detector(converter(images), training=False)
        return raw["cls_logits"], raw["bbox_regression"]

    calibrate(detector.classification_head.prediction_layer, detector.box_head.prediction_layer, run)


# ----------------------------------------------------------------------------- data


def make_images(batch: int, size: int, seed: int) -> tf.Tensor:
    """float32 RGB 0..255: a smooth random field plus noise (so that features vary across the image)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(batch, 8, 8, 3)).astype(np.float32)
    smooth = tf.image.resize(coarse, (size, size), method="bilinear")
    noise = rng.normal(0, 20, size=(batch, size, size, 3)).astype(np.float32)
    return tf.clip_by_value(smooth + noise, 0.0, 255.0)


def make_targets(batch: int, size: int, seed: int, num_boxes: int = 8, padded: int = 16):
    """Random ground truth: `num_boxes` boxes of 16..size/2 pixels per image, padded to `padded` with -1.

    Returns:
        (ours, peer): ours `{"boxes": xyxy [B, M, 4], "labels": [B, M]}`; peer the same boxes in yxyx
        (keras-hub's format here), padding -1 on both sides.
    """
    rng = np.random.default_rng(seed)
    boxes = np.full((batch, padded, 4), -1.0, np.float32)
    labels = np.full((batch, padded), -1, np.int32)
    for b in range(batch):
        wh = rng.uniform(16, size / 2, size=(num_boxes, 2))
        xy = rng.uniform(0, 1, size=(num_boxes, 2)) * (size - wh)
        boxes[b, :num_boxes] = np.concatenate([xy, xy + wh], axis=1)
        labels[b, :num_boxes] = rng.integers(0, NUM_CLASSES, size=num_boxes)
    yxyx = boxes[..., [1, 0, 3, 2]]
    ours = {"boxes": tf.constant(boxes), "labels": tf.constant(labels)}
    peer = {"boxes": tf.constant(yxyx), "labels": tf.constant(labels)}
    return ours, peer


# ----------------------------------------------------------------------------- cases


def _candidates_above(logits: np.ndarray) -> tuple[float, float]:
    """Mean per image of (anchor, class) scores above the threshold, and of anchors whose best score is."""
    above = 1.0 / (1.0 + np.exp(-logits)) > SCORE_THRESHOLD
    return float(above.sum(axis=(1, 2)).mean()), float(above.any(axis=2).sum(axis=1).mean())


def inference_case(ours, peer, converter, images: tf.Tensor, ours_precision="float32", peer_precision="float32",
                   limit=FLOAT32_LIMIT) -> Case:
    """Inference + NMS of both sides on `images`; the precisions only label the row (the models carry them)."""
    batch, size = int(images.shape[0]), int(images.shape[1])
    ours_fn = tf.function(ours.detect)
    if peer_precision == "float32":
        peer_fn = tf.function(lambda x: peer.predict_step(converter(x)))
    else:
        # keras-hub 0.32's predict_step fails under a mixed policy (its box decoding multiplies the bfloat16 deltas
        # by float32 anchors); this is its predict_step with the head outputs cast to float32 first
        def peer_predict(x):
            inputs = converter(x)
            outputs = keras.tree.map_structure(lambda t: tf.cast(t, tf.float32), peer(inputs, training=False))
            return peer.decode_predictions(outputs, inputs)

        peer_fn = tf.function(peer_predict)

    ours_pairs, _ = _candidates_above(tf.cast(ours(images, training=False)["class_logits"], tf.float32).numpy())
    peer_logits = tf.cast(peer(converter(images), training=False)["cls_logits"], tf.float32)
    peer_pairs, peer_anchors = _candidates_above(peer_logits.numpy())
    ours_kept = float(np.mean(ours_fn(images)["num_detections"].numpy()))
    peer_kept = float(np.mean(peer_fn(images)["num_detections"].numpy()))
    note = (
        f"float32 images 0..255; scores above {SCORE_THRESHOLD} per image: ours {ours_pairs:.0f} (anchor, class) pairs "
        f"-> per-class NMS keeps {ours_kept:.0f}; keras-hub {peer_pairs:.0f} pairs, {peer_anchors:.0f} anchors by best class "
        f"-> class-agnostic NMS keeps {peer_kept:.0f}"
    )
    if (ours_precision, peer_precision) != ("float32", "float32"):
        note += f"; ours {precision_label(ours_precision)}, keras-hub {peer_precision}"
    if peer_precision != "float32":
        note += PEER_CAST_NOTE
    suffix = "" if (ours_precision, peer_precision) == ("float32", "float32") else (
        f", ours {ours_precision} vs keras-hub {peer_precision}")
    return Case(
        name=f"RetinaNet R50-FPN {size}x{size}, inference + NMS, batch {batch}{suffix}",
        ours=lambda: ours_fn(images)["num_detections"].numpy(),
        peer=lambda: peer_fn(images)["num_detections"].numpy(),
        peer_name=f"keras_hub RetinaNetObjectDetector.predict_step ({peer_precision})",
        limit=limit,
        note=note,
    )


PEER_CAST_NOTE = ("; keras-hub's predict_step fails under the mixed policy (float32 anchors times bfloat16 deltas), "
                  "so its head outputs are cast to float32 before its own decode_predictions, whose NonMaxSuppression "
                  "layer (built under the policy, inputs autocast) then runs in bfloat16; ours decodes and suppresses "
                  "in float32")


def precision_copies(ours, peer, size: int, precision: str):
    """Copies of both calibrated float32 models built under `precision` (ours through kerasdet's precision rule,
    keras-hub's under the same global Keras policy), with the same weights; returns (ours, peer, converter)."""
    from kerasdet.zoo.precision import resolve_precision

    ours_copy = copy_in_precision(lambda: build_ours(size), ours, precision, size)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(precision))
    try:
        peer_copy, converter = build_peer(size)
    finally:
        keras.config.set_dtype_policy(previous)
    peer_copy.set_weights(peer.get_weights())
    return ours_copy, peer_copy, converter


def training_case(ours, peer, converter, images: tf.Tensor, seed: int) -> Case:
    batch, size = int(images.shape[0]), int(images.shape[1])
    ours_y, peer_y = make_targets(batch, size, seed)

    def peer_step():
        # keras-hub 0.32's PipelineModel.train_on_batch calls convert_to_tensor on the whole `y` and
        # fails on dict targets; with no preprocessor attached it does nothing else, so we call
        # Keras' own train_on_batch (the same compiled train function `fit` uses)
        return keras.Model.train_on_batch(peer, converter(images), peer_y)

    return Case(
        name=f"RetinaNet R50-FPN {size}x{size}, one training step, batch {batch}",
        ours=lambda: ours.train_on_batch(images, ours_y),
        peer=peer_step,
        peer_name="keras_hub RetinaNetObjectDetector.train_on_batch",
        limit=1.0,
        note=(
            "train_on_batch, no XLA, SGD(1e-4, momentum 0.9); 8 objects per image; ours focal + smooth L1, "
            "matcher with low-quality matches; keras-hub BinaryFocalCrossentropy + Huber, no forced matches"
        ),
    )


def compile_both(ours, peer) -> None:
    ours.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9), jit_compile=False)
    peer.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9), jit_compile=False)


#: the compact architecture of each family, and the zoo model trained with it (None: not released)
LINEAGE = (
    ("retinanet-compact", "retinanet_resnet18_shapes"),
    ("faster-rcnn-compact", "faster_rcnn_resnet18_shapes"),
    ("mask-rcnn-compact", "mask_rcnn_resnet18_shapes"),
    ("ssd-compact-resnet18", "ssd_resnet18_shapes"),
    ("yolo-v1-compact", "yolo_v1_shapes"),
    ("fast-yolo-compact", "fast_yolo_shapes"),
    ("yolo-v2-compact", "yolo_v2_shapes"),
    ("yolo9000-compact", "yolo9000_shapes"),
)
LINEAGE_START, LINEAGE_END = "<!-- lineage:start -->", "<!-- lineage:end -->"


def _lineage_models():
    """`({arch: model}, {arch: weights source})` for LINEAGE: the zoo's weights where released, random ones else."""
    import kerasdet
    from kerasdet.cli import build_model
    from kerasdet.data import synthetic

    models, sources = {}, {}
    for arch, zoo_name in LINEAGE:
        if zoo_name in kerasdet.zoo.list():
            models[arch], sources[arch] = kerasdet.zoo.load(zoo_name), f"`{zoo_name}`"
        else:
            names = list(synthetic.CLASS_NAMES)
            keypoints = synthetic.keypoint_names() if arch.startswith("mask") else None
            tree = synthetic.hierarchy() if arch.startswith("yolo9000") else None
            models[arch] = build_model(arch, len(names), names, keypoints=keypoints, word_tree=tree)
            models[arch].build_for_size(256)
            sources[arch] = "random weights"
    return models, sources


def lineage(args) -> int:
    """Images per second of every family's compact model, batch 1 and 8, interleaved (see the module docstring)."""
    from kerasdet.data import synthetic

    models, sources = _lineage_models()
    images, _ = synthetic.generate(max(args.batches), 256, seed=synthetic.split_seed("test"))
    images = tf.constant(images, tf.float32)
    results = {}
    for b in args.batches:
        batch = images[:b]
        fns = {arch: (lambda f=tf.function(m.detect), x=batch: f(x)) for arch, m in models.items()}
        ms = interleaved_medians(fns, rounds=args.rounds, warmup=args.warmup)
        results[b] = {arch: b / (t / 1e3) for arch, t in ms.items()}
        for arch in models:
            print(f"[bench] batch {b} {arch}: {results[b][arch]:.1f} images/s", flush=True)
    lines = ["| architecture | weights | parameters | " + " | ".join(f"images/s, batch {b}" for b in args.batches)
             + " | " + " | ".join(f"/ fastest, batch {b}" for b in args.batches) + " |",
             "|---|---|---:|" + "---:|" * (2 * len(args.batches))]
    for arch, m in models.items():
        speeds = " | ".join(f"{results[b][arch]:.1f}" for b in args.batches)
        ratios = " | ".join(f"{results[b][arch] / max(results[b].values()):.3f}" for b in args.batches)
        lines.append(f"| {arch} | {sources[arch]} | {m.count_params() / 1e6:.2f} M | {speeds} | {ratios} |")
    table = "\n".join(lines)
    print(table)
    if args.print_only:
        return 0
    body = "\n".join([
        "## Compact models of every family (`benchmarks/models.py --lineage`)",
        "",
        f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on "
        f"{machine_description()}; TensorFlow {tf.__version__}, Keras {keras.__version__}, 2 intra-op threads, 1 inter-op "
        f"thread, CPU. `tf.function(model.detect)` (network, decoding and NMS) on embedded test images at 256x256, all "
        f"models interleaved in each of {args.rounds} rounds after {args.warmup} warm-up calls, medians as images per "
        "second; released weights where the zoo has the architecture (the load NMS gets depends on the scores), random "
        "weights otherwise.",
        "",
        table,
    ])
    write_section(ROOT / "benchmarks" / "RESULTS.md", LINEAGE_START, LINEAGE_END, body)
    return 0


SHARE_START, SHARE_END = "<!-- share:start -->", "<!-- share:end -->"
SHARE_LIMIT = 0.15


def _share_fns(model, images):
    """`{"detect": ..., "decode + final NMS": ..., "RPN proposals": ...}`: the whole `detect` and, each alone on its
    inputs captured from one eager run, `decode_and_suppress` and (two-stage families) the RPN's proposal
    generation (its decoding, per-level top-k and NMS)."""
    from benchmarks.two_stage import capture_call

    rpn = getattr(model, "rpn", None)
    if rpn is not None:
        raw, proposal_inputs = capture_call(rpn.test_proposals, lambda: model(images, training=False))
    else:
        raw, proposal_inputs = model(images, training=False), None
    detect = tf.function(model.detect)
    decode = tf.function(lambda r, x: model.decode_and_suppress(r, x))
    fns = {"detect": lambda: detect(images), "decode + final NMS": lambda: decode(raw, images)}
    if proposal_inputs is not None:
        proposals = tf.function(lambda args, kwargs: rpn.test_proposals(*args, **kwargs))
        fns["RPN proposals"] = lambda: proposals(*proposal_inputs)
    candidates = model.decode_candidates(raw, images)[1]
    count = float(np.sum(candidates.numpy() > model.score_threshold)) / int(images.shape[0])
    return fns, count


def share(args) -> int:
    """The share of each compact model's `detect` time spent in decoding and NMS (the RPN's included), batch 8."""
    from kerasdet.data import synthetic

    models, sources = _lineage_models()
    batch = max(args.batches)
    images, _ = synthetic.generate(batch, 256, seed=synthetic.split_seed("test"))
    images = tf.constant(images, tf.float32)
    rows = []
    for arch, model in models.items():
        fns, count = _share_fns(model, images)
        ms = interleaved_medians(fns, rounds=args.rounds, warmup=args.warmup)
        post = sum(t for name, t in ms.items() if name != "detect")
        rows.append((arch, sources[arch], ms, post / ms["detect"], count))
        print(f"[bench] {arch}: detect {ms['detect']:.1f} ms, decoding + NMS {post:.1f} ms "
              f"({post / ms['detect']:.1%}), {count:.0f} candidates per image", flush=True)
    lines = ["| architecture | weights | candidates per image above the score threshold | detect (ms) | "
             "decode + final NMS (ms) | RPN proposals (ms) | share | limit | within |",
             "|---|---|---:|---:|---:|---:|---:|---:|:---:|"]
    for arch, source, ms, fraction, count in rows:
        rpn = f"{ms['RPN proposals']:.1f}" if "RPN proposals" in ms else "-"
        within = "yes" if fraction <= SHARE_LIMIT else "**no**"
        lines.append(f"| {arch} | {source} | {count:.0f} | {ms['detect']:.1f} | {ms['decode + final NMS']:.1f} | "
                     f"{rpn} | {fraction:.1%} | {SHARE_LIMIT:.0%} | {within} |")
    table = "\n".join(lines)
    print(table)
    if args.print_only:
        return 0
    body = "\n".join([
        "## Decoding and NMS share of inference (`benchmarks/models.py --share`)",
        "",
        f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on "
        f"{machine_description()}; TensorFlow {tf.__version__}, Keras {keras.__version__}, 2 intra-op threads, 1 "
        f"inter-op thread, CPU, float32. Batch {batch} of embedded test images at 256x256; each piece a "
        f"`tf.function` on its inputs captured from one eager run, interleaved with the whole `detect` in each of "
        f"{args.rounds} rounds after {args.warmup} warm-up calls (medians). Decode + final NMS = "
        "`Detector.decode_and_suppress` (the family's `decode_candidates` and per-class NMS, before any head that "
        "runs on the kept boxes); RPN proposals = `model.rpn.test_proposals` (decoding, per-level top-k, NMS). "
        "Share = their sum over `detect`. The NMS load depends on the weights: random-weight models (no released "
        "model) score many candidates, which trained ones do not.",
        "",
        table,
    ])
    write_section(ROOT / "benchmarks" / "RESULTS.md", SHARE_START, SHARE_END, body)
    return 0


XLA_START, XLA_END = "<!-- xla:start -->", "<!-- xla:end -->"
XLA_GAIN = 0.9  # XLA goes on by default only where it takes at most 0.9x the time, compilation amortised over 100


def _with_xla_forward(model, size):
    """A copy of `model` built with `xla_forward=True`, same weights."""
    twin = type(model).from_config(dict(model.get_config(), xla_forward=True))
    twin.build_for_size(size)
    twin.set_weights(model.get_weights())
    return twin


def xla(args) -> int:
    """`detect` with the forward pass under XLA against without, for every family that allows it (compact models at
    256 px, and RetinaNet ResNet-50-FPN at 512), compilation included and amortised over 100 batches."""
    from kerasdet.data import synthetic

    models, sources = _lineage_models()
    cases = [(arch, m, sources[arch], 256) for arch, m in models.items() if m.supports_xla_forward]
    cases.append(("retinanet-resnet50 (512 px)", build_ours(512), "random weights", 512))
    batch = max(args.batches)
    rows = []
    for arch, model, source, size in cases:
        images, _ = synthetic.generate(batch, size, seed=synthetic.split_seed("test"))
        images = tf.constant(images, tf.float32)
        tf.function(model.detect)(images)  # one-time costs of the process and the model, outside both first calls
        fns, first = {}, {}
        for name, m in (("plain", model), ("xla", _with_xla_forward(model, size))):
            fn = tf.function(m.detect)
            start = time.perf_counter()
            fn(images)["boxes"].numpy()
            first[name] = time.perf_counter() - start
            fns[name] = lambda fn=fn: fn(images)["boxes"].numpy()
        ms = interleaved_medians(fns, rounds=args.rounds, warmup=1)
        ratio = ms["xla"] / ms["plain"]
        amortised = (100 * ms["xla"] / 1e3 + first["xla"]) / (100 * ms["plain"] / 1e3 + first["plain"])
        rows.append((arch, source, ms, first, ratio, amortised))
        print(f"[bench] {arch}: plain {ms['plain']:.1f} ms, XLA {ms['xla']:.1f} ms ({ratio:.3f}); first calls "
              f"{first['plain']:.1f} s / {first['xla']:.1f} s; amortised over 100 batches {amortised:.3f}", flush=True)
    lines = ["| model | weights | detect (ms) | detect, XLA forward (ms) | ratio | first call (s) | first call, XLA (s) | "
             "ratio, compilation amortised over 100 batches | XLA on by default |",
             "|---|---|---:|---:|---:|---:|---:|---:|:---:|"]
    for arch, source, ms, first, ratio, amortised in rows:
        lines.append(f"| {arch} | {source} | {ms['plain']:.1f} | {ms['xla']:.1f} | {ratio:.3f} | {first['plain']:.1f} | "
                     f"{first['xla']:.1f} | {amortised:.3f} | {'yes' if amortised <= XLA_GAIN else 'no'} |")
    table = "\n".join(lines)
    print(table)
    if args.print_only:
        return 0
    body = "\n".join([
        "## XLA for the forward pass (`benchmarks/models.py --xla`)",
        "",
        f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on {machine_description()}; "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, 2 intra-op threads, 1 inter-op thread, CPU, float32. `tf.function(model.detect)` at batch {batch}, the model as is "
        "and a copy built with `xla_forward=True` (same weights), interleaved in each of "
        f"{args.rounds} rounds (medians); the first call of each (tracing, and XLA's compilation) is timed apart, "
        "after a throwaway call that takes the process's and the model's one-time costs. Two-stage "
        "families are not listed: their forward pass holds the RPN's NMS and RoI pooling, which have no XLA kernel. "
        f"XLA would go on by default where the amortised ratio is at most {XLA_GAIN}.",
        "",
        table,
    ])
    write_section(ROOT / "benchmarks" / "RESULTS.md", XLA_START, XLA_END, body)
    return 0


def parse_args(argv=None):
    parser = detector_parser(__doc__.splitlines()[0], batches=(1, 8), image_size=512, multiple=128)
    parser.add_argument("--precisions", nargs="+", choices=tuple(PRECISION_PAIRS), default=list(PRECISION_PAIRS),
                        help="inference cases: float32 (both sides), auto (ours; keras-hub float32), mixed_bfloat16 "
                             "(both sides); default all three")
    parser.add_argument("--lineage", action="store_true", help="time every family's compact model instead")
    parser.add_argument("--xla", action="store_true",
                        help="detect with and without an XLA-compiled forward pass, every family that allows it")
    parser.add_argument("--share", action="store_true",
                        help="the share of decoding and NMS in every compact model's inference at the largest batch")
    args = parser.parse_args(argv)
    if args.image_size % 128:
        parser.error(f"--image-size must be a multiple of 128 (P7 stride); got {args.image_size}")
    if args.warmup < 1:
        parser.error(f"--warmup must be >= 1 (the first call traces); got {args.warmup}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.lineage:
        return lineage(args)
    if args.share:
        return share(args)
    if args.xla:
        return xla(args)
    size = args.image_size
    keras.utils.set_random_seed(0)
    print(f"[bench] building both models for {size}x{size} ...", flush=True)
    ours = build_ours(size)
    peer, converter = build_peer(size)
    # every batch is a prefix of one set of images, which also calibrates the output layers
    base = make_images(max(args.batches), size, seed=1)
    calibrate_ours(ours, base)
    calibrate_peer(peer, converter, base)
    params = f"parameters: ours {ours.count_params() / 1e6:.2f} M, keras-hub {peer.count_params() / 1e6:.2f} M"
    print(f"[bench] {params}", flush=True)
    images = {b: base[:b] for b in args.batches}
    # the "auto" bar is judged on a CPU with AMX only: elsewhere the row is recorded without a limit
    limits = {"float32": FLOAT32_LIMIT, "auto": AUTO_LIMIT if has_amx() else None,
              "mixed_bfloat16": BF16_LIMIT}

    def cases():
        # a generator: all inference cases are timed before compile_both, which training needs
        for kind in ("inference", "training"):
            if args.only not in (None, kind):
                continue
            if kind == "training":
                compile_both(ours, peer)
                for b in args.batches:
                    yield training_case(ours, peer, converter, images[b], seed=100 + b)
                continue
            for name in args.precisions:
                ours_precision, peer_precision = PRECISION_PAIRS[name]
                if name == "float32":
                    pair = (ours, peer, converter)
                else:
                    print(f"[bench] building both models again for ours {ours_precision}, keras-hub {peer_precision} "
                          "(same weights) ...", flush=True)
                    if name == "auto":  # keras-hub stays float32
                        pair = (copy_in_precision(lambda: build_ours(size), ours, "auto", size), peer, converter)
                    else:
                        pair = precision_copies(ours, peer, size, ours_precision)
                for b in args.batches:
                    yield inference_case(*pair, images[b], ours_precision, peer_precision, limits[name])

    rows = run_cases(cases(), rounds=args.rounds, warmup=args.warmup, peer_label="keras-hub", precision=1)
    table = markdown_table(rows)
    print(table)
    print_over_limit(rows)
    if args.print_only or args.only:
        return 0
    import keras_hub

    body = "\n".join(
        [
            "## Detectors (`benchmarks/models.py`)",
            "",
            f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on {machine_description()}; "
            f"{bf16_support()};",
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}, keras-hub {keras_hub.__version__}, 2 intra-op threads, "
            f"1 inter-op thread, CPU, medians of {args.rounds} interleaved rounds after {args.warmup} warm-up calls (tracing included).",
            "",
            f"Limits (issue 14): inference in float32 at most {FLOAT32_LIMIT}x keras-hub's; ours in `auto` at most "
            f"{AUTO_LIMIT}x keras-hub's float32 (judged on a CPU with AMX only; elsewhere the row has no limit); both in mixed_bfloat16 at most {BF16_LIMIT}x; training steps (float32) "
            "at most 1.0x. The bfloat16 models are copies of the float32 ones built under the policy, with the same weights "
            "(so their NMS load differs from float32's only by rounding; counts below).",
            "",
            f"Both: RetinaNet ResNet-50-FPN P3-P7, {NUM_CLASSES} classes, 9 anchors per location (sizes 32-512), random weights, "
            f"{size}x{size} RGB; {params}. Output layers re-scaled on both sides to the same score and delta distributions "
            f"(class logits centred on {PRIOR_LOGIT:.2f} with {CANDIDATE_FRACTION:.2%} of the (anchor, class) scores above "
            f"{SCORE_THRESHOLD}, box deltas of std {BOX_DELTA_STD}) so that NMS gets the same load; see the counts below. "
            "Backbones: ours is ResNet-50 v1 (keras.applications layout, stride on the first 1x1), keras-hub's v1.5 "
            "(stride on the 3x3, about 5% more backbone FLOPs); the subnets dominate at this size. Inference: ours "
            "`tf.function(model.detect)`, keras-hub `tf.function(converter + predict_step)` (the converter's scale + offset is "
            "the work of our in-model preprocessing layer); score threshold 0.05, IoU 0.5, 100 detections; ours per-class NMS, "
            "keras-hub class-agnostic (its only mode). Training: `train_on_batch` on both, same optimizer, each model's own loss.",
            "",
            table,
        ]
    )
    write_section(ROOT / "benchmarks" / "RESULTS.md", START, END, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
