"""Cost of the non-finite training guard and the per-call input checks (issue 13): the compact RetinaNet's
training step (`train_on_batch`, arrays) at 256x256, batch 8, as it is, and with the guard replaced by a plain
`apply_gradients` and the eager input checks switched off, interleaved in one process.

    .venv/bin/python benchmarks/non_finite_guard.py
"""

import platform
import time

import numpy as np

from kerasdet.data import pipeline, synthetic
from kerasdet.models import detector
from kerasdet.models.retinanet import RetinaNet


class NoGuard:
    """What `train_step` did before the guard: no snapshot, no check."""

    @staticmethod
    def snapshot(model):
        return [], []

    @staticmethod
    def apply_if_finite(model, loss, gradients, variables, snapshot):
        model.optimizer.apply_gradients(zip(gradients, variables))

    @staticmethod
    def take_failure():
        return None

    @staticmethod
    def reset():
        pass


def main(rounds=6, steps=3, batch=8):
    ds = pipeline.padded_batch(synthetic.dataset("train", batch, 256, with_masks=False, with_keypoints=False), batch)
    x, y = next(iter(ds))
    models = {}
    for name in ("guard", "no guard"):
        model = RetinaNet.compact(num_classes=10)
        model.build_for_size(256)
        model.compile(learning_rate=1e-4)
        if name == "no guard":
            model.__dict__["_guard_state"] = NoGuard()
        for _ in range(2):
            model.train_on_batch(x, y)
        models[name] = model
    x, y = np.asarray(x), {k: np.asarray(v) for k, v in y.items()}  # arrays, as users pass them
    checks = detector._eager_input_checks
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            detector._eager_input_checks = checks if name == "guard" else (lambda *args: None)
            start = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(x, y)
            times[name].append((time.perf_counter() - start) / steps)
    detector._eager_input_checks = checks
    guard, plain = np.median(times["guard"]), np.median(times["no guard"])
    print(f"CPU: {platform.processor() or platform.machine()}; median of {rounds} rounds x {steps} steps")
    print(f"training step with guard and checks {guard:.3f} s, without {plain:.3f} s: ratio {guard / plain:.4f}")


if __name__ == "__main__":
    main()
