"""The torchvision side of benchmarks/two_stage.py and benchmarks/mask_rcnn.py: a worker that builds and times
torchvision's Faster R-CNN, Mask R-CNN and Keypoint R-CNN.

Run by the python of the SEPARATE torch virtualenv (benchmarks/make_torch_env.sh; torch never goes into
the project's .venv), started by two_stage.py as a subprocess:

    benchmarks/.torch-venv/bin/python benchmarks/torch_peer.py --threads 2 --interop-threads 1

It reads one JSON object per line on stdin and answers each with one JSON line on stdout (anything
else the libraries print goes to stderr). The first line it writes is `{"ready": true, "torch": ...}`.
Requests:

- `{"model": {"size": 800, "data": "/tmp/x.npz", "num_classes": 92, "batch_norm": "frozen",
  "settings": {...}, "seed": 0, "arch": "faster", "num_keypoints": 17, "detections": null, "key": null}}`:
  builds `fasterrcnn_resnet50_fpn` (`arch` "faster", the default), `maskrcnn_resnet50_fpn` ("mask") or
  `keypointrcnn_resnet50_fpn` ("keypoint", with `num_keypoints`), each `(weights=None,
  weights_backbone=None, num_classes=..., min_size=size, max_size=size, **settings)` (random weights, no
  download), sets its batch-norm statistics and re-scales its last layers on the images of `data` (see
  `calibrate`; with `detections`, the box classifier is then set so that the images get that many
  detections each, see `calibrate_detections`), and keeps it under `key` (default: the size) for the
  cases. `data` holds `images`, `boxes`, `labels` and, for the mask / keypoint models' training cases,
  `masks` uint8 [B, M, H, W] / `keypoints` float32 [B, M, K, 3]. Replies the parameter counts and the
  calibration's results.
- `{"case": "name", "kind": "inference" | "training", "batch": 1, "size": 800, "threads": 2,
  "learning_rate": 0.01, "model_key": null}`: prepares the case on the first `batch` images (and targets)
  of the model `model_key` (default: the one of that size), runs it once untimed and replies what it saw
  (proposals, candidates, detections; or the loss and, for the mask / keypoint models, the RoIs per image
  their training head ran on).
- `{"run": "name"}`: one timed call of the case; replies `{"ms": ..., "value": ...}` (the number of
  detections, or the training loss).
- `{"quit": true}`.

A failing request is answered `{"error": "<traceback>"}`; the worker then waits for the next one.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.calibration import softmax_scale, std_scale  # noqa: E402

SCORE_THRESHOLD_KEY = "box_score_thresh"
#: the single-shot peers of benchmarks/ssd.py: ssd300_vgg16 and ssdlite320_mobilenet_v3_large
SSD_ARCHS = ("ssd300", "ssdlite320")
ARCHS = ("faster", "mask", "keypoint") + SSD_ARCHS
#: standard deviation given to the box classifier's logits before its background bias is set (calibrate_detections)
LOGIT_STD = 1.0


def background_bias(count, target: float, limit: float = 256.0, steps: int = 40) -> float:
    """The largest background-logit bias `b` with `count(b) >= target`, by doubling then bisection.

    `count(b)` is the mean number of detections per image when `b` is added to the background logit of
    every RoI. Raising `b` lowers every object score and keeps their order within each class, so the set
    of candidates above the score threshold only shrinks, and greedy per-class NMS over it keeps no more
    boxes: `count` does not increase with `b`. When even `b = -limit` gives fewer than `target`, returns
    `-limit` (the most the model can give); when `b = limit` still gives `target`, returns `limit`.
    Pure Python (used by both sides: mask_rcnn.py on kerasdet's model, this worker on torchvision's).
    """
    if count(0.0) >= target:
        low, high = 0.0, 1.0
        while count(high) >= target:
            low, high = high, 2.0 * high
            if high > limit:
                return limit
    else:
        low, high = -1.0, 0.0
        while count(low) < target:
            low, high = 2.0 * low, low
            if low < -limit:
                return -limit
    for _ in range(steps):
        mid = 0.5 * (low + high)
        if count(mid) >= target:
            low = mid
        else:
            high = mid
    return low


def _capture(module, run):
    """Runs `run()` and returns its result and the output of `module`'s first forward call during it."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _inputs, output: seen.append(output))
    try:
        result = run()
    finally:
        handle.remove()
    return result, seen[0]


