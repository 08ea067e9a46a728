"""Times kerasdet's SSD300-VGG16 and an SSDLite of ours against torchvision's `ssd300_vgg16` and
`ssdlite320_mobilenet_v3_large`, side by side on CPU.

    bash benchmarks/make_torch_env.sh      # once: torch + torchvision in benchmarks/.torch-venv (never in .venv)
    .venv/bin/python benchmarks/ssd.py     # both models, inference batch 1 and 8, a training step; writes RESULTS.md
    .venv/bin/python benchmarks/ssd.py --rounds 1 --warmup 1 --batches 1 --print-only --model ssd300   # smoke

The harness of benchmarks/two_stage.py (whose `TorchPeer`, calibration helpers and row notes it imports):
torchvision runs in the worker benchmarks/torch_peer.py in its own virtualenv, driven over a pipe, rounds
interleaved (ours, peer, peer, ours...), medians after warm-up, 2 intra-op threads and 1 inter-op thread on both
sides, random weights, float32, CPU. Two comparisons (`--model ssd300|ssdlite|both`), each with a fresh worker:

- ssd300: ours `SSD.paper_config(300, num_classes=90)` (reduced VGG16, conv4_3 L2 norm, 8732 default boxes)
  vs `ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91)` (the same network; its class count
  includes the background), 300x300 images.
- ssdlite: ours `SSD.ssdlite(num_classes=90, size=320, backbone="mobilenet_v3_large")` (torchvision's SSDLite320
  layout on the same trunk, MobileNetV3-Large with the reduced tail, 1.62 M parameters on both sides: maps from the
  expansion of the first stride-32 block and the last convolution, four depthwise-separable extras, 6 default
  boxes per cell, 3234 in all) vs `ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
  num_classes=91)`. The extras and predictors differ in detail (ours: bias and ReLU, no batch norm; the peer's:
  batch norm and ReLU6), hence 3.43 M against 3.44 M parameters (in the notes). 320x320 images.

Same detection settings on both: score threshold 0.01, per-class NMS 0.45, 200 detections (torchvision's SSDLite
defaults, 0.001 / 0.55 / 300, are overridden; its per-class top-400 before NMS is kept, ours has none). Inference:
ours `model.predict_on_batch(images)` (Keras' predict function, NMS inside, numpy out); peer `model.eval()` and
`model(images)` under `torch.inference_mode()` (its transform normalises and resizes to its fixed size, which
the images already have). Training, one step: ours `model.train_on_batch(images, targets)` after
`compile(optimizer=keras.optimizers.SGD(lr))` (matching, hard negative mining, loss, backward, update); peer
`model.train()`, the sum of its loss dict, `backward()`, `torch.optim.SGD(lr=lr).step()`.

Inference also runs ours in `precision="auto"` (`--precisions`; bfloat16 on CPUs with AMX or AVX512-BF16, a copy
built under the policy with the same weights) against the peer in float32; the section names the CPU's bfloat16
flags.

Calibration (as two_stage.py, benchmarks/calibration.py): random class layers give every softmax score about
1 / 91, above SSD's 0.01, so every default box would be a candidate of every class. Both models get backbone
batch-norm statistics from the benchmark images, class logits of std 1 with the background logit's bias raised
until 0.5% of the (default box, object class) scores pass 0.01, box offsets of std 0.1; the counts each side then
sees are in the notes.

Run it on an otherwise idle machine (see two_stage.py: torch's OpenMP threads suffer most from a busy core).
"""

from __future__ import annotations

import datetime
import os
import pathlib
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.two_stage import (  # noqa: E402  (sets the TensorFlow thread counts on import)
    DEFAULT_TORCH_VENV, INTER_OP_THREADS, INTRA_OP_THREADS, TorchPeer, _rescale, _trainable, annotate_rows,
    set_batch_norm_statistics, warn_if_busy,
)

import keras  # noqa: E402

from benchmarks.calibration import BOX_DELTA_STD, CANDIDATE_FRACTION, background_offset, std_scale  # noqa: E402
from benchmarks.torch_peer import LOGIT_STD  # noqa: E402
from benchmarks.models import make_images, make_targets  # noqa: E402
from benchmarks.timing import (  # noqa: E402
    command_line,
    Case, detector_parser, machine_description, markdown_table, print_over_limit, run_cases, write_section,
)
from benchmarks.precision import (  # noqa: E402
    add_precision_argument, bf16_support, copy_in_precision, precision_label)
from kerasdet.models.ssd import SSD  # noqa: E402

