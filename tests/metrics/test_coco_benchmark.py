"""benchmarks/coco_eval.py: its RESULTS.md section replaces only itself, and a tiny run agrees with pycocotools."""

import pytest

from benchmarks import coco_eval


def test_section_is_created_then_replaced_alone(tmp_path):
    path = tmp_path / "RESULTS.md"
    coco_eval.write_section("first", path)
    assert path.read_text().count(coco_eval.START) == 1
    path.write_text("# Results\n\nother section\n\n" + path.read_text().split("\n", 2)[2] + "\ntail section\n")
    coco_eval.write_section("second", path)
    text = path.read_text()
    assert "second" in text and "first" not in text
    assert "other section" in text and "tail section" in text and text.count(coco_eval.END) == 1


def test_small_run_matches_pycocotools(capsys):
    pytest.importorskip("pycocotools")
    assert coco_eval.main(["--images", "20", "--rounds", "1", "--warmup", "0", "--no-faster-coco-eval"]) == 0
    assert "max |ours - pycocotools| = 0.00e+00" in capsys.readouterr().out
