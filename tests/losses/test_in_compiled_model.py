"""The losses inside model.compile: a training step, and a .keras round trip that keeps their configs."""

import os

import keras
import numpy as np

from kerasdet.losses.focal import FocalLoss
from kerasdet.losses.giou import GIoULoss
from kerasdet.losses.smooth_l1 import SmoothL1Loss


def test_compile_fit_save_load(tmp_path):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = {
        "cls": keras.layers.Dense(3, name="cls")(hidden),
        "box": keras.layers.Dense(4, name="box")(hidden),
        "xyxy": keras.layers.Dense(4, name="xyxy")(hidden),
    }
    model = keras.Model(inputs, outputs)
    losses = {"cls": FocalLoss(reduction="sum"), "box": SmoothL1Loss(beta=1.0), "xyxy": GIoULoss()}
    model.compile(optimizer="sgd", loss=losses)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype(np.float32)
    xy = rng.uniform(0, 5, size=(16, 2))
    y = {
        "cls": (rng.uniform(size=(16, 3)) < 0.3).astype(np.float32),
        "box": rng.normal(size=(16, 4)).astype(np.float32),
        "xyxy": np.concatenate([xy, xy + 3], axis=-1).astype(np.float32),
    }
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert all(np.isfinite(v).all() for v in history.history.values())
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.loss
    for key, loss in losses.items():
        assert type(restored[key]) is type(loss) and restored[key].get_config() == loss.get_config()
