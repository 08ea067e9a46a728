"""paste_masks and crop_masks against the numpy references of tests/reference/masks.py."""

import numpy as np
import pytest
import tensorflow as tf

import kerasdet.ops
from kerasdet.ops.masks import crop_masks, paste_masks
from tests.reference import masks as ref

PASTE_ATOL = 1e-5
CROP_ATOL = 1e-4  # as tests/ops/test_roi_align.py


def _paste_boxes(rng, batch, count, height, width):
    """Boxes across, inside, beyond and larger than a `height x width` image, tiny ones, degenerate ones."""
    start = rng.uniform(-0.3, 1.1, size=(batch, count, 2)) * [width, height]
    size = rng.uniform(0.05, 0.8, size=(batch, count, 2)) * [width, height]
    boxes = np.concatenate([start, start + size], axis=-1)
    boxes[:, 0] = -1.0  # padding row
    boxes[:, 1] = [-5.0, -4.0, width + 6.0, height + 3.0]  # larger than the image
    boxes[:, 2, 2:] = boxes[:, 2, :2] + [0.3, 0.6]  # smaller than a pixel
    boxes[:, 3, 2] = boxes[:, 3, 0]  # zero width
    boxes[:, 4, 3] = boxes[:, 4, 1] - 2.0  # negative height
    boxes[:, 5] = [2.0, 3.0, 7.0, 5.0]  # integer corners: samples on cell centres, -0.5, -1 and the size
    boxes[:, 6] = [width + 10.0, height + 8.0, width + 17.0, height + 15.0]  # beyond the image (by > half a cell)
    return boxes.astype(np.float32)


@pytest.mark.parametrize("mask_size", [(7, 5), (4, 9), (28, 28), (1, 1)])
def test_paste_masks_matches_reference(mask_size):
    rng = np.random.default_rng(sum(mask_size))
    height, width = 19, 23
    masks = rng.uniform(size=(2, 9, *mask_size)).astype(np.float32)
    boxes = _paste_boxes(rng, 2, 9, height, width)
    got = paste_masks(masks, boxes, (height, width))
    want = ref.paste_masks(masks, boxes, (height, width))
    assert got.dtype == tf.float32 and got.shape == (2, 9, height, width)
    np.testing.assert_allclose(got.numpy(), want, atol=PASTE_ATOL, rtol=0)
    got = got.numpy()
    assert np.all(got[:, [0, 3, 4, 6]] == 0.0)  # padding, zero width, negative height, beyond the image
    assert np.all(got[:, 1] > 0.0)  # covers the whole image


def test_paste_masks_small_boxes_far_from_the_origin_of_a_large_image():
    # the sample coordinates are not a running sum from the image origin: no loss of precision far away
    rng = np.random.default_rng(1)
    height, width = 300, 420
    masks = rng.uniform(size=(1, 3, 6, 6)).astype(np.float32)
    boxes = np.array([[[401.3, 283.7, 409.9, 291.1], [410.25, 290.5, 418.75, 297.0], [0.1, 0.2, 3.7, 2.9]]],
                     np.float32)
    got = paste_masks(masks, boxes, (height, width)).numpy()
    # compare on the region around each box only (the rest is zero in both)
    for n, (x1, y1, x2, y2) in enumerate(boxes[0]):
        r0, c0 = max(int(y1) - 2, 0), max(int(x1) - 2, 0)
        r1, c1 = min(int(y2) + 3, height), min(int(x2) + 3, width)
        crop_box = boxes[0, n] - [c0, r0, c0, r0]
        want = ref.paste_one(masks[0, n], crop_box, r1 - r0, c1 - c0)
        np.testing.assert_allclose(got[0, n, r0:r1, c0:c1], want, atol=PASTE_ATOL, rtol=0)
        rest = got[0, n].copy()
        rest[r0:r1, c0:c1] = 0.0
        assert np.all(rest == 0.0)


