"""roi_pool, ps_roi_pool and spatial_pyramid_pool against the numpy references of tests/reference/roi_pool.py."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.ops._roi_pool import ps_roi_pool, roi_pool, spatial_pyramid_pool
from tests.reference import roi_pool as ref

ATOL = 1e-4


def random_rois(rng, batch, count, image_h, image_w):
    """Rois of every awkward kind: ordinary, crossing borders, beyond the image, zero-area, tiny, huge,
    inverted, on half-pixel coordinates (rounding ties), plus padded rows."""
    rois = np.zeros((batch, count, 4), np.float32)
    for b in range(batch):
        for r in range(count):
            kind = rng.integers(9)
            cx, cy = rng.uniform(-0.2, 1.2) * image_w, rng.uniform(-0.2, 1.2) * image_h
            if kind == 0:  # ordinary, inside
                x1, y1 = rng.uniform(0, image_w * 0.7), rng.uniform(0, image_h * 0.7)
                box = [x1, y1, x1 + rng.uniform(1, image_w * 0.5), y1 + rng.uniform(1, image_h * 0.5)]
            elif kind == 1:  # crossing a border
                box = [cx - image_w * 0.4, cy - image_h * 0.4, cx + image_w * 0.4, cy + image_h * 0.4]
            elif kind == 2:  # entirely beyond the image
                box = [image_w * 1.5, -image_h, image_w * 2, -image_h * 0.5]
            elif kind == 3:  # zero area
                box = [cx, cy, cx, cy]
            elif kind == 4:  # tiny
                box = [cx, cy, cx + rng.uniform(0, 2), cy + rng.uniform(0, 2)]
            elif kind == 5:  # huge: many times the image
                box = [-image_w * 3, -image_h * 2, image_w * 4, image_h * 5]
            elif kind == 6:  # inverted
                box = [cx + 5, cy + 5, cx - 5, cy - 3]
            elif kind == 7:  # corners on .5 after scaling (rounding ties), set by the caller's scale
                box = [np.floor(cx) + 0.5, np.floor(cy) + 0.5, np.floor(cx) + 7.5, np.floor(cy) + 4.5]
            else:  # padding
                box = [-1, -1, -1, -1]
            rois[b, r] = box
    return rois


def _features(rng, shape):
    return rng.normal(size=shape).astype(np.float32)


def _run_all_modes(fn, features, rois):
    """The op eagerly, in tf.function with static shapes, with unknown H/W/R/B, and under XLA."""
    eager = fn(features, rois).numpy()
    graph = tf.function(fn)(features, rois).numpy()
    spec = [
        tf.TensorSpec([None, None, None, features.shape[-1]], tf.float32),
        tf.TensorSpec([None, None, 4], tf.float32),
    ]
    dynamic = tf.function(fn, input_signature=spec)(features, rois).numpy()
    xla = tf.function(fn, jit_compile=True)(features, rois).numpy()
    return {"eager": eager, "graph": graph, "dynamic": dynamic, "xla": xla}


CASES = [
    # (batch, H, W, C, rois, output_size, spatial_scale)
    (2, 13, 17, 3, 12, 7, 1.0),
    (1, 9, 6, 2, 20, (3, 5), 0.5),
    (3, 16, 16, 4, 10, (2, 2), 1.0 / 16),
    (1, 32, 20, 2, 16, (7, 4), 0.25),
]


@pytest.mark.parametrize("batch,height,width,channels,count,output_size,scale", CASES)
def test_roi_pool_matches_reference(batch, height, width, channels, count, output_size, scale):
    rng = np.random.default_rng(height * 100 + count)
    features = _features(rng, (batch, height, width, channels))
    rois = random_rois(rng, batch, count, height / scale, width / scale)
    expected = ref.roi_pool(features, rois, output_size, scale)
    for mode, got in _run_all_modes(lambda f, r: roi_pool(f, r, output_size, scale), features, rois).items():
        np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0, err_msg=mode)


@pytest.mark.parametrize("batch,height,width,channels,count,output_size,scale", CASES)
def test_ps_roi_pool_matches_reference(batch, height, width, channels, count, output_size, scale):
    rng = np.random.default_rng(height * 100 + count + 1)
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    features = _features(rng, (batch, height, width, channels * ph * pw))
    rois = random_rois(rng, batch, count, height / scale, width / scale)
    expected = ref.ps_roi_pool(features, rois, output_size, scale)
    for mode, got in _run_all_modes(lambda f, r: ps_roi_pool(f, r, output_size, scale), features, rois).items():
        np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0, err_msg=mode)


@pytest.mark.parametrize("levels", [(1, 2, 4), (3,), (6, 1, 2)])
def test_spatial_pyramid_pool_matches_reference(levels):
    rng = np.random.default_rng(len(levels))
    features = _features(rng, (2, 15, 11, 3))
    rois = random_rois(rng, 2, 14, 15 * 8, 11 * 8)
    expected = ref.spatial_pyramid_pool(features, rois, levels, 1 / 8)
    for mode, got in _run_all_modes(lambda f, r: spatial_pyramid_pool(f, r, levels, 1 / 8), features, rois).items():
        np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0, err_msg=mode)


def test_spatial_pyramid_pool_order_is_levels_then_rows_columns_channels():
    fmap = tf.reshape(tf.range(32, dtype=tf.float32), [1, 4, 4, 2])
    out = spatial_pyramid_pool(fmap, [[[0.0, 0.0, 3.0, 3.0]]], levels=(1, 2))[0, 0].numpy()
    pooled2 = roi_pool(fmap, [[[0.0, 0.0, 3.0, 3.0]]], 2)[0, 0].numpy()
    np.testing.assert_array_equal(out[:2], [30.0, 31.0])
    np.testing.assert_array_equal(out[2:], pooled2.reshape(-1))
    np.testing.assert_array_equal(out[2:4], [10.0, 11.0])  # bin (0, 0): rows 0-1, cols 0-1, both channels


def test_jit_compile_matches_reference():
    rng = np.random.default_rng(7)
    features = _features(rng, (2, 12, 10, 8))
    rois = random_rois(rng, 2, 9, 12 * 4, 10 * 4)
    for fn, reference, size in [
        (roi_pool, ref.roi_pool, (3, 2)),
        (ps_roi_pool, ref.ps_roi_pool, (2, 2)),
        (spatial_pyramid_pool, ref.spatial_pyramid_pool, (1, 2)),
    ]:
        jitted = tf.function(lambda f, r: fn(f, r, size, 0.25), jit_compile=True)
        np.testing.assert_allclose(jitted(features, rois).numpy(), reference(features, rois, size, 0.25), atol=ATOL)
        # small rois only: the max table computes fewer levels than it holds
        small = np.array([[[4.0, 4.0, 13.0, 9.0], [20.0, 0.0, 22.0, 30.0]]] * 2, np.float32)
        np.testing.assert_allclose(jitted(features, small).numpy(), reference(features, small, size, 0.25), atol=ATOL)


def test_jit_compile_with_unknown_map_size_says_why():
    spec = [tf.TensorSpec([1, None, None, 2]), tf.TensorSpec([1, 3, 4])]
    jitted = tf.function(lambda f, r: roi_pool(f, r, 2), jit_compile=True, input_signature=spec)
    with pytest.raises(ValueError, match="jit_compile=True needs a static feature map height"):
        jitted(np.zeros((1, 5, 5, 2), np.float32), np.zeros((1, 3, 4), np.float32))


def test_zero_size_map_gives_zeros():
    rois = np.array([[[0.0, 0.0, 4.0, 4.0]]], np.float32)
    for fn in (roi_pool, ps_roi_pool):
        out = fn(np.zeros((1, 0, 5, 4), np.float32), rois, 2)
        assert out.shape[:4] == (1, 1, 2, 2) and not np.any(out.numpy())
    assert spatial_pyramid_pool(np.zeros((1, 5, 0, 4), np.float32), rois, (1, 2)).shape == (1, 1, 20)


def test_hand_computed_roi_pool_and_rounding_half_away_from_zero():
    fmap = tf.reshape(tf.range(36, dtype=tf.float32), [1, 6, 6, 1])
    # x1 = 0.5 * 1 rounds to 1 (half away from zero; banker's rounding would give 0), x2 = 2.5 -> 3,
    # y1 = -0.5 -> -1, y2 = 1.5 -> 2: rows [-1, 2] (size 4) in 2 bins: [-1, 1) -> row 0 and [1, 3) -> rows 1-2.
    out = roi_pool(fmap, [[[0.5, -0.5, 2.5, 1.5]]], 2)[0, 0, :, :, 0].numpy()
    # columns [1, 3] (size 3) in 2 bins: [1, 3) and [2, 4) -> cols 1-2 and 2-3
    np.testing.assert_array_equal(out, [[2.0, 3.0], [14.0, 15.0]])
    np.testing.assert_array_equal(out, ref.roi_pool(fmap.numpy(), [[[0.5, -0.5, 2.5, 1.5]]], 2)[0, 0, :, :, 0])


def test_hand_computed_ps_roi_pool():
    # 1 output channel, 2 x 2 bins: input channel k = i * 2 + j holds the value 10 * k + x everywhere
    x = np.arange(4, dtype=np.float32)
    fmap = np.stack([np.broadcast_to(10 * k + x, (4, 4)) for k in range(4)], axis=-1)[None]
    out = ps_roi_pool(fmap, [[[0.0, 0.0, 4.0, 4.0]]], 2)[0, 0, :, :, 0].numpy()
    # columns [0, 2) mean 0.5, [2, 4) mean 2.5
    np.testing.assert_allclose(out, [[0.5, 12.5], [20.5, 32.5]])


def test_padded_nonfinite_and_far_rois_give_zeros():
    features = np.ones((1, 8, 8, 4), np.float32) * 3.0
    rois = np.array([[[-1, -1, -1, -1], [np.nan, 0, 4, 4], [0, 0, np.inf, 4], [1e9, 1e9, 2e9, 2e9]]], np.float32)
    for fn in (roi_pool, ps_roi_pool):
        np.testing.assert_array_equal(fn(features, rois, 2, 1 / 16).numpy(), 0.0)
    np.testing.assert_array_equal(spatial_pyramid_pool(features, rois, (1, 2), 1 / 16).numpy(), 0.0)
    # a roi whose size overflows float32 has no finite bins: it is treated as empty
    overflow = np.array([[[-3e38, 0, 3e38, 4]]], np.float32)
    for fn in (roi_pool, ps_roi_pool):
        np.testing.assert_array_equal(fn(features, overflow, 2).numpy(), 0.0)
    # a padded row would otherwise read pixel (0, 0) at this scale: -1 / 16 rounds to 0
    assert roi_pool(features, [[[-1.0, -1.0, -1.0, -0.9]]], 1, 1 / 16).numpy().max() == 3.0


@pytest.mark.parametrize(
    "fn,size,depth",
    [(roi_pool, (2, 3), 6), (ps_roi_pool, (2, 3), 1), (spatial_pyramid_pool, (1, 2), None)],
)
def test_zero_rois_and_batch_zero(fn, size, depth):
    features = np.zeros((2, 5, 5, 6), np.float32)
    out = fn(features, np.zeros((2, 0, 4), np.float32), size)
    assert out.shape[:2] == (2, 0)
    out_b0 = fn(np.zeros((0, 5, 5, 6), np.float32), np.zeros((0, 3, 4), np.float32), size)
    assert out_b0.shape[:2] == (0, 3)
    graph = tf.function(lambda f, r: fn(f, r, size))
    assert graph(np.zeros((0, 5, 5, 6), np.float32), np.zeros((0, 3, 4), np.float32)).shape[:2] == (0, 3)
    if depth is not None:
        assert out.shape == (2, 0) + size + (depth,)
    else:
        assert out.shape == (2, 0, 5 * 6)


def test_ps_roi_pool_sums_are_exact_on_large_positive_maps():
    """A float32 summed-area table of a 64 x 64 positive map loses ~1e-3 on one-pixel bins: ours must not."""
    rng = np.random.default_rng(3)
    features = rng.uniform(100.0, 101.0, size=(1, 64, 64, 4)).astype(np.float32)
    rois = np.array([[[62.0, 62.0, 64.0, 64.0], [0.0, 0.0, 64.0, 64.0], [50.0, 3.0, 61.0, 63.0]]], np.float32)
    got = ps_roi_pool(features, rois, 2).numpy()
    np.testing.assert_allclose(got, ref.ps_roi_pool(features, rois, 2), atol=ATOL, rtol=0)


def test_float16_and_float64_features_keep_their_dtype():
    rng = np.random.default_rng(5)
    features = _features(rng, (1, 10, 10, 4))
    rois = random_rois(rng, 1, 8, 40, 40)
    for dtype in (tf.float16, tf.float64):
        f = tf.cast(features, dtype)
        out = roi_pool(f, rois, 3, 0.25)
        assert out.dtype == dtype
        np.testing.assert_allclose(out.numpy(), ref.roi_pool(f.numpy(), rois, 3, 0.25), atol=ATOL)
        ps = ps_roi_pool(f, rois, 2, 0.25)
        assert ps.dtype == dtype
        np.testing.assert_allclose(ps.numpy(), ref.ps_roi_pool(features, rois, 2, 0.25), atol=2e-3)


# --------------------------------------------------------------------------- gradients


def _distinct_features(rng, shape):
    """Values without ties (a shuffled ramp), in float64 for finite differences."""
    values = rng.permutation(int(np.prod(shape))).astype(np.float64) / 7.0
    return values.reshape(shape)


def _finite_difference(fn, features, upstream, eps=1e-3):
    fn = tf.function(fn)
    grad = np.zeros_like(features)
    flat = grad.reshape(-1)
    base = features.reshape(-1)
    for k in range(base.size):
        plus = base.copy()
        plus[k] += eps
        minus = base.copy()
        minus[k] -= eps
        f_plus = np.sum(fn(plus.reshape(features.shape)).numpy() * upstream)
        f_minus = np.sum(fn(minus.reshape(features.shape)).numpy() * upstream)
        flat[k] = (f_plus - f_minus) / (2 * eps)
    return grad


def _analytic(fn, features, upstream, graph=False):
    def loss(f):
        with tf.GradientTape() as tape:
            tape.watch(f)
            out = fn(f)
            total = tf.reduce_sum(out * upstream)
        return tape.gradient(total, f)

    f = tf.constant(features)
    return (tf.function(loss) if graph else loss)(f).numpy()


GRAD_ROIS = np.array(
    [[[0.0, 0.0, 5.0, 4.0], [-3.0, 2.0, 9.0, 8.0], [2.0, 2.0, 2.0, 2.0], [-1, -1, -1, -1]]], np.float32
)


@pytest.mark.parametrize(
    "name,fn",
    [
        ("roi_pool", lambda f: roi_pool(f, GRAD_ROIS, (2, 3))),
        ("ps_roi_pool", lambda f: ps_roi_pool(f, GRAD_ROIS, (2, 2))),
        ("spp", lambda f: spatial_pyramid_pool(f, GRAD_ROIS, (1, 2))),
    ],
)
def test_gradients_match_finite_differences(name, fn):
    rng = np.random.default_rng(11)
    features = _distinct_features(rng, (1, 6, 7, 4))
    upstream = rng.uniform(0.5, 1.5, size=fn(features).shape)
    expected = _finite_difference(fn, features, upstream)
    assert np.abs(expected).sum() > 0
    np.testing.assert_allclose(_analytic(fn, features, upstream), expected, atol=1e-6)
    np.testing.assert_allclose(_analytic(fn, features, upstream, graph=True), expected, atol=1e-6)


def test_roi_pool_gradient_goes_to_the_argmax():
    rng = np.random.default_rng(12)
    features = _distinct_features(rng, (2, 9, 8, 3)).astype(np.float32)
    rois = random_rois(rng, 2, 10, 9 * 2, 8 * 2)
    upstream = rng.uniform(0.5, 1.5, size=(2, 10, 3, 3, 3)).astype(np.float32)
    expected = ref.roi_pool_grad(features, rois, 3, upstream, 0.5)

    def fn(f):
        return roi_pool(f, rois, 3, 0.5)

    np.testing.assert_allclose(_analytic(fn, features, upstream), expected, atol=1e-5)
    np.testing.assert_allclose(_analytic(fn, features, upstream, graph=True), expected, atol=1e-5)
    spec = [tf.TensorSpec([None, None, None, 3])]

    @tf.function(input_signature=spec)
    def dynamic(f):  # unknown H and W: the while-loop table
        with tf.GradientTape() as tape:
            tape.watch(f)
            total = tf.reduce_sum(roi_pool(f, rois, 3, 0.5) * upstream)
        return tape.gradient(total, f)

    np.testing.assert_allclose(dynamic(features).numpy(), expected, atol=1e-5)

    @tf.function(jit_compile=True)
    def jitted(f):  # XLA: a static-capacity table, only the needed levels computed
        with tf.GradientTape() as tape:
            tape.watch(f)
            total = tf.reduce_sum(roi_pool(f, rois, 3, 0.5) * upstream)
        return tape.gradient(total, f)

    np.testing.assert_allclose(jitted(features).numpy(), expected, atol=1e-5)


# --------------------------------------------------------------------------- argument checks


def test_invalid_arguments_raise_clear_errors():
    features = np.zeros((1, 4, 4, 8), np.float32)
    rois = np.zeros((1, 2, 4), np.float32)
    with pytest.raises(ValueError, match="output_size"):
        roi_pool(features, rois, 0)
    with pytest.raises(ValueError, match="output_size"):
        roi_pool(features, rois, (2, 2, 2))
    with pytest.raises(TypeError, match="output_size"):
        roi_pool(features, rois, 2.5)
    with pytest.raises(ValueError, match="spatial_scale"):
        roi_pool(features, rois, 2, spatial_scale=0.0)
    with pytest.raises(TypeError, match="spatial_scale"):
        roi_pool(features, rois, 2, spatial_scale="1/16")
    with pytest.raises(ValueError, match=r"`features` must have shape \[B, H, W, C\]; got shape \(4, 4, 8\)"):
        roi_pool(features[0], rois, 2)
    with pytest.raises(TypeError, match="features"):
        roi_pool(features.astype(np.int32), rois, 2)
    with pytest.raises(ValueError, match=r"`rois` must have shape \[B, R, 4\].*\(1, 2, 5\)"):
        roi_pool(features, np.zeros((1, 2, 5), np.float32), 2)
    with pytest.raises(ValueError, match="batch size"):
        roi_pool(features, np.zeros((3, 2, 4), np.float32), 2)
    with pytest.raises(ValueError, match=r"divisible by ph \* pw = 3 \* 3 = 9.*\(1, 4, 4, 8\)"):
        ps_roi_pool(features, rois, 3)
    with pytest.raises(ValueError, match="levels"):
        spatial_pyramid_pool(features, rois, levels=())
    with pytest.raises(ValueError, match="levels"):
        spatial_pyramid_pool(features, rois, levels=(1, 0))


# --------------------------------------------------------------------------- the fused (XLA) forward kernel


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the calls of the fused kernel (made while tracing)."""
    import kerasdet.ops._roi_pool as module

    calls = []
    fused = module._fused_maxima
    monkeypatch.setattr(module, "_fused_maxima", lambda *args: calls.append(1) or fused(*args))
    monkeypatch.delenv("KERASDET_FUSED_ROI_POOL", raising=False)  # the opt-out would switch the kernel off
    return calls


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.float64, tf.bfloat16])
@pytest.mark.parametrize("height,width,scale", [(13, 17, 1.0), (40, 33, 0.25), (64, 64, 1.0 / 16)])
def test_fused_kernel_equals_tensorflows_ops_exactly(dtype, height, width, scale, fused_calls):
    """The XLA-compiled forward kernel and the table run as TensorFlow ops give identical bits, for RoI pooling and
    SPP, on every awkward kind of roi (padding, outside, inverted, huge, rounding ties)."""
    from kerasdet.ops._roi_pool import without_fused_kernel

    rng = np.random.default_rng(height * width)
    features = tf.cast(tf.constant(_features(rng, (2, height, width, 5))), dtype)
    rois = random_rois(rng, 2, 30, height / scale, width / scale)

    def both(f, r):
        return roi_pool(f, r, (7, 5), scale), spatial_pyramid_pool(f, r, (1, 2, 4), scale)

    fused = tf.function(both)(features, rois)
    assert len(fused_calls) == 2
    with without_fused_kernel():
        ops = tf.function(both)(features, rois)
    eager = both(features, rois)  # eager calls take TensorFlow's ops
    assert len(fused_calls) == 2
    for fused_out, ops_out, eager_out in zip(fused, ops, eager):
        assert fused_out.dtype == dtype
        np.testing.assert_array_equal(tf.cast(fused_out, tf.float64).numpy(), tf.cast(ops_out, tf.float64).numpy())
        np.testing.assert_array_equal(tf.cast(fused_out, tf.float64).numpy(), tf.cast(eager_out, tf.float64).numpy())
    expected = ref.roi_pool(tf.cast(features, tf.float64).numpy(), rois, (7, 5), scale)
    np.testing.assert_allclose(tf.cast(fused[0], tf.float64).numpy(), expected, atol=0 if dtype != tf.float32 else ATOL)


