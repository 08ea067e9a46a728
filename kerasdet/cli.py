"""The `kerasdet` command: list, train, evaluate, predict, export.

    kerasdet list
    kerasdet train --arch retinanet-compact --dataset synthetic --train-images 3000 --epochs 12 --out runs/r18
    kerasdet evaluate --model retinanet_resnet18_shapes --dataset synthetic:test --images 500 --out out/eval
    kerasdet predict --model retinanet_resnet18_shapes --dataset synthetic:val --images 8 --out out/pred
    kerasdet predict --model retinanet_resnet18_shapes photo1.jpg photo2.png --out out/pred
    kerasdet export --model retinanet_resnet18_shapes --out serving/1

Datasets: `synthetic` (the embedded one; `synthetic:val`, `synthetic:test` pick a split),
`coco:ANNOTATIONS.json[:IMAGE_ROOT]`, `voc:ROOT[:SPLIT]`, `yolo:ROOT[:SPLIT]`.
Models: a zoo name (`kerasdet list`), or a training run folder (`runs/r18`, holding model.json and
the weights) for `evaluate`, `predict` and `export`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import re
import shlex
import sys
import time



def __getattr__(name):
    if name == "METRIC_KEYS":  # the COCO keys a card's metrics hold (read lazily: the metrics import TensorFlow)
        from kerasdet.metrics.coco import DETECTION_STATS

        return DETECTION_STATS
    raise AttributeError(f"module 'kerasdet.cli' has no attribute {name!r}")


def _quiet_tensorflow():
    """Imports TensorFlow with its start-up log lines (absl, oneDNN, CUDA probing) silenced: they are written by
    C++ code straight to file descriptor 2, before TF_CPP_MIN_LOG_LEVEL applies to all of them. Errors raised by
    the import still surface as Python exceptions."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe ("failed call to cuInit") happens here, silenced
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# -- datasets -------------------------------------------------------------------------------------------

def _flip_map_from_names(names):
    """The keypoint permutation of a horizontal flip, swapping names that differ only by left/right."""
    def mirrored(name):
        for a, b in (("left", "right"), ("right", "left"), ("Left", "Right"), ("Right", "Left")):
            if a in name:
                return name.replace(a, b)
        return name

    return [names.index(mirrored(n)) if mirrored(n) in names else i for i, n in enumerate(names)]


def parse_class_names(value):
    """`--class-names`: a text file with one name per line, or a comma-separated list -> list of names."""
    if value is None:
        return None
    path = pathlib.Path(value)
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif "," not in value and (os.sep in value or path.suffix in (".txt", ".names", ".csv")):
        raise SystemExit(f"kerasdet: --class-names {value!r}: no such file (give a file with one name per line, "
                         "or a comma list such as disc,square,star)")
    else:
        names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise SystemExit(f"kerasdet: --class-names {value!r} holds no name (give a file with one name per line, or "
                         "a comma list such as disc,square,star)")
    if len(set(names)) != len(names):
        raise SystemExit(f"kerasdet: --class-names repeats a name: {names}")
    return names


#: the image sets tried, in order, when a `voc:ROOT` spec names none (then: every Annotations/*.xml)
VOC_DEFAULT_SPLITS = {"train": ("trainval", "train"), "test": ("test", "val"), "val": ("val", "test")}


def _voc_reader(root, sub_split, purpose, class_names, prefer_names):
    from kerasdet.data import VocDataset

    existing = VocDataset.splits(root)
    split = sub_split or next((s for s in VOC_DEFAULT_SPLITS.get(purpose, ()) if s in existing), None)
    if split is None and existing:  # reading every annotation would mix the splits the folder defines
        raise SystemExit(f"kerasdet: voc:{root} has the image sets {existing} but none of "
                         f"{list(VOC_DEFAULT_SPLITS.get(purpose, ()))}: name one, e.g. voc:{root}:{existing[0]}")
    where = f"image set {split!r}" if split else "every Annotations/*.xml (no ImageSets/Main/ image set)"
    if class_names is None:
        reader = VocDataset(root, split=split, class_names=None)
        found = reader.class_names
        if prefer_names and set(found) <= set(prefer_names):  # the model's label order, when it covers the data
            reader = VocDataset(root, split=split, class_names=list(prefer_names))
            print(f"[data] voc:{root}: {where}; its classes {found} in the model's label order", flush=True)
        else:
            print(f"[data] voc:{root}: {where}; {len(found)} classes read from the XML (sorted): {found}", flush=True)
        return reader
    print(f"[data] voc:{root}: {where}; classes from --class-names: {class_names}", flush=True)
    return VocDataset(root, split=split, class_names=class_names)


def open_dataset(spec: str, split: str, images: int | None, image_size: int, with_masks=False, with_keypoints=False,
                 class_names=None, prefer_names=None, classification_images=0):
    """Returns (unbatched tf.data of (image, targets), class_names, make_coco_gt or None, extras) for a dataset spec.

    `class_names` (from `--class-names`) names the labels of VOC and YOLO folders; without it a VOC folder's names
    are read from its XML files (sorted; in `prefer_names`' order, a model's, when those cover them) and a YOLO
    folder's from its classes file. A `voc:ROOT` without a split reads the first image set of
    `VOC_DEFAULT_SPLITS[split]` that exists, else every annotation file.

    `make_coco_gt()` builds the COCO ground-truth dict of the embedded dataset (masks and all) when
    called; other datasets give None (their ground truth comes from the collected targets). `extras` holds
    "keypoints" (`{class name: keypoint names}`, empty without keypoints) and "keypoint_flip_map". With
    `with_masks` / `with_keypoints` the targets carry "masks" / "keypoints" (a dataset without them: exit
    with a message). `synthetic-tree[:split]` is YOLO9000's experiment (`synthetic.word_tree_datasets`): targets
    {"boxes", "nodes"}, and with `classification_images` extras["classification"] holds that many one-object
    images labelled only by their leaf node; extras["word_tree"] is the hierarchy `(names, parents)`.
    """
    import functools

    from kerasdet.data import CocoDataset, YoloTxtDataset, synthetic

    kind, _, rest = spec.partition(":")
    if class_names is not None and kind not in ("voc", "yolo"):
        raise SystemExit(f"kerasdet: --class-names applies to voc: and yolo: datasets; {spec!r} names its own classes")
    if kind == "synthetic-tree":  # YOLO9000's experiment: WordTree nodes, some classes only at their parent
        split = rest or split
        if split not in synthetic.SPLIT_SEEDS:
            raise SystemExit(f"kerasdet: unknown synthetic split {split!r}; use one of {sorted(synthetic.SPLIT_SEEDS)}")
        n = images or 500
        detection, classification = synthetic.word_tree_datasets(split, n, classification_images, image_size)
        extras = {"keypoints": {}, "keypoint_flip_map": None, "word_tree": synthetic.hierarchy(),
                  "classification": classification if classification_images else None,
                  "classification_images": classification_images}
        return (detection, list(synthetic.class_names()), functools.partial(synthetic.as_coco, split, n, image_size),
                extras)
    if classification_images:
        raise SystemExit(f"kerasdet: --classification-images applies to the synthetic-tree dataset (YOLO9000's "
                         f"experiment); {spec!r} has no classification-only images")
    if kind == "synthetic":
        split = rest or split
        if split not in synthetic.SPLIT_SEEDS:
            raise SystemExit(f"kerasdet: unknown synthetic split {split!r}; use one of {sorted(synthetic.SPLIT_SEEDS)}")
        n = images or 500
        ds = synthetic.dataset(split, n, image_size, with_masks=with_masks, with_keypoints=with_keypoints)
        extras = {"keypoints": synthetic.keypoint_names() if with_keypoints else {},
                  "keypoint_flip_map": synthetic.keypoint_flip_map() if with_keypoints else None}
        return ds, list(synthetic.class_names()), functools.partial(synthetic.as_coco, split, n, image_size), extras
    extras = {"keypoints": {}, "keypoint_flip_map": None}
    if kind == "coco":
        from kerasdet.data import DatasetError

        ann, _, root = rest.partition(":")
        try:
            # masks are required when asked for (a mask head trains on them); keypoints are read where declared
            reader = CocoDataset(ann, root or str(pathlib.Path(ann).parent), with_masks=with_masks or False,
                                 with_keypoints=None if with_keypoints else False)
        except DatasetError as err:
            hint = (" (this model's mask head trains on masks: every annotation needs a `segmentation`)"
                    if with_masks and "segmentation" in str(err) else "")
            raise SystemExit(f"kerasdet: {err}{hint}") from None
        if with_keypoints and reader.with_keypoints:
            named = {c["name"]: list(c["keypoints"]) for c in reader.categories if c.get("keypoints")}
            extras["keypoints"] = named
            if named:
                extras["keypoint_flip_map"] = _flip_map_from_names(next(iter(named.values())))
    elif kind in ("voc", "yolo"):
        if with_masks:
            raise SystemExit(f"kerasdet: {spec!r} has no instance masks ({kind} datasets hold boxes only), and this "
                             "model's mask head trains on masks: use a COCO json with segmentations or the embedded "
                             "dataset, or a box-only architecture")
        root, _, sub_split = rest.partition(":")
        if not root:
            raise SystemExit(f"kerasdet: {spec!r} names no folder; use {kind}:ROOT[:SPLIT]")
        reader = (_voc_reader(root, sub_split, split, class_names, prefer_names) if kind == "voc"
                  else YoloTxtDataset(root, split=sub_split or None, class_names=class_names))
    else:
        raise SystemExit(f"kerasdet: unknown dataset {spec!r}; use synthetic, coco:PATH, voc:PATH or yolo:PATH")
    _check_image_files(reader, spec, kind == "coco" and not rest.partition(":")[2])
    ds = reader.dataset()
    if images:
        ds = ds.take(images)
    return ds, list(reader.class_names), None, extras


