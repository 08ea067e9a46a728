"""Times kerasdet's Faster R-CNN ResNet-50-FPN against torchvision's `fasterrcnn_resnet50_fpn`, side by side on CPU.

    bash benchmarks/make_torch_env.sh          # once: torch + torchvision in benchmarks/.torch-venv (never in .venv)
    .venv/bin/python benchmarks/two_stage.py   # 800x800, batches 1 and 2, writes RESULTS.md (roughly 15 min, ~10 GB)
    .venv/bin/python benchmarks/two_stage.py --rounds 1 --warmup 1 --batches 1 --image-size 320 --print-only  # smoke

torchvision lives in a separate virtualenv (`TORCH_VENV`, default benchmarks/.torch-venv, or
`--torch-python`); its model runs in a worker subprocess (benchmarks/torch_peer.py) that this script drives
over a pipe, one JSON request per timed call, so the rounds still alternate ours, peer, ours, peer...
(benchmarks/timing.py; the peer's time is the round trip, which adds well under a millisecond to calls of
seconds; the worker's own timing is given in the notes).

Both sides: random weights, float32, CPU, 2 intra-op threads and 1 inter-op thread (TensorFlow's set
below before it starts; the worker calls `torch.set_num_threads(2)` and `torch.set_num_interop_threads(1)`
and has OMP_NUM_THREADS / MKL_NUM_THREADS 2), warm-up excluded, medians of interleaved rounds.

- ours: `FasterRCNN.paper_config("resnet50_fpn", num_classes=91)`: ResNet-50 (frozen batch norm) + FPN
  P2-P6, RPN 1000 / 1000 test proposals (2000 / 2000 in training), MultiLevelRoIAlign 7x7, 2 fc 1024,
  score threshold 0.05, per-class NMS 0.5, 100 detections. Inference is `model.predict_on_batch(images)`
  (Keras' predict function around `predict_step` -> `detect`, what a Keras user calls; numpy out);
  training is `model.train_on_batch(images, targets)` after `model.compile(optimizer=keras.optimizers.SGD(lr))`.
  Inference also runs in `precision="auto"` (`--precisions`; bfloat16 on CPUs with AMX or AVX512-BF16, a copy
  built under the policy with the same weights) against the peer's float32.
- peer: `torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
  num_classes=92, min_size=S, max_size=S, ...)` with ours' proposal, sampling and detection settings
  passed explicitly (they are torchvision's defaults too). `min_size = max_size = S` (the image side)
  so that its transform keeps the SxS images at SxS (the defaults 800 / 1333 would also keep 800x800,
  but not a smaller smoke-run size); its `num_classes` counts the background, so 92 = ours' 91 + 1.
  With `weights_backbone=None` torchvision builds plain BatchNorm2d; by default (`--peer-batch-norm
  frozen`) they are replaced by its FrozenBatchNorm2d, the layout torchvision uses for a pretrained
  backbone and the one of ours, so that both train the same weights (every conv, no batch-norm
  parameters); `--peer-batch-norm stock` keeps the model as built. Inference: `model.eval()` and
  `model(images)` under `torch.inference_mode()`; training: `model.train()`, the sum of its loss dict,
  `backward()`, `torch.optim.SGD(lr=lr).step()`.

The learning rate is 1e-3 by default (`--learning-rate`): from random weights, without the warm-up of a
real schedule, SGD at 0.01 sends torchvision's losses to NaN by the third step (5.95 -> 1169 -> nan at
320x320), after which its proposal filtering and RoI sampling get less work and the timing is no longer a
like-for-like one; at 1e-3 both stay finite. The losses are given in the notes and a non-finite one is
flagged.

Same inputs on both sides: the same float32 pixels (0..255 for ours, /255 for torchvision, which
normalises them itself) and the same targets (4 random boxes per image; torchvision's labels are
ours + 1). Random weights leave the NMS loads to chance, so both models are first calibrated the same
way (benchmarks/calibration.py): backbone batch-norm statistics set to those of the benchmark images
(with mean 0 / variance 1 a frozen random ResNet-50's activations grow block after block and the first
training steps diverge), RPN and box-head deltas re-scaled to std 0.1, and the box classifier scaled so
that 0.5% of the (RoI, object class) scores pass 0.05; the counts each side then sees are in the notes.

For ours, the inference time is also split: `model.rpn.test_proposals` (the `ProposalGenerator`),
`model.roi_pooler` (MultiLevelRoIAlign), `model.box_head` and the final
`kerasdet.ops.nms.batched_non_max_suppression` on the head's decoded outputs are each timed alone (in a `tf.function`) on their actual inputs, captured
from one eager run of the model, interleaved with the whole `predict_on_batch` and with backbone + FPN.
Inference cases and the split run before the training cases, which change the weights.

Run it on an otherwise idle machine: torch's OpenMP threads spin at their barriers, and with another
process on one of the 2 cores its times grow many-fold (a ResNet-50 at 320x320 took 2.6 s instead of
0.25 s next to a training job), far more than TensorFlow's. The script warns when the load average is
above 0.5. (`OMP_WAIT_POLICY=PASSIVE` in the environment is passed on to the worker, but changes
torchvision's default behaviour; the full run uses the default.)
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

INTRA_OP_THREADS = 2
INTER_OP_THREADS = 1
tf.config.threading.set_intra_op_parallelism_threads(INTRA_OP_THREADS)
tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)

import keras  # noqa: E402

from benchmarks.calibration import CANDIDATE_FRACTION, BOX_DELTA_STD, softmax_scale, std_scale  # noqa: E402
from benchmarks.models import make_images, make_targets  # noqa: E402
from benchmarks.timing import (  # noqa: E402
    command_line,
    Case, interleaved_medians, machine_description, markdown_table, print_over_limit, run_cases, write_section,
    detector_parser,
)
from benchmarks.precision import (  # noqa: E402
    add_precision_argument, bf16_support, copy_in_precision, precision_label)
from kerasdet.models.faster_rcnn import FasterRCNN  # noqa: E402
from kerasdet.ops.nms import batched_non_max_suppression  # noqa: E402

START, END = "<!-- two_stage:start -->", "<!-- two_stage:end -->"
NUM_CLASSES = 91
LEARNING_RATE = 1e-3
BOXES_PER_IMAGE = 4
DEFAULT_TORCH_VENV = ROOT / "benchmarks" / ".torch-venv"


# ----------------------------------------------------------------------------- ours


def build_ours(image_size: int) -> FasterRCNN:
    """kerasdet's paper Faster R-CNN ResNet-50-FPN, random weights, built for `image_size`."""
    return FasterRCNN.paper_config("resnet50_fpn", num_classes=NUM_CLASSES).build_for_size(image_size)