def test_fused_kernel_runs_only_in_traced_forward_passes_of_a_known_size(fused_calls):
    from kerasdet.ops._roi_pool import without_fused_kernel

    rng = np.random.default_rng(3)
    features = tf.constant(_features(rng, (1, 12, 10, 3)))
    rois = random_rois(rng, 1, 6, 12, 10)

    def used(run):
        del fused_calls[:]
        run()
        return bool(fused_calls)

    assert used(lambda: tf.function(lambda f: roi_pool(f, rois, 3))(features))  # traced, known size
    assert not used(lambda: roi_pool(features, rois, 3))  # eager
    spec = [tf.TensorSpec([1, None, None, 3])]
    assert not used(lambda: tf.function(lambda f: roi_pool(f, rois, 3), input_signature=spec)(features))
    assert not used(lambda: tf.function(lambda f: roi_pool(f, rois, 3), jit_compile=True)(features))
    with without_fused_kernel():
        assert not used(lambda: tf.function(lambda f: roi_pool(f, rois, 3))(features))
    assert used(lambda: tf.function(lambda f: roi_pool(f, rois, 3))(features))  # the switch is restored after it

    variable = tf.Variable(features)

    @tf.function
    def training_step():  # a tape watching the features while tracing: Keras' fit
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(roi_pool(variable * 1.0, rois, 3))
        return tape.gradient(total, variable)

    assert not used(training_step)


