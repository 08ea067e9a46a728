"""Balanced sampling and hard negative mining against tests/reference/sampling.py."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.ops.sampling import hard_negative_mask, random_keys, sample_balanced
from tests.reference import sampling as ref


def _states(rng, batch, num, p=(0.1, 0.6, 0.3)):
    return rng.choice(np.array([1, 0, -1], np.int32), size=(batch, num), p=p)


@pytest.mark.parametrize(
    "num, num_samples, fraction",
    [(300, 128, 0.25), (300, 256, 0.5), (50, 64, 1.0), (200, 16, 0.0), (10, 32, 0.5), (1, 4, 0.5)],
)
def test_balanced_matches_reference(num, num_samples, fraction):
    rng = np.random.default_rng(num + num_samples)
    states = _states(rng, 4, num)
    states[1] = np.where(states[1] == 1, 0, states[1])  # an image without positives
    states[2, : num // 2] = 1  # an image with many positives
    seed = [11, 3]
    out = sample_balanced(states, num_samples, fraction, seed)
    keys = random_keys(seed, states.shape).numpy()
    indices, sampled_states, mask = ref.balanced(states, keys, num_samples, fraction)
    np.testing.assert_array_equal(out["indices"].numpy(), indices)
    np.testing.assert_array_equal(out["states"].numpy(), sampled_states)
    np.testing.assert_array_equal(out["mask"].numpy(), mask)
    assert out["indices"].dtype == tf.int32 and out["mask"].dtype == tf.float32


def test_balanced_properties():
    rng = np.random.default_rng(0)
    states = _states(rng, 6, 500)
    out = sample_balanced(states, 128, 0.25, 5)
    idx, st = out["indices"].numpy(), out["states"].numpy()
    for b in range(6):
        real = idx[b][idx[b] >= 0]
        assert len(set(real)) == len(real)  # without replacement
        np.testing.assert_array_equal(states[b, real], st[b, : len(real)])  # states reported correctly
        num_pos = int((st[b] == 1).sum())
        assert num_pos == min(32, int((states[b] == 1).sum()))
        assert int((st[b] == 0).sum()) == min(128 - num_pos, int((states[b] == 0).sum()))
        assert np.all(states[b, real] >= 0)  # never an ignored anchor


def test_balanced_is_uniform():
    # 2000 images with the same states: each row gets its own keys, so rows are independent draws.
    states = np.tile(np.array([[1] * 10 + [0] * 40 + [-1] * 10], np.int32), (2000, 1))
    mask = sample_balanced(states, 20, 0.25, 9)["mask"].numpy()
    freq = mask.mean(axis=0)
    np.testing.assert_allclose(freq[:10], 0.5, atol=0.05)  # 5 of 10 positives
    np.testing.assert_allclose(freq[10:50], 15 / 40, atol=0.05)  # 15 of 40 negatives
    assert np.all(freq[50:] == 0)


def test_seed_determinism_and_backends():
    states = _states(np.random.default_rng(2), 3, 400)
    a = sample_balanced(states, 64, 0.5, [1, 2])
    b = sample_balanced(states, 64, 0.5, [1, 2])
    c = sample_balanced(states, 64, 0.5, [1, 3])
    np.testing.assert_array_equal(a["indices"], b["indices"])
    assert not np.array_equal(a["indices"], c["indices"])
    for jit in (False, True):
        fn = tf.function(lambda s, seed: sample_balanced(s, 64, 0.5, seed), jit_compile=jit)
        g = fn(tf.constant(states), tf.constant([1, 2], tf.int64))
        for key in a:
            np.testing.assert_array_equal(g[key].numpy(), a[key].numpy())


def test_balanced_unknown_number_of_anchors_in_graph():
    states = _states(np.random.default_rng(4), 2, 40)
    fn = tf.function(
        lambda s: sample_balanced(s, 64, 0.25, 7), input_signature=[tf.TensorSpec([None, None], tf.int32)]
    )
    got = fn(states)
    want = sample_balanced(states, 64, 0.25, 7)
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy())


def test_balanced_empty():
    out = sample_balanced(np.zeros((0, 7), np.int32), 8, 0.5, 0)
    assert out["indices"].shape == (0, 8) and out["mask"].shape == (0, 7)
    out = sample_balanced(np.zeros((3, 0), np.int32), 8, 0.5, 0)
    assert out["indices"].shape == (3, 8) and np.all(out["indices"].numpy() == -1)


def test_random_keys_range_and_spread():
    keys = random_keys([3, 4], [64, 1000]).numpy()
    assert keys.dtype == np.int32 and keys.min() >= 0
    assert abs(keys.mean() / 2**31 - 0.5) < 0.01
    assert len(np.unique(keys)) > 0.999 * keys.size
    assert not np.array_equal(keys, random_keys([3, 5], [64, 1000]).numpy())


@pytest.mark.parametrize("ratio, min_negatives", [(3.0, 0), (3.0, 5), (0.5, 0), (0.0, 2)])
def test_hard_negatives_match_reference(ratio, min_negatives):
    rng = np.random.default_rng(int(ratio * 10) + min_negatives)
    states = _states(rng, 5, 120, p=(0.05, 0.8, 0.15))
    states[0] = np.where(states[0] == 1, 0, states[0])  # no positives
    states[1] = np.where(states[1] == 0, 1, states[1])  # no negatives
    losses = np.round(rng.uniform(0, 2, states.shape), 1).astype(np.float32)  # many ties
    got = hard_negative_mask(losses, states, ratio, min_negatives).numpy()
    np.testing.assert_array_equal(got, ref.hard_negatives(losses, states, ratio, min_negatives))
    fn = tf.function(lambda l, s: hard_negative_mask(l, s, ratio, min_negatives), jit_compile=True)
    np.testing.assert_array_equal(fn(losses, states).numpy(), got)


def test_hard_negatives_ssd_ratio_and_no_gradient():
    losses = tf.constant([[0.1, 0.9, 0.5, 0.7, 0.2, 0.8, 3.0]])
    states = tf.constant([[1, 0, 0, 0, 0, 0, -1]])
    with tf.GradientTape() as tape:
        tape.watch(losses)
        mask = hard_negative_mask(losses, states, neg_pos_ratio=3.0)
    np.testing.assert_array_equal(mask.numpy(), [[0, 1, 0, 1, 0, 1, 0]])  # 3 hardest; ignored anchor skipped
    assert tape.gradient(mask, losses) is None


def test_hard_negatives_empty():
    assert hard_negative_mask(np.zeros((0, 5), np.float32), np.zeros((0, 5), np.int32)).shape == (0, 5)
    assert hard_negative_mask(np.zeros((2, 0), np.float32), np.zeros((2, 0), np.int32)).shape == (2, 0)


def test_bad_arguments():
    states = np.zeros((1, 4), np.int32)
    with pytest.raises(ValueError, match="num_samples"):
        sample_balanced(states, 0, 0.5, 0)
    with pytest.raises(ValueError, match="positive_fraction"):
        sample_balanced(states, 4, 1.5, 0)
    with pytest.raises(TypeError, match="match_states"):
        sample_balanced(np.zeros((1, 4), np.float32), 4, 0.5, 0)
    with pytest.raises(ValueError, match=r"match_states.*\[B, A\]"):
        sample_balanced(np.zeros((4,), np.int32), 4, 0.5, 0)
    with pytest.raises(ValueError, match="seed"):
        sample_balanced(states, 4, 0.5, [1, 2, 3])
    with pytest.raises(TypeError, match="seed"):
        sample_balanced(states, 4, 0.5, [1.5, 2.0])
    with pytest.raises(ValueError, match="neg_pos_ratio"):
        hard_negative_mask(np.zeros((1, 4), np.float32), states, neg_pos_ratio=-1)
    with pytest.raises(ValueError, match="min_negatives"):
        hard_negative_mask(np.zeros((1, 4), np.float32), states, min_negatives=1.5)
    with pytest.raises(ValueError, match="same shape"):
        hard_negative_mask(np.zeros((1, 5), np.float32), states)