def test_paste_masks_known_values():
    # a mask exactly the size of its box (integer corners) lands on the pixels unchanged
    rng = np.random.default_rng(2)
    mask = rng.uniform(size=(4, 3)).astype(np.float32)
    got = paste_masks(mask[None, None], [[[5.0, 2.0, 8.0, 6.0]]], (9, 10)).numpy()[0, 0]
    want = np.zeros((9, 10), np.float32)
    want[2:6, 5:8] = mask
    np.testing.assert_allclose(got, want, atol=1e-6)
    # one cell stretched over 2x2 pixels: u = -0.75, -0.25, 0.25, 0.75 -> weights 0.25, 0.75, 0.75, 0.25
    got = paste_masks(np.ones((1, 1, 1, 1)), [[[2.0, 1.0, 4.0, 3.0]]], (4, 6)).numpy()[0, 0]
    profile_x = np.array([0.0, 0.25, 0.75, 0.75, 0.25, 0.0])
    profile_y = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(got, profile_y[:, None] * profile_x[None, :], atol=1e-6)
    # half a cell beyond the mask keeps half of the edge value; a whole cell beyond gives 0
    got = paste_masks(np.ones((1, 1, 2, 2)), [[[1.0, 0.0, 3.0, 2.0]]], (2, 5)).numpy()[0, 0]
    np.testing.assert_allclose(got, [[0.0, 1.0, 1.0, 0.0, 0.0]] * 2, atol=1e-6)
    got = paste_masks(np.ones((1, 1, 2, 2)), [[[0.5, 0.0, 2.5, 2.0]]], (2, 4)).numpy()[0, 0]
    np.testing.assert_allclose(got, [[0.5, 1.0, 0.5, 0.0]] * 2, atol=1e-6)


def test_paste_masks_docstring_example():
    out = paste_masks(tf.ones([1, 1, 2, 2]), [[[1.0, 1.0, 3.0, 3.0]]], (4, 4))[0, 0].numpy()
    np.testing.assert_array_equal(out, [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])


def test_paste_masks_non_finite_boxes_give_zeros():
    masks = np.ones((1, 5, 4, 4), np.float32)
    boxes = np.array(
        [[[np.nan, 0.0, 3.0, 3.0], [0.0, 0.0, np.inf, 3.0], [-np.inf, 0.0, 3.0, 3.0], [0.0, 0.0, 3.0, 3.0],
          [1e30, 1e30, 2e30, 2e30]]],
        np.float32,
    )
    out = paste_masks(masks, boxes, (6, 6)).numpy()
    assert np.all(np.isfinite(out))
    assert np.all(out[0, :3] == 0.0) and np.all(out[0, 4] == 0.0)
    np.testing.assert_allclose(out[0, 3], ref.paste_masks(masks, boxes, (6, 6))[0, 3], atol=PASTE_ATOL)


def test_paste_masks_dtypes():
    rng = np.random.default_rng(3)
    boxes = _paste_boxes(rng, 1, 7, 8, 9)
    binary = rng.uniform(size=(1, 7, 3, 5)) > 0.5
    want = ref.paste_masks(binary.astype(np.float32), boxes, (8, 9))
    for masks in (binary, binary.astype(np.uint8), binary.astype(np.float64), tf.constant(binary, tf.float16)):
        out = paste_masks(masks, boxes, tf.constant([8, 9], tf.int64))
        assert out.dtype == tf.float32
        np.testing.assert_allclose(out.numpy(), want, atol=PASTE_ATOL)


