"""`weights="imagenet"` goes through keras.applications and the Keras cache, never the network here.

Each test makes a fake weights file with the exact name keras.applications asks for, puts it in a
temporary Keras cache (`$KERAS_HOME/models/`) and checks that the backbone holds exactly the file's
values, with sockets and Keras' downloader patched to fail if touched.
"""

import importlib
import os
import subprocess
import sys
import textwrap
import urllib.error

import keras
import pytest

from kerasdet.backbones.mobilenet import MobileNetV2
from kerasdet.backbones.resnet import ResNet
from tests.backbones import fake_imagenet

MOBILENET_035_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
RESNET50_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A fresh Keras cache: KERAS_HOME set, and Keras' copy of it (read at import time) patched."""
    config = importlib.import_module("keras.src.backend.config")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    (tmp_path / "models").mkdir()
    return tmp_path


def test_mobilenet_v2_loads_the_cached_file(keras_home, monkeypatch):
    reference = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35, input_shape=(None, None, 3))
    values = fake_imagenet.write_legacy_h5(reference, keras_home / "models" / MOBILENET_035_FILE, seed=1)
    fake_imagenet.block_network(monkeypatch)
    backbone = MobileNetV2(alpha=0.35, weights="imagenet")
    assert fake_imagenet.assert_loaded(backbone, values) == len(reference.weights)  # every variable
    assert backbone.get_config()["weights"] is None  # rebuilding from the config downloads nothing


def test_resnet50_loads_the_cached_file(keras_home, monkeypatch):
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    path = keras_home / "models" / RESNET50_FILE
    values = fake_imagenet.write_legacy_h5(reference, path, seed=2)
    num_variables = len(reference.weights)
    del reference
    # keras checks the file's md5 against the real file's; a fake file can only pass with its own hash
    resnet_module = importlib.import_module("keras.src.applications.resnet")
    real_hashes = resnet_module.WEIGHTS_HASHES["resnet50"]
    monkeypatch.setitem(resnet_module.WEIGHTS_HASHES, "resnet50", (real_hashes[0], fake_imagenet.md5(path)))
    fake_imagenet.block_network(monkeypatch)
    backbone = ResNet(50, levels=("C3", "C4", "C5"), weights="imagenet")
    assert fake_imagenet.assert_loaded(backbone, values) == num_variables
    truncated = ResNet(50, levels=("C4",), weights="imagenet")  # a C4 trunk takes the weights it has
    fake_imagenet.assert_loaded(truncated, values)
    assert not any(layer.name.startswith("conv5") for layer in truncated.layers)


def test_missing_cache_without_network_raises_a_clear_error(keras_home, monkeypatch):
    import keras.src.utils.file_utils as file_utils

    def no_route(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(file_utils, "urlretrieve", no_route)
    with pytest.raises(OSError, match=r"ImageNet weights of keras.applications.MobileNetV2.*KERAS_HOME"):
        MobileNetV2(alpha=0.35, weights="imagenet")
    with pytest.raises(OSError, match=r"keras.applications.ResNet50.*KERAS_HOME"):
        ResNet(50, weights="imagenet")
    assert os.listdir(keras_home / "models") == []


def test_keras_home_environment_variable_in_a_fresh_process(tmp_path):
    """The plain user path: only KERAS_HOME is set, before Keras is imported."""
    (tmp_path / "models").mkdir()
    script = textwrap.dedent(
        f"""
        import socket
        import numpy as np
        import keras
        from tests.backbones import fake_imagenet

        reference = keras.applications.MobileNetV2(
            include_top=False, weights=None, alpha=0.35, input_shape=(None, None, 3))
        values = fake_imagenet.write_legacy_h5(reference, {str(tmp_path / "models" / MOBILENET_035_FILE)!r}, seed=3)

        def refuse(*args, **kwargs):
            raise AssertionError("network touched")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        from kerasdet.backbones.mobilenet import MobileNetV2
        backbone = MobileNetV2(alpha=0.35, levels=("C5",), weights="imagenet")
        print("checked", fake_imagenet.assert_loaded(backbone, values), "of", len(backbone.weights))
        """
    )
    env = dict(os.environ, KERAS_HOME=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checked, total = result.stdout.split("checked")[-1].split("of")
    assert int(checked) == int(total) > 200, result.stdout


VGG16_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_vgg16_loads_the_cached_file(keras_home, monkeypatch):
    """VGG16's convolutions come from the cached keras.applications file (its md5 is fixed in Keras' code, so
    the check is skipped for the stand-in file); SSD's fc6 / fc7 convolutions stay random."""
    from kerasdet.backbones import VGG16

    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    values = fake_imagenet.write_legacy_h5(reference, keras_home / "models" / VGG16_FILE, seed=4)
    vgg_module = importlib.import_module("keras.src.applications.vgg16")
    get_file = vgg_module.file_utils.get_file
    monkeypatch.setattr(vgg_module.file_utils, "get_file",
                        lambda *args, **kwargs: get_file(*args, **dict(kwargs, file_hash=None)))
    fake_imagenet.block_network(monkeypatch)
    backbone = VGG16(levels=("conv4_3", "conv5_3", "fc7"), weights="imagenet")
    loaded = fake_imagenet.assert_loaded(
        keras.Model(backbone.inputs, backbone.get_layer("block5_conv3").output), values)
    assert loaded == len(reference.weights)
    assert backbone.get_config()["weights"] is None


def test_resnet50_conv5_stage_loads_the_cached_file(keras_home, monkeypatch):
    """The C4 detectors' RoI head (ResNet conv5 on RoIs) takes conv5's ImageNet weights by layer name."""
    from kerasdet.backbones import ResNetStage

    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    path = keras_home / "models" / RESNET50_FILE
    values = fake_imagenet.write_legacy_h5(reference, path, seed=5)
    del reference
    resnet_module = importlib.import_module("keras.src.applications.resnet")
    real_hashes = resnet_module.WEIGHTS_HASHES["resnet50"]
    monkeypatch.setitem(resnet_module.WEIGHTS_HASHES, "resnet50", (real_hashes[0], fake_imagenet.md5(path)))
    fake_imagenet.block_network(monkeypatch)
    stage = ResNetStage(50, weights="imagenet")
    assert fake_imagenet.assert_loaded(stage, values) == len(stage.weights)
    assert all(layer.name.startswith("conv5") for layer in stage.layers if layer.weights)