def set_batch_norm_statistics(body, x) -> None:
    """Sets every BatchNorm2d's running mean and variance of `body` to its batch statistics on `x`.

    With random weights the initial statistics (mean 0, variance 1) leave the activations of a frozen /
    eval-mode ResNet-50 unnormalised, growing block after block; the statistics of the benchmark's
    images give the scale a trained network has (two_stage.py does the same to kerasdet's backbone).
    """
    import torch

    norms = [m for m in body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch gives its own statistics
    was_training = body.training
    body.train()
    with torch.no_grad():
        body(x)
    for m in norms:
        m.momentum = 0.1
    body.train(was_training)


def freeze_batch_norm(module) -> None:
    """Replaces each BatchNorm2d under `module` by torchvision's FrozenBatchNorm2d with the same statistics.

    This is the layout torchvision itself uses when a pretrained backbone is given, and the one of
    kerasdet's paper configuration (frozen batch norm); with `weights_backbone=None` torchvision keeps
    plain BatchNorm2d, which uses batch statistics in training.
    """
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)


def calibrate(model, images, score_threshold: float) -> None:
    """Gives the model the benchmark's output distributions (benchmarks/calibration.py), as two_stage.py
    does to kerasdet's: backbone batch-norm statistics from `images`, RPN box deltas of std 0.1, box-head
    class logits scaled so that 0.5% of the (RoI, object class) scores pass `score_threshold`, box-head
    deltas of std 0.1."""
    import torch

    model.eval()
    with torch.no_grad():
        x = model.transform(images)[0].tensors
    set_batch_norm_statistics(model.backbone.body, x)

    rpn_deltas = model.rpn.head.bbox_pred
    with torch.no_grad():
        rpn_deltas.bias.zero_()
        _, (_, deltas) = _capture(model.rpn.head, lambda: model(images))
        values = np.concatenate([d.permute(0, 2, 3, 1).reshape(-1).numpy() for d in deltas])
        scale, offset = std_scale(values)
        rpn_deltas.weight.mul_(scale)
        rpn_deltas.bias.fill_(offset)

    predictor = model.roi_heads.box_predictor
    with torch.no_grad():
        predictor.cls_score.bias.zero_()
        predictor.bbox_pred.bias.zero_()
        _, (logits, box_deltas) = _capture(predictor, lambda: model(images))
        predictor.cls_score.weight.mul_(softmax_scale(logits.numpy(), slice(1, None), threshold=score_threshold))
        scale, offset = std_scale(box_deltas.numpy())
        predictor.bbox_pred.weight.mul_(scale)
        predictor.bbox_pred.bias.fill_(offset)


def _last_convs(head):
    """The output convolution of each level of a torchvision SSD / SSDLite classification or regression head."""
    import torch

    return [[m for m in level.modules() if isinstance(m, torch.nn.Conv2d)][-1] for level in head.module_list]


def calibrate_ssd(model, images, score_threshold: float) -> None:
    """benchmarks/ssd.py's calibration of torchvision's SSD / SSDLite, the arithmetic of `calibrate`: backbone
    batch-norm statistics from `images` (SSDLite's MobileNetV3; VGG16 has none), class logits scaled so that
    CANDIDATE_FRACTION of the (default box, object class) softmax scores pass `score_threshold`, box offsets of
    std 0.1. Random class layers give every score about 1 / 91, above SSD's 0.01 (every box a candidate of
    every class), so the logits are scaled to std LOGIT_STD and the background logit's bias raised
    (`background_offset`) instead of the classifier being scaled."""
    import torch

    from benchmarks.calibration import CANDIDATE_FRACTION, background_offset

    model.eval()
    with torch.no_grad():
        x = model.transform(images)[0].tensors
    set_batch_norm_statistics(model.backbone, x)
    classes = _last_convs(model.head.classification_head)
    boxes = _last_convs(model.head.regression_head)
    with torch.no_grad():
        for conv in classes + boxes:
            conv.bias.zero_()
        _, head = _capture(model.head, lambda: model(images))
        logits = head["cls_logits"].numpy()
        num_logits = logits.shape[-1]
        scale = LOGIT_STD / float(logits.std())
        offset = background_offset(logits * scale, fraction=CANDIDATE_FRACTION, threshold=score_threshold)
        for conv in classes:  # output channels are (box, logit) pairs, logit 0 the background
            conv.weight.mul_(scale)
            conv.bias.view(-1, num_logits)[:, 0] = offset
        scale, offset = std_scale(head["bbox_regression"].numpy())
        for conv in boxes:
            conv.weight.mul_(scale)
            conv.bias.fill_(offset)