def test_fused_kernel_switch_is_per_thread_and_by_environment(fused_calls, monkeypatch):
    import threading

    from kerasdet.ops._roi_pool import without_fused_kernel

    features = tf.ones([1, 8, 8, 2])
    rois = tf.constant([[[0.0, 0.0, 6.0, 6.0]]])
    entered, release, seen = threading.Event(), threading.Event(), []

    def exporting_thread():
        with without_fused_kernel():
            entered.set()
            release.wait(30)

    worker = threading.Thread(target=exporting_thread)
    worker.start()
    assert entered.wait(30)
    tf.function(lambda f: roi_pool(f, rois, 2))(features)  # another thread's switch does not apply here
    seen.append(bool(fused_calls))
    release.set()
    worker.join()
    assert seen == [True]
    del fused_calls[:]
    monkeypatch.setenv("KERASDET_FUSED_ROI_POOL", "0")
    tf.function(lambda f: roi_pool(f, rois, 2))(features)
    assert not fused_calls


def test_a_trace_made_without_a_tape_differentiates_exactly_later(fused_calls):
    """A cached forward trace (fused kernel) called later under a tape: the gradient comes from TensorFlow's ops."""
    rng = np.random.default_rng(12)
    features = _distinct_features(rng, (2, 9, 8, 3)).astype(np.float32)
    rois = random_rois(rng, 2, 10, 9 * 2, 8 * 2)
    upstream = rng.uniform(0.5, 1.5, size=(2, 10, 3, 3, 3)).astype(np.float32)
    forward = tf.function(lambda f: roi_pool(f, rois, 3, 0.5))
    forward(tf.constant(features))  # traced here, no tape
    assert fused_calls
    f = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(f)
        total = tf.reduce_sum(forward(f) * upstream)
    np.testing.assert_allclose(tape.gradient(total, f).numpy(), ref.roi_pool_grad(features, rois, 3, upstream, 0.5),
                               atol=1e-5)