def peer_settings(model: FasterRCNN) -> dict:
    """torchvision FasterRCNN arguments holding ours' proposal, sampling and detection settings."""
    rpn, sampler = model.rpn, model.proposal_sampler
    return {
        "rpn_pre_nms_top_n_test": rpn.test_pre_nms_topk,
        "rpn_post_nms_top_n_test": rpn.test_post_nms_topk,
        "rpn_pre_nms_top_n_train": rpn.train_pre_nms_topk,
        "rpn_post_nms_top_n_train": rpn.train_post_nms_topk,
        "rpn_nms_thresh": rpn.nms_iou_threshold,
        "rpn_batch_size_per_image": rpn.batch_size_per_image,
        "rpn_positive_fraction": rpn.positive_fraction,
        "box_score_thresh": model.score_threshold,
        "box_nms_thresh": model.nms_iou_threshold,
        "box_detections_per_img": model.max_detections,
        "box_batch_size_per_image": sampler.num_samples,
        "box_positive_fraction": sampler.positive_fraction,
    }


def capture_call(layer: keras.layers.Layer, run):
    """Runs `run()` eagerly and returns its result and the `(args, kwargs)` of `layer`'s first call in it."""
    seen = []
    original = layer.call

    def spy(*args, **kwargs):
        seen.append((args, kwargs))
        return original(*args, **kwargs)

    object.__setattr__(layer, "call", spy)  # Keras' __call__ runs `self.call`
    try:
        result = run()
    finally:
        object.__delattr__(layer, "call")
    if not seen:
        raise RuntimeError(f"{layer.name} was not called")
    return result, seen[0]