def test_paste_masks_graph_with_unknown_shapes():
    rng = np.random.default_rng(4)
    masks = rng.uniform(size=(2, 9, 5, 6)).astype(np.float32)
    boxes = _paste_boxes(rng, 2, 9, 11, 13)
    want = ref.paste_masks(masks, boxes, (11, 13))
    spec = (tf.TensorSpec([None] * 4), tf.TensorSpec([None, None, 4]))
    dynamic = tf.function(paste_masks, input_signature=spec + (tf.TensorSpec([2], tf.int32),))
    out = dynamic(masks, boxes, tf.constant([11, 13]))
    assert out.shape == (2, 9, 11, 13)
    np.testing.assert_allclose(out.numpy(), want, atol=PASTE_ATOL)
    # the image size read from another tensor's shape
    from_image = tf.function(
        lambda m, b, image: paste_masks(m, b, tf.shape(image)[1:3]),
        input_signature=spec + (tf.TensorSpec([None, None, None, 3]),),
    )
    np.testing.assert_allclose(from_image(masks, boxes, tf.zeros([2, 11, 13, 3])).numpy(), want, atol=PASTE_ATOL)
    # a Python image size gives a static output size even with unknown inputs
    static = tf.function(lambda m, b: paste_masks(m, b, (11, 13)), input_signature=spec)
    assert static.get_concrete_function().structured_outputs.shape.as_list() == [None, None, 11, 13]
    np.testing.assert_allclose(static(masks, boxes).numpy(), want, atol=PASTE_ATOL)
    # empty batch and no boxes
    for b, n in ((0, 9), (2, 0)):
        assert dynamic(masks[:b, :n], boxes[:b, :n], tf.constant([11, 13])).shape == (b, n, 11, 13)
        assert static(masks[:b, :n], boxes[:b, :n]).shape == (b, n, 11, 13)


def test_paste_masks_empty_inputs_eager():
    assert paste_masks(np.zeros((0, 3, 28, 28)), np.zeros((0, 3, 4)), (5, 7)).shape == (0, 3, 5, 7)
    assert paste_masks(np.zeros((2, 0, 28, 28)), np.zeros((2, 0, 4)), (5, 7)).shape == (2, 0, 5, 7)
    assert paste_masks(np.ones((2, 1, 28, 28)), np.ones((2, 1, 4)), (0, 7)).shape == (2, 1, 0, 7)


def test_paste_masks_compiles_with_xla():
    rng = np.random.default_rng(5)
    masks = rng.uniform(size=(1, 9, 4, 4)).astype(np.float32)
    boxes = _paste_boxes(rng, 1, 9, 10, 12)
    fn = tf.function(lambda m, b: paste_masks(m, b, (10, 12)), jit_compile=True)
    np.testing.assert_allclose(fn(masks, boxes).numpy(), ref.paste_masks(masks, boxes, (10, 12)), atol=PASTE_ATOL)


def _random_rois(rng, batch, count, height, width):
    """Rois inside, across and beyond the mask borders, a padding row, a zero-area and an inverted one."""
    start = rng.uniform(-0.4, 1.1, size=(batch, count, 2)) * [width, height]
    size = rng.uniform(0.5, 0.9 * max(height, width), size=(batch, count, 2))
    rois = np.concatenate([start, start + size], axis=-1)
    rois[:, 0] = -1.0  # padding row
    rois[:, 1, 2:] = rois[:, 1, :2]  # zero area
    rois[:, 2, 2], rois[:, 2, 0] = rois[:, 2, 0].copy(), rois[:, 2, 2].copy()  # inverted in x
    rois[:, 3] = [-3.0, -2.0, width + 4.0, height + 1.5]  # around the whole mask
    return rois.astype(np.float32)


def _random_indices(rng, batch, count, masks_per_image):
    indices = rng.integers(-1, masks_per_image, size=(batch, count))
    indices[:, 0] = 0  # the padding roi points at a real mask: it must still give 0
    indices[:, 3] = masks_per_image - 1
    indices[:, 4] = -1
    return indices.astype(np.int32)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("binary", [True, False])
