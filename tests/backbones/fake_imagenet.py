"""Writes stand-in ImageNet weight files in the legacy Keras HDF5 layout that keras.applications loads.

A real file cannot be made here (no downloads), so the tests put a file with the exact name Keras asks
for, filled with known random values, into a temporary Keras cache and check that the backbones load
exactly those values without touching the network.
"""

import hashlib
import socket
import urllib.request

import h5py
import numpy as np


def legacy_weights(layer):
    """The order keras' legacy HDF5 loader uses: trainable, then non-trainable variables."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def write_legacy_h5(model, path, seed=0):
    """Writes `model`'s layers with random values to `path`; returns {layer name: [arrays]}."""
    rng = np.random.default_rng(seed)
    values = {}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            names, arrays = [], []
            for i, variable in enumerate(legacy_weights(layer)):
                shape = tuple(variable.shape)
                if "variance" in variable.path:
                    array = rng.uniform(0.5, 1.5, size=shape)
                else:
                    array = rng.normal(scale=0.05, size=shape)
                names.append(f"{layer.name}/w{i}:0".encode("utf8"))
                arrays.append(array.astype(np.float32))
            group.attrs["weight_names"] = names
            for name, array in zip(names, arrays):
                group.create_dataset(name.decode("utf8"), data=array)
            if arrays:
                values[layer.name] = arrays
    return values


def md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class NetworkTouched(AssertionError):
    pass


def _refuse(*args, **kwargs):
    raise NetworkTouched(f"the network was touched: {args[:2]!r}")


def block_network(monkeypatch):
    """Makes every socket connection, urllib and Keras' downloader raise."""
    import keras.src.utils.file_utils as file_utils

    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(file_utils, "urlretrieve", _refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", _refuse)
    monkeypatch.setattr(urllib.request, "urlopen", _refuse)


def assert_loaded(model, values):
    """Every layer of `model` that has weights holds exactly the fake values of its namesake."""
    checked = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        for variable, want in zip(legacy_weights(layer), values[layer.name]):
            np.testing.assert_array_equal(np.asarray(variable), want, err_msg=variable.path)
            checked += 1
    assert checked > 0
    return checked