def test_a_cached_spp_trace_differentiates_like_tensorflows_ops(fused_calls):
    """Several outputs (one per pyramid level) through the fused kernel's gradient: equal to the gradient of a trace
    made with TensorFlow's ops only, and a second-order call works."""
    from kerasdet.ops._roi_pool import without_fused_kernel

    rng = np.random.default_rng(13)
    features = tf.constant(_distinct_features(rng, (2, 11, 9, 3)).astype(np.float32))
    rois = random_rois(rng, 2, 8, 11 * 2, 9 * 2)
    upstream = tf.constant(rng.uniform(0.5, 1.5, size=(2, 8, (1 + 4 + 9) * 3)).astype(np.float32))
    fused = tf.function(lambda f: spatial_pyramid_pool(f, rois, (1, 2, 3), 0.5))
    fused(features)
    assert fused_calls
    with without_fused_kernel():
        plain = tf.function(lambda f: spatial_pyramid_pool(f, rois, (1, 2, 3), 0.5))
        plain(features)

    def gradient(fn):
        with tf.GradientTape() as tape:
            tape.watch(features)
            total = tf.reduce_sum(fn(features) * upstream)
        return tape.gradient(total, features).numpy()

    expected = gradient(plain)
    assert np.abs(expected).sum() > 0
    np.testing.assert_array_equal(gradient(fused), expected)


def test_exports_are_traced_without_the_fused_kernel(tmp_path, monkeypatch):
    """`kerasdet.export.saved_model` traces the model with the fused kernel switched off (serving needs no XLA)."""
    import kerasdet.ops._roi_pool as module
    from kerasdet.export import saved_model
    from kerasdet.models.retinanet.retinanet import RetinaNet

    model = RetinaNet.compact(num_classes=2, width=0.25)
    model.build_for_size(128)
    seen = []
    detect = model.detect

    def recording_detect(*args, **kwargs):
        seen.append(module._fused_kernel_allowed())
        return detect(*args, **kwargs)

    monkeypatch.setattr(model, "detect", recording_detect)
    monkeypatch.delenv("KERASDET_FUSED_ROI_POOL", raising=False)
    saved_model(model, tmp_path / "export")
    assert seen and not any(seen)
    assert module._fused_kernel_allowed()
