"""Slow numpy references for balanced sampling (Fast R-CNN) and hard negative mining (SSD).

The random choice is given by keys: among candidates, larger keys are drawn first (ties: lower index),
which with uniform random keys is a uniform sample without replacement.
"""

import math

import numpy as np


def _by_key(candidates, keys):
    return sorted(candidates, key=lambda i: (-int(keys[i]), i))


def balanced(states, keys, num_samples, positive_fraction):
    """Returns indices [B, S] (-1 padding), states [B, S] and mask [B, A]."""
    batch, num = states.shape
    indices = -np.ones((batch, num_samples), np.int64)
    out_states = -np.ones((batch, num_samples), np.int64)
    mask = np.zeros((batch, num), np.float64)
    for b in range(batch):
        pos = _by_key([i for i in range(num) if states[b, i] == 1], keys[b])
        neg = _by_key([i for i in range(num) if states[b, i] == 0], keys[b])
        pos = pos[: int(num_samples * positive_fraction)]
        neg = neg[: num_samples - len(pos)]
        chosen = pos + neg
        for s, i in enumerate(chosen):
            indices[b, s] = i
            out_states[b, s] = 1 if s < len(pos) else 0
            mask[b, i] = 1.0
    return indices, out_states, mask


def hard_negatives(losses, states, neg_pos_ratio, min_negatives):
    batch, num = states.shape
    mask = np.zeros((batch, num), np.float64)
    for b in range(batch):
        num_pos = sum(1 for i in range(num) if states[b, i] == 1)
        neg = [i for i in range(num) if states[b, i] == 0]
        quota = min(max(int(math.floor(neg_pos_ratio * num_pos)), min_negatives), len(neg))
        neg = sorted(neg, key=lambda i: (-float(losses[b, i]), i))
        for i in neg[:quota]:
            mask[b, i] = 1.0
    return mask