def set_batch_norm_statistics(backbone: keras.Model, images) -> None:
    """Sets the moving statistics of every BatchNormalization of `backbone` to its batch statistics on `images`
    (torch_peer.set_batch_norm_statistics does the same to torchvision's), then freezes them again."""
    norms = [layer for layer in backbone._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [(layer.trainable, layer.momentum) for layer in norms]
    for layer in norms:
        layer.trainable, layer.momentum = True, 0.0  # moving = batch statistics after one step
    backbone(images, training=True)
    for layer, (trainable, momentum) in zip(norms, saved):
        layer.trainable, layer.momentum = trainable, momentum


def _zero_bias(layer) -> None:
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.zeros_like(bias)])


def _rescale(layer, scale: float, offset: float = 0.0) -> None:
    """Output kernel (a Dense's or Conv2D's kernel, a SeparableConv2D's pointwise kernel) times `scale`, bias
    `offset`."""
    weights = layer.get_weights()
    layer.set_weights(weights[:-2] + [weights[-2] * scale, np.full_like(weights[-1], offset)])


def calibrate_ours(model: FasterRCNN, images) -> None:
    """Backbone batch-norm statistics from `images`; RPN and box-head deltas of std 0.1; class logits scaled
    so that CANDIDATE_FRACTION of the (RoI, object class) scores pass the score threshold."""
    set_batch_norm_statistics(model.backbone, images)
    _zero_bias(model.rpn.delta_conv)
    raw = model(images, training=False)
    _rescale(model.rpn.delta_conv, *std_scale(raw["deltas"].numpy(), BOX_DELTA_STD))
    head = model.box_head
    _zero_bias(head.classifier)
    _zero_bias(head.regressor)
    raw = model(images, training=False)
    valid = np.arange(raw["rois"].shape[1])[None, :] < raw["num_proposals"].numpy()[:, None]
    logits = raw["class_logits"].numpy()[valid]
    _rescale(head.classifier, softmax_scale(logits, slice(0, NUM_CLASSES), threshold=model.score_threshold))
    _rescale(head.regressor, *std_scale(raw["box_deltas"].numpy()[valid], BOX_DELTA_STD))


def ours_counts(model: FasterRCNN, images) -> dict:
    """Per image: proposals, (RoI, object class) scores above the threshold, and detections of ours."""
    raw = model(images, training=False)
    _, scores = model.decode_candidates(raw, images)
    detections = model.predict_on_batch(images)
    return {
        "proposals_per_image": float(np.mean(raw["num_proposals"].numpy())),
        "candidates_per_image": float(np.sum(scores.numpy() > model.score_threshold)) / int(images.shape[0]),
        "detections_per_image": float(np.mean(detections["num_detections"])),
    }


def ours_pieces(model: FasterRCNN, images, rounds: int, warmup: int) -> dict:
    """Median ms of ours' whole inference and of its pieces, each alone on inputs captured from one run."""
    return interleaved_medians(ours_piece_fns(model, images), rounds=rounds, warmup=warmup)


