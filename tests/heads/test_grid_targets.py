"""slot_owners: which object row each grid slot trains on."""

import numpy as np
import tensorflow as tf

from kerasdet.heads import slot_owners


def test_last_row_wins_and_empty_slots_are_minus_one():
    slots = tf.constant([[2, 0, 2, -1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(slot_owners(slots, 3).numpy(), [[1, -1, 2], [-1, -1, -1]])


def test_matches_a_loop():
    rng = np.random.default_rng(0)
    slots = rng.integers(-1, 6, (3, 9)).astype(np.int32)
    want = np.full((3, 6), -1)
    for b in range(3):
        for m in range(9):
            if slots[b, m] >= 0:
                want[b, slots[b, m]] = m
    np.testing.assert_array_equal(slot_owners(tf.constant(slots), 6).numpy(), want)
    assert slot_owners(tf.zeros([2, 0], tf.int32), 4).numpy().tolist() == [[-1] * 4] * 2
