"""The shared layer harness of DESIGN.md §8, run on every kerasdet layer.

`check_layer` runs, on one layer class with given constructor arguments and call arguments:

1. config round trip: every `__init__` argument appears in `get_config()`, and
   `from_config(get_config())` gives an equal config;
2. symbolic call: calling on `keras.Input`s works and gives outputs whose static shapes agree with
   the eager outputs (unknown dimensions allowed);
3. `.keras` save/load: a functional model around the layer, saved and loaded back, gives equal outputs;
4. eager vs `tf.function` vs `tf.function(jit_compile=True)` give equal outputs (`jit=False` skips the
   XLA leg; the layer's docstring must then say why, which the harness checks by looking for
   "jit_compile" in it);
5. `mixed_float16`: the layer built under that policy runs on the same inputs and agrees with float32
   within `fp16_atol` / `fp16_rtol` (or, with `fp16_compare=False`, only runs and returns finite values);
6. empty inputs: each entry of `empty_args` (e.g. zero rois, zero boxes, batch 0) runs eagerly and in
   `tf.function` and gives outputs with the shapes `empty_check` expects (if given).

Example:
    >>> check_layer(RoIAlign, {"output_size": 7}, (features, rois),
    ...             empty_args=[(features, rois[:, :0])], jit=False)
"""

from __future__ import annotations

import inspect
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf


def _to_numpy(tree):
    return tf.nest.map_structure(lambda t: np.asarray(t), tree)


def _assert_close(a, b, atol, rtol, what):
    flat_a = tf.nest.flatten(a)
    flat_b = tf.nest.flatten(b)
    assert len(flat_a) == len(flat_b), f"{what}: {len(flat_a)} outputs vs {len(flat_b)}"
    for i, (x, y) in enumerate(zip(flat_a, flat_b)):
        x = np.asarray(x)
        y = np.asarray(y)
        assert x.shape == y.shape, f"{what}: output {i} shape {x.shape} vs {y.shape}"
        if x.dtype.kind in "biu":
            np.testing.assert_array_equal(x, y, err_msg=f"{what}: output {i}")
        else:
            np.testing.assert_allclose(
                x.astype(np.float64), y.astype(np.float64), atol=atol, rtol=rtol, err_msg=f"{what}: output {i}"
            )


def _init_arg_names(layer_cls):
    names = []
    for name, p in inspect.signature(layer_cls.__init__).parameters.items():
        if name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        names.append(name)
    return names


def check_config(layer_cls, init_kwargs):
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    missing = [n for n in _init_arg_names(layer_cls) if n not in config]
    assert not missing, f"{layer_cls.__name__}.get_config() lacks __init__ arguments {missing}"
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config, f"{layer_cls.__name__}: config changed in a round trip"
    serialized = keras.saving.serialize_keras_object(layer)
    again = keras.saving.deserialize_keras_object(serialized)
    assert type(again) is layer_cls
    assert again.get_config() == config


def _symbolic_inputs(args):
    inputs = []
    for a in args:
        a = np.asarray(a)
        inputs.append(keras.Input(shape=a.shape[1:], batch_size=None, dtype=str(a.dtype)))
    return inputs


def _check_symbolic_shapes(sym_out, eager_out, what):
    flat_s = tf.nest.flatten(sym_out)
    flat_e = tf.nest.flatten(eager_out)
    assert len(flat_s) == len(flat_e), f"{what}: symbolic call gives {len(flat_s)} outputs, eager {len(flat_e)}"
    for i, (s, e) in enumerate(zip(flat_s, flat_e)):
        s_shape = tuple(s.shape)
        e_shape = np.asarray(e).shape
        assert len(s_shape) == len(e_shape), f"{what}: output {i} symbolic rank {s_shape} vs eager {e_shape}"
        for ds, de in zip(s_shape[1:], e_shape[1:]):
            assert ds is None or ds == de, f"{what}: output {i} symbolic shape {s_shape} vs eager {e_shape}"


