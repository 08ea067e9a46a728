"""AnchorGenerator against the numpy reference (tests/reference/anchors.py) and the layer harness."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers.anchor_generator import (
    SSD512_ASPECT_RATIOS,
    YOLO_V2_VOC_ANCHORS,
    YOLO_V3_COCO_ANCHORS,
    AnchorGenerator,
)
from tests.layers.harness import check_layer
from tests.reference import anchors as ref


def _images(h, w, batch=1):
    return np.zeros((batch, h, w, 3), np.float32)


def _map(h, w, batch=1, c=2):
    return np.zeros((batch, h, w, c), np.float32)


def test_faster_rcnn_default_matches_reference():
    gen = AnchorGenerator()
    out = gen(_images(600, 800, 2), _map(38, 50, 2)).numpy()
    shapes = ref.size_ratio_shapes((128, 256, 512), (0.5, 1.0, 2.0))
    expected = ref.grid_anchors((600, 800), (38, 50), 16, 0.5, shapes)
    assert out.dtype == np.float32 and out.shape == (38 * 50 * 9, 4)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)


def test_order_is_sizes_major_with_ratio_height_over_width():
    out = AnchorGenerator()(_images(32, 32), _map(2, 2)).numpy()
    w = out[:9, 2] - out[:9, 0]
    h = out[:9, 3] - out[:9, 1]
    np.testing.assert_allclose(np.sqrt(w * h), [128] * 3 + [256] * 3 + [512] * 3, rtol=1e-5)
    np.testing.assert_allclose(h / w, [0.5, 1, 2] * 3, rtol=1e-5)
    centres = (out[:, :2] + out[:, 2:]) / 2
    # cell (0, 0), then (0, 1): x moves first (row-major)
    np.testing.assert_allclose(centres[0], [8, 8], atol=1e-4)
    np.testing.assert_allclose(centres[9], [24, 8], atol=1e-4)
    np.testing.assert_allclose(centres[18], [8, 24], atol=1e-4)


@pytest.mark.parametrize("offset", [0.0, 0.5, 1.0])
def test_multi_level_fpn_and_per_level(offset):
    gen = AnchorGenerator.fpn(strides=(4, 8, 16), sizes=(32, 64, 128), offset=offset)
    maps = [_map(16, 24), _map(8, 12), _map(4, 6)]
    out = gen(_images(64, 96), maps).numpy()
    levels = AnchorGenerator.fpn(strides=(4, 8, 16), sizes=(32, 64, 128), offset=offset, per_level=True)(
        _images(64, 96), *maps
    )
    expected = []
    for (h, w), stride, size in zip([(16, 24), (8, 12), (4, 6)], (4, 8, 16), (32, 64, 128)):
        expected.append(ref.grid_anchors((64, 96), (h, w), stride, offset, ref.size_ratio_shapes([size], (0.5, 1, 2))))
    np.testing.assert_allclose(out, np.concatenate(expected), rtol=1e-6, atol=1e-4)
    assert len(levels) == 3
    for got, exp in zip(levels, expected):
        np.testing.assert_allclose(got.numpy(), exp, rtol=1e-6, atol=1e-4)
    assert gen.num_anchors_per_location() == [3, 3, 3]


def test_dict_of_feature_maps_keeps_insertion_order():
    gen = AnchorGenerator(sizes=[[16], [32]], aspect_ratios=(1.0,), strides=(8, 16))
    maps = {"p3": _map(4, 4), "p4": _map(2, 2)}
    out = gen(_images(32, 32), maps).numpy()
    assert out.shape == (16 + 4, 4)
    np.testing.assert_allclose(out[0], [-4, -4, 12, 12])
    np.testing.assert_allclose(out[16], [-8, -8, 24, 24])


def test_ssd300_default_boxes():
    gen = AnchorGenerator.ssd()
    sizes = (38, 19, 10, 5, 3, 1)
    out = gen(_images(300, 300), [_map(n, n) for n in sizes]).numpy()
    assert out.shape == (8732, 4)
    assert gen.num_anchors_per_location() == [4, 6, 6, 6, 4, 4]
    rel = ref.ssd_shapes([[2], [2, 3], [2, 3], [2, 3], [2], [2]])
    expected = [
        ref.grid_anchors((300, 300), (n, n), None, 0.5, [(w * 300, h * 300) for w, h in r]) for n, r in zip(sizes, rel)
    ]
    np.testing.assert_allclose(out, np.concatenate(expected), rtol=1e-5, atol=1e-3)
    # scales go linearly from 0.2 to 0.9; the extra box is sqrt(s_k s_k+1)
    first = out[0]
    np.testing.assert_allclose(first[2] - first[0], 0.2 * 300, rtol=1e-5)
    np.testing.assert_allclose(out[1, 2] - out[1, 0], math.sqrt(0.2 * 0.34) * 300, rtol=1e-5)
    last = out[-4]
    np.testing.assert_allclose(last[2] - last[0], 0.9 * 300, rtol=1e-5)


def test_ssd_non_square_image_and_first_scale():
    gen = AnchorGenerator.ssd(aspect_ratios=SSD512_ASPECT_RATIOS, first_scale=0.1, min_scale=0.2, max_scale=0.9)
    sizes = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2), (1, 1), (1, 1)]
    levels = AnchorGenerator.ssd(
        aspect_ratios=SSD512_ASPECT_RATIOS, first_scale=0.1, per_level=True
    )(_images(128, 192), [_map(h, w) for h, w in sizes])
    assert gen.num_anchors_per_location() == [4, 6, 6, 6, 6, 4, 4]
    scales = [0.1] + [0.2 + 0.7 * k / 5 for k in range(6)] + [1.0]
    for k, (lvl, (h, w)) in enumerate(zip(levels, sizes)):
        a = lvl.numpy()
        assert a.shape == (h * w * gen.num_anchors_per_location()[k], 4)
        np.testing.assert_allclose(a[0, 2] - a[0, 0], scales[k] * 192, rtol=1e-5)
        np.testing.assert_allclose(a[0, 3] - a[0, 1], scales[k] * 128, rtol=1e-5)
        np.testing.assert_allclose(a[1, 2] - a[1, 0], math.sqrt(scales[k] * scales[k + 1]) * 192, rtol=1e-5)
        # centres at (x + 0.5) / W of the image
        np.testing.assert_allclose((a[0, 0] + a[0, 2]) / 2, 0.5 / w * 192, rtol=1e-5)


def test_yolo_v2_anchors_in_cells():
    gen = AnchorGenerator.yolo_v2()
    out = gen(_images(416, 416), _map(13, 13)).numpy()
    assert out.shape == (13 * 13 * 5, 4)
    expected = ref.grid_anchors((416, 416), (13, 13), 32, 0.5, [(w * 32, h * 32) for w, h in YOLO_V2_VOC_ANCHORS])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)


def test_yolo_v3_three_anchors_per_scale():
    gen = AnchorGenerator.yolo_v3()
    maps = [_map(52, 52), _map(26, 26), _map(13, 13)]
    levels = AnchorGenerator.yolo_v3(per_level=True)(_images(416, 416), maps)
    assert gen(_images(416, 416), maps).shape == (3 * (52 * 52 + 26 * 26 + 13 * 13), 4)
    for lvl, stride, mask in zip(levels, (8, 16, 32), ((0, 1, 2), (3, 4, 5), (6, 7, 8))):
        n = 416 // stride
        expected = ref.grid_anchors((416, 416), (n, n), stride, 0.5, [YOLO_V3_COCO_ANCHORS[i] for i in mask])
        np.testing.assert_allclose(lvl.numpy(), expected, rtol=1e-5, atol=1e-3)


def test_retinanet_nine_anchors_per_level():
    gen = AnchorGenerator.retinanet(base_sizes=(32, 64), strides=(8, 16))
    levels = AnchorGenerator.retinanet(base_sizes=(32, 64), strides=(8, 16), per_level=True)(
        _images(64, 64), _map(8, 8), _map(4, 4)
    )
    assert gen.num_anchors_per_location() == [9, 9]
    sizes = [32 * 2 ** (k / 3) for k in range(3)]
    expected = ref.grid_anchors((64, 64), (8, 8), 8, 0.5, ref.size_ratio_shapes(sizes, (0.5, 1, 2)))
    np.testing.assert_allclose(levels[0].numpy(), expected, rtol=1e-5, atol=1e-3)


def test_clip_and_inferred_strides():
    gen = AnchorGenerator(sizes=(64,), aspect_ratios=(1.0,), strides=None, clip=True)
    out = gen(_images(40, 60), _map(4, 6)).numpy()
    raw = ref.grid_anchors((40, 60), (4, 6), None, 0.5, [(64, 64)])
    np.testing.assert_allclose(out, np.clip(raw, 0, [60, 40, 60, 40]), atol=1e-4)


def test_any_image_size_in_one_graph():
    gen = AnchorGenerator(strides=(8,))
    fn = tf.function(
        gen, input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, None, None, 4])]
    )
    for h, w in ((32, 48), (64, 40)):
        got = fn(tf.zeros([1, h, w, 3]), tf.zeros([1, h // 8, w // 8, 4])).numpy()
        expected = ref.grid_anchors((h, w), (h // 8, w // 8), 8, 0.5, ref.size_ratio_shapes((128, 256, 512), (0.5, 1, 2)))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4)


def test_generate_from_shapes():
    gen = AnchorGenerator.fpn(strides=(8, 16), sizes=(32, 64))
    levels = gen.generate((64, 64), [(8, 8), (4, 4)])
    assert [tuple(x.shape) for x in levels] == [(192, 4), (48, 4)]


def test_harness_single_level():
    check_layer(
        AnchorGenerator,
        {"sizes": (32, 64), "aspect_ratios": (0.5, 1.0, 2.0), "strides": 8},
        (_images(48, 64, 2), _map(6, 8, 2)),
        empty_args=[(_images(48, 64, 0), _map(6, 8, 0)), (_images(0, 0, 1), _map(0, 0, 1))],
        empty_check=lambda out, args: np.testing.assert_equal(
            out.shape, (args[1].shape[1] * args[1].shape[2] * 6, 4)
        ),
    )


def test_harness_multi_level_ssd_units():
    gen_kwargs = AnchorGenerator.ssd(aspect_ratios=((2.0,), (2.0, 3.0))).get_config()
    kwargs = {k: gen_kwargs[k] for k in ("anchor_shapes", "units", "strides", "offset", "clip", "per_level")}
    check_layer(
        AnchorGenerator,
        kwargs,
        (_images(60, 60), _map(6, 6), _map(3, 3)),
        empty_args=[(_images(60, 60, 0), _map(6, 6, 0), _map(3, 3, 0))],
    )


def test_harness_per_level_yolo_cells():
    kwargs = {"anchor_shapes": [list(YOLO_V2_VOC_ANCHORS)], "units": "cells", "strides": 32, "per_level": True}
    check_layer(AnchorGenerator, kwargs, (_images(64, 96), _map(2, 3)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": "inches"}, "units"),
        ({"sizes": (32, -1)}, "sizes"),
        ({"aspect_ratios": (0,)}, "aspect_ratios"),
        ({"strides": (8, 0)}, "strides"),
        ({"strides": ((8, 8),)}, "strides"),
        ({"offset": 1.5}, "offset"),
        ({"offset": (0.5, -0.5)}, "offset"),
        ({"offset": ()}, "offset"),
        ({"offset": (0.5, 0.5, 0.5), "strides": (8, 16)}, "number of levels"),
        ({"sizes": [[32], [64]], "strides": (8, 16, 32)}, "number of levels"),
        ({"sizes": [[32], [64]], "aspect_ratios": [[1.0], [1.0], [2.0]], "strides": None}, "number of levels"),
        ({"anchor_shapes": [(10, 13)], "sizes": (32,)}, "not both"),
        ({"anchor_shapes": [(10, 13, 4)]}, "anchor_shapes"),
        ({"anchor_shapes": []}, "anchor_shapes"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AnchorGenerator(**kwargs)


def test_bad_classmethod_arguments():
    with pytest.raises(ValueError, match="masks"):
        AnchorGenerator.yolo_v3(masks=((0, 1, 9),))
    with pytest.raises(ValueError, match="scales"):
        AnchorGenerator.ssd(scales=(0.1, 0.2))
    with pytest.raises(ValueError, match="max_scale"):
        AnchorGenerator.ssd(min_scale=0.5, max_scale=0.2)
    with pytest.raises(ValueError, match="strides"):
        AnchorGenerator.ssd(strides=(8, 16))
    with pytest.raises(ValueError, match="units"):
        AnchorGenerator.ssd(units="cells")
    with pytest.raises(TypeError, match="clip"):
        AnchorGenerator(clip="yes")


def test_bad_call_arguments():
    gen = AnchorGenerator.fpn(strides=(8, 16), sizes=(32, 64))
    with pytest.raises(ValueError, match="2 level"):
        gen(_images(32, 32), _map(4, 4))
    with pytest.raises(ValueError, match=r"feature_maps\[0\].*\[B, H, W, C\]"):
        AnchorGenerator()(_images(32, 32), np.zeros((4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="images"):
        AnchorGenerator()(np.zeros((32, 32), np.float32), _map(2, 2))
    with pytest.raises(ValueError, match="at least one feature map"):
        AnchorGenerator()(_images(32, 32))
    with pytest.raises(ValueError, match="feature_shapes"):
        AnchorGenerator().generate((32, 32), [])


def test_ssd_pixel_sizes_and_per_level_offsets():
    """SSD's boxes in pixels (`units="pixels"`: the released SSD300's sizes 30..315) keep their size at any image
    size, and per-level offsets place each map's cells where its layers see them (SSD300's unpadded conv10_2 and
    conv11_2: offsets 1.125 and 2.125 cells of 64 px)."""
    sizes = (30.0, 60.0, 111.0, 162.0, 213.0, 264.0, 315.0)
    offsets = (0.5, 0.5, 0.25, 0.125, 1.125, 2.125)
    strides = (8, 16, 32, 64, 64, 64)
    cells = (38, 19, 10, 5, 3, 1)
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    gen = AnchorGenerator.ssd(scales=sizes, units="pixels", strides=strides, offset=offsets)
    for image in ((300, 300), (300, 600)):
        out = gen(_images(*image), [_map(n, n) for n in cells]).numpy()
        expected = []
        for k, n in enumerate(cells):
            s, e = sizes[k], math.sqrt(sizes[k] * sizes[k + 1])
            shapes = [(s, s), (e, e)] + [wh for a in ratios[k] for wh in ((s * math.sqrt(a), s / math.sqrt(a)),
                                                                          (s / math.sqrt(a), s * math.sqrt(a)))]
            expected.append(ref.grid_anchors(image, (n, n), strides[k], offsets[k], shapes))
        np.testing.assert_allclose(out, np.concatenate(expected), rtol=1e-6, atol=1e-3)
        assert out.shape == (8732, 4)
    # the one cell of conv11_2 is centred on pixel (2 + 0.125) * 64 = 136, whatever the image's size
    np.testing.assert_allclose((out[-1, :2] + out[-1, 2:]) / 2, (136.0, 136.0))
    assert gen.get_config()["offset"] == list(offsets)
    assert AnchorGenerator.from_config(gen.get_config()).offset == list(offsets)
