"""The model layer fits the detector shapes still to come: each skeleton (tests/models/skeletons.py) builds on
`Detector` and `kerasdet.heads`, trains two steps with finite, changing weights, and predicts its outputs."""

import keras
import numpy as np
import pytest

from kerasdet.data import prepare, synthetic
from tests.models import harness
from tests.models.skeletons import ExternalRoISkeleton

SIZE = 96


def batch_with_masks(num_classes=3, num_images=2):
    ds = synthetic.dataset("train", num_images, image_size=SIZE, with_masks=True, with_keypoints=False)
    x, y = next(iter(prepare(ds, num_images, SIZE)))
    y = {k: v.numpy() for k, v in y.items()}
    y["labels"] = np.where(y["labels"] >= 0, y["labels"] % num_classes, -1).astype(np.int32)
    return x.numpy(), y


BUILDERS = {
    "external_rois_fast_rcnn": lambda: ExternalRoISkeleton(num_classes=3),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_skeleton_trains_two_steps_and_predicts(name):
    keras.utils.set_random_seed(0)
    model = BUILDERS[name]()
    model.build_for_size(SIZE)
    x, y = batch_with_masks()
    y = {k: v for k, v in y.items() if k in ("boxes", "labels")}
    inputs = x if not model.needs_rois else {"images": x, "rois": harness.default_rois(y, len(x))}
    model.compile(learning_rate=1e-3)
    before = [w.numpy().copy() for w in model.trainable_weights]
    logs = [model.train_on_batch(inputs, y, return_dict=True) for _ in range(2)]
    assert all(np.isfinite(log["loss"]) for log in logs), logs
    assert set(type(model).loss_terms if isinstance(type(model).loss_terms, tuple) else model.loss_terms) <= set(logs[-1])
    changed = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    assert changed > 0.5 * len(before), f"only {changed} of {len(before)} variables changed"
    out = model.predict(inputs, verbose=0)
    assert sorted(out) == sorted(model.output_keys)
    assert out["boxes"].shape == (2, model.max_detections, 4)


def test_external_roi_skeleton_refuses_images_alone():
    model = ExternalRoISkeleton(num_classes=3)
    with pytest.raises(ValueError, match="rois"):
        model.predict(np.zeros((1, SIZE, SIZE, 3), np.uint8), verbose=0)