def check_layer(
    layer_cls,
    init_kwargs: dict,
    args: tuple,
    *,
    call_kwargs: dict | None = None,
    empty_args: list | tuple = (),
    empty_check=None,
    jit: bool = True,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    fp16: bool = True,
    fp16_compare: bool = True,
    fp16_atol: float = 5e-2,
    fp16_rtol: float = 5e-2,
    save_load: bool = True,
):
    """Runs the harness checks listed in the module docstring; raises AssertionError on the first failure.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        args: positional call arguments (numpy arrays with a leading batch dimension).
        call_kwargs: non-tensor keyword arguments for the call (e.g. `training=False`).
        empty_args: a list of argument tuples with empty dimensions (zero rois, batch 0...).
        empty_check: optional `fn(outputs, args)` asserting the shapes for empty inputs.
        jit: whether the layer runs under `jit_compile=True`; if False its docstring must say why.
        atol, rtol: tolerance between eager, graph, jit and reloaded outputs.
        fp16, fp16_compare, fp16_atol, fp16_rtol: the mixed_float16 leg.
        save_load: whether to run the `.keras` save/load leg.
    """
    call_kwargs = dict(call_kwargs or {})
    args = tuple(np.asarray(a) for a in args)
    name = layer_cls.__name__

    check_config(layer_cls, init_kwargs)

    layer = layer_cls(**init_kwargs)
    eager = _to_numpy(layer(*args, **call_kwargs))

    graph_fn = tf.function(lambda *a: layer(*a, **call_kwargs))
    _assert_close(graph_fn(*args), eager, atol, rtol, f"{name} tf.function vs eager")

    if jit:
        jit_fn = tf.function(lambda *a: layer(*a, **call_kwargs), jit_compile=True)
        _assert_close(jit_fn(*args), eager, atol, rtol, f"{name} jit_compile vs eager")
    else:
        doc = (layer_cls.__doc__ or "").lower()
        assert "jit_compile" in doc, f"{name} does not run under jit_compile=True and its docstring does not say why"

    # symbolic call and .keras round trip through a functional model
    sym_inputs = _symbolic_inputs(args)
    sym_layer = layer_cls(**init_kwargs)
    sym_out = sym_layer(*sym_inputs, **call_kwargs)
    model = keras.Model(sym_inputs, sym_out)
    sym_layer.set_weights(layer.get_weights())  # the same weights, so that the two calls must agree
    model_out = _to_numpy(model(list(args)))
    _check_symbolic_shapes(sym_out, model_out, f"{name} symbolic")
    _assert_close(model_out, eager, atol, rtol, f"{name} functional model (built on keras.Input) vs eager")
    if save_load:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "layer.keras")
            model.save(path)
            loaded = keras.models.load_model(path)
        loaded_out = _to_numpy(loaded(list(args)))
        _assert_close(loaded_out, model_out, atol, rtol, f"{name} .keras save/load")

    if fp16:
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_float16")
        try:
            half_layer = layer_cls(**init_kwargs)
            half = _to_numpy(half_layer(*args, **call_kwargs))
        finally:
            keras.config.set_dtype_policy(previous)
        for i, x in enumerate(tf.nest.flatten(half)):
            if np.asarray(x).dtype.kind == "f":
                assert np.all(np.isfinite(x)), f"{name} mixed_float16: output {i} not finite"
        if fp16_compare:
            _assert_close(half, eager, fp16_atol, fp16_rtol, f"{name} mixed_float16 vs float32")

    for empty in empty_args:
        empty = tuple(np.asarray(a) for a in empty)
        out_e = _to_numpy(layer(*empty, **call_kwargs))
        out_g = _to_numpy(graph_fn(*empty))
        _assert_close(out_g, out_e, atol, rtol, f"{name} empty input, tf.function vs eager")
        if empty_check is not None:
            empty_check(out_e, empty)


def roi_empty_args(*args):
    """`empty_args` for a RoI layer called as (*features, rois): zero rois, then batch 0."""
    *features, rois = args
    return [(*features, rois[:, :0]), tuple(a[:0] for a in args)]


def roi_empty_check(tail):
    """`empty_check` for a RoI layer: outputs of shape rois.shape[:2] + `tail` (the rois come last)."""

    def check(outputs, args):
        assert outputs.shape == args[-1].shape[:2] + tail

    return check