START, END = "<!-- ssd:start -->", "<!-- ssd:end -->"
NUM_CLASSES = 90
LEARNING_RATE = 1e-3
BOXES_PER_IMAGE = 4
#: per comparison: image side, the torch worker's arch, the peer's name, how ours is built
MODELS = {
    "ssd300": dict(size=300, arch="ssd300", peer="torchvision ssd300_vgg16",
                   build=lambda: SSD.paper_config(300, num_classes=NUM_CLASSES),
                   ours="`SSD.paper_config(300, num_classes=90)`: reduced VGG16, conv4_3 L2 norm, 8732 default boxes"),
    "ssdlite": dict(size=320, arch="ssdlite320", peer="torchvision ssdlite320_mobilenet_v3_large",
                    build=lambda: SSD.ssdlite(num_classes=NUM_CLASSES, size=320, backbone="mobilenet_v3_large"),
                    ours="`SSD.ssdlite(num_classes=90, size=320, backbone=\"mobilenet_v3_large\")`: torchvision's "
                         "SSDLite320 layout on the peer's trunk (MobileNetV3-Large, reduced tail): maps from the "
                         "stride-16 expansion and the last convolution + 4 separable extras (20, 10, 5, 3, 2, 1 "
                         "cells), 6 default boxes per cell, 3234 in all"),
}


def calibrate_ours(model: SSD, images) -> None:
    """Backbone batch-norm statistics from `images`; class logits of std LOGIT_STD with the background logit's
    bias set so that CANDIDATE_FRACTION of the (default box, object class) scores pass the score threshold (the
    arithmetic of torch_peer.calibrate_ssd); box offsets of std 0.1."""
    set_batch_norm_statistics(model.backbone, images)
    classes, boxes = list(model.class_heads), list(model.box_heads)
    for layer in classes + boxes:
        _rescale(layer, 1.0)
    raw = model(images, training=False)
    logits = raw["class_logits"].numpy()
    scale = LOGIT_STD / float(logits.std())
    offset = background_offset(logits * scale, fraction=CANDIDATE_FRACTION, threshold=model.score_threshold)
    for layer in classes:  # output channels are (box, logit) pairs, logit 0 the background
        _rescale(layer, scale)
        weights = layer.get_weights()
        weights[-1].reshape(-1, NUM_CLASSES + 1)[:, 0] = offset
        layer.set_weights(weights)
    scale, offset = std_scale(raw["box_deltas"].numpy(), BOX_DELTA_STD)
    for layer in boxes:
        _rescale(layer, scale, offset)


def ours_counts(model: SSD, images) -> dict:
    raw = model(images, training=False)
    _, scores = model.decode_candidates(raw, images)
    detections = model.predict_on_batch(images)
    return {"candidates_per_image": float(np.sum(scores.numpy() > model.score_threshold)) / int(images.shape[0]),
            "detections_per_image": float(np.mean(detections["num_detections"]))}


def peer_settings(model: SSD) -> dict:
    return {"score_thresh": model.score_threshold, "nms_thresh": model.nms_iou_threshold,
            "detections_per_img": model.max_detections}


def inference_case(label: str, spec: dict, model: SSD, peer: TorchPeer, images, precision="float32") -> Case:
    batch, size = int(images.shape[0]), int(images.shape[1])
    name = f"{label} {size}x{size}, inference + NMS, batch {batch}"
    if precision != "float32":
        name += f", ours {precision} vs torchvision float32"
    theirs = peer.request(case=name, kind="inference", batch=batch, size=size, threads=INTRA_OP_THREADS)
    ours = ours_counts(model, images)
    return Case(
        name=name, ours=lambda: model.predict_on_batch(images), peer=lambda: peer.run(name), peer_name=spec["peer"],
        note=(f"per image: (box, class) scores above {model.score_threshold} ours {ours['candidates_per_image']:.0f} / "
              f"torchvision {theirs['candidates_per_image']:.0f}; detections ours {ours['detections_per_image']:.0f} / "
              f"torchvision {theirs['detections_per_image']:.0f}"
              + ("" if precision == "float32" else f"; ours {precision_label(precision)}, torchvision float32")),
    )


def training_case(label: str, spec: dict, model: SSD, peer: TorchPeer, images, targets, losses: dict,
                  learning_rate: float) -> Case:
    batch, size = int(images.shape[0]), int(images.shape[1])
    name = f"{label} {size}x{size}, training step, batch {batch}"
    first_peer = peer.request(case=name, kind="training", batch=batch, size=size, threads=INTRA_OP_THREADS,
                              learning_rate=learning_rate)["loss"]
    def step():
        return float(model.train_on_batch(images, targets, return_dict=True)["loss"])

    first_ours = step()

    def ours_step():
        losses[name] = (step(), losses.get(name, (None, None))[1])

    def peer_step():
        losses[name] = (losses.get(name, (None, None))[0], peer.run(name))

    return Case(name=name, ours=ours_step, peer=peer_step, peer_name=f"{spec['peer']}, train + backward + SGD step",
                note=(f"ours `train_on_batch`, no XLA; both SGD({learning_rate:g}), {BOXES_PER_IMAGE} boxes per image; "
                      f"loss before the timed steps ours {first_ours:.3f} / torchvision {first_peer:.3f}"))


