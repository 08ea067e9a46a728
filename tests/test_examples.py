"""The runnable examples: the layers demo (default run) and fine-tuning beating training from scratch (slow)."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layers_demo_runs_and_writes_pngs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "layers_demo.py"), "--out", str(tmp_path), "--images", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "COCO evaluation" in proc.stdout and "AP50" in proc.stdout
    assert len(list(tmp_path.glob("detections_*.png"))) == 3
    assert (tmp_path / "roi_crops.png").exists() and (tmp_path / "pr_curve.png").exists()


def test_finetune_demo_data_is_a_valid_coco_folder(tmp_path):
    finetune = _load("finetune_coco")
    path = finetune.make_demo_data(tmp_path / "shapes3", num_images=6, image_size=128)
    from kerasdet.data import CocoDataset

    reader = CocoDataset(str(path), str(tmp_path / "shapes3" / "images"), with_masks=False, with_keypoints=False)
    assert list(reader.class_names) == list(finetune.SUPERCLASSES)
    assert sum(1 for _ in reader.dataset()) == 6


@pytest.mark.slow
def test_finetuning_from_the_zoo_beats_scratch_with_the_same_budget(tmp_path, capsys):
    finetune = _load("finetune_coco")
    path = finetune.make_demo_data(tmp_path / "shapes3", num_images=200)
    tuned = finetune.finetune(str(path), epochs=4)
    scratch = finetune.finetune(str(path), from_zoo=None, epochs=4)
    with capsys.disabled():
        print(f"\n[fine-tune] from zoo AP50 {tuned['AP50']:.3f} AP {tuned['AP']:.3f} | "
              f"scratch AP50 {scratch['AP50']:.3f} AP {scratch['AP']:.3f}")
    assert tuned["AP50"] > scratch["AP50"]