def ours_piece_fns(model: FasterRCNN, images) -> dict:
    """`{"inference": predict_on_batch, piece name: callable}`: ours' whole inference and its pieces (backbone +
    FPN, proposals, RoI align, box head, final NMS), each alone on its inputs captured from one eager run."""
    generator, pooler = model.rpn.test_proposals, model.roi_pooler
    (raw, proposal_inputs), pool_inputs = capture_call(
        pooler, lambda: capture_call(generator, lambda: model(images, training=False)))
    boxes, scores = model.decode_candidates(raw, images)
    proposal_fn = tf.function(lambda args, kwargs: generator(*args, **kwargs))
    pool_fn = tf.function(lambda args, kwargs: pooler(*args, **kwargs))
    nms_fn = tf.function(lambda b, s: batched_non_max_suppression(
        b, s, iou_threshold=model.nms_iou_threshold, score_threshold=model.score_threshold,
        max_detections=model.max_detections))
    features_fn = tf.function(lambda x: model.fpn(model.backbone(x, training=False), training=False))
    head_fn = tf.function(lambda pooled: model.box_head(pooled, training=False))
    pooled = pool_fn(*pool_inputs)
    fns = {
        "inference": lambda: model.predict_on_batch(images),
        "backbone + FPN": lambda: features_fn(images),
        "proposals": lambda: proposal_fn(*proposal_inputs),
        "RoI align": lambda: pool_fn(*pool_inputs),
        "box head": lambda: head_fn(pooled),
        "final NMS": lambda: nms_fn(boxes, scores),
    }
    return fns


