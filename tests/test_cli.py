"""The `kerasdet` command, run in-process through `kerasdet.cli.main`."""

import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from kerasdet import cli, visualize

NAME = "retinanet_resnet18_shapes"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_list_prints_the_zoo(capsys):
    assert cli.main(["list"]) == 0
    assert NAME in capsys.readouterr().out


def test_console_script_is_installed():
    exe = pathlib.Path(sys.executable).parent / "kerasdet"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("list", "train", "evaluate", "predict", "export"):
        assert command in out


def test_evaluate_writes_metrics_and_pr_curve(tmp_path, capsys):
    assert cli.main(["evaluate", "--model", NAME, "--images", "8", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert set(cli.METRIC_KEYS) <= set(metrics) and "VOC_mAP" in metrics
    assert metrics["AP50"] > 0.3
    assert (tmp_path / "pr_curve.png").stat().st_size > 10_000
    assert "AP50" in capsys.readouterr().out


def test_predict_on_dataset_and_files(tmp_path):
    assert cli.main(["predict", "--model", NAME, "--images", "2", "--out", str(tmp_path / "ds")]) == 0
    summary = json.loads((tmp_path / "ds" / "detections.json").read_text())
    assert len(summary) == 2 and summary[0]["detections"]
    assert sorted(p.name for p in (tmp_path / "ds").glob("*.png")) == ["image_0000.png", "image_0001.png"]
    from kerasdet.data import synthetic

    images, _ = synthetic.generate(1, image_size=200, seed=5)
    visualize.save_png(tmp_path / "photo.png", images[0])
    assert cli.main(["predict", "--model", NAME, str(tmp_path / "photo.png"), "--out", str(tmp_path / "files")]) == 0
    assert (tmp_path / "files" / "photo.png").exists()
    dets = json.loads((tmp_path / "files" / "detections.json").read_text())[0]["detections"]
    assert all(0 <= d["box_xyxy"][0] <= 200 and d["name"] for d in dets)


def _demo_voc(folder, num_images=16, image_size=128):
    """A 3-class VOC folder (train and val image sets) written by the fine-tuning example."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("finetune_coco", ROOT / "examples" / "finetune_coco.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example.make_demo_voc(folder, num_images=num_images, image_size=image_size)


def test_train_then_evaluate_and_export_a_run(tmp_path, capsys):
    """A run on a VOC folder of the user's own classes: names read from the XML (sorted, printed, kept in the run),
    the val split scored after each epoch (history.csv and TensorBoard), evaluate, export, a second stage."""
    voc = _demo_voc(tmp_path / "voc")
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", f"voc:{voc}", "--val-dataset", f"voc:{voc}:val", "--val-images", "4",
                     "--epochs", "1", "--batch-size", "8", "--image-size", "128", "--warmup", "1",
                     "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "image set 'train'; 3 classes read from the XML (sorted): ['concave_polygon', 'convex_polygon', 'round']" \
        in printed and "validation on voc:" in printed
    meta = json.loads((run / "model.json").read_text())
    assert meta["class_names"] == ["concave_polygon", "convex_polygon", "round"]
    assert meta["train_command"].startswith("kerasdet train") and (run / meta["weights"]).exists()
    header, row = (run / "history.csv").read_text().strip().splitlines()
    assert {"val_AP", "val_AP50", "val_AP75"} <= set(header.split(","))
    assert 0.0 <= float(row.split(",")[header.split(",").index("val_AP50")]) <= 1.0
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert cli.main(["evaluate", "--model", str(run), "--dataset", f"voc:{voc}", "--images", "4",
                     "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr()
    assert "image set 'val'" in out.out and "warning" not in out.err  # the test split is missing: val
    assert cli.main(["evaluate", "--model", NAME, "--dataset", f"voc:{voc}", "--images", "2",
                     "--out", str(tmp_path / "eval2")]) == 0
    warning = capsys.readouterr().err
    assert "warning: the model's 10 classes" in warning and "the dataset's 3" in warning
    assert cli.main(["export", "--model", str(run), "--out", str(tmp_path / "serving" / "1")]) == 0
    assert (tmp_path / "serving" / "1" / "saved_model.pb").exists()
    # a run folder with another class count: the class head is rebuilt, the rest keeps the run's weights
    tuned, _ = cli.load_model(str(run), num_classes=2)
    assert tuned.num_classes == 2 and all("class_head_out" in p for p in tuned.reinitialised_weights)
    # a second stage started from the run: the card-to-be lists both commands and both stages' time
    stage2 = tmp_path / "run2"
    assert cli.main(["train", "--init-from", str(run), "--dataset", f"voc:{voc}:train", "--class-names",
                     "concave_polygon,convex_polygon,round", "--train-images", "8", "--epochs", "1",
                     "--batch-size", "8", "--image-size", "128", "--warmup", "1", "--out", str(stage2)]) == 0
    meta2 = json.loads((stage2 / "model.json").read_text())
    first, second = meta2["train_command"].split(" && ")
    assert first == meta["train_command"] and f"--init-from {run}" in second
    assert meta2["train_seconds"] == round(meta["train_seconds"] + meta2["stage_seconds"], 1)


def test_unknown_dataset_and_model_are_clear(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="unknown dataset"):
        cli.open_dataset("imagenet:/x", "train", 4, 64)
    with pytest.raises(SystemExit, match="neither a zoo model"):
        cli.load_model(str(tmp_path))


def _check_interrupted_run_resumes(interrupted, train_args):
    """Trains one epoch of a two-epoch run into `interrupted` (its model.json removed, as if killed after the first
    checkpoint), resumes it, and checks the history, checkpoints, time record and the refusal of a finished run."""
    assert cli.main(["train", *train_args, "--out", str(interrupted)]) == 0
    (interrupted / "model.json").unlink()
    record = json.loads((interrupted / "command.json").read_text())
    record["argv"][record["argv"].index("--epochs") + 1] = "2"
    (interrupted / "command.json").write_text(json.dumps(record))
    assert cli.main(["train", "--resume", str(interrupted)]) == 0
    history = (interrupted / "history.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["0", "1"]
    assert sorted(p.name for p in (interrupted / "checkpoints").glob("*.h5")) == ["epoch_001.weights.h5",
                                                                                   "epoch_002.weights.h5"]
    progress = json.loads((interrupted / "progress.json").read_text())["seconds"]
    assert 0 < progress["1"] < progress["2"]
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--resume", str(interrupted)])
    assert stop.value.code == 2


def test_an_interrupted_run_resumes_at_its_next_epoch(tmp_path):
    """--resume goes on from the last epoch checkpoint (model and optimizer state), appends to history.csv, counts
    the time before the interruption, and refuses a run that has finished."""
    interrupted = tmp_path / "interrupted"
    common = ["--dataset", "synthetic", "--train-images", "4", "--batch-size", "2", "--image-size", "64",
              "--warmup", "1"]
    _check_interrupted_run_resumes(interrupted, ["--epochs", "1", *common])


@pytest.mark.slow
def test_faster_rcnn_run_is_rebuilt_as_faster_rcnn_and_resumes(tmp_path):
    """`train --arch faster-rcnn-compact` writes its family into model.json, and evaluate / predict / export rebuild
    the run as a FasterRCNN; --backbone-from copies the compact RetinaNet's trunk; --resume goes on from the last
    epoch checkpoint with the optimizer state."""
    from kerasdet.models.faster_rcnn import FasterRCNN

    run = tmp_path / "frcnn"
    common = ["--dataset", "synthetic", "--train-images", "8", "--batch-size", "4", "--image-size", "128",
              "--warmup", "1"]
    assert cli.main(["train", "--arch", "faster-rcnn-compact", "--backbone-from", NAME, "--epochs", "1", *common,
                     "--out", str(run)]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["family"] == "faster_rcnn"
    # the trunk's own training is part of the record: the RetinaNet's stages come first, their time counted
    retina_card = __import__("kerasdet").zoo.card(NAME)
    assert meta["train_command"].startswith(retina_card["train_command"] + " && kerasdet train --arch faster-rcnn")
    assert meta["train_seconds"] == round(retina_card["train_seconds"] + meta["stage_seconds"], 1)
    model, _ = cli.load_model(str(run))
    assert isinstance(model, FasterRCNN)
    retina, _ = cli.load_model(NAME)
    trunk = {v.path: v.numpy() for v in retina.backbone.weights}
    # the run trained one epoch from the RetinaNet trunk: close to it, not equal (it learned)
    first = model.backbone.weights[0]
    assert first.path in trunk and np.abs(first.numpy() - trunk[first.path]).max() < 0.05
    assert cli.main(["evaluate", "--model", str(run), "--images", "4", "--out", str(tmp_path / "eval")]) == 0
    assert cli.main(["predict", "--model", str(run), "--images", "2", "--out", str(tmp_path / "pred")]) == 0
    assert cli.main(["export", "--model", str(run), "--out", str(tmp_path / "serving" / "1")]) == 0
    assert (tmp_path / "serving" / "1" / "saved_model.pb").exists()
    # released into a zoo folder: the card names the family and every stage that produced the weights
    assert cli.main(["release", "--run", str(run), "--name", "frcnn_test", "--zoo-dir", str(tmp_path / "zoo")]) == 0
    card = json.loads((tmp_path / "zoo" / "frcnn_test" / "card.json").read_text())
    assert card["family"] == "faster_rcnn" and card["train_command"] == meta["train_command"]
    assert card["train_seconds"] == meta["train_seconds"] and card["config"]["rpn"]["class_name"] == "RegionProposalNetwork"

    # an interrupted two-epoch run (its first epoch's checkpoint is there, model.json is not) resumes at epoch 2
    _check_interrupted_run_resumes(tmp_path / "interrupted", ["--arch", "faster-rcnn-compact", "--epochs", "1", *common])


def test_command_line_mistakes_are_one_line_and_exit_2(tmp_path, capsys):
    """A mistake found after parsing (unknown --arch, both --init-from and --backbone-from, a resume of a folder
    that is no run) or by argparse itself (a choice that is not one, an unknown command) prints one line on stderr
    and exits with status 2."""
    import pytest

    cases = [["train", "--arch", "bogus", "--train-images", "2", "--out", str(tmp_path / "a")],
             ["train", "--init-from", NAME, "--backbone-from", NAME, "--out", str(tmp_path / "b")],
             ["train", "--resume", str(tmp_path)],
             ["train", "--augment", "bogus"], ["evaluate", "--model", NAME, "--precision", "half"], ["bogus"],
             ["train", "--epochs", "two"]]
    for argv in cases:
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        assert stop.value.code == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("kerasdet"), err


@__import__("pytest").mark.slow
def test_alternating_training_runs_to_the_end_and_detects(tmp_path):
    """The Faster R-CNN paper's 4-step alternating scheme on a short budget (trunk from the zoo RetinaNet, as the
    paper starts from ImageNet weights) gives a model that detects: AP50 well above chance on validation images."""
    run = tmp_path / "alternating"
    assert cli.main(["train", "--arch", "faster-rcnn-compact", "--alternating", "--backbone-from", NAME,
                     "--dataset", "synthetic", "--train-images", "800", "--epochs", "1", "--batch-size", "8",
                     "--lr", "0.0006", "--warmup", "20", "--out", str(run)]) == 0
    for step in ("1-rpn", "2-detector", "3-rpn-unique", "4-head-unique"):
        assert (run / f"history_{step}.csv").read_text().count("\n") == 2
    model, _ = cli.load_model(str(run))
    assert all(v.trainable for v in model.weights if "moving" not in v.path)   # every part trains again after step 4
    metrics, _, _, _ = cli.evaluate_model(model, "synthetic:val", 100, 256)
    print(f"[alternating] AP {metrics['AP']:.3f} AP50 {metrics['AP50']:.3f} on 100 validation images")
    assert metrics["AP50"] > 0.3, metrics


@__import__("pytest").mark.slow  # suite time (97 s): the mask family's training, export and outputs stay in the
def test_mask_rcnn_run_evaluates_boxes_masks_and_keypoints(tmp_path):  # default suite through its model harness
    """A Mask R-CNN run trains on the embedded dataset's masks and star tips; `evaluate` reports the bbox, segm
    and keypoint tables (and writes them into a card), `predict` draws masks and writes their RLE."""
    run = tmp_path / "mask"
    assert cli.main(["train", "--arch", "mask-rcnn-compact", "--dataset", "synthetic", "--train-images", "8",
                     "--epochs", "1", "--batch-size", "4", "--image-size", "128", "--warmup", "1",
                     "--out", str(run)]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["family"] == "mask_rcnn" and meta["config"]["num_keypoints"] == 5
    card = tmp_path / "card.json"
    assert cli.main(["evaluate", "--model", str(run), "--images", "4", "--out", str(tmp_path / "eval"),
                     "--write-card", str(card)]) == 0
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(summary) >= {"metrics", "segm_metrics", "keypoint_metrics"}
    assert set(cli.METRIC_KEYS) <= set(summary["segm_metrics"]) and "AR50" in summary["keypoint_metrics"]
    written = json.loads(card.read_text())
    assert written["segm_metrics"] == summary["segm_metrics"] and written["keypoint_metrics"] == summary["keypoint_metrics"]
    assert cli.main(["predict", "--model", str(run), "--images", "1", "--min-score", "0.0",
                     "--out", str(tmp_path / "pred")]) == 0
    dets = json.loads((tmp_path / "pred" / "detections.json").read_text())[0]["detections"]
    assert dets and all(set(d["mask_rle"]) == {"size", "counts"} and len(d["keypoints_xys"]) == 5 for d in dets)


def test_evaluate_in_bfloat16_writes_its_numbers_beside_the_cards(tmp_path):
    """`evaluate --precision mixed_bfloat16 --write-card` keeps the card's float32 numbers and speed and adds the
    bfloat16 ones: `AP50_bf16` and the full table under `precision_metrics`."""
    import kerasdet

    card = tmp_path / "card.json"
    card.write_text(json.dumps(kerasdet.zoo.card(NAME)))
    before = json.loads(card.read_text())
    assert cli.main(["evaluate", "--model", NAME, "--dataset", "synthetic:test", "--images", "4", "--precision",
                     "mixed_bfloat16", "--out", str(tmp_path / "eval"), "--write-card", str(card)]) == 0
    after = json.loads(card.read_text())
    measured = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert after["metrics"] == before["metrics"] and after["speed"] == before["speed"]
    assert after["AP50_bf16"] == measured["AP50"] == after["precision_metrics"]["mixed_bfloat16"]["metrics"]["AP50"]
    assert "--precision mixed_bfloat16" in after["precision_metrics"]["mixed_bfloat16"]["eval_command"]


def test_help_is_fast_and_prints_no_tensorflow_log_line():
    """`kerasdet --help` and `kerasdet train --help` do not start TensorFlow: under 1.5 s, nothing on stderr.
    The time is the best of three runs (as `timeit` reports): the suite runs on two workers, and the other one's
    work on the same cores is not the command's start-up time."""
    import time

    exe = pathlib.Path(sys.executable).parent / "kerasdet"
    for args in (["--help"], ["train", "--help"]):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            proc = subprocess.run([str(exe), *args], capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - start)
            assert proc.stderr == "", proc.stderr
            assert "usage: kerasdet" in proc.stdout
        assert min(times) < 1.5, (args, times)


def test_commands_that_start_tensorflow_print_no_log_line(tmp_path):
    exe = pathlib.Path(sys.executable).parent / "kerasdet"
    proc = subprocess.run([str(exe), "export", "--model", NAME, "--out", str(tmp_path / "1")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith(("I0000", "W0000", "E0000", "WARNING: All"))], \
        proc.stderr


def test_user_mistakes_are_one_line_exit_2_and_leave_no_run_folder(tmp_path, capsys):
    """Each mistake of the issue "The user's path": exit status 2, one line on stderr, no traceback, and no run
    folder left behind. The first goes through the installed command (a fresh process: no TensorFlow log line
    either); the others through `kerasdet.cli.main` in this process, which is the same code without 14 imports of
    TensorFlow."""
    exe = pathlib.Path(sys.executable).parent / "kerasdet"
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    voc = _demo_voc(tmp_path / "voc", num_images=4, image_size=64)
    from kerasdet.data import synthetic, write_coco

    samples = [synthetic.render(i, 64, 5) for i in range(4)]
    (tmp_path / "elsewhere").mkdir()
    write_coco([(im, {"boxes": t["boxes"], "labels": t["labels"]}) for im, t in samples], str(tmp_path / "coco.json"),
               list(synthetic.class_names()), image_dir=str(tmp_path / "elsewhere"))
    (tmp_path / "corrupt").mkdir()
    for path in (tmp_path / "elsewhere").iterdir():
        (tmp_path / "corrupt" / path.name).write_bytes(path.read_bytes())
    next((tmp_path / "corrupt").iterdir()).write_bytes(b"not an image")
    from kerasdet.data import write_voc

    write_voc([(im, {"boxes": t["boxes"], "labels": t["labels"]}) for im, t in samples], tmp_path / "voc_trainval",
              list(synthetic.class_names()), split="trainval")
    (occupied / "file.txt").write_text("x")
    mistakes = {
        "epochs 0": ["train", "--epochs", "0", "--out", str(tmp_path / "r1")],
        "batch larger than the data": ["train", "--train-images", "4", "--batch-size", "8", "--out", str(tmp_path / "r2")],
        "missing json": ["train", "--dataset", f"coco:{tmp_path / 'none.json'}", "--out", str(tmp_path / "r3")],
        "missing image file": ["predict", "--model", NAME, str(tmp_path / "none.png"), "--out", str(tmp_path / "p")],
        "export into an occupied folder": ["export", "--model", NAME, "--out", str(occupied)],
        "unknown architecture": ["train", "--arch", "yolo-v7", "--out", str(tmp_path / "r4")],
        "a 10-class model on a 3-class VOC folder": ["train", "--init-from", NAME, "--dataset", f"voc:{voc}",
                                                     "--out", str(tmp_path / "r5")],
        "--num-classes against the data": ["train", "--init-from", NAME, "--dataset", f"voc:{voc}", "--num-classes",
                                           "4", "--out", str(tmp_path / "r6")],
        "--class-names on a COCO json": ["train", "--dataset", "synthetic", "--class-names", "a,b",
                                         "--out", str(tmp_path / "r7")],
        "a COCO json whose images are not beside it": ["train", "--dataset", f"coco:{tmp_path / 'coco.json'}",
                                                       "--batch-size", "2", "--out", str(tmp_path / "r9")],
        "a corrupt image met while training": ["train", "--dataset", f"coco:{tmp_path / 'coco.json'}:{tmp_path}/corrupt",
                                               "--batch-size", "2", "--image-size", "64", "--out", str(tmp_path / "r10")],
        "a VOC folder whose image sets are not the defaults": ["evaluate", "--model", NAME, "--dataset",
                                                              f"voc:{tmp_path / 'voc_trainval'}"],
        "a --val-dataset that does not exist": ["train", "--dataset", f"voc:{voc}", "--val-dataset", f"voc:{voc}:vall",
                                                "--out", str(tmp_path / "r11")],
        "a VOC folder without the named classes": ["train", "--dataset", f"voc:{voc}", "--class-names", "disc,star",
                                                   "--out", str(tmp_path / "r8")],
        "--freeze of a part the model does not have": ["train", "--dataset", "synthetic", "--train-images", "4",
                                                       "--batch-size", "2", "--image-size", "64", "--freeze", "trunk",
                                                       "--out", str(tmp_path / "r12")],
    }
    errors = {}
    for i, (what, args) in enumerate(mistakes.items()):
        if i == 0:
            proc = subprocess.run([str(exe), *args], capture_output=True, text=True)
            code, stderr = proc.returncode, proc.stderr
        else:
            capsys.readouterr()
            try:
                code = cli.main(args)
            except SystemExit as stop:
                code = stop.code
            stderr = capsys.readouterr().err
        errors[what] = stderr
        lines = stderr.strip().splitlines()
        assert code == 2, (what, code, stderr)
        assert len(lines) == 1 and "Traceback" not in stderr, (what, stderr)
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 13))
    assert "IMAGE_FOLDER" in errors["a COCO json whose images are not beside it"]
    assert "--overwrite" in errors["export into an occupied folder"]