def _check_image_files(reader, spec, defaulted_root):
    """Every image file of a dataset exists (a missing one found in the middle of training is a late surprise);
    a COCO json whose image root was not given says where the images were looked for."""
    import os

    paths = list(reader.image_paths)
    missing = [p for p in paths if not os.path.isfile(p)]
    if not missing:
        return
    where = os.path.dirname(missing[0])
    hint = (f"; the image root defaults to the json's folder: give it as {spec}:IMAGE_FOLDER" if defaulted_root
            else "")
    raise SystemExit(f"kerasdet: {len(missing)} of the {len(paths)} image files of {spec} are missing, e.g. "
                     f"{missing[0]} (looked for in {where}){hint}")


# -- models ---------------------------------------------------------------------------------------------

def load_model(spec: str, num_classes=None, precision="float32"):
    """A zoo name or a training-run folder -> (compiled model, description dict)."""
    import kerasdet.zoo as zoo
    from kerasdet.zoo import registry

    if spec in zoo.list():
        return zoo.load(spec, num_classes=num_classes, precision=precision), zoo.card(spec)
    folder = pathlib.Path(spec)
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise SystemExit(f"kerasdet: {spec!r} is neither a zoo model ({zoo.list()}) nor a run folder with model.json")
    meta = json.loads(meta_path.read_text())
    return registry.build(meta, num_classes=num_classes, weights=folder / meta["weights"], what=f"run {folder}",
                          precision=precision), meta


def build_model(arch, num_classes, class_names, keypoints=None, word_tree=None):
    """A fresh model of a table architecture (`kerasdet.models.families`); `keypoints` is the dataset's
    `{class name: keypoint names}` (for families with a keypoint head), `word_tree` its class hierarchy
    `(names, parents)` (for YOLO9000)."""
    from kerasdet.models import families

    try:
        row = families.family_of_arch(arch)
    except ValueError as err:
        raise SystemExit(f"kerasdet: --arch: {err}") from None
    extra = {"word_tree": word_tree} if row.name == "yolo9000" else {}
    try:
        return row.archs[arch](num_classes, class_names, keypoints=keypoints, **extra)
    except ValueError as err:
        if row.name == "yolo9000":
            raise SystemExit(f"kerasdet: --arch {arch}: {err}") from None
        raise


def _recipe_of(args):
    """The training recipe of the family being trained (from --arch, or the --init-from model's family)."""
    from kerasdet.models import families

    if args.init_from:
        import kerasdet.zoo as zoo

        meta_path = pathlib.Path(args.init_from) / "model.json"
        name = zoo.card(args.init_from)["family"] if args.init_from in zoo.list() else (
            json.loads(meta_path.read_text())["family"] if meta_path.is_file() else None)
        if name is not None:
            return families.family(name).recipe
    try:
        return families.family_of_arch(args.arch).recipe
    except ValueError as err:
        raise SystemExit(f"kerasdet: --arch: {err}") from None


# -- commands -------------------------------------------------------------------------------------------

def cmd_list(args):
    import kerasdet.zoo as zoo

    for name in zoo.list():
        card = zoo.card(name)
        m = card.get("metrics", {})
        print(f"{name:32s} {card['family']:10s} AP {m.get('AP', float('nan')):.3f}  AP50 {m.get('AP50', float('nan')):.3f}  "
              f"({card['dataset'].get('name')} {card['dataset'].get('eval_split')})")
    return 0


def cmd_anchors(args):
    """k-means anchors (`kerasdet.data.kmeans_anchors`) for each `--k`, with the mean IoU of the boxes with their
    best anchor, beside Faster R-CNN's 9 hand-picked anchors scaled to `--image-size` (the YOLO9000 paper's Table 1)."""
    _quiet_tensorflow()
    import numpy as np

    from kerasdet.data.kmeans_anchors import box_sizes, faster_rcnn_anchors, kmeans_anchors, mean_best_iou
    from kerasdet.zoo.weights import write_text_atomically

    if args.images < 1 or args.image_size < 1 or not args.stride > 0 or min(args.k) < 1:
        raise SystemExit("kerasdet anchors: --images, --image-size, --stride and every --k must be positive")
    ds, _, _, _ = open_dataset(args.dataset, "train", args.images, args.image_size,
                               class_names=parse_class_names(args.class_names))
    sizes = box_sizes(ds.take(args.images).as_numpy_iterator(), args.image_size)
    print(f"[anchors] {len(sizes)} boxes from {args.dataset} at {args.image_size}px", flush=True)
    rows = [{"anchors": "Faster R-CNN hand-picked", "k": 9,
             "mean_iou": mean_best_iou(sizes, faster_rcnn_anchors(args.image_size))}]
    for k in args.k:
        anchors = kmeans_anchors(sizes, k, stride=args.stride, seed=args.seed)
        rows.append({"anchors": "k-means (1 - IoU)", "k": k, "mean_iou": mean_best_iou(sizes, anchors * args.stride),
                     "grid_units": np.round(anchors, 4).tolist()})
    print(f"{'anchors':28s} {'k':>3s} {'mean IoU':>9s}")
    for row in rows:
        print(f"{row['anchors']:28s} {row['k']:3d} {row['mean_iou']:9.4f}")
    for row in rows[1:]:
        shapes = ", ".join(f"({w:.3f}, {h:.3f})" for w, h in row["grid_units"])
        print(f"k={row['k']} in units of {args.stride:g} px: {shapes}")
    if args.out:
        write_text_atomically(pathlib.Path(args.out), json.dumps({"dataset": args.dataset, "image_size": args.image_size,
                                                                   "stride": args.stride, "rows": rows}, indent=1))
    return 0


def _training_record(source):
    """The training record (train_command, train_seconds) of a zoo model's card or a run folder's model.json,
    or None (e.g. a run folder from before records were kept)."""
    import kerasdet.zoo as zoo

    if source in zoo.list():
        return zoo.card(source)
    path = pathlib.Path(source) / "model.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _stages(args, stage_seconds):
    """(train_command, train_seconds) of every stage so far: those of the models this run started from
    (--init-from, and --backbone-from whose trained variables it copied), followed by this run's, so that a
    card shows every stage that produced its weights."""
    command, seconds = args.command_line, stage_seconds
    sources = [s for s in (getattr(args, "backbone_from", None), args.init_from) if s]
    for source in reversed(sources):
        record = _training_record(source)
        if record is not None and record.get("train_command"):
            command = record["train_command"] + " && " + command
            seconds += record.get("train_seconds") or 0.0
    return command, round(seconds, 1)


def _resume_state(args):
    """The interrupted run in `args.resume` and where to go on from: (its args, its newest whole checkpoint or None,
    seconds spent)."""
    from kerasdet.models import run_checkpoints

    run = pathlib.Path(args.resume)
    record = run / "command.json"
    if not record.is_file():
        raise SystemExit(f"kerasdet: --resume {run}: no command.json there (not a kerasdet training run folder)")
    saved = json.loads(record.read_text())
    resumed = build_parser().parse_args(saved["argv"])
    resumed.command_line, resumed.argv, resumed.resume = saved["command"], saved["argv"], str(run)
    resumed.out = str(run)  # the folder given to --resume, wherever it has moved since
    if (run / "model.json").is_file():
        raise SystemExit(f"kerasdet: --resume {run}: that run has finished (model.json exists)")
    older_run = saved.get("checkpoint_format") != run_checkpoints.FORMAT
    checkpoint = run_checkpoints.latest(run / "checkpoints", older_runs=older_run)
    if checkpoint is None:
        print(f"[train] --resume {run}: no checkpoint yet, starting the run again", flush=True)
        return resumed, None, 0.0
    if checkpoint.seconds is not None:
        return resumed, checkpoint, float(checkpoint.seconds)
    # an older run's epoch checkpoint: the seconds progress.json recorded at that epoch's end
    progress = run / "progress.json"
    per_epoch = json.loads(progress.read_text()).get("seconds", {}) if progress.is_file() else {}
    epoch = str(run_checkpoints.epoch_of_legacy(checkpoint)) if checkpoint.step < 0 else None
    return resumed, checkpoint, float(per_epoch.get(epoch, 0.0))


def _rebuild_for_resume(args, num_classes, class_names, keypoints=None, word_tree=None):
    """The interrupted run's model, built before its checkpoint is loaded."""
    from kerasdet.zoo.precision import global_policy

    precision = getattr(args, "precision", "float32")
    if args.init_from:
        model, _ = load_model(args.init_from, num_classes=num_classes, precision=precision)
        model.class_names = class_names
        return model
    with global_policy(precision):
        model = build_model(args.arch, num_classes, class_names, keypoints, word_tree=word_tree)
        return model.build_for_size(args.image_size)


def _compile_for(model, args, steps, recipe):
    """AdamW with linear warm-up then cosine decay over `steps`, the recipe's weight decay and clipping."""
    import keras

    # a fine-tune (--init-from) starts from trained weights: a short warm-up (at most a tenth of its often short
    # schedule) instead of one that can take half the run at a fraction of the learning rate
    cap = steps // 10 if getattr(args, "init_from", None) and getattr(args, "warmup_from_recipe", False) else steps // 2
    warmup = min(args.warmup, cap)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=args.lr * 0.1, decay_steps=max(steps - warmup, 1), alpha=0.01,
        warmup_target=args.lr, warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=recipe.weight_decay,
                                                   global_clipnorm=recipe.clipnorm))


