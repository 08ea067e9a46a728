"""SpaceToDepth: darknet's reorg order against a loop over its definition, TensorFlow's order, shapes and errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers.space_to_depth import SpaceToDepth


def reorg_reference(x, s):
    """Darknet's reorg from its definition: the [C, H, W] memory of each image read as [C/s^2, sH, sW]; output
    channel k = (s dy + dx) C/s^2 + c2 at (j, i) of a [C, H, W] block takes element (c2, s j + dy, s i + dx)
    of that reading; the block is then read as [C s^2, H/s, W/s]."""
    b, h, w, c = x.shape
    oc = c // (s * s)
    out = np.empty((b, c * h * w), x.dtype)
    for n in range(b):
        read = x[n].transpose(2, 0, 1).reshape(oc, s * h, s * w)
        block = np.empty((c, h, w), x.dtype)
        for k in range(c):
            c2, offset = k % oc, k // oc
            dy, dx = offset // s, offset % s
            for j in range(h):
                for i in range(w):
                    block[k, j, i] = read[c2, s * j + dy, s * i + dx]
        out[n] = block.reshape(-1)
    return out.reshape(b, c * s * s, h // s, w // s).transpose(0, 2, 3, 1)


def space_to_depth_reference(x, s):
    b, h, w, c = x.shape
    out = np.empty((b, h // s, w // s, c * s * s), x.dtype)
    for j in range(h // s):
        for i in range(w // s):
            for dy in range(s):
                for dx in range(s):
                    out[:, j, i, (dy * s + dx) * c:(dy * s + dx + 1) * c] = x[:, s * j + dy, s * i + dx]
    return out


@pytest.mark.parametrize("shape, s", [((2, 6, 4, 8), 2), ((1, 4, 8, 4), 2), ((1, 6, 6, 18), 3), ((1, 2, 2, 4), 2)])
def test_darknet_order_matches_its_definition(shape, s):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    got = SpaceToDepth(s)(tf.constant(x)).numpy()
    np.testing.assert_array_equal(got, reorg_reference(x, s))
    # the same values as TensorFlow's order, placed differently
    other = SpaceToDepth(s, order="tensorflow")(tf.constant(x)).numpy()
    np.testing.assert_array_equal(other, space_to_depth_reference(x, s))
    np.testing.assert_array_equal(np.sort(got.ravel()), np.sort(other.ravel()))
    assert not np.array_equal(got, other) or shape[1] * shape[2] == s * s


def test_shape_in_a_functional_model_and_config():
    inputs = keras.Input((26, 26, 64))
    layer = SpaceToDepth(2, name="reorg")
    assert tuple(layer(inputs).shape) == (None, 13, 13, 256)
    clone = SpaceToDepth.from_config(layer.get_config())
    assert clone.block_size == 2 and clone.order == "darknet"


@pytest.mark.parametrize("kwargs, message", [(dict(block_size=0), "block_size"), (dict(block_size=True), "block_size"),
                                             (dict(order="caffe"), "order")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpaceToDepth(**kwargs)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="divisible by 4"):
        SpaceToDepth(2)(tf.zeros([1, 4, 4, 6]))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="multiples of block_size"):
        SpaceToDepth(2)(tf.zeros([1, 5, 4, 8]))


@pytest.mark.parametrize("shape", [(1, 16, 8, 8), (1, 8, 16, 8), (1, 12, 12, 8)])
def test_both_orders_keep_content_in_place_on_a_larger_map(shape):
    """Content at the top-left of a larger map gives the same outputs over it in either order: darknet's reorg is a
    fixed permutation of channels and sub-pixels, whatever the map's size (not a size-dependent shuffle)."""
    rng = np.random.default_rng(5)
    content = rng.normal(size=(1, 8, 8, 8)).astype(np.float32)
    larger = rng.normal(size=shape).astype(np.float32)
    larger[:, :8, :8] = content
    for order in ("darknet", "tensorflow"):
        layer = SpaceToDepth(2, order=order)
        np.testing.assert_array_equal(layer(content).numpy(), layer(larger).numpy()[:, :4, :4])