def test_crop_masks_matches_reference(aligned, sampling_ratio, binary):
    rng = np.random.default_rng(10 + 2 * sampling_ratio + aligned + 5 * binary)
    height, width = 13, 11
    values = rng.uniform(size=(2, 3, height, width))
    masks = (values > 0.6).astype(np.uint8) if binary else values.astype(np.float32)
    rois = _random_rois(rng, 2, 8, height, width)
    indices = _random_indices(rng, 2, 8, 3)
    got = crop_masks(masks, rois, indices, (5, 4), sampling_ratio, aligned)
    want = ref.crop_masks(masks, rois, indices, (5, 4), sampling_ratio, aligned)
    assert got.dtype == tf.float32 and got.shape == (2, 8, 5, 4)
    np.testing.assert_allclose(got.numpy(), want, atol=CROP_ATOL, rtol=0)
    got = got.numpy()
    assert np.all(got[:, 0] == 0.0) and np.all(got[:, 4] == 0.0)  # padding roi, index -1
    assert np.all(got[:, 3].sum(axis=(1, 2)) > 0.0)  # around the whole mask


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_crop_masks_one_mask_per_image_and_28x28(sampling_ratio):
    rng = np.random.default_rng(20 + sampling_ratio)
    masks = (rng.uniform(size=(3, 1, 40, 30)) > 0.5).astype(bool)
    rois = _random_rois(rng, 3, 5, 40, 30)
    indices = np.zeros((3, 5), np.int32)
    indices[1, 2:] = -1
    got = crop_masks(masks, rois, indices, 28, sampling_ratio)
    want = ref.crop_masks(masks, rois, indices, 28, sampling_ratio)
    np.testing.assert_allclose(got.numpy(), want, atol=CROP_ATOL, rtol=0)


def test_crop_masks_reads_only_the_chosen_mask():
    # mask k of image b is filled with 10 * b + k: each output bin holds the number of its mask
    masks = np.zeros((2, 4, 6, 6), np.float32) + (10 * np.arange(2)[:, None] + np.arange(4)[None, :])[..., None, None]
    rois = np.tile(np.array([[1.0, 1.0, 4.0, 5.0]], np.float32), (2, 5, 1))
    indices = np.array([[3, 0, 2, -1, 1], [1, 1, 3, 0, -1]], np.int32)
    got = crop_masks(masks, rois, indices, 3, 2).numpy()
    want = np.where(indices >= 0, 10 * np.arange(2)[:, None] + indices, 0)
    np.testing.assert_allclose(got, np.broadcast_to(want[:, :, None, None], got.shape), atol=1e-5)


