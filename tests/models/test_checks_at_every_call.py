"""Input checks hold at every call, not only at the first trace: after Keras has retraced a step with relaxed shapes
(three image sizes), bad inputs still give the first call's ValueError, not an error deep inside TensorFlow."""

import numpy as np
import pytest
import tensorflow as tf

from tests.models.test_detector import make_model, targets


def _images(batch, size, channels=3):
    return np.random.default_rng(0).integers(0, 255, (batch, size, size, channels)).astype(np.float32)


@pytest.fixture(scope="module")
def retraced():
    model = make_model()
    model.compile()
    for size in (32, 40, 48):  # the third size makes Keras retrace with unknown height and width
        model.train_on_batch(_images(2, size), targets(2, size))
        model.predict(_images(2, size), verbose=0)
    return model


def _nan_images():
    x = _images(2, 56)
    x[1, 3, 4, 0] = np.nan
    return x


def _fewer_labels():
    y = targets(2, 56)
    y["labels"] = y["labels"][:, :3]
    return y


def _label(value):
    y = targets(2, 56)
    y["labels"][0, 0] = value
    return y


CASES = [
    ("gray", lambda: (_images(2, 56, 1), targets(2, 56)), r"`x \(images\)` must have shape \[B, H, W, 3\].*to_rgb"),
    ("rgba", lambda: (_images(2, 56, 4), targets(2, 56)), r"`x \(images\)` must have shape \[B, H, W, 3\].*to_rgb"),
    ("no batch axis", lambda: (_images(1, 56)[0], targets(1, 56)), r"add the batch axis"),
    ("NaN pixel", lambda: (_nan_images(), targets(2, 56)), r"`x \(images\)` holds NaN"),
    ("box and label counts", lambda: (_images(2, 56), _fewer_labels()), r"disagree on M"),
    ("x and y batches", lambda: (_images(3, 56), targets(2, 56)), r"`y` hold 2 images but the images batch has 3"),
    ("label too large", lambda: (_images(2, 56), _label(2)), r"`y\['labels'\]` holds the label 2"),
    ("label below -1", lambda: (_images(2, 56), _label(-2)), r"`y\['labels'\]` holds the label -2"),
]


@pytest.mark.parametrize("name,make,match", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("entry", ["train_on_batch", "test_on_batch", "fit", "evaluate"])
def test_training_entry_points_refuse_bad_inputs_after_a_retrace(retraced, name, make, match, entry):
    x, y = make()
    call = {"fit": lambda: retraced.fit(x, y, batch_size=len(x), verbose=0),
            "evaluate": lambda: retraced.evaluate(x, y, batch_size=len(x), verbose=0)}.get(
        entry, lambda: getattr(retraced, entry)(x, y))
    with pytest.raises(ValueError, match=match):
        call()


IMAGE_CASES = [c for c in CASES[:4] if c[0] != "no batch axis"]  # predict takes one image without the batch axis


@pytest.mark.parametrize("name,make,match", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_predict_refuses_bad_images_after_a_retrace(retraced, name, make, match):
    x, _ = make()
    for predict in (lambda: retraced.predict(x, verbose=0), lambda: retraced.predict_on_batch(x)):
        with pytest.raises(ValueError, match=match):
            predict()


def test_checks_inside_a_dataset_surface_as_the_same_value_error(retraced):
    # values inside a tf.data pipeline are only known at run time: the graph's assertion becomes the ValueError
    y = _label(5)
    ds = tf.data.Dataset.from_tensor_slices((_images(2, 56), y)).batch(2)
    with pytest.raises(ValueError, match=r"`y\['labels'\]` must lie in \[-1, 2\).*found at run time"):
        retraced.fit(ds, verbose=0)
    y = targets(2, 56)
    y["labels"] = y["labels"].astype(np.float32)
    y["labels"][1, 0] = 0.7  # truncated to class 0 before this check existed
    ds = tf.data.Dataset.from_tensor_slices((_images(2, 56), y)).batch(2)
    with pytest.raises(ValueError, match=r"`y\['labels'\]` must hold whole class indices.*found at run time"):
        retraced.fit(ds, verbose=0)
    x = _nan_images()
    ds = tf.data.Dataset.from_tensor_slices((x, targets(2, 56))).batch(2)
    with pytest.raises(ValueError, match=r"`(x \(images\)|images)` holds NaN.*found at run time"):
        retraced.fit(ds, verbose=0)
    with pytest.raises(ValueError, match=r"holds NaN"):
        retraced.predict(tf.data.Dataset.from_tensor_slices(x).batch(2), verbose=0)