def _alternating_training(model, train, args, steps, out, num_classes, class_names):
    """Faster R-CNN's 4-step alternating training (Ren et al., 2015, §3.2), `--epochs` epochs per step:
    (1) the RPN from the initial weights; (2) a detector from the initial weights on step 1's proposals;
    (3) the RPN's own layers on step 2's frozen trunk; (4) the RoI head on the same trunk. Returns the
    final model (step 2's network after steps 3 and 4), every part trainable again."""
    import keras

    from kerasdet.models.faster_rcnn import FasterRCNN

    if not isinstance(model, FasterRCNN):
        raise SystemExit(f"kerasdet: --alternating trains two-stage models; --arch {args.arch} builds a "
                         f"{type(model).__name__}")
    recipe = _recipe_of(args)
    from kerasdet.zoo.precision import global_policy

    initial = model.get_weights()
    with global_policy(args.precision):
        detector = type(model).from_config(model.get_config())
        detector.build_for_size(args.image_size)
    plan = [
        ("1-rpn", model, dict(stage="rpn", trainable=("backbone", "fpn", "rpn"))),
        ("2-detector", detector, dict(stage="detector", trainable=("backbone", "fpn", "box_head"), proposal_model=model)),
        ("3-rpn-unique", detector, dict(stage="rpn", trainable=("rpn",))),
        ("4-head-unique", detector, dict(stage="detector", trainable=("box_head",))),
    ]
    detector.set_weights(initial)
    for label, net, stage in plan:
        net.set_training_stage(**stage)
        _compile_for(net, args, steps, recipe)
        print(f"[train] alternating step {label}: {stage['stage']} losses, training {', '.join(stage['trainable'])}; "
              f"{steps} steps", flush=True)
        callbacks = [keras.callbacks.CSVLogger(str(out / f"history_{label}.csv")),
                     _training_progress(out / f"progress_{label}.json", 0.0, steps_per_epoch=steps // args.epochs)]
        net.fit(train, epochs=args.epochs, steps_per_epoch=steps // args.epochs, callbacks=callbacks,
                verbose=1 if sys.stdout.isatty() else 0)
    detector.set_training_stage("joint")
    detector.compile()
    return detector


def _format_terms(logs):
    return " ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items())


def _training_progress(path, seconds_before, steps_per_epoch, every=100, resume_at=None):
    """A callback printing a progress line every `every` steps when stdout is not a terminal, and writing
    `progress.json` with the cumulative training seconds at the end of each epoch (so that a resumed run
    counts the time before). `resume_at` `(epoch, batch)`: the epoch a resumed run enters at that batch. The clock
    starts at the first `fit` that uses the callback and runs across later ones."""
    import keras

    state = {"start": None, "epoch": 0}
    offset = dict([resume_at]) if resume_at else {}
    data = json.loads(path.read_text()) if path.is_file() else {"seconds": {}}

    def elapsed():
        return time.time() - state["start"] + seconds_before

    def batch_end(batch, logs):
        batch += offset.get(state["epoch"], 0)
        if not sys.stdout.isatty() and (batch + 1) % every == 0:
            print(f"[train] epoch {state['epoch'] + 1} step {batch + 1}/{steps_per_epoch} {_format_terms(logs)} "
                  f"({elapsed():.0f} s)", flush=True)

    def epoch_end(epoch, logs):
        from kerasdet.zoo.weights import write_text_atomically

        data["seconds"][str(epoch + 1)] = round(elapsed(), 1)
        write_text_atomically(path, json.dumps(data, indent=1))
        print(f"[train] epoch {epoch + 1} done: {_format_terms(logs)}", flush=True)

    return keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: state.update(start=state["start"] or time.time()),
        on_epoch_begin=lambda epoch, logs: state.update(epoch=epoch),
        on_train_batch_end=batch_end, on_epoch_end=epoch_end)


def cmd_train(args):
    """`kerasdet train`; a run folder this command made is removed again when it fails before its first checkpoint
    (no empty or half-written run is left behind)."""
    if not args.resume and not args.out:
        raise SystemExit("kerasdet train: --out RUN_FOLDER is required (or --resume RUN_FOLDER)")
    if args.epochs < 1:
        raise SystemExit(f"kerasdet train: --epochs must be at least 1; got {args.epochs}")
    if args.batch_size < 1:
        raise SystemExit(f"kerasdet train: --batch-size must be at least 1; got {args.batch_size}")
    out = None if args.resume else _own_run_folder(args)
    fresh = out is not None and not out.exists()
    try:
        return _train(args)
    except BaseException:
        # (a chief's folder may hold other workers' folders: nothing is removed once a checkpoint exists below it)
        if fresh and out.exists() and not any(out.rglob("*.weights.h5")):
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise


def _model_meta(spec):
    """The card of a zoo model or the model.json of a run folder (no weights loaded)."""
    import kerasdet.zoo as zoo

    if spec in zoo.list():
        return zoo.card(spec)
    meta_path = pathlib.Path(spec) / "model.json"
    if not meta_path.is_file():
        raise SystemExit(f"kerasdet: {spec!r} is neither a zoo model ({zoo.list()}) nor a run folder with model.json")
    return json.loads(meta_path.read_text())


def _model_class_count(spec):
    return int(_model_meta(spec)["num_classes"])


def _check_class_count(args, class_names):
    """Refuses a class count that is not asked for: --num-classes must match the dataset, and a --init-from model
    with another count needs --num-classes (a new class head) rather than a silent one."""
    count = len(class_names)
    if args.num_classes is not None and args.num_classes != count:
        raise SystemExit(f"kerasdet train: --num-classes {args.num_classes} differs from the {count} classes of "
                         f"--dataset {args.dataset} ({_short(class_names)})")
    if args.init_from and not args.resume and args.num_classes is None:
        have = _model_class_count(args.init_from)
        if have != count:
            raise SystemExit(f"kerasdet train: --init-from {args.init_from} has {have} classes and --dataset "
                             f"{args.dataset} has {count} ({_short(class_names)}); pass --num-classes {count} to "
                             "train a new class head on the model's other weights")


class _ValidationAP:
    """A Keras callback (made lazily: keras is imported inside) that scores the model on a validation dataset at the
    end of each epoch and adds `val_AP`, `val_AP50` and `val_AP75` to the epoch's logs."""

    def __new__(cls, spec, images, image_size, batch_size, class_names):
        import keras

        class ValidationAP(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                start = time.time()
                metrics, _, _, _, _, _ = _evaluate(self.model, spec, images, image_size, batch_size, "val", "validate",
                                                   class_names=class_names if spec.split(":")[0] in ("voc", "yolo")
                                                   else None)
                for key in ("AP", "AP50", "AP75"):
                    if logs is not None:
                        logs[f"val_{key}"] = metrics[key]
                print(f"[train] epoch {epoch + 1} validation on {spec}: AP {metrics['AP']:.3f} AP50 "
                      f"{metrics['AP50']:.3f} AP75 {metrics['AP75']:.3f} ({time.time() - start:.0f} s)", flush=True)

        return ValidationAP()


def _truncate_history(path, epochs_done):
    """Keeps the rows of the first `epochs_done` epochs of a resumed run's history.csv: a run killed between an
    epoch's row and its checkpoint trains that epoch's end again and writes its row again."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if line.split(",")[0].isdigit()
                        and int(line.split(",")[0]) < epochs_done]
    if kept != lines:
        from kerasdet.zoo.weights import write_text_atomically

        write_text_atomically(path, "".join(kept))


def _epoch_seed(seed, epoch):
    """The seed of epoch `epoch`'s shuffle and augmentation draws: a function of the run's seed and the epoch alone,
    so a resumed run sees the batches an uninterrupted one does."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919) % 2**31


def _training_stream(ds, count, args, recipe, scale_range, keypoint_flip_map, first_epoch, first_batch,
                     classification=None):
    """The training batches from epoch `first_epoch`, batch `first_batch` on: the rest of that epoch as a dataset,
    and a function `epoch(e)` that makes epoch `e`'s dataset when its turn comes (each epoch's pipeline is built
    only then, not all of them up front). Epoch e is `prepare` of the cached samples shuffled and augmented with
    `_epoch_seed(args.seed, e)`, cut to its `count // batch_size` full batches.
    `classification` `(dataset, count)`: YOLO9000's classification-only images, batched apart (no augmentation)
    and mixed among the detection batches in an order drawn from the epoch's seed."""
    from kerasdet.data import prepare

    def epoch(e, skip_batches=0):
        augmenter = recipe.augmenter(args.image_size, scale_range, seed=_epoch_seed(args.seed, e),
                                     keypoint_flip_map=keypoint_flip_map, augmentation=getattr(args, "augment", None))
        detection_steps = count // args.batch_size  # full batches (drop_remainder)
        if classification is None:
            batches = prepare(ds, args.batch_size, args.image_size, augmenter=augmenter,
                              shuffle_buffer=min(count, 2048), drop_remainder=True, seed=_epoch_seed(args.seed, e),
                              max_boxes=args.max_boxes, skip=skip_batches * args.batch_size
                              ).take(detection_steps - skip_batches)
        else:
            batches = _mixed_epoch(ds, count, classification, args, augmenter, _epoch_seed(args.seed, e)
                                   ).skip(skip_batches)
        if recipe.make_batch_transform is not None:  # e.g. YOLOv2's multi-scale sizes, drawn per batch index
            batches = recipe.make_batch_transform(args.image_size, _epoch_seed(args.seed, e))(batches, skip_batches)
        return batches

    return epoch(first_epoch, first_batch), epoch


def _trains_family(args, name):
    """Whether the run trains a model of family `name` (its --arch, or the --init-from / resumed model's family)."""
    from kerasdet.models import families

    if args.init_from:
        return _model_meta(args.init_from).get("family") == name
    try:
        return families.family_of_arch(args.arch).name == name
    except ValueError:
        return False


def _steps_per_epoch(count, batch_size, classification_images=0):
    """Full batches of an epoch: the detection images' and, apart, the classification-only images'."""
    return count // batch_size + classification_images // batch_size


def _mixed_epoch(ds, count, classification, args, augmenter, seed):
    """One epoch of YOLO9000's joint training: the detection batches (`prepare`) and the classification-only
    batches (shuffled, padded to `--max-boxes` rows), in an order shuffled with `seed`."""
    import numpy as np
    import tensorflow as tf

    from kerasdet.data import prepare
    from kerasdet.data.pipeline import padded_batch

    images, n = classification
    detection_steps, classification_steps = count // args.batch_size, n // args.batch_size
    detection = prepare(ds, args.batch_size, args.image_size, augmenter=augmenter, shuffle_buffer=min(count, 2048),
                        drop_remainder=True, seed=seed, max_boxes=args.max_boxes).take(detection_steps)
    classified = padded_batch(images.shuffle(min(n, 2048), seed=seed, reshuffle_each_iteration=False),
                              args.batch_size, max_boxes=args.max_boxes, drop_remainder=True).take(classification_steps)
    dtype = detection.element_spec[0].dtype
    classified = classified.map(lambda x, y: (tf.cast(x, dtype), y))
    order = np.random.default_rng(seed).permutation(np.repeat([0, 1], [detection_steps, classification_steps]))
    return tf.data.Dataset.choose_from_datasets([detection, classified],
                                                tf.data.Dataset.from_tensor_slices(order.astype(np.int64)))


def _own_run_folder(args):
    """The run folder this process writes: `--out` (or the folder given to `--resume`), except for a worker of a
    `--strategy multi_worker` cluster other than the chief, whose new run goes to `--out/worker-<index>` (resumed,
    the folder given is already its own)."""
    out = pathlib.Path(args.out)
    if args.resume or getattr(args, "strategy", None) != "multi_worker":
        return out
    from kerasdet.models.distribution import is_chief

    if is_chief():
        return out
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return out / f"{task.get('type', 'worker')}-{int(task.get('index', 0))}"


def _training_strategy(args):
    """The tf.distribute strategy of `--strategy` (None without it), made before TensorFlow makes its devices; the
    combinations it cannot train are refused first."""
    if args.cpu_replicas is not None and args.strategy != "mirrored":
        raise SystemExit("kerasdet train: --cpu-replicas applies with --strategy mirrored (a multi_worker cluster "
                         "runs one replica per worker process)")
    if not args.strategy:
        return None
    for flag, value, why in (("--alternating", args.alternating, "four trainings in one command"),
                             ("--precision mixed_float16", args.precision == "mixed_float16",
                              "its loss scale; use mixed_bfloat16 or float32"),
                             ("--val-dataset", args.val_dataset and args.strategy == "multi_worker",
                              "scoring needs every worker; evaluate the run afterwards")):
        if value:
            raise SystemExit(f"kerasdet train: --strategy {args.strategy} does not take {flag} ({why})")
    from kerasdet.models.distribution import make_strategy

    try:
        strategy = make_strategy(args.strategy, cpu_replicas=args.cpu_replicas)
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"kerasdet train: --strategy {args.strategy}: {err}") from None
    replicas = strategy.num_replicas_in_sync
    if args.batch_size % replicas:
        raise SystemExit(f"kerasdet train: --batch-size {args.batch_size} (the global batch) must be a multiple of the "
                         f"{replicas} replicas")
    print(f"[train] --strategy {args.strategy}: {replicas} replicas, {args.batch_size // replicas} images each of "
          f"the global batch of {args.batch_size}", flush=True)
    return strategy


def _train(args):
    _quiet_tensorflow()
    if args.init_from and args.backbone_from:
        raise SystemExit("kerasdet train: give --init-from (the whole model) or --backbone-from (shared variables of a "
                         "new --arch model), not both")
    resume_from, seconds_before = None, 0.0
    if args.resume:
        args, resume_from, seconds_before = _resume_state(args)
    if args.checkpoint_every < 0:
        raise SystemExit(f"kerasdet train: --checkpoint-every must be >= 0; got {args.checkpoint_every}")
    strategy = _training_strategy(args)  # before anything makes TensorFlow's devices
    # under a strategy the model, its optimizer and its training are made in the strategy's scope
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return _train_run(args, strategy=strategy, resume_from=resume_from, seconds_before=seconds_before)


def _train_run(args, *, strategy, resume_from, seconds_before):
    import keras
    import numpy as np

    from kerasdet.models import families
    from kerasdet.zoo import weights as weights_io

    out = _own_run_folder(args)  # every worker keeps a whole run folder; the chief's is --out
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    if resume_from is None:
        from kerasdet.models.run_checkpoints import FORMAT

        (out / "command.json").write_text(json.dumps({"command": args.command_line, "argv": args.argv,
                                                      "checkpoint_format": FORMAT}, indent=1))
    if args.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    # the same seed whether resumed or not: the model is built as the first time, then the checkpoint's weights and
    # random states replace what they must
    keras.utils.set_random_seed(args.seed)
    recipe = _recipe_of(args)
    if args.dataset.split(":")[0] == "synthetic-tree" and not _trains_family(args, "yolo9000"):
        raise SystemExit(f"kerasdet train: --dataset {args.dataset} names WordTree nodes, which only YOLO9000 "
                         "(--arch yolo9000-compact) trains on; other families train on synthetic")
    if args.val_dataset and args.val_dataset.split(":")[0] == "synthetic-tree":
        raise SystemExit("kerasdet train: --val-dataset synthetic-tree labels some classes only by their parent; "
                         "score on the leaf-labelled synthetic:val")
    with_masks = "masks" in recipe.needs
    # a fine-tune keeps the model's label order for a VOC folder of (some of) its classes: label i stays class i
    prefer = _model_meta(args.init_from).get("class_names") if args.init_from else None
    ds, class_names, _, extras = open_dataset(args.dataset, "train", args.train_images, args.image_size,
                                              with_masks=with_masks, with_keypoints=with_masks,
                                              class_names=parse_class_names(args.class_names), prefer_names=prefer,
                                              classification_images=args.classification_images)
    _check_class_count(args, class_names)
    if args.val_dataset:  # opened (and its files checked) now, not after the first epoch
        val_kind = args.val_dataset.split(":")[0]
        _, val_names, _, _ = open_dataset(args.val_dataset, "val", args.val_images, args.image_size,
                                          class_names=class_names if val_kind in ("voc", "yolo") else None,
                                          prefer_names=class_names)
        if val_names != class_names:
            raise SystemExit(f"kerasdet train: --val-dataset {args.val_dataset} has the classes {_short(val_names)}, "
                             f"the training data {_short(class_names)}")
        if args.alternating:
            raise SystemExit("kerasdet train: --val-dataset does not apply to --alternating runs (four steps in one "
                             "command); evaluate each run with `kerasdet evaluate`")
    ds = ds.cache()
    count = sum(1 for _ in ds)
    if count == 0:
        raise SystemExit(f"kerasdet train: --dataset {args.dataset} holds no images")
    if count < args.batch_size:
        raise SystemExit(f"kerasdet train: --batch-size {args.batch_size} is larger than the {count} training images "
                         "(batches are full, so no training step would run); lower --batch-size")
    held = " with masks" if with_masks else ""
    held += f" and keypoints of {sorted(extras['keypoints'])}" if extras["keypoints"] else ""
    print(f"[train] {count} training images{held} from {args.dataset} at {args.image_size}px, "
          f"{len(class_names)} classes", flush=True)
    if args.lr is None:
        args.lr = recipe.learning_rate
    args.warmup_from_recipe = args.warmup is None
    if args.warmup is None:
        args.warmup = recipe.warmup_steps
    scale_range = None
    if args.scale_min is not None or args.scale_max is not None:
        scale_range = (recipe.scale_range[0] if args.scale_min is None else args.scale_min,
                       recipe.scale_range[1] if args.scale_max is None else args.scale_max)
    classification = None
    if extras.get("classification") is not None:
        classification = (extras["classification"].cache(), extras["classification_images"])
        print(f"[train] and {args.classification_images} classification-only images (YOLO9000's joint training)",
              flush=True)
    steps_per_epoch = _steps_per_epoch(count, args.batch_size, args.classification_images)
    steps = steps_per_epoch * args.epochs
    done_steps = 0
    if resume_from is not None:
        done_steps = resume_from.step
        if done_steps < 0:  # an older run's epoch checkpoint: the step its epoch ended at
            from kerasdet.models.run_checkpoints import epoch_of_legacy

            done_steps = epoch_of_legacy(resume_from) * steps_per_epoch
    if args.resume and getattr(args, "strategy", None) == "multi_worker":
        from kerasdet.models.distribution import check_same_on_every_worker

        try:  # every worker resumes from its own folder: they must go on from one step, or the cluster would hang
            check_same_on_every_worker(strategy, done_steps, "the step to resume from")
        except ValueError as err:
            raise SystemExit(f"kerasdet: --resume {args.resume}: {err}") from None
    initial_epoch, first_batch = divmod(done_steps, steps_per_epoch)
    train, epoch_data = _training_stream(ds, count, args, recipe, scale_range, extras["keypoint_flip_map"], initial_epoch,
                                    first_batch, classification=classification)

    if args.init_from and resume_from is None:
        model, _ = load_model(args.init_from, num_classes=len(class_names), precision=args.precision)
        if model.class_names != class_names:
            print(f"[train] class names {_short(class_names)} (the dataset's) replace the model's", flush=True)
        model.class_names = class_names
    elif resume_from is not None:
        model = _rebuild_for_resume(args, len(class_names), class_names, extras["keypoints"],
                                    word_tree=extras.get("word_tree"))
    else:
        from kerasdet.zoo.precision import global_policy

        with global_policy(args.precision):
            model = build_model(args.arch, len(class_names), class_names, extras["keypoints"],
                                word_tree=extras.get("word_tree"))
            model.build_for_size(args.image_size)
        if args.backbone_from:
            source, _ = load_model(args.backbone_from)
            skipped = weights_io.transfer_matching(source, model)
            copied = len(model.weights) - len(skipped)
            if copied == 0:
                raise SystemExit(f"kerasdet: --backbone-from {args.backbone_from} shares no variable (by path and "
                                 f"shape) with --arch {args.arch}")
            print(f"[train] {copied} of {len(model.weights)} variables initialised from {args.backbone_from}", flush=True)
    if args.alternating:
        if resume_from is not None:
            raise SystemExit("kerasdet: --resume does not apply to --alternating runs (four steps in one command)")
        start = time.time()
        for e in range(initial_epoch + 1, args.epochs):  # the four steps take the whole stream at once
            train = train.concatenate(epoch_data(e))
        model = _alternating_training(model, train, args, steps, out, len(class_names), class_names)
    else:
        if args.freeze:
            try:
                model.freeze(*[part.strip() for part in args.freeze.split(",") if part.strip()])
            except ValueError as err:
                raise SystemExit(f"kerasdet train: --freeze {args.freeze}: {err}") from None
            print(f"[train] frozen: {args.freeze}; {sum(int(np.prod(v.shape)) for v in model.trainable_weights):,} "
                  "weights train", flush=True)
        if strategy is not None:
            from kerasdet.models.distribution import prepare_for_replicas

            try:
                prepare_for_replicas(model)
            except ValueError as err:
                raise SystemExit(f"kerasdet train: --strategy {args.strategy}: {err}") from None
        _compile_for(model, args, steps, recipe)
        if resume_from is not None:
            model.optimizer.build(model.trainable_variables)
            resume_from.restore(model)  # weights, optimizer state (step count, moments), samplers' random states
            if resume_from.random_states is None:
                print(f"[train] {resume_from.weights.name} is an older checkpoint without random states: the run goes "
                      "on, but not exactly as it would have without the interruption", flush=True)
            print(f"[train] resumed from {resume_from.weights.name} at step {done_steps} (epoch {initial_epoch + 1}, "
                  f"batch {first_batch} of {steps_per_epoch}; {seconds_before:.0f} s so far)", flush=True)
        print(f"[train] {type(model).__name__} with {model.count_params():,} parameters; {steps} steps of batch "
              f"{args.batch_size}, peak learning rate {args.lr}", flush=True)
        from kerasdet.models.run_checkpoints import StepCheckpoint

        if resume_from is not None:
            _truncate_history(out / "history.csv", initial_epoch)
        callbacks = [
            keras.callbacks.CSVLogger(str(out / "history.csv"), append=resume_from is not None),
            _training_progress(out / "progress.json", seconds_before, steps_per_epoch=steps_per_epoch,
                               resume_at=(initial_epoch, first_batch)),
        ]
        if args.val_dataset:  # before the CSV and TensorBoard loggers: they write the AP it adds to the epoch's logs
            callbacks.insert(0, _ValidationAP(args.val_dataset, args.val_images, args.image_size, args.batch_size,
                                              class_names))
        callbacks.append(keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False, profile_batch=0))
        # last: an epoch's checkpoint is written once the epoch is in history.csv and progress.json
        callbacks.append(StepCheckpoint(out / "checkpoints", every=args.checkpoint_every,
                                        steps_per_epoch=steps_per_epoch, initial_step=done_steps,
                                        seconds_before=seconds_before))
        start = time.time()
        verbose = 1 if sys.stdout.isatty() else 0
        # the epoch the run stands in (all of it, or its rest after a resume), then the epochs after it; a run killed
        # after its last checkpoint but before model.json has nothing left to train
        if initial_epoch < args.epochs:
            model.fit(train, epochs=initial_epoch + 1, initial_epoch=initial_epoch, first_batch=first_batch,
                      steps_per_epoch=steps_per_epoch - first_batch, callbacks=callbacks, verbose=verbose)
        for callback in callbacks:  # the later fits go on writing history.csv, not over it
            if isinstance(callback, keras.callbacks.CSVLogger):
                callback.append = True
        for e in range(initial_epoch + 1, args.epochs):  # one fit per epoch, its pipeline made when it starts
            model.fit(epoch_data(e), epochs=e + 1, initial_epoch=e, steps_per_epoch=steps_per_epoch,
                      callbacks=callbacks, verbose=verbose)
    weights_name = "model.weights.h5"
    stage_seconds = round(time.time() - start + seconds_before, 1)
    train_command, train_seconds = _stages(args, stage_seconds)
    weights_io.replace_atomically(lambda tmp: weights_io.save_model_weights(model, tmp, args.image_size),
                                  out / weights_name)
    meta = {
        "family": families.family_of_model(model),
        "config": model.get_config(),
        "num_classes": len(class_names),
        "class_names": class_names,
        "image_size": args.image_size,
        "weights": weights_name,
        "sha256": weights_io.sha256_of(out / weights_name),
        "train_command": train_command,
        "train_seconds": train_seconds,
        "stage_seconds": stage_seconds,
        "dataset": {"name": args.dataset, "train_images": count,
                    **({"classification_images": args.classification_images} if args.classification_images else {})},
    }
    # written last and whole: its presence marks a finished run (`--resume` refuses one)
    weights_io.write_text_atomically(out / "model.json", json.dumps(meta, indent=1))
    print(f"[train] done in {meta['stage_seconds']:.0f} s (all stages {meta['train_seconds']:.0f} s); weights {out / weights_name} (sha256 {meta['sha256'][:12]}...)")
    return 0


