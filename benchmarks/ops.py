"""Times kerasdet's ops side by side with TensorFlow's built-ins, in one process.

    .venv/bin/python benchmarks/ops.py                 # all cases, writes benchmarks/RESULTS.md
    .venv/bin/python benchmarks/ops.py --only nms      # a subset, printed only (no file written)

Fixed thread counts (2 intra-op, 1 inter-op, set before TensorFlow starts), warm-up excluded,
medians of interleaved rounds (benchmarks/timing.py). The cases themselves live in
benchmarks/cases_*.py; each returns `Case`s with both sides built and wrapped in `tf.function`.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)

from benchmarks.timing import command_line, write_section, machine_description, markdown_table, print_over_limit, run_cases  # noqa: E402

GROUPS = {
    "nms": "benchmarks.cases_nms",
    "roi_align": "benchmarks.cases_roi_align",
    "roi_pool": "benchmarks.cases_roi_pool",
}
START, END = "<!-- ops:start -->", "<!-- ops:end -->"


def _cases(groups):
    """The cases of each group in turn; a group's module is imported when its cases are reached."""
    for group in groups:
        yield from importlib.import_module(GROUPS[group]).cases()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(GROUPS), nargs="*", help="run only these groups (prints, writes nothing)")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds per case (default 21)")
    args = parser.parse_args()
    groups = args.only or sorted(GROUPS)
    rows = run_cases(_cases(groups), rounds=args.rounds)
    table = markdown_table(rows)
    print(table)
    if args.only:
        return 0
    body = "\n".join(
        [
            "## Detection ops (`benchmarks/ops.py`)",
            "",
            f"Measured {datetime.date.today().isoformat()} with `{command_line()}` on {machine_description()};",
            f"TensorFlow {tf.__version__}, 2 intra-op threads, 1 inter-op thread, medians of {args.rounds} interleaved rounds after 3 warm-up calls, forward only, CPU.",
            "",
            table,
        ]
    )
    write_section(ROOT / "benchmarks" / "RESULTS.md", START, END, body)
    print_over_limit(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
