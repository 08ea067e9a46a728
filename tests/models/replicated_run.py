"""Trains the compact RetinaNet for 5 steps of global batch 4 in one of three ways and writes, after each step, the
loss and a digest of the weights (run by tests/models/test_replicated_training.py in fresh processes):

    python replicated_run.py single   OUT.json WEIGHTS.h5   # one device; writes the initial weights to WEIGHTS.h5
    python replicated_run.py mirrored OUT.json WEIGHTS.h5   # MirroredStrategy on 2 logical CPU devices
    python replicated_run.py worker   OUT.json WEIGHTS.h5   # one of the MultiWorkerMirroredStrategy workers (TF_CONFIG)

Settings (environment): REPLICATED_BATCH_NORM=frozen (backbone batch norm in inference mode; default: it trains),
REPLICATED_OPTIMIZER=sgd (SGD with momentum 0.9 and the default clipping) or noclip (AdamW without clipping; default:
AdamW as `compile()` makes it), REPLICATED_REVERSE=1 (each global batch in reverse order: the same sums in another
order, the control docs/scaling.md quotes).
"""

import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

MODE, OUT, WEIGHTS = sys.argv[1], sys.argv[2], sys.argv[3]
STEPS, BATCH, SIZE = 5, 4, 128
FROZEN = os.environ.get("REPLICATED_BATCH_NORM", "synchronized") == "frozen"

from kerasdet.models.distribution import make_strategy, prepare_for_replicas  # noqa: E402

strategy = None
if MODE == "mirrored":
    strategy = make_strategy("mirrored", cpu_replicas=2)
elif MODE == "worker":
    strategy = make_strategy("multi_worker")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasdet.backbones import set_backbone_training  # noqa: E402
from kerasdet.data.synthetic import generate  # noqa: E402
from kerasdet.models.retinanet import RetinaNet  # noqa: E402


def data():
    images, coco = generate(STEPS * BATCH, SIZE, seed=11)
    boxes = -np.ones((len(images), 16, 4), np.float32)
    labels = -np.ones((len(images), 16), np.int32)
    filled = np.zeros(len(images), int)
    for a in coco["annotations"]:
        i = a["image_id"] - 1
        if filled[i] < 16:
            x, y, w, h = a["bbox"]
            boxes[i, filled[i]], labels[i, filled[i]] = [x, y, x + w, y + h], a["category_id"] - 1
            filled[i] += 1
    ds = tf.data.Dataset.from_tensor_slices((images.astype(np.float32), {"boxes": boxes, "labels": labels}))
    ds = ds.batch(BATCH, drop_remainder=True)
    if os.environ.get("REPLICATED_REVERSE"):  # the same global batches, each in reverse order: other rounding only
        ds = ds.map(lambda x, y: (tf.reverse(x, [0]), {k: tf.reverse(v, [0]) for k, v in y.items()}))
    return ds


class Record(keras.callbacks.Callback):
    """Each epoch is one step: its logged loss is that step's, then the weights' digest and sum."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        values = [np.asarray(w, np.float32) for w in self.model.get_weights()]
        digest = hashlib.sha256(b"".join(v.tobytes() for v in values)).hexdigest()
        self.rows.append({"loss": float(logs["loss"]), "digest": digest,
                          "iterations": int(self.model.optimizer.iterations.numpy()),
                          "abs_sum": float(sum(np.abs(v.astype(np.float64)).sum() for v in values)),
                          "weights_head": [float(v) for v in np.concatenate([v.ravel() for v in values])[:: 997][:200]]})


def build():
    keras.utils.set_random_seed(0)
    model = RetinaNet.compact(num_classes=10, width=0.25)
    if FROZEN:  # batch norm in inference mode, its statistics and scale kept (the "or frozen")
        set_backbone_training(model.backbone, frozen_batch_norm=True)
    model.build_for_size(SIZE)
    if MODE == "single":
        model.save_weights(WEIGHTS)
    else:
        model.load_weights(WEIGHTS)
    if strategy is not None:
        prepare_for_replicas(model)
    if os.environ.get("REPLICATED_OPTIMIZER") == "noclip":
        model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4))
    elif os.environ.get("REPLICATED_OPTIMIZER") == "sgd":
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=10.0))
    else:
        model.compile(learning_rate=1e-3)
    return model


if strategy is None:
    model = build()
else:
    with strategy.scope():
        model = build()
record = Record()
model.fit(data().repeat(), epochs=STEPS, steps_per_epoch=1, callbacks=[record], verbose=0)
replicas = 1 if strategy is None else strategy.num_replicas_in_sync
with open(OUT, "w") as f:
    json.dump({"replicas": replicas, "steps": record.rows}, f)