def _collect(model, ds, batch_size, image_size, progress_label):
    """Runs the model over a dataset: per-image targets (numpy), detections (numpy) and images (uint8).

    Detections hold "boxes", "scores", "labels", and where the model has them "masks" (compressed RLE of the
    pasted mask binarised at 0.5, one dict per detection, so that memory stays small) and "keypoints"."""
    import numpy as np

    from kerasdet.data import prepare
    from kerasdet.metrics import _rle

    batches = prepare(ds, batch_size, image_size)
    images, targets, detections = [], [], []
    seen = 0
    start = time.time()
    for x, y in batches:
        out = model.predict_on_batch(x)
        n = int(x.shape[0])
        for i in range(n):
            k = int(out["num_detections"][i])
            # YOLO9000's detections that stop at an inner WordTree node name no class (label -1): not scored
            named = np.asarray(out["labels"][i][:k]) >= 0
            d = {key: np.asarray(out[key][i][:k])[named] for key in ("boxes", "scores", "labels")}
            if "masks" in out:
                d["masks"] = _rle.encode(np.asarray(out["masks"][i][:k])[named] >= 0.5) if named.any() else []
            if "keypoints" in out:
                d["keypoints"] = np.asarray(out["keypoints"][i][:k])[named]
            detections.append(d)
            valid = np.asarray(y["labels"][i]) >= 0
            targets.append({key: np.asarray(value[i])[valid] for key, value in y.items()})
            images.append(np.clip(np.asarray(x[i]), 0, 255).astype(np.uint8))
        seen += n
        rate = seen / max(time.time() - start, 1e-9)
        if sys.stdout.isatty():
            print(f"\r[{progress_label}] {seen} images, {rate:.1f} images/s", end="", flush=True)
        elif seen // 100 != (seen - n) // 100:
            print(f"[{progress_label}] {seen} images, {rate:.1f} images/s", flush=True)
    if sys.stdout.isatty():
        print(flush=True)
    return images, targets, detections


