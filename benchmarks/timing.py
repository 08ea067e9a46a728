"""Side-by-side timing: ours against a peer in one process, interleaved rounds, medians.

Every benchmark in this folder states a `Case`: two zero-argument callables that do the same work
(ours and the peer's), already built and holding their inputs. `compare` warms both up (warm-up is
excluded), then runs them in interleaved rounds (ours, peer, ours, peer, ...) so that a slow moment on
the machine hits both, and reports the median time of each and the ratio ours / peer (below 1 means
ours is faster).

Example:
    >>> case = Case("nms 1k", ours=lambda: f(x), peer=lambda: g(x), peer_name="tf.image")
    >>> row = compare(case, rounds=15)
    >>> row["ratio"]
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from typing import Callable, Iterable


@dataclasses.dataclass
class Case:
    """One timing comparison.

    Args:
        name: what is timed, e.g. "single-class NMS, 20k boxes".
        ours: zero-argument callable running kerasdet's version; must block until the result exists
            (return numpy, or call `.numpy()`).
        peer: zero-argument callable running the peer's version of the same work.
        peer_name: how the peer is named in the results table.
        limit: the largest ratio ours/peer the issue allows, or None when only recorded.
        note: free text for the results table (semantics that differ, sizes...).
    """

    name: str
    ours: Callable[[], object]
    peer: Callable[[], object]
    peer_name: str
    limit: float | None = None
    note: str = ""


def _time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(case: Case, rounds: int = 15, warmup: int = 3) -> dict:
    """Times `case.ours` and `case.peer` interleaved and returns medians and their ratio."""
    for _ in range(warmup):
        case.ours()
        case.peer()
    ours, peer = [], []
    for i in range(rounds):
        # alternate which goes first so neither always runs on a warmer cache
        if i % 2 == 0:
            ours.append(_time_once(case.ours))
            peer.append(_time_once(case.peer))
        else:
            peer.append(_time_once(case.peer))
            ours.append(_time_once(case.ours))
    ours_ms = statistics.median(ours) * 1e3
    peer_ms = statistics.median(peer) * 1e3
    ratio = ours_ms / peer_ms
    return {
        "name": case.name,
        "peer": case.peer_name,
        "ours_ms": ours_ms,
        "peer_ms": peer_ms,
        "ratio": ratio,
        "limit": case.limit,
        "ok": None if case.limit is None else ratio <= case.limit,
        "note": case.note,
        "rounds": rounds,
    }


def positive_int(text: str) -> int:
    """argparse type: a positive int."""
    import argparse

    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int; got {text}")
    return value


def detector_parser(description, batches, image_size, multiple):
    """The arguments the detector benchmarks share: rounds, warm-up, batch sizes, image size, --only, --print-only."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=positive_int, default=7, help="interleaved rounds per case (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each side first (default 2; tracing included)")
    parser.add_argument("--batches", type=positive_int, nargs="+", default=list(batches),
                        help=f"batch sizes (default {' '.join(map(str, batches))})")
    parser.add_argument("--image-size", type=positive_int, default=image_size,
                        help=f"square image side, a multiple of {multiple} (default {image_size}; smaller only for quick checks)")
    parser.add_argument("--only", choices=("inference", "training"), help="run only these cases (prints, writes nothing)")
    parser.add_argument("--print-only", action="store_true", help="print the table(s), do not write RESULTS.md")
    return parser


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int = 15, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds of each callable of `fns`, timed in interleaved rounds after `warmup` untimed calls.

    For the parts of one side's work (e.g. a whole inference and its pieces), where there is no peer:
    each round calls every callable once, starting one further along the list each round, so that a slow
    moment on the machine and a warm cache are shared out evenly.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for i in range(rounds):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            times[name].append(_time_once(fns[name]))
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def run_cases(cases: Iterable[Case], rounds: int, warmup: int = 3, peer_label: str | None = None,
              precision: int = 2) -> list[dict]:
    """Runs `compare` on each case in turn, printing the case and its medians as it goes; returns the rows.

    `cases` may be a generator: a case is then built only after the previous one is timed, so work done
    between cases (e.g. compiling the models before the training cases) keeps its place. The medians are
    printed with `precision` decimals and the peer as `peer_label` (default: each row's peer name).
    """
    rows = []
    for case in cases:
        print(f"[bench] {case.name} ...", flush=True)
        row = compare(case, rounds=rounds, warmup=warmup)
        peer = row["peer"] if peer_label is None else peer_label
        print(f"[bench]   ours {row['ours_ms']:.{precision}f} ms | {peer} {row['peer_ms']:.{precision}f} ms | "
              f"ratio {row['ratio']:.3f}", flush=True)
        rows.append(row)
    return rows


def print_over_limit(rows: list[dict]) -> None:
    """Prints the names of the rows whose ratio is above their case's limit, if any."""
    bad = [r["name"] for r in rows if r["ok"] is False]
    if bad:
        print(f"[bench] {len(bad)} case(s) above their limit: {bad}")


def command_line() -> str:
    """The command that is running, as RESULTS.md names it: `.venv/bin/python benchmarks/NAME.py` and the arguments
    it was given (so that a section made with other rounds or sizes than the defaults says so)."""
    import pathlib
    import shlex
    import sys

    script = pathlib.Path(sys.argv[0])
    return " ".join([".venv/bin/python", f"benchmarks/{script.name}", *map(shlex.quote, sys.argv[1:])])


def machine_description() -> str:
    """A one-line description of the machine the numbers were taken on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def markdown_table(rows: list[dict]) -> str:
    """Formats `compare` rows as a markdown table."""
    lines = [
        "| case | peer | ours (ms) | peer (ms) | ratio ours/peer | limit | within |",
        "|---|---|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        limit = "-" if r["limit"] is None else f"{r['limit']:.2f}"
        ok = "-" if r["ok"] is None else ("yes" if r["ok"] else "**no**")
        lines.append(
            f"| {r['name']} | {r['peer']} | {r['ours_ms']:.2f} | {r['peer_ms']:.2f} | {r['ratio']:.3f} | {limit} | {ok} |"
        )
    notes = [f"- {r['name']}: {r['note']}" for r in rows if r["note"]]
    return "\n".join(lines + ([""] + notes if notes else []))


def write_section(path, start: str, end: str, body: str) -> None:
    """Replaces (or appends) the block between the markers `start` and `end` in a results file.

    Each benchmark script owns one such section of benchmarks/RESULTS.md; the others are left alone.
    """
    import pathlib

    path = pathlib.Path(path)
    block = f"{start}\n{body.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmark results\n\nRatios are ours / peer: below 1 means kerasdet is faster.\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)
