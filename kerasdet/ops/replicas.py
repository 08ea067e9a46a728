"""Sums over the replicas of a `tf.distribute` strategy: the loss normalisers of one model trained on several devices.

Under `MirroredStrategy` / `MultiWorkerMirroredStrategy` each replica computes the loss of its share of the global
batch, and the optimizer sums the replicas' gradients. The replicas train one model, the one single-device training
on the global batch would train, only when each replica divides its share by the global normaliser (the number of
positive anchors, or of images, in the whole batch), not by its own: `sum_over_replicas` of the local count is that
normaliser. Outside a strategy, or with one replica, it returns its argument unchanged.
"""

from __future__ import annotations

import tensorflow as tf


def num_replicas() -> int:
    """The number of replicas that run the current step in sync (1 outside a strategy).

    Example:
        >>> num_replicas()
        1
    """
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: the strategy's own count
        return tf.distribute.get_strategy().num_replicas_in_sync
    return context.num_replicas_in_sync


def sum_over_replicas(value):
    """`value` summed over the replicas of the current step (an all-reduce); `value` itself with one replica.

    Called in replica context (inside `strategy.run`, i.e. inside a training or test step). Not differentiable
    through the sum: use it for counts and normalisers, not for the loss itself.

    Args:
        value: a tensor (or a structure of tensors) of the same shape on every replica.

    Returns:
        The sum, the same on every replica.

    Example:
        >>> float(sum_over_replicas(tf.constant(3.0)))      # one replica
        3.0
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.nest.map_structure(tf.stop_gradient, value))


def moments_over_replicas(x, axes):
    """Mean and variance of `x` over `axes` and over the replicas' shares of the batch, as `tf.nn.moments` of the
    whole batch computes them: the mean first, then the mean squared deviation from it (two all-reduces; the
    one-pass E[x^2] - E[x]^2 loses the variance of a channel whose mean is large to cancellation, and training on
    replicas then drifts from training on one device).

    Args:
        x: float tensor; every replica's share has the same rank.
        axes: the axes to reduce (the batch axis among them).

    Returns:
        `(mean, variance)` without the reduced axes, equal on every replica.

    Example:
        >>> mean, variance = moments_over_replicas(tf.constant([[1.0], [3.0]]), axes=[0])
        >>> float(mean[0]), float(variance[0])
        (2.0, 1.0)
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tf.nn.moments(x, axes)
    shape = tf.shape(x)
    count = tf.cast(tf.reduce_prod(tf.gather(shape, axes)), x.dtype)
    total, count = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                      [tf.reduce_sum(x, axes, keepdims=True), tf.stop_gradient(count)])
    mean = total / count
    squares = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                 tf.reduce_sum(tf.math.squared_difference(x, tf.stop_gradient(mean)), axes, keepdims=True))
    return tf.squeeze(mean, axes), tf.squeeze(squares / count, axes)