def _categories(class_names, keypoints=None):
    """COCO categories (id = label + 1), with keypoint names (and the embedded dataset's OKS sigmas) where known."""
    from kerasdet.data import synthetic

    known = {c["name"]: c for c in synthetic.categories()}
    cats = []
    for c, name in enumerate(class_names):
        cat = {"id": c + 1, "name": name}
        if keypoints and name in keypoints:
            cat["keypoints"] = list(keypoints[name])
            if name in known and known[name].get("keypoints") == cat["keypoints"]:
                cat["kpt_oks_sigmas"] = known[name]["kpt_oks_sigmas"]
        cats.append(cat)
    return cats


def _coco_from_targets(targets, image_size, class_names, keypoints=None):
    """A COCO ground-truth dict (ids 1..N; area = mask area where masks exist, else box area) for targets without
    one; with masks and keypoints when the targets hold them."""
    from kerasdet.data.coco import _annotation

    cats = _categories(class_names, keypoints)
    anns = []
    for i, t in enumerate(targets):
        for j in range(len(t["labels"])):
            anns.append(_annotation(t, j, i + 1, len(anns) + 1, cats[int(t["labels"][j])]))
    return {"images": [{"id": i + 1, "height": image_size, "width": image_size} for i in range(len(targets))],
            "annotations": anns, "categories": cats}