def pieces_table(pieces: dict[int, dict]) -> str:
    names = [n for n in next(iter(pieces.values())) if n != "inference"]
    lines = [
        "| batch | ours inference (ms) | " + " | ".join(f"{n} (ms, share)" for n in names) + " | rest (share) |",
        "|---:|---:|" + "---:|" * len(names) + "---:|",
    ]
    for batch, ms in pieces.items():
        total = ms["inference"]
        cells = [f"{ms[n]:.1f} ({ms[n] / total:.1%})" for n in names]
        rest = 1.0 - sum(ms[n] for n in names) / total
        lines.append(f"| {batch} | {total:.1f} | " + " | ".join(cells) + f" | {rest:.1%} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- peer


class TorchPeer:
    """The torch_peer.py worker in the torch virtualenv: one JSON request per line, one JSON reply per line."""

    def __init__(self, python: pathlib.Path, threads: int, interop_threads: int):
        if not pathlib.Path(python).exists():
            raise SystemExit(f"[bench] no torch python at {python}: run `bash benchmarks/make_torch_env.sh` first "
                             "(or give --torch-python / TORCH_VENV)")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.process = subprocess.Popen(
            [str(python), str(ROOT / "benchmarks" / "torch_peer.py"), "--threads", str(threads),
             "--interop-threads", str(interop_threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env, cwd=str(ROOT),
        )
        self.info = self._read()
        self.worker_ms: dict[str, list[float]] = {}

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the torch worker exited (code {self.process.poll()}); see its stderr above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError("torch worker failed:\n" + reply["error"])
        return reply

    def request(self, **message) -> dict:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self._read()

    def run(self, case: str):
        reply = self.request(run=case)
        self.worker_ms.setdefault(case, []).append(reply["ms"])
        return reply["value"]

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.request(quit=True)
            except (RuntimeError, BrokenPipeError, OSError):
                pass
            self.process.stdin.close()
            self.process.wait(timeout=60)


# ----------------------------------------------------------------------------- cases


def _counts_note(ours: dict, peer: dict) -> str:
    return (f"per image: proposals ours {ours['proposals_per_image']:.0f} / torchvision {peer['proposals_per_image']:.0f}; "
            f"(RoI, class) scores above 0.05 ours {ours['candidates_per_image']:.0f} / torchvision "
            f"{peer['candidates_per_image']:.0f}; detections kept ours {ours['detections_per_image']:.0f} / "
            f"torchvision {peer['detections_per_image']:.0f}")


def inference_case(model: FasterRCNN, peer: TorchPeer, images, precision="float32") -> Case:
    batch, size = int(images.shape[0]), int(images.shape[1])
    name = f"Faster R-CNN R50-FPN {size}x{size}, inference + proposals + NMS, batch {batch}"
    if precision != "float32":
        name += f", ours {precision} vs torchvision float32"
    peer_counts = peer.request(case=name, kind="inference", batch=batch, size=size, threads=INTRA_OP_THREADS)
    return Case(
        name=name,
        ours=lambda: model.predict_on_batch(images)["num_detections"],
        peer=lambda: peer.run(name),
        peer_name="torchvision fasterrcnn_resnet50_fpn, eval + inference_mode",
        note="ours `predict_on_batch`; " + _counts_note(ours_counts(model, images), peer_counts)
             + ("" if precision == "float32" else f"; ours {precision_label(precision)}, torchvision float32"),
    )


def _train_step(model: FasterRCNN, images, targets) -> float:
    return float(model.train_on_batch(images, targets, return_dict=True)["loss"])


def training_case(model: FasterRCNN, peer: TorchPeer, images, targets, losses: dict, learning_rate: float) -> Case:
    batch, size = int(images.shape[0]), int(images.shape[1])
    name = f"Faster R-CNN R50-FPN {size}x{size}, one training step, batch {batch}"
    first_peer = peer.request(case=name, kind="training", batch=batch, size=size, threads=INTRA_OP_THREADS,
                              learning_rate=learning_rate)["loss"]
    first_ours = _train_step(model, images, targets)  # untimed, as the worker's first step

    def ours_step():
        losses[name] = (_train_step(model, images, targets), losses.get(name, (None, None))[1])

    def peer_step():
        losses[name] = (losses.get(name, (None, None))[0], peer.run(name))

    return Case(
        name=name,
        ours=ours_step,
        peer=peer_step,
        peer_name="torchvision fasterrcnn_resnet50_fpn, train + backward + SGD step",
        note=(f"ours `train_on_batch`, no XLA; both SGD({learning_rate:g}), {BOXES_PER_IMAGE} boxes per image; "
              f"loss before the timed steps ours {first_ours:.3f} / torchvision {first_peer:.3f}"),
    )


def warn_if_busy() -> None:
    """Warns when another job loads the machine (torch's OpenMP threads suffer most: see two_stage.py's docstring)."""
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"[bench] WARNING: load average {load:.2f}: another job is running; torch's timings suffer most "
              "(see two_stage.py's docstring)", flush=True)


def annotate_rows(rows, peer, losses) -> None:
    """Adds to each row's note the peer's in-worker median and, for training rows, both sides' last losses
    (flagging a non-finite one, after which the timing is not like for like)."""
    for row in rows:
        worker = peer.worker_ms.get(row["name"], [])[-row["rounds"]:]
        if worker:
            row["note"] += f"; torchvision in-worker median {statistics.median(worker):.1f} ms"
        if row["name"] in losses:
            ours_loss, peer_loss = losses[row["name"]]
            row["note"] += f"; loss at the last timed step ours {ours_loss:.3f} / torchvision {peer_loss:.3f}"
            bad = [side for side, value in (("ours", ours_loss), ("torchvision", peer_loss)) if not np.isfinite(value)]
            if bad:
                row["note"] += f" (**non-finite: {', '.join(bad)}; the timing is not like for like**)"
                print(f"[bench] WARNING: non-finite training loss ({', '.join(bad)}) in {row['name']!r}", flush=True)


def add_peer_arguments(parser, learning_rate=LEARNING_RATE, diverges="0.01"):
    """The arguments every torchvision comparison takes (split, peer batch norm, torch python, learning rate)."""
    parser.add_argument("--no-split", action="store_true", help="skip the split of ours' inference time")
    parser.add_argument("--peer-batch-norm", choices=("frozen", "stock"), default="frozen",
                        help="torchvision's backbone norm: FrozenBatchNorm2d as ours (default) or the BatchNorm2d it builds")
    parser.add_argument("--torch-python", type=pathlib.Path,
                        default=pathlib.Path(os.environ.get("TORCH_VENV", DEFAULT_TORCH_VENV)) / "bin" / "python",
                        help="python of the torch virtualenv (default $TORCH_VENV/bin/python or benchmarks/.torch-venv)")
    parser.add_argument("--learning-rate", type=float, default=learning_rate,
                        help=f"SGD learning rate of both sides' training steps (default {learning_rate:g}; {diverges} "
                             "diverges, see above)")


def check_peer_arguments(parser, args):
    """Refuses image sizes torchvision would pad and a run without warm-up."""
    if args.image_size % 32:
        parser.error(f"--image-size must be a multiple of 32 (torchvision pads to 32); got {args.image_size}")
    if args.warmup < 1:
        parser.error(f"--warmup must be >= 1 (the first call traces); got {args.warmup}")


def parse_args(argv=None):
    parser = detector_parser(__doc__.splitlines()[0], batches=(1, 2), image_size=800, multiple=32)
    add_peer_arguments(parser)
    add_precision_argument(parser, "the peer")
    args = parser.parse_args(argv)
    check_peer_arguments(parser, args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    size = args.image_size
    keras.utils.set_random_seed(0)
    warn_if_busy()
    # every batch is a prefix of one set of images and targets, which also calibrates both models
    base = make_images(max(args.batches), size, seed=1)
    targets, _ = make_targets(max(args.batches), size, seed=2, num_boxes=BOXES_PER_IMAGE, padded=BOXES_PER_IMAGE)
    print(f"[bench] building ours for {size}x{size} ...", flush=True)
    model = build_ours(size)
    calibrate_ours(model, base)
    peer = TorchPeer(args.torch_python, INTRA_OP_THREADS, INTER_OP_THREADS)
    try:
        print(f"[bench] torch worker: {peer.info}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            data = pathlib.Path(tmp) / "data.npz"
            np.savez(data, images=base.numpy(), boxes=targets["boxes"].numpy(), labels=targets["labels"].numpy())
            print("[bench] building torchvision's ...", flush=True)
            peer_model = peer.request(model=dict(size=size, data=str(data), num_classes=NUM_CLASSES + 1,
                                                 batch_norm=args.peer_batch_norm, settings=peer_settings(model)))
        params = (f"parameters: ours {model.count_params() / 1e6:.2f} M ({_trainable(model) / 1e6:.2f} M trainable), "
                  f"torchvision {peer_model['params'] / 1e6:.2f} M ({peer_model['trainable_params'] / 1e6:.2f} M trainable)")
        print(f"[bench] {params}; torchvision backbone norm {peer_model['batch_norm']}", flush=True)
        rows, pieces, losses = _run(args, model, peer, base, targets)
    finally:
        peer.close()

    annotate_rows(rows, peer, losses)
    table = markdown_table(rows)
    print(table)
    split = pieces_table(pieces) if pieces else ""
    if split:
        print(split)
    print_over_limit(rows)
    if args.print_only or args.only:
        return 0
    body = "\n".join(
        [
            "## Two-stage detector (`benchmarks/two_stage.py`)",
            "",
            f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on {machine_description()}; "
            f"{bf16_support()};",
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}, torch {peer.info['torch']}, torchvision "
            f"{peer.info['torchvision']} (own virtualenv, worker subprocess); {INTRA_OP_THREADS} intra-op threads and "
            f"{INTER_OP_THREADS} inter-op thread on both sides, CPU, float32, medians of {args.rounds} interleaved rounds "
            f"after {args.warmup} warm-up calls (tracing included).",
            "",
            f"Both: Faster R-CNN ResNet-50-FPN (P2-P6, 256 channels), {NUM_CLASSES} classes + background, random weights, "
            f"{size}x{size} RGB; {params}. Ours `FasterRCNN.paper_config(\"resnet50_fpn\", num_classes={NUM_CLASSES})`, "
            f"inference through `model.predict_on_batch` (Keras' predict function around `detect`), training through "
            f"`model.train_on_batch` after `compile(optimizer=keras.optimizers.SGD({args.learning_rate:g}))`. Peer "
            f"`fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes={NUM_CLASSES + 1}, min_size={size}, "
            f"max_size={size})` (its transform then keeps the {size}x{size} images at {size}x{size}; its `num_classes` "
            f"counts the background), `eval()` + `torch.inference_mode()`, and `train()` + loss sum + `backward()` + "
            f"`SGD(lr={args.learning_rate:g}).step()`; backbone norm: {peer_model['batch_norm']} "
            f"(`--peer-batch-norm {args.peer_batch_norm}`). Same settings on both: RPN pre/post-NMS top-n 1000/1000 at test "
            f"and 2000/2000 in training (per level before NMS, per image after), RPN NMS 0.7, 256 anchors sampled per "
            f"image at 50% positives, 512 RoIs at 25%, score threshold 0.05, per-class NMS 0.5, 100 detections; "
            f"{BOXES_PER_IMAGE} random boxes per image as targets. Both models calibrated alike first "
            f"(benchmarks/calibration.py): backbone batch-norm statistics from the benchmark images, RPN and box deltas "
            f"of std {BOX_DELTA_STD}, class logits scaled so that {CANDIDATE_FRACTION:.1%} of the (RoI, object class) "
            "scores pass 0.05 (counts in the notes).",
            "",
            "Remaining differences: ResNet-50 v1 (keras.applications layout: convolution biases, stride on the first "
            "1x1) vs torchvision's v1.5 (stride on the 3x3, about 5% more backbone FLOPs); FPN P6 is P5 subsampled "
            "with stride 2 on both (the FPN paper's, no parameters); RPN objectness "
            "is a 2-way softmax per anchor in ours (6 logits per location), a sigmoid in torchvision (3); torchvision "
            "drops proposals smaller than 1e-3 px and detections smaller than 1e-2 px, ours only empty proposals; "
            "its transform normalises the images and runs a bilinear resize at scale 1 and a copy into a padded batch, "
            "ours' preprocessing layer subtracts the caffe means in the model; RoI box loss smooth L1 with beta 1 in "
            "ours, 1/9 in torchvision; torch runs eagerly, ours as Keras' compiled (tf.function, no XLA) functions. "
            "The peer's time is the pipe round trip to its worker (in-worker medians in the notes).",
            "",
            table,
        ]
        + ([
            "",
            "Split of ours' inference (each piece alone in a `tf.function`, on inputs captured from one run, rounds "
            "interleaved with the whole `predict_on_batch`): proposals = `model.rpn.test_proposals` (ProposalGenerator: "
            "per-level top 1000, decode, clip, NMS 0.7, top 1000); RoI align = `model.roi_pooler` (MultiLevelRoIAlign "
            "7x7 over P2-P5); box head = `model.box_head` (2 fc 1024, class and box layers) on the pooled RoIs; final "
            "NMS = `batched_non_max_suppression` on the head's decoded per-class boxes; rest = RPN head and anchors, "
            "decoding and Keras' predict overhead.",
            "",
            split,
        ] if split else [])
    )
    write_section(ROOT / "benchmarks" / "RESULTS.md", START, END, body)
    return 0


def _trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _run(args, model, peer, base, targets):
    pieces, losses = {}, {}

    def inference_cases(precision):
        if precision != "float32":
            size = int(base.shape[1])
            variant = copy_in_precision(lambda: build_ours(size), model, precision, size)
            for b in args.batches:
                yield inference_case(variant, peer, base[:b], precision)
            return
        for b in args.batches:
            yield inference_case(model, peer, base[:b])
            if not args.no_split:
                print(f"[bench] split of ours' inference, batch {b} ...", flush=True)
                pieces[b] = ours_pieces(model, base[:b], rounds=args.rounds, warmup=args.warmup)
                print("[bench]   " + ", ".join(f"{k} {v:.1f} ms" for k, v in pieces[b].items()), flush=True)

    def cases():
        # a generator: the inference cases and the split run before compile, and training changes the weights
        if args.only in (None, "inference"):
            for precision in args.precisions:
                yield from inference_cases(precision)
        if args.only in (None, "training"):
            model.compile(optimizer=keras.optimizers.SGD(args.learning_rate))
            for b in args.batches:
                y = {k: v[:b] for k, v in targets.items()}
                yield training_case(model, peer, base[:b], y, losses, args.learning_rate)

    rows = run_cases(cases(), rounds=args.rounds, warmup=args.warmup, peer_label="torchvision", precision=1)
    return rows, pieces, losses


if __name__ == "__main__":
    raise SystemExit(main())
