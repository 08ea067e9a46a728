"""RoISampler and HardNegativeMiner layers: harness, seeds, agreement with the ops and the references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers.hard_negative_miner import HardNegativeMiner
from kerasdet.layers.roi_sampler import RoISampler
from kerasdet.ops.sampling import random_keys, sample_balanced
from tests.layers.harness import check_layer
from tests.reference import sampling as ref


def _states(batch=3, num=300, seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([1, 0, -1], np.int32), size=(batch, num), p=(0.1, 0.7, 0.2))


def test_fixed_seed_outside_training_matches_reference():
    states = _states()
    layer = RoISampler(num_samples=128, positive_fraction=0.25, seed=4)
    out = layer(states, training=False)
    keys = random_keys([4, 0], states.shape).numpy()
    indices, sampled, mask = ref.balanced(states, keys, 128, 0.25)
    np.testing.assert_array_equal(out["indices"].numpy(), indices)
    np.testing.assert_array_equal(out["states"].numpy(), sampled)
    np.testing.assert_array_equal(out["mask"].numpy(), mask)
    again = layer(states, training=False)
    np.testing.assert_array_equal(again["indices"].numpy(), indices)


def test_training_draws_fresh_reproducible_samples():
    states = _states()
    a, b = RoISampler(256, 0.5, seed=7), RoISampler(256, 0.5, seed=7)
    first = [a(states, training=True)["indices"].numpy() for _ in range(3)]
    second = [b(states)["indices"].numpy() for _ in range(3)]  # training=None counts as training
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0], first[1])
    unseeded = RoISampler(256, 0.5)
    assert unseeded(states)["indices"].shape == (3, 256)


def test_training_inside_compiled_function_advances():
    states = tf.constant(_states())
    layer = RoISampler(64, 0.25, seed=1)
    fn = tf.function(lambda s: layer(s, training=True)["indices"], jit_compile=True)
    x, y = fn(states).numpy(), fn(states).numpy()
    assert not np.array_equal(x, y)
    for out in (x, y):
        rows = [r[r >= 0] for r in out]
        assert all(len(set(r)) == len(r) for r in rows)


def test_rpn_setting_counts():
    states = _states(2, 5000, seed=3)
    out = RoISampler(256, 0.5, seed=0)(states, training=False)
    for b in range(2):
        num_pos = min(128, int((states[b] == 1).sum()))
        assert int((out["states"].numpy()[b] == 1).sum()) == num_pos
        assert int(out["mask"].numpy()[b].sum()) == 256


def test_harness_roi_sampler():
    states = _states(2, 200)
    check_layer(
        RoISampler,
        {"num_samples": 32, "positive_fraction": 0.25, "seed": 3},
        (states,),
        call_kwargs={"training": False},
        empty_args=[(states[:0],), (states[:, :0],)],
        empty_check=lambda out, args: np.testing.assert_equal(out["indices"].shape, (args[0].shape[0], 32)),
    )


def test_harness_hard_negative_miner():
    rng = np.random.default_rng(1)
    states = _states(2, 100)
    losses = rng.uniform(0, 3, states.shape).astype(np.float32)
    check_layer(
        HardNegativeMiner,
        {"neg_pos_ratio": 3.0, "min_negatives": 2},
        (losses, states),
        empty_args=[(losses[:0], states[:0]), (losses[:, :0], states[:, :0])],
        fp16_atol=0,
        fp16_rtol=0,
    )


def test_hard_negative_miner_matches_reference_and_keras_model():
    rng = np.random.default_rng(2)
    states = _states(4, 150, seed=5)
    losses = np.round(rng.uniform(0, 2, states.shape), 1).astype(np.float32)
    miner = HardNegativeMiner(neg_pos_ratio=3.0)
    np.testing.assert_array_equal(miner(losses, states).numpy(), ref.hard_negatives(losses, states, 3.0, 0))
    inputs = [keras.Input((None,)), keras.Input((None,), dtype="int32")]
    model = keras.Model(inputs, HardNegativeMiner(neg_pos_ratio=3.0)(*inputs))
    np.testing.assert_array_equal(model([losses, states]).numpy(), ref.hard_negatives(losses, states, 3.0, 0))


def test_roi_sampler_in_a_model_with_unknown_anchor_count():
    states = _states(2, 80)
    inp = keras.Input((None,), dtype="int32")
    out = RoISampler(16, 0.5, seed=2)(inp, training=False)
    model = keras.Model(inp, out)
    got = model(states)
    want = sample_balanced(states, 16, 0.5, [2, 0])
    np.testing.assert_array_equal(got["indices"].numpy(), want["indices"].numpy())


@pytest.mark.parametrize(
    "cls, kwargs, error, match",
    [
        (RoISampler, {"num_samples": 0}, ValueError, "num_samples"),
        (RoISampler, {"num_samples": 8.0}, ValueError, "num_samples"),
        (RoISampler, {"positive_fraction": -0.1}, ValueError, "positive_fraction"),
        (RoISampler, {"seed": "a"}, TypeError, "seed"),
        (HardNegativeMiner, {"neg_pos_ratio": -3}, ValueError, "neg_pos_ratio"),
        (HardNegativeMiner, {"min_negatives": -1}, ValueError, "min_negatives"),
    ],
)
def test_bad_arguments(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


def test_bad_call_arguments():
    with pytest.raises(TypeError, match="match_states"):
        RoISampler()(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="same shape"):
        HardNegativeMiner()(np.zeros((2, 5), np.float32), np.zeros((2, 6), np.int32))
