"""Precision helpers of the benchmarks: the CPU's bfloat16 support, and a model's copy in another precision.

Example:
    >>> from benchmarks.precision import bf16_support, copy_in_precision
    >>> print(bf16_support())
    >>> fast = copy_in_precision(lambda: SSD.ssdlite(num_classes=90), model, "auto", size=320)
"""

from __future__ import annotations


def precision_label(precision: str) -> str:
    """`precision` as a table says it: "auto" with what it resolves to on this machine."""
    from kerasdet.zoo.precision import resolve_precision

    return f"auto (= {resolve_precision('auto')} on this CPU)" if precision == "auto" else precision


def bf16_support() -> str:
    """The CPU's bfloat16 flags as /proc/cpuinfo lists them, and what `precision="auto"` resolves to."""
    from kerasdet.zoo.precision import _cpu_flags, resolve_precision

    flags = sorted({"amx_bf16", "avx512_bf16"} & _cpu_flags())
    return (f"bfloat16 CPU flags: {', '.join(flags) if flags else 'none (neither amx_bf16 nor avx512_bf16)'}; "
            f'`precision="auto"` resolves to {resolve_precision("auto")}')


def add_precision_argument(parser, peer: str) -> None:
    """`--precisions` of a benchmark whose `peer` runs float32 while ours runs each of float32 and "auto"."""
    parser.add_argument("--precisions", nargs="+", choices=("float32", "auto"), default=["float32", "auto"],
                        help=f"precisions of our inference cases ({peer} runs float32); default both")


def has_amx() -> bool:
    """Whether this CPU has AMX (issue 14 judges its "auto" bar on such CPUs only)."""
    from kerasdet.zoo.precision import _cpu_flags

    return "amx_bf16" in _cpu_flags()


def copy_in_precision(build, model, precision: str, size: int):
    """`build()` (a kerasdet detector) made under `precision` as kerasdet's precision option does (Keras' global
    policy while it is built), built for `size` (unless `build` built it), with `model`'s weights."""
    from kerasdet.zoo.precision import global_policy

    with global_policy(precision):
        copy = build()
        if not copy.built:
            copy = copy.build_for_size(size)
    copy.set_weights(model.get_weights())
    return copy
