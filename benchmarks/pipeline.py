"""Whether the training input pipeline keeps up with the training step, for the compact model of each family.

    .venv/bin/python benchmarks/pipeline.py                    # every family below, both sources; writes RESULTS.md
    .venv/bin/python benchmarks/pipeline.py --archs retinanet-compact --sources synthetic --rounds 1 --print-only

What `kerasdet train` feeds the model is built here by the CLI's own functions (`open_dataset`, the family's
training recipe, `_training_stream`: cache, seeded shuffle, the family's augmentation, letterbox, pad-batch,
prefetch, and YOLOv2's multi-scale sizes), from two sources of the same images: the embedded generator
(`synthetic`) and a COCO folder written from it once (`coco:`: PNG files read and decoded). For each
(architecture, source), one process, fixed thread counts (2 intra-op, 1 inter-op), medians of interleaved rounds:

- **start-up**: seconds to read the source once (rendering, or reading and decoding the files): `kerasdet train`
  reads and caches every decoded sample before its first step, so this is paid once, never beside a step;
- **pipeline alone**: images per second of an epoch's batches from the cache (the epoch's shuffle, augmentation,
  letterbox, batching, and YOLOv2's size per batch group), nothing else running;
- **training step alone**: images per second of `fit` on that epoch's batches held in memory;
- **fed / in memory**: the time of a `fit` over the whole epoch drawn from the pipeline (built anew, as every epoch of
  `kerasdet train` is), divided by the time of a `fit` over the same batches held in memory (the same images at the
  same sizes). This is what decides: on 2 cores the pipeline's threads share the CPU with the step, so a pipeline
  faster alone can still slow training; 1.00 means no cost at all.

A `fit`'s time here runs from its first batch's start to its last batch's end (`StepWindow`, a callback): waiting
for the next batch happens inside that window, but not what `fit` does before its first batch and after its last one
(nor building the epoch's pipeline and its iterator, which `kerasdet train` pays once per epoch, over far more steps
than these 16). What `fit` does around its steps was measured to be a fixed delay that some calls pay and others do
not: Fast YOLO's 16 steps took 3.0-3.2 s while the `fit` call returned after 5.11 s, on the in-memory batches as on
the pipeline's (2026-12-06). It is not the pipeline's cost, and timing whole calls gave ratios as low as 0.54 (a fed
epoch "faster" than the same batches in memory) that changed from run to run.

The pipeline keeps up when it is faster alone than the step and fed / in memory is at most 1.10. Random weights (the
step's cost does not depend on them). Run it on an otherwise idle machine: a second job shares the 2 cores with both
sides. The default families cover every kind of training pipeline there is: the standard augmenter on the fastest
step (Fast YOLO), SSD's augmentation, YOLOv2's multi-scale batches, and masks with keypoints (Mask R-CNN).
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import statistics
import sys
import tempfile
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

from benchmarks.timing import command_line, machine_description, positive_int, write_section  # noqa: E402
from benchmarks.two_stage import warn_if_busy  # noqa: E402
from kerasdet import cli  # noqa: E402
from kerasdet.models import families  # noqa: E402

START, END = "<!-- pipeline:start -->", "<!-- pipeline:end -->"
ARCHS = ("fast-yolo-compact", "ssd-compact-resnet18", "yolo-v2-compact", "mask-rcnn-compact")
SOURCES = ("synthetic", "coco")
#: fed / in-memory above this is flagged: the pipeline costs the step time
SLOWDOWN_FLAG = 1.10


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), help="compact architectures (kerasdet --arch)")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--images", type=positive_int, default=128, help="training images of each source (one epoch)")
    parser.add_argument("--image-size", type=positive_int, default=256)
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--print-only", action="store_true", help="print the table, do not write RESULTS.md")
    args = parser.parse_args(argv)
    if args.images < args.batch_size:
        parser.error(f"--images {args.images} makes no full batch of --batch-size {args.batch_size}")
    for arch in args.archs:
        try:
            families.family_of_arch(arch)
        except ValueError as err:  # it names the architectures there are
            parser.error(f"--archs: {err}")
    return args


def coco_folder(folder: pathlib.Path, images: int, image_size: int) -> str:
    """Writes the embedded training images as a COCO folder (PNG files) and returns its dataset spec."""
    from kerasdet.data import coco, synthetic

    annotations = folder / "train.json"
    coco.write_coco(synthetic.dataset("train", images, image_size), annotations, synthetic.categories(),
                    image_dir=folder / "images")
    return f"coco:{annotations}:{folder / 'images'}"


def _stream_args(args, arch):
    """What `_training_stream` reads of `kerasdet train`'s arguments."""
    return types.SimpleNamespace(arch=arch, init_from=None, image_size=args.image_size, batch_size=args.batch_size,
                                 seed=0, augment=None, max_boxes=32)


class StepWindow(keras.callbacks.Callback):
    """Seconds from the first training batch's start to the last one's end: a `fit`'s steps, including the waits for
    data, without what `fit` does before and after them."""

    def __init__(self):
        super().__init__()
        self.start = self.end = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self.end is None:
            raise RuntimeError("no training batch ran: there is no step to time")
        return self.end - self.start


def _fit_seconds(model, data, steps) -> float:
    """The steps' seconds of one epoch of `fit` on `data` (see `StepWindow`)."""
    window = StepWindow()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[window])
    return window.seconds