def _coco_results(detections, kind="bbox", categories=None):
    """COCO result dicts of `kind` "bbox", "segm" or "keypoints" (for "keypoints", only the detections whose
    category is in `categories`: the ones that have keypoints)."""
    results = []
    for i, d in enumerate(detections):
        for j, (b, s, l) in enumerate(zip(d["boxes"], d["scores"], d["labels"])):
            if categories is not None and int(l) + 1 not in categories:
                continue
            r = {"image_id": i + 1, "category_id": int(l) + 1, "score": float(s),
                 "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
            if kind == "segm":
                r["segmentation"] = d["masks"][j]
            elif kind == "keypoints":
                r["keypoints"] = [float(v) for v in d["keypoints"][j].reshape(-1)]
            results.append(r)
    return results


#: the card keys of the tables beyond the box metrics, and the COCO iou_type each is measured with
EXTRA_TABLES = {"segm_metrics": ("masks", "segm"), "keypoint_metrics": ("keypoints", "keypoints")}


def _rows(detection, keep):
    """The rows `keep` of one image's detections (masks as a list of RLEs)."""
    return {k: ([m for m, ok in zip(v, keep) if ok] if isinstance(v, list) else v[keep]) for k, v in detection.items()}


def _evaluate(model, dataset_spec, images, image_size, batch_size, split, progress_label, class_names=None):
    """Runs and scores `model` on a dataset: (metrics, coco stats, voc stats, images, detections, tables), where
    `tables` holds the instance-segmentation and keypoint metrics of a model that outputs masks / keypoints and
    `tables["class_names"]` the dataset's class names. `class_names` names a VOC / YOLO folder's labels (default:
    its own, in the model's order where they are the model's classes)."""
    if dataset_spec.split(":")[0] == "synthetic-tree":
        raise SystemExit(f"kerasdet: {dataset_spec!r} labels some classes only by their parent node (YOLO9000's "
                         "training data); score a model on the leaf-labelled split instead, e.g. synthetic:test")
    from kerasdet.metrics import coco_evaluate, voc_evaluate
    from kerasdet.metrics.coco import KEYPOINT_STATS

    keys = tuple(getattr(model, "output_keys", ()))
    with_masks, with_keypoints = "masks" in keys, "keypoints" in keys
    ds, class_names, make_gt, extras = open_dataset(dataset_spec, split, images, image_size, with_masks=with_masks,
                                                    with_keypoints=with_keypoints, class_names=class_names,
                                                    prefer_names=getattr(model, "class_names", None))
    images, targets, detections = _collect(model, ds, batch_size, image_size, progress_label)
    # a model with more classes than the dataset: its extra labels have no category to be scored against
    outside = sum(int((d["labels"] >= len(class_names)).sum()) for d in detections)
    if outside:
        detections = [_rows(d, d["labels"] < len(class_names)) for d in detections]
    gt = (make_gt() if make_gt is not None
          else _coco_from_targets(targets, image_size, class_names, extras["keypoints"]))
    coco = coco_evaluate(gt, _coco_results(detections), iou_type="bbox")
    voc = voc_evaluate([{k: t[k] for k in ("boxes", "labels")} for t in targets],
                       [{k: d[k] for k in ("boxes", "scores", "labels")} for d in detections],
                       iou_threshold=0.5, num_classes=len(class_names), class_names=class_names)
    from kerasdet.metrics.coco import DETECTION_STATS as METRIC_KEYS

    metrics = {k: round(float(coco[k]), 4) for k in METRIC_KEYS}
    metrics["VOC_mAP"] = round(float(voc["mAP"]), 4)
    tables = {}
    for table, (key, iou_type) in EXTRA_TABLES.items():
        if key in keys:
            with_keypoints = {c["id"] for c in gt["categories"] if c.get("keypoints")}
            chosen = with_keypoints if iou_type == "keypoints" else None
            stats = coco_evaluate(gt, _coco_results(detections, iou_type, chosen), iou_type=iou_type)
            names = KEYPOINT_STATS if iou_type == "keypoints" else METRIC_KEYS
            tables[table] = {k: round(float(stats[k]), 4) for k in names}
            tables[table + "_stats"] = stats
    tables["class_names"] = list(class_names)
    tables["dropped_detections"] = outside
    return metrics, coco, voc, images, detections, tables


def measure_speed(model, image_size, batch_size=8, rounds=7, warmup=2):
    """Inference speed as a user gets it: `predict_on_batch` on `batch_size` random images of `image_size`,
    median of `rounds` after `warmup` calls; returns {"images_per_second", "batch_size", "image_size", "machine"}."""
    import os
    import platform
    import statistics

    import numpy as np

    images = np.random.default_rng(0).uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    for _ in range(warmup):
        model.predict_on_batch(images)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        model.predict_on_batch(images)
        times.append(time.perf_counter() - start)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"images_per_second": round(batch_size / statistics.median(times), 2), "batch_size": batch_size,
            "image_size": image_size, "machine": f"{cpu}, {os.cpu_count()} logical cores"}


def evaluate_model(model, dataset_spec, images, image_size, batch_size=8, split="test", class_names=None):
    """COCO and VOC metrics of `model` on a dataset: (box metrics dict, coco stats, voc stats, tables), where
    `tables` maps "segm_metrics" / "keypoint_metrics" to their summary dicts for models with masks / keypoints
    (and "<table>_stats" to the full `coco_evaluate` results)."""
    metrics, coco, voc, _, _, tables = _evaluate(model, dataset_spec, images, image_size, batch_size, split, "evaluate",
                                                 class_names)
    return metrics, coco, voc, tables


def _save_annotated(path, image, detections, names, min_score, scale):
    """Draws the detections scoring at least `min_score` (boxes, and masks / keypoints where the model has them)
    on `image` and writes a PNG."""
    import numpy as np

    from kerasdet import visualize
    from kerasdet.metrics import _rle

    keep = detections["scores"] >= min_score
    masks = detections.get("masks")
    if masks is not None:
        masks = (_rle.decode([m for m, k in zip(masks, keep) if k]) if keep.any()
                 else np.zeros((0,) + image.shape[:2], np.uint8))
    keypoints = detections.get("keypoints")
    drawn = visualize.draw_detections(image, detections["boxes"][keep], detections["labels"][keep],
                                      detections["scores"][keep], names, scale=scale, thickness=2, masks=masks,
                                      keypoints=None if keypoints is None else keypoints[keep])
    visualize.save_png(path, drawn)


def _short(names, limit=6):
    return str(names) if len(names) <= limit else str(names[:limit])[:-1] + ", ...]"


#: a card's key for its AP50 measured in a mixed precision: AP50_bf16, AP50_fp16
PRECISION_KEY_SUFFIX = {"mixed_bfloat16": "bf16", "mixed_float16": "fp16"}


def cmd_evaluate(args):
    _quiet_tensorflow()
    from kerasdet.metrics import format_summary, plot_precision_recall

    model, meta = load_model(args.model, precision=args.precision)
    size = args.image_size or meta["image_size"]
    metrics, coco, voc, tables = evaluate_model(model, args.dataset, args.images, size, args.batch_size,
                                                class_names=parse_class_names(args.class_names))
    model_names, data_names = list(model.class_names or []), tables["class_names"]
    if model_names and model_names != data_names:
        print(f"kerasdet evaluate: warning: the model's {len(model_names)} classes {_short(model_names)} differ from "
              f"the dataset's {len(data_names)} {_short(data_names)}; labels are compared by index, so these metrics "
              "may mean little (fine-tune with --num-classes, or name the dataset's classes with --class-names)"
              + (f"; {tables['dropped_detections']} detections of labels beyond the dataset's were left out"
                 if tables["dropped_detections"] else ""), file=sys.stderr, flush=True)
    print("bbox:")
    print(format_summary(coco))
    print(f"  VOC mAP@0.5 (all-point) = {voc['mAP']:.3f}")
    for table, (_, iou_type) in EXTRA_TABLES.items():
        if table in tables:
            print(f"{iou_type}:")
            print(format_summary(tables[table + "_stats"]))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = args.command_line
    per_class = [{key: (float(row[key]) if key in ("AP", "AP50", "AP75") else row[key])
                  for key in ("name", "AP", "AP50", "AP75", "num_gt")} for row in coco.get("per_class", [])]
    summary = {"metrics": metrics, "per_class": per_class, **{t: tables[t] for t in EXTRA_TABLES if t in tables},
               "command": command}
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    plot_precision_recall(coco, out / "pr_curve.png")
    print(f"[evaluate] wrote {out / 'metrics.json'} and {out / 'pr_curve.png'}")
    if args.write_card:
        card_path = pathlib.Path(args.write_card)
        card = json.loads(card_path.read_text()) if card_path.exists() else dict(meta)
        policy = model.dtype_policy.name
        if policy != "float32":
            # the card's own numbers stay those of the weights as trained; other precisions are recorded beside them
            entry = {"metrics": metrics, **{t: tables[t] for t in EXTRA_TABLES if t in tables},
                     "eval_command": command}
            card.setdefault("precision_metrics", {})[policy] = entry
            short = PRECISION_KEY_SUFFIX.get(policy)
            if short:  # the card's headline figure in that precision, beside its float32 AP50 (issue "Speed")
                card[f"AP50_{short}"] = metrics["AP50"]
            card_path.write_text(json.dumps(card, indent=1) + "\n")
            print(f"[evaluate] {policy} metrics written into {card_path} (precision_metrics"
                  + (f", AP50_{short} {metrics['AP50']:.4f}" if short else "") + ")")
            return 0
        card["metrics"] = metrics
        for table in EXTRA_TABLES:
            if table in tables:
                card[table] = tables[table]
        card["eval_command"] = command
        card["eval_dataset"] = {"name": args.dataset, "images": args.images, "image_size": size}
        card["speed"] = measure_speed(model, size, args.batch_size)
        print(f"[evaluate] {card['speed']['images_per_second']:.1f} images/s ({card['speed']['machine']})")
        card_path.write_text(json.dumps(card, indent=1) + "\n")
        print(f"[evaluate] metrics written into {card_path}")
    return 0


