"""Training one detector on several devices or machines with TensorFlow's own engine (`tf.distribute`).

`make_strategy("mirrored")` replicates the model on this machine's devices (its GPUs; on a CPU-only machine the CPU
split into `cpu_replicas` logical devices, which is how the tests run it), `make_strategy("multi_worker")` on the
processes that `TF_CONFIG` names (one command per host; docs/scaling.md). Build and compile the model inside
`strategy.scope()`, then `prepare_for_replicas(model)`:

    >>> strategy = make_strategy("mirrored", cpu_replicas=2)       # before TensorFlow has made its devices
    >>> with strategy.scope():
    ...     model = prepare_for_replicas(RetinaNet.compact(num_classes=10))
    ...     model.compile(learning_rate=1e-3)
    >>> model.fit(dataset_of_global_batches, epochs=12)

What makes the replicas train one model (the one single-device training on the same global batches trains, to
float rounding): the batch's loss normalisers (numbers of positive anchors, of images) are summed over the replicas
(`kerasdet.ops.replicas`); batch norm that trains uses the global batch's statistics (`synchronized`); the gradients
are summed over the replicas before they are clipped (`Detector.train_step`). Keras' `fit` splits each global batch
over the replicas; the logged loss is the global batch's.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from kerasdet.ops.replicas import moments_over_replicas

STRATEGIES = ("mirrored", "multi_worker")


def make_strategy(kind: str, cpu_replicas: int | None = None):
    """A `tf.distribute` strategy.

    Args:
        kind: "mirrored" (this machine's devices) or "multi_worker" (the cluster of `TF_CONFIG`).
        cpu_replicas: on a machine without GPUs, split the CPU into this many logical devices, one replica each
            (must be called before TensorFlow makes its devices: before any op runs). Ignored with GPUs.

    Returns:
        `tf.distribute.MirroredStrategy` or `tf.distribute.MultiWorkerMirroredStrategy`.

    Raises:
        ValueError naming `kind`, `cpu_replicas` or `TF_CONFIG`; RuntimeError when the CPU can no longer be split.

    Example:
        >>> strategy = make_strategy("mirrored", cpu_replicas=2)   # first thing in the program
        >>> strategy.num_replicas_in_sync
        2
    """
    if kind not in STRATEGIES:
        raise ValueError(f"`kind` must be one of {STRATEGIES}; got {kind!r}")
    if cpu_replicas is not None and (isinstance(cpu_replicas, bool) or not isinstance(cpu_replicas, int)
                                     or cpu_replicas < 1):
        raise ValueError(f"`cpu_replicas` must be a positive int; got {cpu_replicas!r}")
    gpus = tf.config.list_physical_devices("GPU")
    if cpu_replicas and not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        wanted = [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
        current = tf.config.get_logical_device_configuration(cpu)
        if current is None or len(current) != cpu_replicas:
            try:
                tf.config.set_logical_device_configuration(cpu, wanted)
            except RuntimeError as err:
                raise RuntimeError(f"`cpu_replicas={cpu_replicas}`: TensorFlow has already made its devices; call "
                                   "make_strategy before anything else runs") from err
    if kind == "mirrored":
        devices = None
        if not gpus:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    config = os.environ.get("TF_CONFIG")
    if not config:
        raise ValueError("`multi_worker` reads the cluster from TF_CONFIG, which is not set (docs/scaling.md)")
    try:
        cluster = json.loads(config)
        workers = cluster["cluster"]["worker"]
        task = cluster["task"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"TF_CONFIG must be JSON with cluster.worker and task (docs/scaling.md); got {config!r}") \
            from err
    members = cluster["cluster"].get(task.get("type"), []) if isinstance(task, dict) else []
    if not isinstance(workers, list) or not workers or task.get("type") not in ("worker", "chief") \
            or not isinstance(members, list) or not 0 <= int(task.get("index", -1)) < len(members):
        raise ValueError(f"TF_CONFIG: task {task!r} is not one of the workers (or the chief) of its cluster "
                         f"({len(workers)} workers)")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief() -> bool:
    """True unless `TF_CONFIG` names this process another task than the chief (worker 0 when the cluster has no
    chief): the one that writes a run's files.

    Example:
        >>> is_chief()          # no TF_CONFIG: a single process
        True
    """
    config = os.environ.get("TF_CONFIG")
    if not config:
        return True
    cluster = json.loads(config)
    task = cluster.get("task", {})
    if "chief" in cluster.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def check_same_on_every_worker(strategy, value: int, what: str) -> None:
    """Raises `ValueError` on every worker unless all the workers of `strategy`'s cluster hold the same `value`.

    One all-reduce of `(value, value**2)`: the workers agree exactly when `R * sum(v**2) == sum(v)**2` over the R
    replicas, a number every worker computes alike, so they all raise together instead of some waiting forever for
    the others' next collective. Used when a multi-worker run resumes: each worker reads its own run folder, and a
    worker whose newest checkpoint is older than the others' would train different steps.

    Example:
        >>> check_same_on_every_worker(tf.distribute.get_strategy(), 120, "the resumed step")
    """
    pair = tf.constant([float(value), float(value) ** 2], tf.float64)
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(pair)), axis=None)
    count, (first, second) = strategy.num_replicas_in_sync, total.numpy().tolist()
    if count * second != first * first:
        raise ValueError(f"the workers do not agree on {what}: this worker has {value}, the mean over the "
                         f"{count} replicas is {first / count:g} (each worker resumed from its own run folder; give "
                         "every worker a folder whose newest checkpoint is the same step)")


def prepare_for_replicas(model):
    """`model`, ready to train on the replicas of the current strategy: its family's losses must have global
    normalisers (`trains_on_replicas`), and every batch norm that trains takes the global batch's statistics.

    Args:
        model: a `Detector` built in `strategy.scope()`.

    Returns:
        The same model (`Detector.fit` on several replicas refuses one this function has not seen).

    Raises:
        ValueError naming the family when its training step is not written for replicas yet.

    Example:
        >>> with make_strategy("mirrored").scope():
        ...     model = prepare_for_replicas(RetinaNet.compact(num_classes=10))
        ...     model.compile()
    """
    if not hasattr(keras.layers.BatchNormalization, "_moments"):  # the hook `_global_batch_statistics` replaces
        raise RuntimeError(f"Keras {keras.__version__}'s BatchNormalization has no `_moments`: kerasdet cannot "
                           "make its batch norms use the global batch's statistics")
    if not getattr(model, "trains_on_replicas", False):
        raise ValueError(f"{type(model).__name__} does not train on several replicas yet: its loss normalisers or "
                         "its training state are per replica (families that do: RetinaNet, SSD, YOLO v1, Fast YOLO)")
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            _global_batch_statistics(layer)
    object.__setattr__(model, "_prepared_for_replicas", True)  # Detector.train_step refuses replicas without it
    return model


def _global_batch_statistics(layer):
    """Makes a batch norm that trains normalise by the statistics of the global batch (`moments_over_replicas`).

    Keras' own `synchronized=True` computes the variance in one pass (E[x^2] - E[x]^2), which in float32 loses the
    variance of a channel whose mean is large against its spread; the two-pass moments keep it, and on one replica
    they are `tf.nn.moments` itself. The layer's `_moments` (Keras 3's hook for this) is replaced on the instance."""
    if getattr(layer, "_kerasdet_global_moments", False):
        return
    own = layer._moments

    def moments(inputs, mask):
        if mask is not None:
            return own(inputs, mask)
        return moments_over_replicas(inputs, list(layer._reduction_axes))

    layer._moments = moments
    layer._kerasdet_global_moments = True
