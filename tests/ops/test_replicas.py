"""Sums and batch statistics over the replicas of a strategy (kerasdet.ops.replicas), against the whole batch on one
device. The strategy's two logical CPU devices need a fresh process."""

import subprocess
import sys

import numpy as np
import tensorflow as tf

from kerasdet.ops.replicas import moments_over_replicas, num_replicas, sum_over_replicas

PROGRAM = r"""
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from kerasdet.ops.replicas import moments_over_replicas, num_replicas, sum_over_replicas
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
x = np.random.default_rng(3).normal(50.0, 0.01, (6, 5, 4)).astype(np.float32)   # a large mean, a small spread
shares = strategy.experimental_distribute_values_from_function(lambda ctx: x[3 * ctx.replica_id_in_sync_group:][:3])

@tf.function
def step(share):
    mean, variance = moments_over_replicas(share, [0, 1])
    return mean, variance, sum_over_replicas(tf.reduce_sum(share)), num_replicas()

out = strategy.run(step, args=(shares,))
local = [strategy.experimental_local_results(v) for v in out]
for values in local[:3]:
    np.testing.assert_array_equal(values[0].numpy(), values[1].numpy())
mean, variance = (tf.nn.moments(tf.constant(x), [0, 1])[i].numpy() for i in (0, 1))
np.testing.assert_allclose(local[0][0].numpy(), mean, rtol=1e-6)
np.testing.assert_allclose(local[1][0].numpy(), variance, rtol=1e-3)
np.testing.assert_allclose(float(local[2][0]), float(x.astype(np.float64).sum()), rtol=1e-6)
assert local[3] and all(int(v) == 2 for v in local[3])
print("ok")
"""


def test_two_replicas_give_the_whole_batch_statistics():
    """Two replicas each holding half of a batch whose channels have mean 50 and spread 0.01 (where a one-pass
    E[x^2] - E[x]^2 in float32 loses the variance): both get the whole batch's mean and variance, and its sum."""
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_outside_a_strategy_they_are_the_plain_values():
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 3, 2)).astype(np.float32))
    assert num_replicas() == 1
    assert sum_over_replicas(x) is x
    for got, want in zip(moments_over_replicas(x, [0, 1]), tf.nn.moments(x, [0, 1])):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