def test_crop_masks_docstring_example():
    masks = tf.ones([1, 2, 8, 8], tf.uint8)
    out = crop_masks(masks, [[[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 6.0, 6.0]]], [[1, -1]], 2).numpy()
    np.testing.assert_array_equal(out[0, :, 0], [[1.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_crop_masks_graph_with_unknown_shapes(sampling_ratio):
    rng = np.random.default_rng(30)
    masks = (rng.uniform(size=(2, 3, 9, 12)) > 0.5).astype(np.uint8)
    rois = _random_rois(rng, 2, 6, 9, 12)
    indices = _random_indices(rng, 2, 6, 3)
    spec = (
        tf.TensorSpec([None] * 4, tf.uint8),
        tf.TensorSpec([None, None, 4]),
        tf.TensorSpec([None, None], tf.int32),
    )
    fn = tf.function(lambda m, r, i: crop_masks(m, r, i, 4, sampling_ratio), input_signature=spec)
    out = fn(masks, rois, indices)
    assert out.shape == (2, 6, 4, 4)
    np.testing.assert_allclose(out.numpy(), ref.crop_masks(masks, rois, indices, 4, sampling_ratio), atol=CROP_ATOL)
    assert fn.get_concrete_function().structured_outputs.shape.as_list() == [None, None, 4, 4]
    # empty batch, no rois, no masks (every index -1)
    assert fn(masks[:0], rois[:0], indices[:0]).shape == (0, 6, 4, 4)
    assert fn(masks, rois[:, :0], indices[:, :0]).shape == (2, 0, 4, 4)
    no_masks = fn(masks[:, :0], rois, np.full_like(indices, -1))
    assert no_masks.shape == (2, 6, 4, 4) and np.all(no_masks.numpy() == 0.0)


def test_crop_masks_empty_inputs_eager():
    masks = np.ones((2, 3, 9, 12), np.uint8)
    for s in (0, 2):
        assert crop_masks(masks, np.zeros((2, 0, 4)), np.zeros((2, 0), np.int32), 3, s).shape == (2, 0, 3, 3)
        assert crop_masks(masks[:0], np.zeros((0, 5, 4)), np.zeros((0, 5), np.int32), 3, s).shape == (0, 5, 3, 3)
        out = crop_masks(masks[:, :0], np.ones((2, 5, 4)), np.full((2, 5), -1), 3, s)
        assert out.shape == (2, 5, 3, 3) and np.all(out.numpy() == 0.0)


def test_crop_masks_index_beyond_the_masks_is_an_error():
    masks = np.ones((2, 2, 5, 5), np.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="indices"):
        crop_masks(masks, np.ones((2, 3, 4)), [[0, 1, 2], [0, 0, 0]], 3)


def test_ops_package_exports():
    assert kerasdet.ops.paste_masks is paste_masks and kerasdet.ops.crop_masks is crop_masks
    assert {"paste_masks", "crop_masks"} <= set(kerasdet.ops.__all__)


_M = np.ones((1, 2, 4, 4), np.float32)
_B = np.ones((1, 2, 4), np.float32)
_I = np.zeros((1, 2), np.int32)


@pytest.mark.parametrize(
    "call,exc,words",
    [
        (lambda: paste_masks(np.ones((2, 4, 4)), _B, (5, 5)), ValueError, "masks"),
        (lambda: paste_masks(_M, np.ones((1, 2, 5)), (5, 5)), ValueError, "boxes"),
        (lambda: paste_masks(_M, np.ones((2, 4)), (5, 5)), ValueError, "boxes"),
        (lambda: paste_masks(_M, np.ones((2, 2, 4)), (5, 5)), ValueError, "boxes.*batch"),
        (lambda: paste_masks(_M, np.ones((1, 3, 4)), (5, 5)), ValueError, "boxes.*number of boxes"),
        (lambda: paste_masks(_M, _B, (-1, 5)), ValueError, "image_size"),
        (lambda: paste_masks(_M, _B, tf.constant([5, -2])), ValueError, "image_size"),
        (lambda: paste_masks(_M, _B, (5, 5, 5)), ValueError, "image_size"),
        (lambda: paste_masks(_M, _B, (5.0, 5.0)), TypeError, "image_size"),
        (lambda: paste_masks(_M, _B, "5x5"), TypeError, "image_size"),
        (lambda: paste_masks(np.array([["a"]]), _B, (5, 5)), TypeError, "masks"),
        (lambda: crop_masks(np.ones((2, 4, 4)), _B, _I, 3), ValueError, "masks"),
        (lambda: crop_masks(_M, np.ones((1, 2, 3)), _I, 3), ValueError, "rois"),
        (lambda: crop_masks(_M, np.ones((2, 2, 4)), np.zeros((2, 2), np.int32), 3), ValueError, "rois.*batch"),
        (lambda: crop_masks(_M, _B, np.zeros((1, 3), np.int32), 3), ValueError, "indices.*number of rois"),
        (lambda: crop_masks(_M, _B, np.zeros((1, 2, 1), np.int32), 3), ValueError, "indices"),
        (lambda: crop_masks(_M, _B, np.zeros((1, 2)), 3), TypeError, "indices"),
        (lambda: crop_masks(_M, _B, _I, 0), ValueError, "output_size"),
        (lambda: crop_masks(_M, _B, _I, 3, sampling_ratio=1.5), TypeError, "sampling_ratio"),
        (lambda: crop_masks(_M, _B, _I, 3, aligned=1), TypeError, "aligned"),
    ],
)
def test_input_errors_name_the_argument(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