def cmd_predict(args):
    _quiet_tensorflow()
    import numpy as np
    import tensorflow as tf

    from kerasdet.data import to_rgb

    model, meta = load_model(args.model, precision=args.precision)
    names = meta.get("class_names") or [str(i) for i in range(meta["num_classes"])]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    if args.files:
        from kerasdet.data._io import read_image
        from kerasdet.metrics import _rle

        for path in args.files:
            image = np.asarray(to_rgb(tf.convert_to_tensor(read_image(path))))
            det = model.predict_on_batch(image[None].astype("float32"))
            k = int(det["num_detections"][0])
            d = {key: np.asarray(det[key][0][:k]) for key in ("boxes", "scores", "labels")}
            if "masks" in det:
                d["masks"] = _rle.encode(np.asarray(det["masks"][0][:k]) >= 0.5) if k else []
            if "keypoints" in det:
                d["keypoints"] = np.asarray(det["keypoints"][0][:k])
            if "nodes" in det:  # YOLO9000: the deepest confident WordTree node and its path probability
                d["nodes"], d["node_scores"] = np.asarray(det["nodes"][0][:k]), np.asarray(det["node_scores"][0][:k])
            records.append((pathlib.Path(path).stem, image, d))
    else:
        size = args.image_size or meta["image_size"]
        ds, _, _, _ = open_dataset(args.dataset, "val", args.images, size)
        images, _, detections = _collect(model, ds, args.batch_size, size, "predict")
        records = [(f"image_{i:04d}", im, d) for i, (im, d) in enumerate(zip(images, detections))]
    summary = []
    for stem, image, d in records:
        _save_annotated(out / f"{stem}.png", image, d, names, args.min_score, scale=2 if max(image.shape[:2]) <= 400 else 1)
        rows = []
        for j, (b, s, l) in enumerate(zip(d["boxes"], d["scores"], d["labels"])):
            row = {"box_xyxy": [round(float(v), 2) for v in b], "score": round(float(s), 4), "label": int(l),
                   "name": names[int(l)] if l >= 0 else None}
            if "nodes" in d:
                node = int(d["nodes"][j])
                row.update(node=node, node_name=model.word_tree.names[node], node_score=round(float(d["node_scores"][j]), 4))
            if "masks" in d:
                row["mask_rle"] = d["masks"][j]  # COCO compressed RLE of the mask at 0.5
            if "keypoints" in d:
                row["keypoints_xys"] = [[round(float(v), 2) for v in kp] for kp in d["keypoints"][j]]
            rows.append(row)
        summary.append({"image": stem, "detections": rows})
    (out / "detections.json").write_text(json.dumps(summary, indent=1))
    print(f"[predict] {len(records)} annotated images (score >= {args.min_score}) and detections.json in {out}")
    return 0