def test_kerasdet_load_takes_zoo_names_run_folders_keras_files_and_exports(tmp_path):
    import pytest

    import kerasdet

    model = kerasdet.load(NAME)
    assert model.name and model.num_classes == 10
    model.save(tmp_path / "model.keras")
    again = kerasdet.load(tmp_path / "model.keras")
    assert type(again) is type(model)
    assert cli.main(["export", "--model", NAME, "--out", str(tmp_path / "serving")]) == 0
    served = kerasdet.load(tmp_path / "serving")
    assert "serving_default" in served.signatures
    with pytest.raises(ValueError, match="not a zoo model"):
        kerasdet.load(tmp_path / "nothing")


@pytest.mark.slow
@pytest.mark.parametrize("base", ["faster_rcnn_resnet18_shapes"])
def test_fine_tuning_on_a_voc_folder_of_three_custom_classes_reaches_ap50_0_9(tmp_path, capsys, base):
    """The issue's Must-show: a released model fine-tuned from the CLI on a VOC folder of 3 classes the test writes
    (150 training images, 50 held out) reaches AP50 >= 0.9 on the held-out split in a few CPU minutes.
    The released Faster R-CNN is the base, its trained parts frozen but the new classifier and box regressor
    (`--freeze backbone,fpn,rpn,box_head.fcs`). Fine-tuning everything plateaued at AP50 0.883 (12 epochs) and the
    released RetinaNet at 0.822 (10 epochs), below what the 10-class Faster R-CNN scores on these images with its
    labels mapped to the 3 classes and no training at all (0.925): 150 images teach less than they make the
    trunk forget (docs/decisions.md)."""
    voc = _demo_voc(tmp_path / "voc", num_images=200, image_size=256)
    run = tmp_path / "run"
    start = time.time()
    assert cli.main(["train", "--init-from", base, "--num-classes", "3", "--dataset", f"voc:{voc}",
                     "--freeze", "backbone,fpn,rpn,box_head.fcs", "--val-dataset", f"voc:{voc}:val", "--val-images",
                     "50", "--epochs", "6", "--batch-size", "8", "--out", str(run)]) == 0
    seconds = time.time() - start
    assert cli.main(["evaluate", "--model", str(run), "--dataset", f"voc:{voc}:val", "--images", "50",
                     "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    with capsys.disabled():
        print(f"\n[voc fine-tune] {base}: AP50 {metrics['AP50']:.3f} AP {metrics['AP']:.3f} on 50 held-out images "
              f"after {seconds:.0f} s of training and validation; by epoch: "
              f"{(run / 'history.csv').read_text().strip()}")
    assert metrics["AP50"] >= 0.9, metrics


def test_a_voc_folder_of_the_models_classes_keeps_the_models_label_order(tmp_path):
    """Fine-tuning or evaluating on a VOC folder of (some of) the model's classes: label i stays the model's class i,
    not the i-th name in alphabetical order."""
    from kerasdet.data import synthetic, write_voc

    names = list(synthetic.class_names())
    samples = [synthetic.render(i, 64, 9) for i in range(3)]
    write_voc([(im, {"boxes": t["boxes"], "labels": t["labels"]}) for im, t in samples], tmp_path, names, split="train")
    ds, found, _, _ = cli.open_dataset(f"voc:{tmp_path}", "train", None, 64, prefer_names=names)
    assert found == names
    for (_, truth), (_, target) in zip(samples, ds):
        np.testing.assert_array_equal(np.sort(target["labels"].numpy()), np.sort(truth["labels"]))
    _, alphabetical, _, _ = cli.open_dataset(f"voc:{tmp_path}", "train", None, 64)
    assert alphabetical == sorted(set(alphabetical)) and alphabetical != names


@__import__("pytest").mark.slow  # suite time: bfloat16 loading is in tests/zoo/test_precision.py
def test_training_in_mixed_bfloat16(tmp_path):
    """`train --precision mixed_bfloat16`: every layer with weights computes in bfloat16 (the backbone's too), the
    variables and the saved weights stay float32, the loss is finite, and the run loads as float32 by default."""
    run = tmp_path / "bf16"
    assert cli.main(["train", "--dataset", "synthetic", "--train-images", "4", "--image-size", "128", "--epochs", "1",
                     "--batch-size", "4", "--warmup", "1", "--precision", "mixed_bfloat16", "--out", str(run)]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["config"]["dtype"]["config"]["name"] == "mixed_bfloat16"
    history = (run / "history.csv").read_text().splitlines()
    loss = float(history[1].split(",")[history[0].split(",").index("loss")])
    assert loss == loss and loss < 1e3  # finite
    model, _ = cli.load_model(str(run))
    assert model.dtype_policy.name == "float32"
    half, _ = cli.load_model(str(run), precision="mixed_bfloat16")
    assert {layer.dtype_policy.compute_dtype for layer in half._flatten_layers() if layer.weights} == {"bfloat16"}


def test_yolo9000_joint_training_resumes_and_evaluates_leaf_classes(tmp_path, capsys):
    """`--arch yolo9000-compact --dataset synthetic-tree --classification-images N`: detection and classification-only
    batches in one epoch (the step count holds both), a resumed run goes on, and `evaluate` on the leaf-labelled
    split scores the leaf classes (detections that stop at an inner node name no class). A tree-less dataset or
    classification images without the tree dataset are one-line mistakes."""
    run = tmp_path / "y9k"
    common = ["--arch", "yolo9000-compact", "--dataset", "synthetic-tree", "--train-images", "8",
              "--classification-images", "8", "--batch-size", "4", "--image-size", "64", "--warmup", "1"]
    _check_interrupted_run_resumes(run, ["--epochs", "1", *common])
    meta = json.loads((run / "model.json").read_text())
    assert meta["family"] == "yolo9000" and meta["dataset"]["classification_images"] == 8
    # 2 epochs x (2 detection + 2 classification batches)
    assert json.loads((run / "checkpoints" / "epoch_002.json").read_text())["step"] == 8
    assert cli.main(["evaluate", "--model", str(run), "--dataset", "synthetic:test", "--images", "4",
                     "--out", str(tmp_path / "eval")]) == 0
    per_class = json.loads((tmp_path / "eval" / "metrics.json").read_text())["per_class"]
    assert [row["name"] for row in per_class] == list(meta["class_names"])
    for args in (["--arch", "yolo9000-compact", "--dataset", "synthetic"],
                 ["--arch", "yolo-v2-compact", "--dataset", "synthetic", "--classification-images", "4"],
                 ["--arch", "yolo-v2-compact", "--dataset", "synthetic-tree"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            cli.main(["train", *args, "--train-images", "4", "--batch-size", "2", "--epochs", "1",
                      "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "synthetic-tree" in err, (args, err)
    with pytest.raises(SystemExit) as stop:
        cli.main(["evaluate", "--model", str(run), "--dataset", "synthetic-tree:test", "--images", "2"])
    assert stop.value.code == 2 and "synthetic:test" in capsys.readouterr().err


def test_the_training_stream_makes_each_epoch_when_its_turn_comes():
    """Epoch pipelines are made one at a time (a 500-epoch run does not build 500 pipelines before its first step),
    and epoch e's batches are the same whenever it is made."""
    import argparse

    from kerasdet.models import families

    ds, _, _, extras = cli.open_dataset("synthetic", "train", 8, 64)
    args = argparse.Namespace(seed=3, image_size=64, batch_size=4, max_boxes=8, augment=None, epochs=500)
    recipe = families.family("retinanet").recipe
    start = time.perf_counter()
    first, epoch = cli._training_stream(ds.cache(), 8, args, recipe, None, extras["keypoint_flip_map"], 0, 0)
    assert time.perf_counter() - start < 5.0
    late = [x.numpy() for x, _ in epoch(499)]
    again = [x.numpy() for x, _ in epoch(499)]
    assert len(late) == 2 and all(np.array_equal(a, b) for a, b in zip(late, again))
    assert not np.array_equal(late[0], [x.numpy() for x, _ in epoch(498)][0])
