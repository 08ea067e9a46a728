"""Times kerasdet's Mask R-CNN and keypoint R-CNN (ResNet-50-FPN) against torchvision's, side by side on CPU.

    bash benchmarks/make_torch_env.sh          # once: torch + torchvision in benchmarks/.torch-venv (never in .venv)
    .venv/bin/python benchmarks/mask_rcnn.py   # 800x800, batch 1, both models, writes RESULTS.md
    .venv/bin/python benchmarks/mask_rcnn.py --rounds 1 --warmup 1 --image-size 256 --print-only --model both  # smoke

The same harness as benchmarks/two_stage.py, whose pieces it imports (the peer driver `TorchPeer`, the
settings mapping `peer_settings`, the calibration `calibrate_ours`, the split of ours' inference):
torchvision runs in the worker benchmarks/torch_peer.py in its own virtualenv, driven over a pipe, rounds
interleaved (ours, peer, peer, ours...), medians after warm-up, 2 intra-op threads and 1 inter-op thread on
both sides, random weights, float32, CPU. Two models (`--model mask|keypoint|both`), one after the other
(each with a fresh worker):

- mask: ours `MaskRCNN.paper_config("resnet50_fpn", num_classes=91)` (the FPN Faster R-CNN of two_stage.py
  plus the mask head: MultiLevelRoIAlign 14x14, 4 conv 3x3 256, deconv 2x2 256, 1x1 to 91 maps of 28x28)
  vs `maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=92, min_size=S, max_size=S,
  **peer_settings)` (the same head; its `num_classes` counts the background).
- keypoint: ours `MaskRCNN.paper_config("resnet50_fpn", num_classes=1, with_masks=False, num_keypoints=17)`
  (keypoint head: MultiLevelRoIAlign 14x14, 8 conv 3x3 512, deconv 4x4 to 17 maps, bilinear x2: 56x56) vs
  `keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, num_keypoints=17,
  min_size=S, max_size=S, **peer_settings)` (the same head). `min_size = max_size = S` keeps the SxS
  images at SxS (Keypoint R-CNN's default `min_size` is a range of training sizes).

Each: inference, batch 1 (ours `model.predict_on_batch(images)`, Keras' predict function, numpy out;
peer `model.eval()` and `model(images)` under `torch.inference_mode()`; ours also in `precision="auto"`,
`--precisions`: bfloat16 on CPUs with AMX or AVX512-BF16, a copy built under the policy with the calibrated
weights, against the peer's float32), then one training step, batch 1
(ours `model.train_on_batch(images, targets)` after `compile(optimizer=keras.optimizers.SGD(lr))`; peer
`model.train()`, the sum of its loss dict, `backward()`, `torch.optim.SGD(lr=lr).step()`). torchvision's
backbone batch norms are replaced by FrozenBatchNorm2d (`--peer-batch-norm frozen`, the default), as ours'
are frozen, so both train the same weights. The learning rate is 1e-5 (`--learning-rate`), not
two_stage.py's 1e-3: from random weights the mask and keypoint losses diverge at 1e-3 on both sides
(torchvision's Mask R-CNN at 256x256: total loss 2.4, then 109, 9e7 and nan after one, two and three
steps; ours' keypoint loss nan by the fourth step), and at 1e-4 ours' keypoint loss still jumps (9.8 -> 31.8 -> 15.7). A step does
the same work at any rate, and at 1e-5 the positives the heads train on stay those of the calibrated
models on both sides. The losses are in the notes and a non-finite one is flagged.

What the heads do at inference, on both sides: the mask / keypoint head runs on the detections NMS kept,
as many rows as there are detections (ours pools and runs the head on `max(num_detections)` rows of the
batch, which is the image's count at batch 1; torchvision on its kept boxes), and the masks come back
pasted into the image: ours' `paste_masks` (separable bilinear, every image pixel) inside the model,
float32 `[1, 100, S, S]` (rows beyond the detections are zero padding) converted to numpy by Keras;
torchvision's `paste_masks_in_image` in `model.transform.postprocess`, a Python loop that resizes each
(1-pixel padded) mask to its box and copies it into an SxS zero image, `[N, 1, S, S]` tensors. Keypoints:
ours take each 56x56 heatmap's maximum refined by a parabola (`heatmaps_to_keypoints`); torchvision's
`heatmaps_to_keypoints` resizes every RoI's 17 heatmaps bicubically to the box's size and takes the
maximum there (per-RoI Python loop): more work than ours for the same output.

Calibration: both models first get two_stage.py's treatment (backbone batch-norm statistics from the
benchmark images, RPN and box deltas of std 0.1). The heads' cost then follows the number of detections,
which a fixed class-score fraction leaves to how the random boxes overlap (two_stage.py's 0.5% gave ours
100 and torchvision 52 detections per image), so the box classifier is calibrated on the count instead
(`torch_peer.calibrate_detections`, the same arithmetic here): bias zeroed, kernel scaled to logits of
std 1, then the background logit's bias set by bisection (`torch_peer.background_bias`) so that the
image gets `--mask-detections` (default 50) / `--keypoint-detections` (default 20) detections, counted
by each side's own decode + NMS on the captured head outputs. The counts each side then sees (proposals,
class scores above 0.05, detections) are in the notes. Ours' keypoint deconvolution kernel is also
re-scaled to torchvision's initial std (`match_keypoint_deconv_init`: Keras' `he_normal` takes a
`Conv2DTranspose` kernel's fan-in from its 17 output maps, giving 5.5x torchvision's scale, a first
keypoint loss of 21 instead of 8, and divergence); the weights' values do not change the work.

Training: the same images and targets on both sides: 4 random boxes per image (labels random for the
mask model, all 0 (person) for the keypoint one; torchvision's are +1), masks uint8 `[B, M, S, S]` that
fill each box, and 17 keypoints per box drawn uniformly inside it with visibility 2. torchvision's mask /
keypoint head trains on the positive sampled RoIs only (as many as there are, up to 128); ours' on a
fixed `num_samples * positive_fraction` = 128 rows per image, the non-positive ones masked out of the
loss, so it computes the head on 128 RoIs whatever the positives: both counts are in the notes.

Remaining differences: those of two_stage.py (ResNet-50 v1 vs v1.5, RPN objectness softmax vs sigmoid,
torchvision's transform normalising and copying the images, box loss betas, eager torch vs Keras'
compiled functions); mask targets cropped by RoIAlign with sampling 2, aligned, in ours (`crop_masks`) vs
torchvision's `roi_align` of the masks (adaptive sampling, not aligned).

Run it on an otherwise idle machine (torch suffers most from a busy one, see two_stage.py); it warns when the
load average is above 0.5. In float32 alone (`--precisions float32`) it takes roughly 20-25 minutes on 2 cores
(an estimate from a 256x256 smoke run and two_stage.py's 800x800 times: ours' keypoint training step, whose head
runs on 128 RoIs, dominates) and needs roughly 6-9 GB in all (TensorFlow process and torch worker); the default
adds the `auto` copy of each model (a second ResNet-50-FPN, built and traced) and its inference cases.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import os
import pathlib
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# two_stage sets TensorFlow's threads (2 intra-op, 1 inter-op) when imported, before TensorFlow starts
from benchmarks.two_stage import (  # noqa: E402
    BOXES_PER_IMAGE, INTER_OP_THREADS, INTRA_OP_THREADS, TorchPeer, _trainable, add_peer_arguments,
    annotate_rows, check_peer_arguments, warn_if_busy,
    _zero_bias, calibrate_ours, capture_call, ours_counts, ours_piece_fns, peer_settings, pieces_table,
)

import keras  # noqa: E402

from benchmarks.calibration import BOX_DELTA_STD  # noqa: E402
from benchmarks.models import make_images, make_targets  # noqa: E402
from benchmarks.precision import (  # noqa: E402
    add_precision_argument, bf16_support, copy_in_precision, precision_label)
from benchmarks.timing import (  # noqa: E402
    command_line,
    Case, detector_parser, interleaved_medians, machine_description, markdown_table, print_over_limit, run_cases,
    write_section,
)
from benchmarks.torch_peer import LOGIT_STD, background_bias  # noqa: E402  (numpy-only at import)
from kerasdet.heads.mask_head import MaskHead  # noqa: E402
from kerasdet.models.mask_rcnn import MaskRCNN  # noqa: E402
from kerasdet.models.mask_rcnn.mask_rcnn import _pad_rows  # noqa: E402
from kerasdet.ops.keypoints import heatmaps_to_keypoints  # noqa: E402
from kerasdet.ops.masks import paste_masks  # noqa: E402
from kerasdet.ops.nms import batched_non_max_suppression  # noqa: E402

START, END = "<!-- mask_rcnn:start -->", "<!-- mask_rcnn:end -->"
NUM_KEYPOINTS = 17
LEARNING_RATE = 1e-5  # not two_stage.py's 1e-3: see the docstring
VISIBLE = 2.0  # COCO visibility: labelled and visible


@dataclasses.dataclass(frozen=True)
class Spec:
    """One of the two compared models."""

    key: str  # "mask" | "keypoint": --model and the torch worker's arch
    title: str
    num_classes: int  # ours; torchvision's is num_classes + 1
    peer_builder: str
    outputs: str  # what inference returns besides the boxes

    def build_ours(self, image_size: int) -> MaskRCNN:
        if self.key == "mask":
            model = MaskRCNN.paper_config("resnet50_fpn", num_classes=self.num_classes)
        else:
            model = MaskRCNN.paper_config("resnet50_fpn", num_classes=self.num_classes, with_masks=False,
                                          num_keypoints=NUM_KEYPOINTS)
        return model.build_for_size(image_size)


SPECS = {
    "mask": Spec("mask", "Mask R-CNN R50-FPN", 91, "maskrcnn_resnet50_fpn", "pasted masks"),
    "keypoint": Spec("keypoint", "Keypoint R-CNN R50-FPN", 1, "keypointrcnn_resnet50_fpn", "17 keypoints"),
}


# ----------------------------------------------------------------------------- data


def make_head_targets(spec: Spec, batch: int, size: int):
    """Both sides' targets: `BOXES_PER_IMAGE` random boxes per image (two_stage.py's), plus the mask model's
    masks (uint8 `[B, M, S, S]`, 1 on the pixels whose centre lies in the box) or the keypoint model's
    keypoints (`[B, M, 17, 3]`, uniform inside the box, visibility 2). Returns a dict of numpy arrays."""
    boxed, _ = make_targets(batch, size, seed=2, num_boxes=BOXES_PER_IMAGE, padded=BOXES_PER_IMAGE)
    boxes, labels = boxed["boxes"].numpy(), boxed["labels"].numpy()
    if spec.num_classes == 1:
        labels = np.where(labels >= 0, 0, -1).astype(labels.dtype)
    out = {"boxes": boxes, "labels": labels}
    rng = np.random.default_rng(3)
    if spec.key == "mask":
        centres = np.arange(size, dtype=np.float32) + 0.5
        inside_x = (centres >= boxes[..., 0:1]) & (centres < boxes[..., 2:3])  # [B, M, W]
        inside_y = (centres >= boxes[..., 1:2]) & (centres < boxes[..., 3:4])  # [B, M, H]
        out["masks"] = (inside_y[..., :, None] & inside_x[..., None, :]).astype(np.uint8)
    else:
        u = rng.uniform(size=boxes.shape[:2] + (NUM_KEYPOINTS, 2)).astype(np.float32)
        lo, extent = boxes[..., None, :2], (boxes[..., 2:] - boxes[..., :2])[..., None, :]
        xy = lo + u * extent
        out["keypoints"] = np.concatenate([xy, np.full(xy.shape[:-1] + (1,), VISIBLE, np.float32)], axis=-1)
        out["keypoints"][labels < 0] = 0.0
    return out


# ----------------------------------------------------------------------------- ours


def calibrate_detections_ours(model: MaskRCNN, images, target: float) -> float:
    """two_stage.py's calibration, then the box classifier set so that `images` get `target` detections each:
    its bias zeroed, its kernel scaled to logits of std LOGIT_STD, and its background column's bias (ours' last
    column) set by `background_bias`, counting with ours' own decode + per-class NMS on the captured outputs
    (torch_peer.calibrate_detections does the same to torchvision's). Returns the detections per image."""
    calibrate_ours(model, images)  # batch-norm statistics, RPN and box deltas (and a score fraction, replaced here)
    classifier = model.box_head.classifier
    _zero_bias(classifier)
    raw = model(images, training=False)
    valid = np.arange(raw["rois"].shape[1])[None, :] < raw["num_proposals"].numpy()[:, None]
    scale = LOGIT_STD / float(raw["class_logits"].numpy()[valid].std())
    kernel, bias = classifier.get_weights()
    classifier.set_weights([kernel * scale, np.zeros_like(bias)])
    logits = raw["class_logits"] * scale
    background = tf.one_hot(model.num_classes, model.num_classes + 1)

    def count(offset: float) -> float:
        boxes, scores = model.decode_candidates(dict(raw, class_logits=logits + offset * background), images)
        kept = batched_non_max_suppression(boxes, scores, iou_threshold=model.nms_iou_threshold,
                                           score_threshold=model.score_threshold, max_detections=model.max_detections)
        return float(np.mean(kept["num_detections"].numpy()))

    offset = background_bias(count, target)
    bias = np.zeros_like(bias)
    bias[-1] = offset
    classifier.set_weights([kernel * scale, bias])
    return count(offset)


def match_keypoint_deconv_init(model: MaskRCNN) -> float:
    """Gives ours' keypoint deconvolution torchvision's initial scale; returns the factor applied to its kernel.

    `KeypointHead` draws its 4x4 `Conv2DTranspose` kernel (shape `[4, 4, K, C_in]`) with `he_normal`, whose
    fan-in Keras takes from the kernel's second-to-last axis, here the K = 17 output maps: std
    sqrt(2 / (16 * 17)) = 0.086, where torchvision's (kaiming, fan-out of its `[C_in, K, 4, 4]` weight, i.e.
    the 512 input channels) is sqrt(2 / (16 * 512)) = 0.016. At 5.5x the scale ours' first keypoint loss is
    about 21 instead of log(56 * 56) = 8 and SGD diverges within two steps even at lr 1e-4 (torchvision's
    stays finite), which changes what the timed steps compute; the kernel is re-scaled to std
    sqrt(2 / (16 * C_in)) (a no-op once KeypointHead draws it so itself).
    """
    deconv = model.keypoint_head.deconv
    kernel, *rest = deconv.get_weights()
    kh, kw, _, fan_in_channels = kernel.shape
    factor = float(np.sqrt(2.0 / (kh * kw * fan_in_channels)) / kernel.std())
    deconv.set_weights([kernel * factor] + rest)
    return factor


def ours_training_rows(model: MaskRCNN, images, targets) -> tuple[int, float]:
    """(rows ours' mask / keypoint head trains on per image, positive RoIs among them per image), from one eager
    training-mode forward pass."""
    raw = model(images, training=True, targets=targets)
    sampler = model.proposal_sampler
    rows = max(int(sampler.num_samples * sampler.positive_fraction), 1)
    positives = float(np.sum(raw["sampled"]["states"][:, :rows].numpy() == 1)) / int(images.shape[0])
    return rows, positives


def ours_piece_fns_heads(model: MaskRCNN, images) -> tuple[dict, int]:
    """two_stage.py's pieces of ours' inference plus the heads on the kept detections: mask (or keypoint) RoI
    align, the head, and the mask paste (class map, sigmoid, `paste_masks`, padding to max_detections rows) or
    the keypoint decode (`heatmaps_to_keypoints`, padding), each alone in a `tf.function` on inputs captured
    from one eager `detect`. Returns the callables and the rows the heads ran on."""
    fns = ours_piece_fns(model, images)
    pooler = model.mask_pooler if model.with_masks else model.keypoint_pooler
    head = model.mask_head if model.with_masks else model.keypoint_head
    (detections, pool_inputs), head_inputs = capture_call(
        head, lambda: capture_call(pooler, lambda: model.detect(images)))
    rows = int(head_inputs[0][0].shape[1])
    boxes = detections["boxes"][:, :rows]
    labels = detections["labels"][:, :rows]
    total = model.max_detections
    pool_fn = tf.function(lambda args, kwargs: pooler(*args, **kwargs))
    head_fn = tf.function(lambda x: head(x, training=False))
    pooled = pool_fn(*pool_inputs)
    head_out = head_fn(pooled)
    name = "mask" if model.with_masks else "keypoint"
    fns[f"{name} RoI align"] = lambda: pool_fn(*pool_inputs)
    fns[f"{name} head"] = lambda: head_fn(pooled)
    if model.with_masks:
        @tf.function
        def paste_fn(logits, boxes, labels, images):
            valid = labels >= 0
            probabilities = tf.where(valid[..., None, None], tf.sigmoid(MaskHead.class_maps(logits, labels)), 0.0)
            return _pad_rows(paste_masks(probabilities, boxes, tf.shape(images)[1:3]), total)

        fns["mask paste"] = lambda: paste_fn(head_out, boxes, labels, images)
    else:
        @tf.function
        def decode_fn(heatmaps, boxes, labels):
            keypoints = heatmaps_to_keypoints(heatmaps, boxes)
            return _pad_rows(tf.where((labels >= 0)[..., None, None], keypoints, 0.0), total)

        fns["keypoint decode"] = lambda: decode_fn(head_out, boxes, labels)
    return fns, rows


# ----------------------------------------------------------------------------- cases


def inference_case(spec: Spec, model: MaskRCNN, peer: TorchPeer, images, target: float, head_rows: dict,
                   precision: str = "float32") -> Case:
    batch, size = int(images.shape[0]), int(images.shape[1])
    name = f"{spec.title} {size}x{size}, inference (boxes + {spec.outputs}), batch {batch}"
    if precision != "float32":
        name += f", ours {precision} vs torchvision float32"
    peer_counts = peer.request(case=name, kind="inference", batch=batch, size=size, threads=INTRA_OP_THREADS,
                               model_key=spec.key)
    ours = ours_counts(model, images)
    rows = head_rows.get(batch)
    note = (f"ours `predict_on_batch`; per image: proposals ours {ours['proposals_per_image']:.0f} / torchvision "
            f"{peer_counts['proposals_per_image']:.0f}; (RoI, class) scores above 0.05 ours "
            f"{ours['candidates_per_image']:.0f} / torchvision {peer_counts['candidates_per_image']:.0f}; detections "
            f"kept (calibrated to {target:g}) ours {ours['detections_per_image']:.0f} / torchvision "
            f"{peer_counts['detections_per_image']:.0f}, the {spec.key} head's rows"
            + (f" (ours {rows})" if rows is not None and precision == "float32" else "")
            + ("" if precision == "float32" else f"; ours {precision_label(precision)}, torchvision float32"))
    return Case(
        name=name,
        ours=lambda: model.predict_on_batch(images)["num_detections"],
        peer=lambda: peer.run(name),
        peer_name=f"torchvision {spec.peer_builder}, eval + inference_mode",
        note=note,
    )


def _train_step(model: MaskRCNN, images, targets) -> float:
    return float(model.train_on_batch(images, targets, return_dict=True)["loss"])


def training_case(spec: Spec, model: MaskRCNN, peer: TorchPeer, images, targets, losses: dict,
                  learning_rate: float) -> Case:
    batch, size = int(images.shape[0]), int(images.shape[1])
    name = f"{spec.title} {size}x{size}, one training step, batch {batch}"
    first = peer.request(case=name, kind="training", batch=batch, size=size, threads=INTRA_OP_THREADS,
                         learning_rate=learning_rate, model_key=spec.key)
    rows, positives = ours_training_rows(model, images, targets)
    first_ours = _train_step(model, images, targets)  # untimed, as the worker's first step

    def ours_step():
        losses[name] = (_train_step(model, images, targets), losses.get(name, (None, None))[1])

    def peer_step():
        losses[name] = (losses.get(name, (None, None))[0], peer.run(name))

    extra = "masks filling the boxes" if spec.key == "mask" else f"{NUM_KEYPOINTS} keypoints each (visibility 2)"
    return Case(
        name=name,
        ours=ours_step,
        peer=peer_step,
        peer_name=f"torchvision {spec.peer_builder}, train + backward + SGD step",
        note=(f"ours `train_on_batch`, no XLA; both SGD({learning_rate:g}), {BOXES_PER_IMAGE} boxes per image with "
              f"{extra}; the {spec.key} head trained on RoIs per image: ours {rows} rows ({positives:.0f} positive) / "
              f"torchvision {first['head_rois_per_image']:.0f} (its positives); loss before the timed steps ours "
              f"{first_ours:.3f} / torchvision {first['loss']:.3f}"),
    )


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = detector_parser(__doc__.splitlines()[0], batches=(1,), image_size=800, multiple=32)
    parser.add_argument("--model", choices=("mask", "keypoint", "both"), default="both",
                        help="which model(s) to compare (default both)")
    parser.add_argument("--mask-detections", type=float, default=50.0,
                        help="detections per image both mask models are calibrated to (default 50)")
    parser.add_argument("--keypoint-detections", type=float, default=20.0,
                        help="detections per image both keypoint models are calibrated to (default 20)")
    add_peer_arguments(parser, LEARNING_RATE, diverges="1e-3")
    add_precision_argument(parser, "torchvision")
    args = parser.parse_args(argv)
    check_peer_arguments(parser, args)
    for flag in ("mask_detections", "keypoint_detections"):
        if not 1 <= getattr(args, flag) <= 100:
            parser.error(f"--{flag.replace('_', '-')} must lie in [1, 100] (the models keep at most 100)")
    return args


def run_model(spec: Spec, args, base) -> dict:
    """Builds and calibrates both sides of one model, runs its cases; returns its rows, split, parameters."""
    size = args.image_size
    target = args.mask_detections if spec.key == "mask" else args.keypoint_detections
    data = make_head_targets(spec, max(args.batches), size)
    print(f"[bench] building ours ({spec.title}) for {size}x{size} ...", flush=True)
    model = spec.build_ours(size)
    achieved = calibrate_detections_ours(model, base, target)
    print(f"[bench] ours calibrated: {achieved:g} detections per image (target {target:g})", flush=True)
    if model.num_keypoints:
        factor = match_keypoint_deconv_init(model)
        print(f"[bench] ours' keypoint deconvolution kernel x {factor:.3f} (torchvision's initial scale)", flush=True)
    peer = TorchPeer(args.torch_python, INTRA_OP_THREADS, INTER_OP_THREADS)
    pieces, head_rows, losses = {}, {}, {}
    try:
        print(f"[bench] torch worker: {peer.info}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "data.npz"
            np.savez(path, images=base.numpy(), **data)
            print(f"[bench] building torchvision's {spec.peer_builder} ...", flush=True)
            peer_model = peer.request(model=dict(
                size=size, data=str(path), num_classes=spec.num_classes + 1, batch_norm=args.peer_batch_norm,
                settings=peer_settings(model), arch=spec.key, num_keypoints=NUM_KEYPOINTS, detections=target,
                key=spec.key))
        print(f"[bench] torchvision calibrated: {peer_model['calibrated_detections_per_image']:g} detections per "
              f"image (background bias {peer_model['background_bias']:.3f})", flush=True)
        params = (f"parameters: ours {model.count_params() / 1e6:.2f} M ({_trainable(model) / 1e6:.2f} M trainable), "
                  f"torchvision {peer_model['params'] / 1e6:.2f} M ({peer_model['trainable_params'] / 1e6:.2f} M "
                  "trainable)")
        print(f"[bench] {params}; torchvision backbone norm {peer_model['batch_norm']}", flush=True)
        targets = {k: v for k, v in data.items()}

        def inference_cases(precision):
            if precision != "float32":
                # the calibrated weights (box classifier, keypoint deconvolution) in a copy built under the policy
                variant = copy_in_precision(lambda: spec.build_ours(size), model, precision, size)
                for b in args.batches:
                    yield inference_case(spec, variant, peer, base[:b], target, head_rows, precision)
                return
            for b in args.batches:
                if not args.no_split:
                    print(f"[bench] split of ours' inference, batch {b} ...", flush=True)
                    fns, head_rows[b] = ours_piece_fns_heads(model, base[:b])
                    pieces[b] = interleaved_medians(fns, rounds=args.rounds, warmup=args.warmup)
                    print("[bench]   " + ", ".join(f"{k} {v:.1f} ms" for k, v in pieces[b].items()), flush=True)
                yield inference_case(spec, model, peer, base[:b], target, head_rows)

        def cases():
            # a generator: inference and the split run before compile, and training changes the weights
            if args.only in (None, "inference"):
                for precision in args.precisions:
                    yield from inference_cases(precision)
            if args.only in (None, "training"):
                model.compile(optimizer=keras.optimizers.SGD(args.learning_rate))
                for b in args.batches:
                    y = {k: v[:b] for k, v in targets.items()}
                    yield training_case(spec, model, peer, base[:b], y, losses, args.learning_rate)

        rows = run_cases(cases(), rounds=args.rounds, warmup=args.warmup, peer_label="torchvision", precision=1)
    finally:
        peer.close()
    annotate_rows(rows, peer, losses)
    result = {"rows": rows, "pieces": pieces, "params": params, "batch_norm": peer_model["batch_norm"],
              "target": target, "torch": peer.info}
    model = None  # (not `del`: the cases closure reads it)
    keras.backend.clear_session()
    gc.collect()
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    size = args.image_size
    keras.utils.set_random_seed(0)
    warn_if_busy()
    base = make_images(max(args.batches), size, seed=1)  # every batch is a prefix; also calibrates both sides
    keys = ("mask", "keypoint") if args.model == "both" else (args.model,)
    results = {key: run_model(SPECS[key], args, base) for key in keys}

    rows = [row for r in results.values() for row in r["rows"]]
    table = markdown_table(rows)
    print(table)
    splits = {key: pieces_table(r["pieces"]) for key, r in results.items() if r["pieces"]}
    for key, split in splits.items():
        print(f"\nSplit of ours' {SPECS[key].title} inference:\n{split}")
    print_over_limit(rows)
    if args.print_only or args.only:
        return 0
    info = next(iter(results.values()))["torch"]
    described = []
    for key, r in results.items():
        spec = SPECS[key]
        if key == "mask":
            ours = f"`MaskRCNN.paper_config(\"resnet50_fpn\", num_classes={spec.num_classes})`"
            peer = f"`{spec.peer_builder}(weights=None, weights_backbone=None, num_classes={spec.num_classes + 1}, "
        else:
            ours = (f"`MaskRCNN.paper_config(\"resnet50_fpn\", num_classes={spec.num_classes}, with_masks=False, "
                    f"num_keypoints={NUM_KEYPOINTS})`")
            peer = (f"`{spec.peer_builder}(weights=None, weights_backbone=None, num_classes={spec.num_classes + 1}, "
                    f"num_keypoints={NUM_KEYPOINTS}, ")
        described.append(f"{spec.title}: ours {ours}, torchvision {peer}min_size={size}, max_size={size}, "
                         f"...)` (backbone norm {r['batch_norm']}); {r['params']}; box classifiers calibrated to "
                         f"{r['target']:g} detections per image.")
    body = [
        "## Mask R-CNN and keypoint R-CNN (`benchmarks/mask_rcnn.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on "
        f"{machine_description()}; {bf16_support()};",
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, torch {info['torch']}, torchvision "
        f"{info['torchvision']} (own virtualenv, worker subprocess); {INTRA_OP_THREADS} intra-op threads and "
        f"{INTER_OP_THREADS} inter-op thread on both sides, CPU, float32 (ours also `auto` where a row says so), "
        f"medians of {args.rounds} interleaved rounds after {args.warmup} warm-up calls (tracing included).",
        "",
        f"Both: ResNet-50-FPN (P2-P6, 256 channels), random weights, {size}x{size} RGB, two_stage.py's RPN, sampling "
        "and detection settings (1000 / 1000 test proposals, 2000 / 2000 in training, 512 RoIs at 25%, score 0.05, "
        "per-class NMS 0.5, 100 detections). " + " ".join(described) + " Inference: ours `model.predict_on_batch` "
        "(Keras' predict function around `detect`: the heads on the kept detections, masks pasted into the image "
        "by `paste_masks`, numpy out), torchvision `eval()` + `torch.inference_mode()` (its `paste_masks_in_image` "
        "in `transform.postprocess`). Training: ours `train_on_batch` after "
        f"`compile(optimizer=keras.optimizers.SGD({args.learning_rate:g}))`, torchvision `train()` + loss sum + "
        f"`backward()` + `SGD(lr={args.learning_rate:g}).step()`; {BOXES_PER_IMAGE} random boxes per image with "
        "masks filling them / 17 keypoints inside each (visibility 2). Calibration (both sides alike): backbone "
        f"batch-norm statistics from the benchmark images, RPN and box deltas of std {BOX_DELTA_STD}, box classifier "
        f"logits of std {LOGIT_STD:g} with the background bias bisected to the target count of detections (counts in "
        "the notes); ours' keypoint deconvolution kernel re-scaled to torchvision's initial std (Keras' `he_normal` "
        "counts a `Conv2DTranspose` kernel's 17 output maps as its fan-in: 5.5x the scale, and divergence). "
        f"SGD at {args.learning_rate:g}, not 1e-3, at which both sides' mask / keypoint losses diverge from random "
        "weights. Differences: those of the two-stage section, plus the keypoint decoding (ours: each 56x56 "
        "heatmap's maximum with a parabola refinement; torchvision: each RoI's heatmaps resized bicubically to the "
        "box, in a Python loop), ours' masks padded to 100 rows in the output, and the training heads' rows (ours "
        "128 per image whatever the positives, torchvision its positives; counts in the notes). The peer's time "
        "is the pipe round trip to its worker (in-worker medians in the notes).",
        "",
        table,
    ]
    for key, split in splits.items():
        names = ("mask RoI align = `model.mask_pooler` (MultiLevelRoIAlign 14x14) on the kept boxes; mask head = "
                 "`model.mask_head`; mask paste = class map, sigmoid, `paste_masks` and padding to 100 rows"
                 if key == "mask" else
                 "keypoint RoI align = `model.keypoint_pooler` (MultiLevelRoIAlign 14x14) on the kept boxes; keypoint "
                 "head = `model.keypoint_head`; keypoint decode = `heatmaps_to_keypoints` and padding")
        body += [
            "",
            f"Split of ours' {SPECS[key].title} inference (each piece alone in a `tf.function` on inputs captured from "
            "one run, rounds interleaved with the whole `predict_on_batch`; the first five as in the two-stage "
            f"section): {names}; rest = RPN head and anchors, decoding, Keras' predict overhead and the numpy "
            "conversion of the outputs.",
            "",
            split,
        ]
    write_section(ROOT / "benchmarks" / "RESULTS.md", START, END, "\n".join(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