def cmd_export(args):
    _quiet_tensorflow()
    from kerasdet.export import saved_model

    target = pathlib.Path(args.out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not args.overwrite:
        raise SystemExit(f"kerasdet export: --out {target} exists and is not empty; pass --overwrite to replace it")
    model, _ = load_model(args.model, precision=args.precision)
    if args.mask_threshold is not None and "masks" not in model.output_keys:
        raise SystemExit(f"kerasdet export: --mask-threshold applies to models with masks; {args.model} outputs "
                         f"{', '.join(model.output_keys)}")
    path = saved_model(model, args.out, overwrite=args.overwrite, mask_threshold=args.mask_threshold,
                       label_names=args.label_names, max_pixels=args.max_pixels or None)
    print(f"[export] SavedModel with signatures serving_default and serving_bytes in {path} "
          f"(class names: {_short(list(model.class_names or []))}" + (", served as label_names)" if args.label_names
                                                                     else ")"))
    return 0


def cmd_release(args):
    """Copies a run's weights into zoo/<name>/ and writes its card (metrics come from `evaluate --write-card`)."""
    _quiet_tensorflow()
    from kerasdet.zoo import registry, weights as weights_io

    run = pathlib.Path(args.run)
    meta = json.loads((run / "model.json").read_text())
    folder = pathlib.Path(args.zoo_dir) / args.name
    folder.mkdir(parents=True, exist_ok=True)
    weights_name = f"{args.name}.weights.h5"
    model = registry.build(meta, compile=False, weights=run / meta["weights"], sha256=meta["sha256"], what=f"run {run}")
    # re-saved without optimizer state (older runs stored it): the same model variables, a smaller file
    weights_io.save_model_weights(model, folder / weights_name, meta["image_size"])
    sha = weights_io.sha256_of(folder / weights_name)
    train_command, train_seconds = meta["train_command"], meta.get("train_seconds")
    if (run / "command.json").is_file() and "stage_seconds" in meta:
        # the run's own record of its arguments: every stage that produced the weights, this one last
        saved = json.loads((run / "command.json").read_text())
        run_args = build_parser().parse_args(saved["argv"])
        run_args.command_line = saved["command"]
        train_command, train_seconds = _stages(run_args, meta["stage_seconds"])
    card = {
        "name": args.name,
        "family": meta["family"],
        "description": args.description,
        "num_classes": meta["num_classes"],
        "class_names": meta["class_names"],
        "image_size": meta["image_size"],
        "weights": weights_name,
        "sha256": sha,
        "dataset": {"name": meta["dataset"]["name"], "train_split": "train", "train_images": meta["dataset"]["train_images"],
                    "eval_split": "test"},
        "train_command": train_command,
        "train_seconds": train_seconds,
        "eval_command": None,
        "metrics": {},
        "config": meta["config"],
    }
    (folder / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"[release] {folder}: weights {weights_name} (sha256 {sha[:12]}...), card.json; now run "
          f"`kerasdet evaluate --model {args.name} --write-card {folder / 'card.json'}`")
    return 0


def cmd_demo(args):
    """The README's main job: the released RetinaNet on validation images: metrics table and annotated images."""
    _quiet_tensorflow()
    from kerasdet.metrics import format_summary, plot_precision_recall

    model, meta = load_model(args.model, precision=args.precision)
    size = meta["image_size"]
    names = meta["class_names"]
    print(f"[demo] {args.model}: {meta['family']} trained by `{meta['train_command']}`")
    _, coco, voc, images, detections, tables = _evaluate(model, "synthetic:val", args.images, size, args.batch_size,
                                                         "val", "demo")
    print(f"[demo] COCO metrics on {len(images)} validation images of the embedded dataset (kerasdet.metrics):")
    print(format_summary(coco))
    print(f"  VOC mAP@0.5 = {voc['mAP']:.3f}")
    for table, (_, iou_type) in EXTRA_TABLES.items():
        if table in tables:
            print(f"[demo] {iou_type} metrics:")
            print(format_summary(tables[table + "_stats"]))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(min(args.annotate, len(images))):
        _save_annotated(out / f"val_{i:03d}.png", images[i], detections[i], names, args.min_score, scale=2)
    plot_precision_recall(coco, out / "pr_curve.png")
    print(f"[demo] wrote {min(args.annotate, len(images))} annotated images (score >= {args.min_score}) and "
          f"pr_curve.png to {out}/")
    return 0


def _arch_names():
    from kerasdet.models.families import arch_names

    return arch_names()


def _augmentation_names():
    from kerasdet.models.families import AUGMENTATIONS

    return sorted(AUGMENTATIONS)


class _Parser(argparse.ArgumentParser):
    """argparse with mistakes reported as one line (the usage block is what `--help` is for)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help with each option's default (unless the help already states it, or there is none) and the examples
    kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False or "(default" in text or "%(default)" in text:
            return text
        return super()._get_help_string(action)


#: examples shown by each subcommand's --help
EXAMPLES = {
    "list": "kerasdet list",
    "train": "kerasdet train --arch retinanet-compact --dataset synthetic --train-images 3000 --epochs 14 --out runs/r18\n"
             "kerasdet train --init-from retinanet_resnet18_shapes --dataset coco:data/train.json:data/images "
             "--epochs 5 --out runs/ft\n"
             "kerasdet train --arch mask-rcnn-compact --backbone-from faster_rcnn_resnet18_shapes --out runs/mask\n"
             "kerasdet train --init-from retinanet_resnet18_shapes --num-classes 3 --dataset voc:data/VOC --class-names "
             "disc,square,star --val-dataset voc:data/VOC:val --epochs 5 --out runs/voc\n"
             "kerasdet train --resume runs/r18",
    "evaluate": "kerasdet evaluate --model retinanet_resnet18_shapes --dataset synthetic:test --images 500\n"
                "kerasdet evaluate --model runs/r18 --dataset coco:data/val.json:data/images --out out/eval",
    "predict": "kerasdet predict --model retinanet_resnet18_shapes photo1.jpg photo2.png --out out/pred\n"
               "kerasdet predict --model runs/r18 --dataset synthetic:val --images 8",
    "export": "kerasdet export --model retinanet_resnet18_shapes --out serving/1\n"
              "kerasdet export --model mask_rcnn_resnet18_shapes --out serving/1 --mask-threshold 0.5 --overwrite",
    "demo": "kerasdet demo --out out/demo",
    "anchors": "kerasdet anchors --dataset synthetic --images 2000 --k 5 9 --stride 16\n"
               "kerasdet anchors --dataset voc:data/VOC --image-size 416 --k 5 --stride 32 --out anchors.json",
    "release": "kerasdet release --run runs/r18 --name retinanet_resnet18_shapes && "
               "kerasdet evaluate --model retinanet_resnet18_shapes --write-card zoo/retinanet_resnet18_shapes/card.json",
}


def _add_precision_argument(parser, what="compute precision of the loaded model (weights stay float32)"):
    from kerasdet.zoo.precision import PRECISIONS

    parser.add_argument("--precision", default="float32", choices=list(PRECISIONS),
                        help=f"{what}; auto: bfloat16 on CPUs with AMX or AVX512-BF16 and Ampere+ GPUs")


def build_parser():
    p = _Parser(prog="kerasdet", description="kerasdet: object detection models for Keras 3",
                                formatter_class=_HelpFormatter,
                                epilog="examples:\n  " + "\n  ".join(v.split("\n")[0] for v in EXAMPLES.values()))
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    sub = p.add_subparsers(dest="command", required=True)
    _add = sub.add_parser

    def add_parser(name, **kwargs):
        parser = _add(name, formatter_class=_HelpFormatter, description=kwargs.get("help"),
                      epilog="examples:\n  " + EXAMPLES[name].replace("\n", "\n  "), **kwargs)
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                            help="show the traceback of an error instead of one line")
        return parser

    sub.add_parser = add_parser
    sub.add_parser("list", help="list the released zoo models").set_defaults(fn=cmd_list)

    t = sub.add_parser("train", help="train a model; writes weights, model.json, checkpoints and history.csv")
    t.add_argument("--arch", default="retinanet-compact", help=f"architecture: {', '.join(_arch_names())}")
    t.add_argument("--init-from", help="start from a zoo model or run folder (another class count needs --num-classes)")
    t.add_argument("--freeze", metavar="PARTS",
                   help="comma list of model parts that keep their weights, e.g. backbone,fpn,rpn (fine-tuning on "
                        "little data: the trained trunk is kept, the heads learn the new classes)")
    _add_precision_argument(t, "compute precision of training (variables stay float32; mixed_float16 adds Keras' "
                               "loss scaling, bfloat16 needs none)")
    t.add_argument("--backbone-from", help="zoo model or run folder whose variables of the same path and shape "
                                           "(e.g. a shared backbone and FPN) initialise the new --arch model")
    t.add_argument("--dataset", default="synthetic",
                   help="synthetic, coco:ANN.json[:IMAGES] (images default to the json's folder), voc:ROOT[:SPLIT] "
                        "(without a split: trainval, else train, else every Annotations/*.xml), yolo:ROOT[:SPLIT]")
    t.add_argument("--class-names", help="voc:/yolo: datasets: the class names in label order, a file with one name "
                                         "per line or a comma list (default: VOC: read from the XML, sorted; YOLO: "
                                         "classes.txt)")
    t.add_argument("--num-classes", type=int, default=None,
                   help="with --init-from: train a new class head for the dataset's class count (required when it "
                        "differs from the model's)")
    t.add_argument("--val-dataset", help="a dataset spec scored after each epoch: val_AP/val_AP50/val_AP75 in the log, "
                                         "history.csv and TensorBoard (e.g. synthetic:val, voc:ROOT:val)")
    t.add_argument("--val-images", type=int, default=200, help="images of --val-dataset to score")
    t.add_argument("--train-images", type=int, default=None, help="images to use (synthetic: how many to generate)")
    t.add_argument("--classification-images", type=int, default=0,
                   help="YOLO9000 on --dataset synthetic-tree: one-object images labelled only by their class (the "
                        "paper's ImageNet half of joint training), mixed among the detection batches")
    t.add_argument("--image-size", type=int, default=256)
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (AdamW, warm-up then cosine decay; default: the family's recipe)")
    t.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: the family's recipe)")
    t.add_argument("--augment", default=None, choices=_augmentation_names(),
                   help="training augmentation (default: the family's recipe)")
    t.add_argument("--scale-min", type=float, default=None, help="scale jitter (default: the family's recipe)")
    t.add_argument("--scale-max", type=float, default=None)
    t.add_argument("--max-boxes", type=int, default=32)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="run folder (required unless --resume)")
    t.add_argument("--alternating", action="store_true",
                   help="two-stage families: the Faster R-CNN paper's 4-step alternating training, --epochs per "
                        "step (default: approximate joint training)")
    t.add_argument("--resume", help="run folder of an interrupted `kerasdet train`: goes on from its last "
                                    "checkpoint with the same arguments (model, optimizer and random state, and the "
                                    "data's position)")
    t.add_argument("--checkpoint-every", type=int, default=200, metavar="STEPS",
                   help="steps between checkpoints inside an epoch (the newest two kept; 0: epoch ends only; "
                        "--alternating runs keep no checkpoints and do not resume)")
    t.add_argument("--strategy", choices=("mirrored", "multi_worker"), default=None,
                   help="train one model on several replicas with tf.distribute: mirrored (this machine's GPUs, or "
                        "--cpu-replicas logical CPU devices) or multi_worker (the cluster in TF_CONFIG; run the same "
                        "command on every worker). --batch-size is the global batch, split over the replicas; "
                        "see docs/scaling.md")
    t.add_argument("--cpu-replicas", type=int, default=None, metavar="N",
                   help="with --strategy mirrored on a machine without GPUs: split the CPU into N logical devices, one "
                        "replica each (for trying the strategy out; it does not add compute)")
    t.add_argument("--deterministic", action="store_true",
                   help="TensorFlow's deterministic ops (tf.config.experimental.enable_op_determinism): a run, and a "
                        "run killed and resumed, give the same weights every time")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("evaluate", help="COCO and VOC metrics on a dataset, PR-curve PNG, optionally into a card")
    e.add_argument("--model", required=True, help="zoo name or training run folder")
    _add_precision_argument(e)
    e.add_argument("--dataset", default="synthetic:test",
                   help="as train's --dataset; voc:ROOT defaults to the test split, else val, else every annotation")
    e.add_argument("--class-names", help="voc:/yolo: datasets: class names in label order (file or comma list; "
                                         "default: VOC: the XML's names, in the model's order when they are its "
                                         "classes; YOLO: the folder's classes file)")
    e.add_argument("--images", type=int, default=500)
    e.add_argument("--image-size", type=int, default=None, help="default: the model's")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--out", default="out/evaluate")
    e.add_argument("--write-card", help="card.json whose metrics and eval_command to set")
    e.set_defaults(fn=cmd_evaluate)

    r = sub.add_parser("predict", help="annotated PNGs and detections.json for image files or a dataset")
    r.add_argument("--model", required=True, help="zoo name or training run folder")
    _add_precision_argument(r)
    r.add_argument("files", nargs="*", help="image files (JPEG/PNG); default: the --dataset")
    r.add_argument("--dataset", default="synthetic:val")
    r.add_argument("--images", type=int, default=8)
    r.add_argument("--image-size", type=int, default=None)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--min-score", type=float, default=0.3, help="draw detections at or above this score")
    r.add_argument("--out", default="out/predict")
    r.set_defaults(fn=cmd_predict)

    x = sub.add_parser("export", help="SavedModel for TF Serving (serving_default, serving_bytes)")
    x.add_argument("--model", required=True, help="zoo name or training run folder")
    _add_precision_argument(x)
    x.add_argument("--out", required=True)
    x.add_argument("--overwrite", action="store_true")
    x.add_argument("--mask-threshold", type=float, default=None,
                   help="models with masks: serve uint8 binary masks at this threshold instead of float probabilities")
    x.add_argument("--max-pixels", type=int, default=100_000_000,
                   help="serving_bytes refuses images whose header declares more pixels, before decoding (0: no limit)")
    x.add_argument("--label-names", action="store_true",
                   help="also serve each detection's class name (output label_names, string [B, N])")
    x.set_defaults(fn=cmd_export)

    d = sub.add_parser("demo", help="the README's main job: zoo model on validation images, metrics, annotated PNGs")
    d.add_argument("--model", default="retinanet_resnet18_shapes")
    _add_precision_argument(d)
    d.add_argument("--images", type=int, default=200, help="validation images to evaluate")
    d.add_argument("--annotate", type=int, default=8, help="annotated PNGs to write")
    d.add_argument("--min-score", type=float, default=0.4)
    d.add_argument("--batch-size", type=int, default=8)
    d.add_argument("--out", default="out/demo")
    d.set_defaults(fn=cmd_demo)

    a = sub.add_parser("anchors", help="YOLOv2's dimension clusters: k-means anchors of a dataset's boxes (1 - IoU "
                                       "distance), their mean IoU beside Faster R-CNN's 9 hand-picked anchors")
    a.add_argument("--dataset", default="synthetic", help="as train's --dataset")
    a.add_argument("--class-names", help="voc:/yolo: datasets: as train's --class-names")
    a.add_argument("--images", type=int, default=2000, help="training images to read (synthetic: how many to generate)")
    a.add_argument("--image-size", type=int, default=256, help="boxes are scaled as training letterboxes to this size")
    a.add_argument("--k", type=int, nargs="+", default=[5], help="anchor counts, e.g. 5 9")
    a.add_argument("--stride", type=float, default=32.0,
                   help="print anchors in grid units of this many pixels (YOLOv2: 32; the compact model: 16)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", help="also write the anchors and mean IoUs to this JSON file")
    a.set_defaults(fn=cmd_anchors)

    rel = sub.add_parser("release", help="copy a training run into the zoo folder with a card (maintainers)")
    rel.add_argument("--run", required=True, help="training run folder (model.json, weights)")
    rel.add_argument("--name", required=True, help="zoo name, e.g. retinanet_resnet18_shapes")
    rel.add_argument("--description", default="")
    rel.add_argument("--zoo-dir", default="zoo")
    rel.set_defaults(fn=cmd_release)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = "kerasdet " + " ".join(shlex.quote(a) for a in argv)
    args.argv = argv
    try:
        return args.fn(args)
    except SystemExit as stop:
        if not isinstance(stop.code, str):
            raise
        # a usage mistake found after parsing: one line on stderr and exit status 2, as argparse's own errors
        print(stop.code, file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as err:
        # missing files, malformed datasets, bad values: one line (the traceback with --debug); a dataset error met
        # inside a tf.data pipeline (a corrupt image found while training) comes wrapped in a TensorFlow error
        wrapped = re.findall(r"DatasetError: ([^\n]+)", str(err)) if type(err).__module__.startswith("tensorflow") else []
        if getattr(args, "debug", False) or not (isinstance(err, (OSError, ValueError, TypeError, FloatingPointError))
                                                 or wrapped):
            raise
        first = wrapped[-1] if wrapped else str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"kerasdet {args.command}: {first} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.exit(main())
