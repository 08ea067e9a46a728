"""Keras 3's batch norm against `FusedBatchNormalization` (TensorFlow's fused kernel, which every Detector now
uses): the training step (`train_on_batch`) and inference (`predict_on_batch`) of models whose trunks are batch
normalised, each built twice with the same weights, interleaved in one process, medians; writes its section of
benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/fused_batch_norm.py [--rounds 7] [--print-only]
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.timing import command_line, interleaved_medians, machine_description, write_section  # noqa: E402
from kerasdet.data import pipeline, synthetic  # noqa: E402
from kerasdet.layers.fused_batch_norm import uses_fused_call  # noqa: E402
from kerasdet.models.retinanet import RetinaNet  # noqa: E402
from kerasdet.models.ssd.ssd import SSD  # noqa: E402
from kerasdet.models.yolo_v2 import YOLOv2  # noqa: E402

START, END = "<!-- fused_batch_norm:start -->", "<!-- fused_batch_norm:end -->"
#: name -> (builder, image size, batch)
MODELS = {
    "SSDLite MobileNetV3-Large (torchvision's layout), 320 px, batch 4":
        (lambda: SSD.ssdlite(num_classes=90, backbone="mobilenet_v3_large"), 320, 4),
    "RetinaNet compact (ResNet-18 x0.5 FPN), 256 px, batch 8": (lambda: RetinaNet.compact(num_classes=10), 256, 8),
    "YOLOv2 compact (Darknet-19 x0.5), 256 px, batch 8": (lambda: YOLOv2.compact(num_classes=10), 256, 8),
}


def pair(build, size):
    """The model with Keras' batch norm and with the fused one, the same weights."""
    keras.utils.set_random_seed(0)
    plain = build()
    plain.__dict__["_batch_norms_fused"] = True  # keep Keras' own layers
    plain.build_for_size(size)
    fused = build()
    fused.build_for_size(size)
    fused.set_weights(plain.get_weights())
    assert not any(uses_fused_call(layer) for layer in plain._flatten_layers())
    assert any(uses_fused_call(layer) for layer in fused._flatten_layers())
    return plain, fused


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--print-only", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for name, (build, size, batch) in MODELS.items():
        data = pipeline.padded_batch(synthetic.dataset("train", batch, size, with_masks=False, with_keypoints=False),
                                     batch)
        x, y = next(iter(data))
        x, y = np.asarray(x, np.float32), {k: np.asarray(v) for k, v in y.items()}
        plain, fused = pair(build, size)
        np.testing.assert_allclose(fused.predict_on_batch(x)["scores"], plain.predict_on_batch(x)["scores"],
                                   atol=1e-4)
        for model in (plain, fused):
            model.compile(optimizer=keras.optimizers.SGD(1e-4))
        train = interleaved_medians({"keras": lambda: plain.train_on_batch(x, y),
                                     "fused": lambda: fused.train_on_batch(x, y)}, rounds=args.rounds, warmup=2)
        infer = interleaved_medians({"keras": lambda: plain.predict_on_batch(x),
                                     "fused": lambda: fused.predict_on_batch(x)}, rounds=args.rounds, warmup=2)
        for kind, times in (("training step", train), ("inference + NMS", infer)):
            rows.append((name, kind, times["keras"], times["fused"], times["fused"] / times["keras"]))  # ms
            print(f"{name}, {kind}: Keras {rows[-1][2]:.1f} ms, fused {rows[-1][3]:.1f} ms, ratio {rows[-1][4]:.3f}",
                  flush=True)
    table = ["| model | case | Keras batch norm (ms) | fused (ms) | ratio fused/Keras |", "|---|---|---|---|---|"]
    table += [f"| {m} | {k} | {a:.1f} | {b:.1f} | {r:.3f} |" for m, k, a, b, r in rows]
    print("\n".join(table))
    if args.print_only:
        return 0
    body = "\n".join([
        "## Batch norm through TensorFlow's fused kernel (`benchmarks/fused_batch_norm.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on {machine_description()}; "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, float32, random weights, the same weights on both "
        f"sides, medians of {args.rounds} interleaved rounds after 2 warm-up calls. Keras 3 normalises with separate "
        "ops (moments, then batch_normalization); `FusedBatchNormalization` runs `FusedBatchNormV3` with Keras' "
        "semantics (tests/layers/test_fused_batch_norm.py).",
        "",
        *table,
    ])
    write_section(ROOT / "benchmarks" / "RESULTS.md", START, END, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
