"""The zoo: cards, sha256-checked weights, clear errors, fine-tuning rebuilds only the class head."""

import json
import pathlib
import shutil

import numpy as np
import pytest

import kerasdet
from kerasdet.zoo import registry, weights as weights_io

NAME = "retinanet_resnet18_shapes"


@pytest.fixture(scope="module")
def model():
    return kerasdet.zoo.load(NAME)


@pytest.fixture()
def zoo_copy(tmp_path, monkeypatch):
    """A copy of the zoo folder that a test may damage, made the active zoo."""
    dest = tmp_path / "zoo"
    shutil.copytree(registry.zoo_dir() / NAME, dest / NAME)
    monkeypatch.setenv("KERASDET_ZOO_DIR", str(dest))
    return dest / NAME


def test_list_and_card():
    assert NAME in kerasdet.zoo.list()
    card = kerasdet.zoo.card(NAME)
    for key in registry.REQUIRED_CARD_KEYS:
        assert key in card, key
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "VOC_mAP"):
        assert 0.0 <= card["metrics"][key] <= 1.0, key
    assert card["train_command"].startswith("kerasdet train")
    assert card["eval_command"].startswith("kerasdet evaluate")
    path = registry.zoo_dir() / NAME / card["weights"]
    assert weights_io.sha256_of(path) == card["sha256"]


def test_load_gives_a_compiled_model_that_detects(model):
    assert model.compiled
    images, _ = kerasdet.data.synthetic.generate(2, image_size=256, seed=77)
    out = model.predict(images, verbose=0)
    assert out["boxes"].shape == (2, 100, 4) and out["labels"].dtype == np.int32
    assert (out["num_detections"] > 0).all()
    assert out["scores"][0, 0] > 0.5  # a trained model is confident on its own kind of images


def test_unknown_name_and_bad_num_classes():
    with pytest.raises(ValueError, match="is not a released model"):
        kerasdet.zoo.load("yolo_v9_imaginary")
    with pytest.raises(ValueError, match="`num_classes`"):
        kerasdet.zoo.load(NAME, num_classes=0)


def test_sha256_mismatch_names_the_file(zoo_copy):
    card = json.loads((zoo_copy / "card.json").read_text())
    with open(zoo_copy / card["weights"], "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ValueError, match=rf"{card['weights']}.*sha256"):
        kerasdet.zoo.load(NAME)


def test_missing_weights_file_names_it(zoo_copy):
    card = json.loads((zoo_copy / "card.json").read_text())
    (zoo_copy / card["weights"]).unlink()
    with pytest.raises(FileNotFoundError, match=card["weights"]):
        kerasdet.zoo.load(NAME)


def test_wrong_architecture_is_a_clear_error(zoo_copy, tmp_path):
    card = json.loads((zoo_copy / "card.json").read_text())
    card["config"]["head_channels"] = 32  # weights no longer fit
    (zoo_copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="does not fit the architecture"):
        kerasdet.zoo.load(NAME)


def test_num_classes_rebuilds_only_the_class_head(model):
    tuned = kerasdet.zoo.load(NAME, num_classes=3)
    assert tuned.num_classes == 3
    assert tuned.reinitialised_weights, "the class head must be rebuilt"
    assert all("class_head_out" in p for p in tuned.reinitialised_weights), tuned.reinitialised_weights
    trained = {v.path: np.asarray(v) for v in model.weights}
    kept = [v for v in tuned.weights if v.path not in tuned.reinitialised_weights]
    assert len(kept) == len(tuned.weights) - len(tuned.reinitialised_weights)
    for v in kept:
        np.testing.assert_array_equal(np.asarray(v), trained[v.path])
    out = tuned.predict(np.zeros((1, 256, 256, 3), np.uint8), verbose=0)
    assert out["labels"].max() < 3


@pytest.mark.parametrize("name", ["faster_rcnn_resnet18_shapes", "mask_rcnn_resnet18_shapes"])
def test_two_stage_models_take_a_new_class_count(name):
    """Faster and Mask R-CNN record the class count in their heads' configs too: a fine-tune on other classes
    rebuilds the class-specific layers (box classifier and regressor, per-class masks) and keeps every other
    trained weight; Mask R-CNN's keypoint classes named old labels and go back to every class."""
    trained = {v.path: np.asarray(v) for v in kerasdet.zoo.load(name).weights}
    tuned = kerasdet.zoo.load(name, num_classes=3)
    assert tuned.num_classes == 3 and tuned.box_head.num_classes == 3
    assert tuned.reinitialised_weights and all("head" in p for p in tuned.reinitialised_weights)
    for v in tuned.weights:
        if v.path not in tuned.reinitialised_weights:
            np.testing.assert_array_equal(np.asarray(v), trained[v.path])
    if name.startswith("mask"):
        assert tuned.mask_head.num_classes == 3 and tuned.keypoint_classes is None
    out = tuned.predict(np.zeros((1, 128, 128, 3), np.uint8), verbose=0)
    assert out["labels"].max() < 3


def test_weights_none_is_random(model):
    fresh = kerasdet.zoo.load(NAME, weights=None)
    a = np.asarray(fresh.backbone.weights[0])
    b = np.asarray(model.backbone.weights[0])
    assert a.shape == b.shape and not np.allclose(a, b)


def test_silent_fallbacks_are_refused(monkeypatch, tmp_path):
    """`num_classes=True` is no class count, and a KERASDET_ZOO_DIR that is not a folder is not ignored."""
    with pytest.raises(ValueError, match="num_classes"):
        kerasdet.zoo.build(kerasdet.zoo.card(NAME), num_classes=True)
    monkeypatch.setenv("KERASDET_ZOO_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="KERASDET_ZOO_DIR"):
        kerasdet.zoo.card(NAME)


def test_replace_atomically_never_leaves_half_a_file(tmp_path):
    from kerasdet.zoo.weights import replace_atomically

    target = tmp_path / "epoch_001.weights.h5"
    target.write_bytes(b"old, complete")

    def crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half of a new fi")
        raise KeyboardInterrupt  # killed while writing

    with pytest.raises(KeyboardInterrupt):
        replace_atomically(crash, target)
    assert target.read_bytes() == b"old, complete"  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no partial file left to be mistaken for one
    replace_atomically(lambda tmp: pathlib.Path(tmp).write_bytes(b"new, complete"), target)
    assert target.read_bytes() == b"new, complete" and len(list(tmp_path.iterdir())) == 1


def test_every_released_model_is_installed_by_a_non_editable_install():
    """setup.cfg's data_files copies each zoo folder to share/kerasdet/zoo (a wheel has no checkout to read)."""
    import configparser

    root = pathlib.Path(__file__).resolve().parents[2]
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    installed = {key.rsplit("/", 1)[-1]: value.strip() for key, value in config["options.data_files"].items()}
    for name in kerasdet.zoo.list():
        assert installed.get(name) == f"zoo/{name}/*", f"setup.cfg [options.data_files] does not install {name}"