def calibrate_detections(model, images, target: float) -> dict:
    """Sets the box classifier so that `images` get `target` detections each (on average over the batch).

    After `calibrate`: the classifier's bias is zeroed, its kernel scaled so that the logits of the
    images' proposals have standard deviation LOGIT_STD, and the background column's bias set by
    `background_bias`, counting the detections with the model's own `postprocess_detections` (score
    threshold, small-box removal, per-class NMS, top-k) on the captured proposals and box deltas: the
    same detections the full model then gives. mask_rcnn.py does the same to kerasdet's model, whose
    background is its last column (torchvision's is column 0). Mask R-CNN's and Keypoint R-CNN's heads
    run on these detections, so their cost follows the count: a fixed class-score fraction (`calibrate`)
    leaves it to how the random boxes overlap.
    """
    import torch

    model.eval()
    cls_score = model.roi_heads.box_predictor.cls_score
    with torch.no_grad():
        cls_score.bias.zero_()
        images_t, _ = model.transform(images)
        (_, (proposals, _)), (logits, box_regression) = _capture(
            model.roi_heads.box_predictor, lambda: _capture(model.rpn, lambda: model(images)))
        scale = LOGIT_STD / float(logits.std())
        cls_score.weight.mul_(scale)
        logits = logits * scale

        def count(bias: float) -> float:
            shifted = logits.clone()
            shifted[:, 0] += bias
            boxes, _, _ = model.roi_heads.postprocess_detections(shifted, box_regression, proposals,
                                                                 images_t.image_sizes)
            return float(np.mean([len(b) for b in boxes]))

        bias = background_bias(count, target)
        cls_score.bias[0] = bias
        achieved = count(bias)
    return {"background_bias": bias, "calibrated_detections_per_image": achieved}


def _rows_into(module, run):
    """Runs `run()` and returns its result and the number of rows (dim 0 of the first input) `module` saw."""
    rows = []
    handle = module.register_forward_hook(lambda _m, inputs, _output: rows.append(int(inputs[0].shape[0])))
    try:
        result = run()
    finally:
        handle.remove()
    return result, sum(rows)


