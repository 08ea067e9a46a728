"""An exported detector under load (issue 13): latency p50 / p99 and throughput with 1, 4 and 8 concurrent callers
of `serving_default` in one process (threads, as TF Serving calls a loaded model), and with 2 processes each
running 4 callers. Also checks that every concurrent output equals the serial one.

    .venv/bin/python benchmarks/serving_load.py [--model retinanet_resnet18_shapes] [--requests 48]

Latencies are absolute seconds on this machine's CPU (printed), so compare rows of one run, not across runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import tempfile
import time

import numpy as np


def _requests(count, size=256, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (1, size, size, 3)).astype(np.uint8) for _ in range(count)]


def _serve(path, images, callers):
    """(latencies in s, wall time, outputs) of `len(images)` requests from `callers` threads."""
    import tensorflow as tf

    signature = tf.saved_model.load(path).signatures["serving_default"]
    signature(images=tf.constant(images[0]))  # warm-up

    def one(image):
        start = time.perf_counter()
        out = signature(images=tf.constant(image))
        out = {k: v.numpy() for k, v in out.items()}
        return time.perf_counter() - start, out

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=callers) as pool:
        results = list(pool.map(one, images))
    wall = time.perf_counter() - start
    return [r[0] for r in results], wall, [r[1] for r in results]


def _process_worker(args):
    path, seed, count, callers = args
    latencies, wall, outputs = _serve(path, _requests(count, seed=seed), callers)
    return latencies, wall, [o["boxes"] for o in outputs]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="retinanet_resnet18_shapes")
    parser.add_argument("--requests", type=int, default=48)
    args = parser.parse_args()

    import kerasdet
    from kerasdet.export import saved_model

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "1")
    saved_model(kerasdet.zoo.load(args.model), path)
    images = _requests(args.requests)
    _, _, serial = _serve(path, images, 1)
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.model}, 256x256, "
          f"batch 1 per request, {args.requests} requests")
    print("| callers | p50 latency (s) | p99 latency (s) | throughput (requests/s) | equal to serial |")
    print("|---|---|---|---|---|")
    for callers in (1, 4, 8):
        latencies, wall, outputs = _serve(path, images, callers)
        same = all(np.array_equal(o[k], s[k]) for o, s in zip(outputs, serial) for k in s)
        print(f"| {callers} threads | {np.percentile(latencies, 50):.3f} | {np.percentile(latencies, 99):.3f} | "
              f"{len(images) / wall:.2f} | {same} |")
    half = args.requests // 2
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        parts = pool.map(_process_worker, [(path, 0, half, 4), (path, 0, half, 4)])
    wall = time.perf_counter() - start  # includes each process's TensorFlow import and model load
    latencies = np.concatenate([p[0] for p in parts])
    same = all(np.array_equal(b, s["boxes"]) for p in parts for b, s in zip(p[2], serial[:half]))
    busy = max(p[1] for p in parts)
    print(f"| 2 processes x 4 threads | {np.percentile(latencies, 50):.3f} | {np.percentile(latencies, 99):.3f} | "
          f"{2 * half / busy:.2f} (serving time only; {wall:.1f} s with start-up) | {same} |")


if __name__ == "__main__":
    main()