def parse_args(argv=None):
    parser = detector_parser(__doc__.splitlines()[0], batches=(1, 8), image_size=300, multiple=1)
    parser.add_argument("--model", choices=("ssd300", "ssdlite", "both"), default="both")
    parser.add_argument("--training-batch", type=int, default=4, help="batch of the training step (default 4)")
    add_precision_argument(parser, "the peer")
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    parser.add_argument("--torch-python", type=pathlib.Path,
                        default=pathlib.Path(os.environ.get("TORCH_VENV", DEFAULT_TORCH_VENV)) / "bin" / "python")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error(f"--warmup must be >= 1 (the first call traces); got {args.warmup}")
    return args


def run_model(key: str, args) -> tuple[list, str]:
    spec = MODELS[key]
    size = spec["size"]
    label = {"ssd300": "SSD300-VGG16", "ssdlite": "SSDLite"}[key]
    keras.utils.set_random_seed(0)
    batch = max(max(args.batches), args.training_batch)
    base = make_images(batch, size, seed=1)
    targets, _ = make_targets(batch, size, seed=2, num_boxes=BOXES_PER_IMAGE, padded=BOXES_PER_IMAGE)
    print(f"[bench] building ours ({key}) for {size}x{size} ...", flush=True)
    model = spec["build"]().build_for_size(size)
    calibrate_ours(model, base)
    peer = TorchPeer(args.torch_python, INTRA_OP_THREADS, INTER_OP_THREADS)
    losses = {}
    try:
        print(f"[bench] torch worker: {peer.info}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            data = pathlib.Path(tmp) / "data.npz"
            np.savez(data, images=base.numpy(), boxes=targets["boxes"].numpy(),
                     labels=targets["labels"].numpy())
            built = peer.request(model=dict(size=size, data=str(data), num_classes=NUM_CLASSES + 1, arch=spec["arch"],
                                            settings=peer_settings(model)))
        params = (f"parameters: ours {model.count_params() / 1e6:.2f} M, torchvision {built['params'] / 1e6:.2f} M; "
                  f"normalisation layers of torchvision's: {built['batch_norm']}")
        print(f"[bench] {params}", flush=True)

        def cases():
            for kind in ("inference", "training"):
                if args.only not in (None, kind):
                    continue
                if kind == "inference":
                    for precision in args.precisions:
                        variant = model if precision == "float32" else copy_in_precision(
                            spec["build"], model, precision, size)
                        for b in args.batches:
                            yield inference_case(label, spec, variant, peer, base[:b], precision)
                else:
                    model.compile(optimizer=keras.optimizers.SGD(args.learning_rate))
                    b = args.training_batch
                    y = {k: v[:b] for k, v in targets.items()}
                    yield training_case(label, spec, model, peer, base[:b], y, losses, args.learning_rate)

        rows = run_cases(cases(), rounds=args.rounds, warmup=args.warmup, peer_label="torchvision", precision=1)
    finally:
        peer.close()
    annotate_rows(rows, peer, losses)
    for row in rows:
        row["note"] += f"; {params}"
    header = (f"- {label}: ours {spec['ours']} ({_trainable(model) / 1e6:.2f} M trainable); peer {spec['peer']}"
              f"(weights=None, weights_backbone=None, num_classes={NUM_CLASSES + 1}); torch {peer.info['torch']}, "
              f"torchvision {peer.info['torchvision']}")
    return rows, header


def main(argv=None) -> int:
    args = parse_args(argv)
    warn_if_busy()
    keys = ["ssd300", "ssdlite"] if args.model == "both" else [args.model]
    rows, headers = [], []
    for key in keys:
        r, h = run_model(key, args)
        rows += r
        headers.append(h)
    table = markdown_table(rows)
    print(table)
    print_over_limit(rows)
    if args.print_only or args.only:
        return 0
    body = "\n".join([
        "## SSD (`benchmarks/ssd.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on {machine_description()}; "
        f"{bf16_support()};",
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; {INTRA_OP_THREADS} intra-op threads and "
        f"{INTER_OP_THREADS} inter-op thread on both sides, CPU, float32 (and ours in `auto` precision where the row "
        f"says so: a copy built under the policy with the same weights), random weights calibrated alike (0.5% of the "
        f"(box, class) scores above 0.01, box offsets of std 0.1), medians of {args.rounds} interleaved rounds after "
        f"{args.warmup} warm-up calls; score threshold 0.01, NMS 0.45, 200 detections on both; training SGD("
        f"{args.learning_rate:g}) on {BOXES_PER_IMAGE} random boxes per image. See the script's docstring.",
        "",
        *headers,
        "",
        table,
    ])
    write_section(ROOT / "benchmarks" / "RESULTS.md", START, END, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
