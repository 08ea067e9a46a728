"""Slow numpy reference for YOLO9000's WordTree ops, written from DESIGN.md §4.

Trees are plain ``parents`` lists (-1 for roots); the sibling group of a node is the set
of nodes sharing its parent (all roots form one group). Plain loops, float64 math.
"""

import numpy as np


def sibling_groups(parents):
    """Dict parent -> list of children (key -1 for the roots), children in index order."""
    groups = {}
    for node, parent in enumerate(parents):
        groups.setdefault(int(parent), []).append(node)
    return groups


def path_to_root(parents, node):
    path = [node]
    while parents[path[-1]] != -1:
        path.append(int(parents[path[-1]]))
    return path


def conditional_probabilities(parents, logits):
    """Softmax within every sibling group, for one vector of logits ``[N]``."""
    logits = np.asarray(logits, np.float64)
    out = np.zeros_like(logits)
    for members in sibling_groups(parents).values():
        values = logits[members]
        exps = np.exp(values - values.max())
        out[members] = exps / exps.sum()
    return out


def log_conditional_probabilities(parents, logits):
    """Log-softmax within every sibling group (max-shifted), for one vector ``[N]``."""
    logits = np.asarray(logits, np.float64)
    out = np.zeros_like(logits)
    for members in sibling_groups(parents).values():
        shifted = logits[members] - logits[members].max()
        out[members] = shifted - np.log(np.exp(shifted).sum())
    return out


def absolute_probabilities(parents, conditional):
    """P(node) = product of the conditionals along the path to the root."""
    out = np.zeros(len(parents))
    for node in range(len(parents)):
        out[node] = np.prod([conditional[a] for a in path_to_root(parents, node)])
    return out


def top_prediction(parents, conditional, threshold):
    """Descend from the roots: take the best child (lowest index on ties) while P > threshold.

    The best root is always taken. Returns ``(node, absolute probability)``.
    """
    groups = sibling_groups(parents)
    probability = 1.0
    node = None
    candidates = groups[-1]
    while candidates:
        best = candidates[0]
        for candidate in candidates[1:]:
            if conditional[candidate] > conditional[best]:
                best = candidate
        next_probability = probability * conditional[best]
        if node is not None and not next_probability > threshold:
            break
        node, probability = best, next_probability
        candidates = groups.get(node, [])
    return node, probability


def loss(parents, logits, label):
    """Cross-entropy summed over the sibling groups on the label's path; 0 for label -1."""
    if label == -1:
        return 0.0
    log_conditional = log_conditional_probabilities(parents, logits)
    total = 0.0
    for node in path_to_root(parents, label):
        total -= log_conditional[node]
    return total


def batched(function, parents, values, *args):
    """Applies a per-vector reference function over the leading axes of ``values``."""
    values = np.asarray(values)
    flat = values.reshape(-1, values.shape[-1])
    outputs = [function(parents, row, *args) for row in flat]
    return np.asarray(outputs).reshape(values.shape[:-1] + np.asarray(outputs[0]).shape) if outputs else None