class Worker:
    def __init__(self):
        self.models = {}  # key (default the size) -> dict(model, arch, images, boxes, labels, ..., optimizer, threshold)
        self.cases = {}  # name -> zero-argument callable returning (value)

    def handle(self, request: dict) -> dict:
        if "model" in request:
            return self.build_model(**request["model"])
        if "case" in request:
            return self.build_case(**request)
        if "run" in request:
            call = self.cases[request["run"]]
            start = time.perf_counter()
            value = call()
            return {"ms": (time.perf_counter() - start) * 1e3, "value": value}
        if request.get("quit"):
            return {"bye": True}
        raise ValueError(f"unknown request {sorted(request)}")

    def build_model(self, size, data, num_classes, batch_norm="frozen", settings=None, seed=0, arch="faster",
                    num_keypoints=17, detections=None, key=None) -> dict:
        import torch
        from torchvision.models import detection

        if batch_norm not in ("frozen", "stock"):
            raise ValueError(f"batch_norm must be 'frozen' or 'stock'; got {batch_norm!r}")
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}; got {arch!r}")
        settings = dict(settings or {})
        if arch == "keypoint":
            settings["num_keypoints"] = num_keypoints
        builder = {"faster": detection.fasterrcnn_resnet50_fpn, "mask": detection.maskrcnn_resnet50_fpn,
                   "keypoint": detection.keypointrcnn_resnet50_fpn, "ssd300": detection.ssd300_vgg16,
                   "ssdlite320": detection.ssdlite320_mobilenet_v3_large}[arch]
        torch.manual_seed(seed)
        if arch in SSD_ARCHS:  # a fixed input size (300 / 320): the transform resizes to it
            model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **settings)
        else:
            model = builder(weights=None, weights_backbone=None, num_classes=num_classes, min_size=size,
                            max_size=size, **settings)
        arrays = np.load(data)
        # float32 RGB 0..255 [B, H, W, 3] -> torchvision's list of [3, H, W] in 0..1
        images = [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1) / 255.0, np.float32))
                  for im in arrays["images"]]
        threshold = float(settings.get("score_thresh" if arch in SSD_ARCHS else SCORE_THRESHOLD_KEY, 0.05))
        calibrated = {}
        if arch in SSD_ARCHS:
            calibrate_ssd(model, images, threshold)
        else:
            calibrate(model, images, threshold)
            calibrated = {} if detections is None else calibrate_detections(model, images, float(detections))
        if batch_norm == "frozen" and arch not in SSD_ARCHS:
            freeze_batch_norm(model.backbone.body)
        trainable = [p for p in model.parameters() if p.requires_grad]
        extra = {k: arrays[k] for k in ("masks", "keypoints") if k in arrays.files}
        self.models[size if key is None else key] = dict(
            model=model, arch=arch, images=images, boxes=arrays["boxes"], labels=arrays["labels"], threshold=threshold,
            trainable=trainable, optimizer=None, **extra)
        return {
            "params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in trainable),
            "batch_norm": (type(model.backbone.body.bn1).__name__ if arch not in SSD_ARCHS else
                           sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__})),
            **calibrated,
        }

    def build_case(self, case, kind, batch, size, threads, learning_rate=0.01, model_key=None) -> dict:
        import torch

        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        entry = self.models[size if model_key is None else model_key]
        model, images = entry["model"], entry["images"][:batch]
        if kind == "inference":
            def call():
                model.eval()
                with torch.inference_mode():
                    out = model(images)
                return int(sum(len(o["boxes"]) for o in out))

            model.eval()
            if entry["arch"] in SSD_ARCHS:
                with torch.inference_mode():
                    detections, head = _capture(model.head, lambda: model(images))
                scores = torch.softmax(head["cls_logits"], -1)[..., 1:]
                info = {"candidates_per_image": float((scores > entry["threshold"]).sum().item()) / batch,
                        "detections_per_image": float(np.mean([len(d["boxes"]) for d in detections]))}
                self.cases[case] = call
                return info
            with torch.inference_mode():
                (detections, (proposals, _)), (logits, _) = _capture(
                    model.roi_heads.box_predictor, lambda: _capture(model.rpn, lambda: model(images)))
            candidates = (torch.softmax(logits, -1)[:, 1:] > entry["threshold"]).sum().item()
            info = {
                "proposals_per_image": float(np.mean([len(p) for p in proposals])),
                "candidates_per_image": candidates / batch,
                "detections_per_image": float(np.mean([len(d["boxes"]) for d in detections])),
            }
        elif kind == "training":
            targets = []
            for i, (boxes, labels) in enumerate(zip(entry["boxes"][:batch], entry["labels"][:batch])):
                keep = labels >= 0  # padding rows are -1
                target = {"boxes": torch.from_numpy(np.ascontiguousarray(boxes[keep], np.float32)),
                          # torchvision's labels count the background as 0: kerasdet's label k is k + 1
                          "labels": torch.from_numpy(labels[keep].astype(np.int64) + 1)}
                if entry["arch"] == "mask":  # uint8 [N, H, W], one mask per box
                    target["masks"] = torch.from_numpy(np.ascontiguousarray(entry["masks"][i][keep], np.uint8))
                if entry["arch"] == "keypoint":  # float [N, K, 3]: x, y, visibility
                    target["keypoints"] = torch.from_numpy(np.ascontiguousarray(entry["keypoints"][i][keep], np.float32))
                targets.append(target)
            if entry["optimizer"] is None:
                entry["optimizer"] = torch.optim.SGD(entry["trainable"], lr=learning_rate)
            optimizer = entry["optimizer"]

            def call():
                model.train()
                losses = model(images, targets)
                loss = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                return float(loss.detach())

            head = {"mask": "mask_head", "keypoint": "keypoint_head"}.get(entry["arch"])
            if head is None:
                info = {"loss": call()}
            else:  # the head runs on the positive sampled RoIs: how many
                loss, rows = _rows_into(getattr(model.roi_heads, head), call)
                info = {"loss": loss, "head_rois_per_image": rows / batch}
        else:
            raise ValueError(f"kind must be 'inference' or 'training'; got {kind!r}")
        self.cases[case] = call
        return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, required=True, help="torch.set_num_threads (intra-op)")
    parser.add_argument("--interop-threads", type=int, required=True, help="torch.set_num_interop_threads")
    args = parser.parse_args(argv)
    protocol = sys.stdout
    sys.stdout = sys.stderr  # stray prints of the libraries must not reach the protocol stream

    import torch
    import torchvision

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.interop_threads)

    def reply(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    reply({"ready": True, "torch": torch.__version__, "torchvision": torchvision.__version__,
           "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()})
    worker = Worker()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            answer = worker.handle(request)
        except Exception:  # reported to the parent, which raises
            request, answer = {}, {"error": traceback.format_exc()}
        reply(answer)
        if request.get("quit"):
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