def _images_per_second(batches, batch_size):
    start = time.perf_counter()
    count = sum(1 for _ in batches)
    return count * batch_size / (time.perf_counter() - start), count


def measure(arch: str, source: str, spec: str, args) -> dict:
    """One row: start-up, pipeline alone, step alone and fed / in-memory for `arch` on `source`."""
    recipe = families.family_of_arch(arch).recipe
    with_masks = "masks" in recipe.needs
    ds, class_names, _, extras = cli.open_dataset(spec, "train", args.images, args.image_size,
                                                  with_masks=with_masks, with_keypoints=with_masks)
    ds = ds.cache()
    start = time.perf_counter()
    count = sum(1 for _ in ds)  # reads every sample into the cache, as `kerasdet train` does before its first step
    startup = time.perf_counter() - start
    stream_args = _stream_args(args, arch)
    _, epoch = cli._training_stream(ds, count, stream_args, recipe, None, extras["keypoint_flip_map"], 0, 0)

    model = cli.build_model(arch, len(class_names), class_names, extras["keypoints"])
    model.build_for_size(args.image_size)
    model.compile(learning_rate=1e-4)
    # every timed epoch is epoch 0 (one seed): the same images at the same sizes, fed or held
    steps = sum(1 for _ in epoch(0))
    if steps < 1:  # fit would read the repeated in-memory batches forever
        raise ValueError(f"{arch} on {source}: the epoch has no full batch of {args.batch_size}")
    in_memory = _memory_dataset(epoch(0))
    model.fit(in_memory, epochs=1, steps_per_epoch=steps, verbose=0)  # tracing, warm-up
    model.fit(epoch(0), epochs=1, steps_per_epoch=steps, verbose=0)  # a pipeline-fed warm-up (shapes may relax)

    times = {"pipeline": [], "memory": [], "fed": []}
    for r in range(args.rounds):
        # a pause between measurements, so that no prefetching of the one before overlaps the next
        order = ("memory", "fed", "pipeline") if r % 2 == 0 else ("pipeline", "fed", "memory")
        for what in order:
            time.sleep(0.5)
            if what == "pipeline":
                times["pipeline"].append(_images_per_second(epoch(0), args.batch_size)[0])
                continue
            times[what].append(_fit_seconds(model, in_memory if what == "memory" else epoch(0), steps))
    memory, fed = statistics.median(times["memory"]), statistics.median(times["fed"])
    return {"arch": arch, "source": source, "startup": startup, "pipeline": statistics.median(times["pipeline"]),
            "step": steps * args.batch_size / memory, "fed_ratio": fed / memory, "steps": steps}


def _memory_dataset(batches):
    """The epoch's batches held in memory: the pipeline's own dataset cached after batching and filled once, so that
    `fit` reads the same element spec (the same traced step) with no pipeline work and no Python in the loop."""
    cached = batches.cache().repeat()
    for _ in cached.take(sum(1 for _ in batches) + 1):  # one whole pass fills the cache
        pass
    return cached


def table(rows) -> str:
    lines = ["| architecture | source | start-up (s) | pipeline alone (img/s) | training step alone (img/s) | "
             "fed / in memory | keeps up |",
             "|---|---|---:|---:|---:|---:|:---:|"]
    for r in rows:
        keeps = r["pipeline"] > r["step"] and r["fed_ratio"] <= SLOWDOWN_FLAG
        lines.append(f"| {r['arch']} | {r['source']} | {r['startup']:.1f} | {r['pipeline']:.0f} | {r['step']:.1f} | "
                     f"{r['fed_ratio']:.3f} | {'yes' if keeps else '**no**'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    warn_if_busy()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        specs = {"synthetic": "synthetic"}
        if "coco" in args.sources:
            specs["coco"] = coco_folder(pathlib.Path(tmp), args.images, args.image_size)
        for arch in args.archs:
            for source in args.sources:
                print(f"[bench] {arch} on {source} ...", flush=True)
                row = measure(arch, source, specs[source], args)
                print(f"[bench]   start-up {row['startup']:.1f} s | pipeline {row['pipeline']:.0f} img/s | "
                      f"step {row['step']:.1f} img/s | fed / in memory {row['fed_ratio']:.3f}", flush=True)
                rows.append(row)
                keras.backend.clear_session()
    text = table(rows)
    print(text)
    if args.print_only:
        return 0
    body = "\n".join([
        "## Training input pipeline (`benchmarks/pipeline.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on {machine_description()};",
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; 2 intra-op threads, 1 inter-op thread, float32, "
        f"{args.images} training images at {args.image_size} px (one epoch), batch {args.batch_size}, medians of "
        f"{args.rounds} interleaved rounds. The batches are what `kerasdet train` makes (each family's augmentation); "
        "the COCO folder holds the same images as PNG files. \"Keeps up\": the pipeline alone faster than the step, "
        f"and fed / in memory at most {SLOWDOWN_FLAG:.2f}. Each timed `fit` is one epoch ({args.images // args.batch_size} "
        "steps), timed from its first batch's start to its last batch's end (see the script's docstring): a row's "
        "ratio moves by several hundredths between runs, so one row near the flag decides little.",
        "",
        text,
    ])
    write_section(ROOT / "benchmarks" / "RESULTS.md", START, END, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
