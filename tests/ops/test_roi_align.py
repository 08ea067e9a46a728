"""RoIAlign, PS-RoIAlign and multi-level RoIAlign against the numpy references of tests/reference/roi_align.py."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.ops._roi_align import assign_fpn_levels, multilevel_roi_align, ps_roi_align, roi_align
from tests.reference import roi_align as ref

ATOL = 1e-4


def _random_rois(rng, batch, count, lo, hi, max_size):
    """Boxes crossing and beyond the borders, some inverted, some zero-area, one padded row per image."""
    start = rng.uniform(lo, hi, size=(batch, count, 2))
    size = rng.uniform(-1.0, max_size, size=(batch, count, 2))
    rois = np.concatenate([start, start + size], axis=-1).astype(np.float32)
    rois[:, 0] = -1.0  # padding row
    rois[:, 1, 2:] = rois[:, 1, :2]  # zero-area box
    rois[:, 2, 3] = rois[:, 2, 1]  # zero height only
    return rois


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2])
@pytest.mark.parametrize("output_size,spatial_scale", [(2, 1.0), ((3, 2), 0.5), (4, 0.25)])
def test_roi_align_matches_reference(aligned, sampling_ratio, output_size, spatial_scale):
    seed = 100 * aligned + 10 * sampling_ratio + int(4 * spatial_scale)  # fixed per case, printed on failure
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2, 9, 12, 3)).astype(np.float32)
    extent = 12 / spatial_scale
    rois = _random_rois(rng, 2, 7, -0.3 * extent, 1.1 * extent, 0.8 * extent)
    got = roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned).numpy()
    want = ref.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(got[:, 0], 0.0)  # padding rows


def test_roi_align_graph_with_unknown_shapes_matches_eager():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2, 7, 8, 4)).astype(np.float32)
    rois = _random_rois(rng, 2, 5, -4, 10, 9)
    spec = (tf.TensorSpec([None, None, None, 4]), tf.TensorSpec([None, None, 4]))
    for s in (0, 2):
        fn = tf.function(lambda f, r, s=s: roi_align(f, r, 3, 1.0, s, True), input_signature=spec)
        out = fn(features, rois)
        assert out.shape.as_list() == [2, 5, 3, 3, 4]
        np.testing.assert_allclose(out.numpy(), ref.roi_align(features, rois, 3, 1.0, s, True), atol=ATOL)


def _border_ties(height, width):
    """Boxes whose evenly spaced samples (aligned=False, scale 1) land exactly on -1 and on the size."""
    out = []
    for ph in (1, 2, 3):
        for s in (1, 2):
            n = ph * s
            for step in (0.5, 1.0, 2.0):
                ext = step * n
                lows = (-1 - 0.5 * step, -1 - 0.5 * step - 0.25)
                for x1 in lows + (width - (n - 0.5) * step,):
                    for y1 in lows + (height - (n - 0.5) * step, 0.0):
                        out.append((ph, s, [x1, y1, x1 + ext, y1 + ext]))
    return out


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("height,width", [(5, 7), (1, 2), (17, 6)])
def test_samples_exactly_on_the_border_follow_the_inclusive_rule(height, width, graph):
    # torchvision keeps a point at y == -1 or y == H (reading the edge) and zeroes anything beyond
    op = tf.function(roi_align) if graph else roi_align
    rng = np.random.default_rng(height)
    features = rng.normal(size=(1, height, width, 2)).astype(np.float32) + 3.0
    cases = _border_ties(height, width)
    by_key = {}
    for ph, s, box in cases:
        by_key.setdefault((ph, s), []).append(box)
    for (ph, s), boxes in by_key.items():
        rois = np.asarray([boxes], np.float32)
        got = np.asarray(op(features, rois, ph, 1.0, s, False))
        want = ref.roi_align(features, rois, ph, 1.0, s, False)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0, err_msg=f"ph={ph} s={s}")


def test_border_clamping_reads_edge_values_and_beyond_reads_zero():
    features = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    # aligned=False, scale 1, one point per bin: the point is the box centre
    rois = np.array(
        [[[-2.0, -2.0, 0.0, 0.0], [-1.0, -1.0, 0.0, 0.0], [3.0, 2.0, 5.0, 4.0], [3.5, 2.5, 5.5, 4.5],
          [0.0, 0.0, 2.0, 2.0]]],
        np.float32,
    )
    got = roi_align(features, rois, 1, 1.0, 1, False).numpy().ravel()
    # centre (-1, -1) -> f[0, 0]; (-0.5, -0.5) -> f[0, 0]; (4, 3) on the far corner -> f[2, 3]; (4.5, 3.5) -> 0;
    # (1, 1) -> f[1, 1]
    np.testing.assert_allclose(got, [0.0, 0.0, 11.0, 0.0, 5.0], atol=1e-6)
    got = roi_align(features + 1.0, rois, 1, 1.0, 1, False).numpy().ravel()
    np.testing.assert_allclose(got, [1.0, 1.0, 12.0, 0.0, 6.0], atol=1e-6)


def test_docstring_example_value():
    x = tf.reshape(tf.range(16.0), [1, 4, 4, 1])
    out = roi_align(x, [[[0.0, 0.0, 2.0, 2.0]]], 1, sampling_ratio=1)
    np.testing.assert_allclose(out.numpy().ravel(), [2.5])


def test_padding_rows_are_zero_even_where_minus_one_scales_into_the_map():
    # with spatial_scale 1/16 a row of -1 would read pixel (0, 0); padding must give exact zeros
    features = np.ones((2, 6, 6, 3), np.float32)
    rois = np.full((2, 3, 4), -1.0, np.float32)
    rois[1, 2] = [0.0, 0.0, 32.0, 32.0]
    for s in (0, 2):
        for aligned in (True, False):
            out = roi_align(features, rois, 2, 1.0 / 16, s, aligned).numpy()
            assert np.all(out[0] == 0) and np.all(out[1, :2] == 0)
            assert np.all(out[1, 2] > 0)


def test_non_finite_rois_give_zeros():
    features = np.ones((1, 4, 4, 2), np.float32)
    rois = np.array([[[np.nan, 0.0, 2.0, 2.0], [0.0, 0.0, np.inf, 2.0], [0.0, 0.0, 2.0, 2.0]]], np.float32)
    for s in (0, 2):
        out = roi_align(features, rois, 2, 1.0, s, True).numpy()
        assert np.all(out[0, :2] == 0) and np.allclose(out[0, 2], 1.0)
        assert np.all(ps_roi_align(np.ones((1, 4, 4, 8)), rois, 2, 1.0, s).numpy()[0, :2] == 0)


def test_zero_area_rois():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(1, 6, 6, 2)).astype(np.float32)
    rois = np.array([[[2.0, 3.0, 2.0, 3.0], [2.5, 1.0, 2.5, 4.0]]], np.float32)
    for aligned in (True, False):
        for s in (0, 1, 2):
            got = roi_align(features, rois, 2, 1.0, s, aligned).numpy()
            want = ref.roi_align(features, rois, 2, 1.0, s, aligned)
            np.testing.assert_allclose(got, want, atol=ATOL)
    # aligned=True with adaptive sampling: a zero-size roi has an empty grid and gives 0
    assert np.all(roi_align(features, rois[:, :1], 2, 1.0, 0, True).numpy() == 0)


def test_empty_inputs():
    features = np.ones((2, 5, 5, 3), np.float32)
    for s in (0, 2):
        assert roi_align(features, np.zeros((2, 0, 4), np.float32), 3, sampling_ratio=s).shape == (2, 0, 3, 3, 3)
        assert roi_align(features[:0], np.zeros((0, 4, 4), np.float32), 3, sampling_ratio=s).shape == (0, 4, 3, 3, 3)
        assert ps_roi_align(np.ones((2, 5, 5, 18), np.float32), np.zeros((2, 0, 4)), 3, sampling_ratio=s).shape == (
            2, 0, 3, 3, 2
        )
    fn = tf.function(lambda f, r: roi_align(f, r, 2, sampling_ratio=0))
    assert fn(features[:0], np.zeros((0, 1, 4), np.float32)).shape == (0, 1, 2, 2, 3)


def test_dtypes_follow_features():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(1, 5, 5, 2))
    rois = np.array([[[0.5, 0.5, 4.0, 3.0]]])
    want = ref.roi_align(features.astype(np.float32), rois, 2)
    for dtype, atol in ((np.float16, 1e-2), (np.float64, 1e-5)):
        out = roi_align(tf.constant(features, dtype), rois, 2)
        assert out.dtype == dtype
        np.testing.assert_allclose(out.numpy().astype(np.float32), want, atol=atol)
    assert roi_align(features.astype(np.int32), rois, 2).dtype == tf.float32


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("output_size", [(2, 2), (3, 1)])
def test_ps_roi_align_matches_reference(aligned, sampling_ratio, output_size):
    rng = np.random.default_rng(7)
    ph, pw = output_size
    features = rng.normal(size=(2, 8, 9, 3 * ph * pw)).astype(np.float32)
    rois = _random_rois(rng, 2, 6, -5, 12, 10)
    got = ps_roi_align(features, rois, output_size, 0.75, sampling_ratio, aligned).numpy()
    want = ref.ps_roi_align(features, rois, output_size, 0.75, sampling_ratio, aligned)
    assert got.shape == (2, 6, ph, pw, 3)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def _reference_jacobian(fn, features):
    """d out / d features of a reference that is linear in features, by probing unit inputs."""
    flat = features.size
    cols = []
    for i in range(flat):
        e = np.zeros(flat, np.float32)
        e[i] = 1.0
        cols.append(fn(e.reshape(features.shape)).ravel())
    return np.stack(cols, axis=0)  # [in, out]


@pytest.mark.parametrize(
    "op,reference,channels",
    [(roi_align, ref.roi_align, 2), (ps_roi_align, ref.ps_roi_align, 4)],
)
@pytest.mark.parametrize("sampling_ratio,aligned", [(2, True), (0, False), (0, True)])
def test_gradients_equal_the_reference_jacobian(op, reference, channels, sampling_ratio, aligned):
    rng = np.random.default_rng(11)
    features = rng.normal(size=(1, 4, 5, channels)).astype(np.float32)
    rois = [[[-1.5, 0.25, 3.5, 3.0], [1.0, -2.0, 6.5, 5.5], [2.0, 2.0, 2.0, 2.6], [-1, -1, -1, -1]]]
    rois = np.array(rois, np.float32)
    want = _reference_jacobian(lambda f: reference(f, rois, 2, 1.0, sampling_ratio, aligned), features)
    x = tf.constant(features)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = op(x, rois, 2, 1.0, sampling_ratio, aligned)
    got = tape.jacobian(y, x, experimental_use_pfor=False).numpy()
    got = got.reshape(y.shape.num_elements(), features.size).T
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the same gradient from a traced function (tf.cond / while_loop gradients in graph mode)
    weights = tf.constant(np.random.default_rng(0).normal(size=y.shape).astype(np.float32))

    @tf.function
    def graph_grad(f):
        with tf.GradientTape() as t:
            t.watch(f)
            total = tf.reduce_sum(op(f, rois, 2, 1.0, sampling_ratio, aligned) * weights)
        return t.gradient(total, f)

    want_vjp = (want @ weights.numpy().ravel()).reshape(features.shape)
    np.testing.assert_allclose(graph_grad(x).numpy(), want_vjp, atol=1e-5)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(12)
    features = rng.normal(size=(1, 4, 5, 1)).astype(np.float64)
    rois = np.array([[[-1.0, 0.5, 3.5, 4.5], [1.0, 1.0, 6.0, 3.0], [0.5, 0.5, 2.5, 3.5]]], np.float32)
    for s in (0, 2):
        theoretical, numerical = tf.test.compute_gradient(
            lambda f, s=s: roi_align(f, rois, 2, 1.0, s, True), [tf.constant(features)], delta=1e-3
        )
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-3)


def test_assign_fpn_levels_matches_reference():
    rng = np.random.default_rng(5)
    sizes = rng.uniform(0, 1200, size=(50, 2))
    rois = np.concatenate([np.zeros_like(sizes), sizes], axis=1).astype(np.float32)
    rois[:3] = [[0, 0, 224, 224], [0, 0, 112, 112], [5, 5, 5, 5]]
    got = assign_fpn_levels(rois, 2, 5).numpy()
    np.testing.assert_array_equal(got, ref.assign_fpn_levels(rois, 2, 5))
    assert list(got[:3]) == [4, 3, 2]


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_multilevel_roi_align_matches_reference(sampling_ratio):
    rng = np.random.default_rng(6)
    strides = (4, 8, 16, 32)
    maps = [rng.normal(size=(2, 256 // s, 192 // s, 3)).astype(np.float32) for s in strides]
    side = np.exp(rng.uniform(np.log(8), np.log(400), size=(2, 12, 1)))
    sizes = side * np.concatenate([np.ones_like(side), rng.uniform(0.5, 2.0, size=side.shape)], axis=-1)
    start = rng.uniform(-20, 200, size=(2, 12, 2))
    rois = np.concatenate([start, start + sizes], axis=-1).astype(np.float32)
    rois[1, 4] = -1.0
    got = multilevel_roi_align(maps, rois, 3, strides, sampling_ratio=sampling_ratio).numpy()
    want = ref.multilevel_roi_align(maps, strides, rois, 3, sampling_ratio=sampling_ratio)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    # the maps may come in any order: the strides say which is which
    order = [2, 0, 3, 1]
    shuffled = [maps[i] for i in order]
    got2 = multilevel_roi_align(shuffled, rois, 3, [strides[i] for i in order], sampling_ratio=sampling_ratio)
    np.testing.assert_allclose(got2.numpy(), want, atol=ATOL, rtol=0)


def test_multilevel_gradient_reaches_each_level():
    maps = [tf.ones([1, 16, 16, 2]), tf.ones([1, 8, 8, 2])]
    rois = tf.constant([[[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 60.0, 60.0]]])
    with tf.GradientTape() as tape:
        tape.watch(maps)
        total = tf.reduce_sum(multilevel_roi_align(maps, rois, 2, (4, 8), canonical_scale=32.0, canonical_level=3))
    g = tape.gradient(total, maps)
    assert float(tf.reduce_sum(g[0])) == pytest.approx(8.0) and float(tf.reduce_sum(g[1])) == pytest.approx(8.0)


_F = np.ones((1, 4, 4, 1), np.float32)
_R = np.ones((1, 1, 4), np.float32)


@pytest.mark.parametrize(
    "call,exc,words",
    [
        (lambda: roi_align(np.ones((1, 4, 4)), _R, 2), ValueError, "features"),
        (lambda: roi_align(_F, np.ones((1, 4)), 2), ValueError, "rois"),
        (lambda: roi_align(_F, np.ones((1, 1, 5)), 2), ValueError, "rois"),
        (lambda: roi_align(np.ones((2, 4, 4, 1)), np.ones((3, 1, 4)), 2), ValueError, "batch"),
        (lambda: roi_align(_F, _R, 0), ValueError, "output_size"),
        (lambda: roi_align(_F, _R, (2, 2, 2)), TypeError, "output_size"),
        (lambda: roi_align(_F, _R, 2.5), TypeError, "output_size"),
        (lambda: roi_align(_F, _R, 2, sampling_ratio=1.5), TypeError, "sampling_ratio"),
        (lambda: roi_align(_F, _R, 2, spatial_scale=0.0), ValueError, "spatial_scale"),
        (lambda: roi_align(_F, _R, 2, aligned="yes"), TypeError, "aligned"),
        (lambda: roi_align(np.array([["a"]]), _R, 2), TypeError, "features"),
        (lambda: roi_align(np.ones((1, 0, 4, 1)), _R, 2), ValueError, "spatial size"),
        (lambda: ps_roi_align(np.ones((1, 4, 4, 10)), _R, 3), ValueError, "multiple of"),
        (lambda: multilevel_roi_align([_F], _R, 2, (4, 8)), ValueError, "strides"),
        (lambda: multilevel_roi_align([_F] * 2, _R, 2, (4, 12)), ValueError, "powers of two"),
        (lambda: multilevel_roi_align([_F] * 2, _R, 2, (4, 16)), ValueError, "consecutive"),
        (lambda: multilevel_roi_align([_F, np.ones((1, 2, 2, 2))], _R, 2, (4, 8)), ValueError, "channels"),
        (lambda: multilevel_roi_align(_F, _R, 2, (4,)), TypeError, "list"),
        (lambda: assign_fpn_levels(np.ones((3, 4)), 5, 2), ValueError, "min_level"),
    ],
)
def test_input_errors_name_the_argument(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_adaptive_sampling_is_capped_at_64_points_per_bin_side():
    # a bin of 150 feature cells would take ceil(150) = 150 points per side; the cap takes 64, as the reference does
    rng = np.random.default_rng(11)
    features = rng.normal(size=(1, 40, 40, 1)).astype(np.float32)
    rois = np.array([[[-1.0, -2.0, 299.0, 298.0], [1.0, 1.0, 4.5, 3.5]]], np.float32)
    got = roi_align(features, rois, 2, 1.0, 0, True).numpy()
    np.testing.assert_allclose(got, ref.roi_align(features, rois, 2, 1.0, 0, True), atol=ATOL, rtol=0)
    assert ref.MAX_ADAPTIVE_GRID == 64
    uncapped = ref.roi_align(features, rois[:, :1], 2, 1.0, 150, True)  # the grid torchvision would take
    assert np.abs(uncapped[0, 0] - got[0, 0]).max() > 1e-3  # the cap changes this roi (so the test can see it)
    np.testing.assert_allclose(got[0, 1], ref.roi_align(features, rois[:, 1:], 2, 1.0, 2, True)[0, 0], atol=ATOL)


@pytest.mark.parametrize("extent", [1e5, 1e30])
def test_adaptive_sampling_of_a_huge_roi_stays_small(extent):
    # uncapped, a 1e5-pixel roi asks crop_and_resize for a 1e5 x 1e5 grid (40 GB); capped, 448 x 448 points whose
    # first lies 1e5 / 7 / 128 = 111 pixels in: beyond the 8 x 8 map, so every bin is 0
    features = np.ones((1, 8, 8, 1), np.float32)
    out = roi_align(features, np.array([[[0.0, 0.0, extent, extent]]], np.float32), 7, 1.0, 0).numpy()
    assert out.shape == (1, 1, 7, 7, 1)
    np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("aligned", [True, False])
def test_samples_within_rounding_of_the_ends_and_far_away_starts_match_reference(aligned):
    """Single samples placed 1e-6 .. 2e-2 cells before and after -1 and the map's size (the inclusive range
    ends), and rois that start up to 1e5 cells away yet reach into the map, where crop_and_resize's own rounding
    is largest: each is decided as the reference decides it, whichever path (crop's own range test or explicit
    masks) the op takes."""
    rng = np.random.default_rng(7)
    height, width = 9, 12
    features = rng.normal(size=(1, height, width, 2)).astype(np.float32) + 3.0
    offset = 0.5 if aligned else 0.0
    rows = []
    for end_y, end_x in ((-1.0, -1.0), (height, width)):
        for d in (-2e-2, -3e-3, -1e-4, -1e-6, 0.0, 1e-6, 1e-4, 3e-3, 2e-2):
            for half in (0.25, 3.0, 4000.0):
                cy, cx = end_y + d + offset, end_x - d + offset  # sample at the roi centre (1 bin, 1 sample)
                rows.append([cx - half, cy - half, cx + half, cy + half])
    rois = np.asarray([rows], np.float32)
    np.testing.assert_allclose(roi_align(features, rois, 1, 1.0, 1, aligned).numpy(),
                               ref.roi_align(features, rois, 1, 1.0, 1, aligned), atol=ATOL, rtol=0)
    start = rng.uniform(-1e5, -1e3, size=(40, 2))
    stop = rng.uniform(-2.0, 14.0, size=(40, 2))
    far = np.concatenate([start, stop], -1)[None].astype(np.float32)
    far[0, 20:] = far[0, 20:, [2, 3, 0, 1]].T * -1 + np.array([12, 9, 12, 9], np.float32)  # mirrored: beyond the size
    np.testing.assert_allclose(roi_align(features, far, 7, 1.0, 2, aligned).numpy(),
                               ref.roi_align(features, far, 7, 1.0, 2, aligned), atol=ATOL, rtol=0)
    few = far[:, ::8]  # adaptive sampling reads up to 448 x 448 points of such a roi: a few are enough
    np.testing.assert_allclose(roi_align(features, few, 7, 1.0, 0, aligned).numpy(),
                               ref.roi_align(features, few, 7, 1.0, 0, aligned), atol=ATOL, rtol=0)
