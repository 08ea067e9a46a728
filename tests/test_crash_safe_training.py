"""Crash-safe training (issue "Nothing silent"): a run killed with SIGKILL at any moment and resumed with
`kerasdet train --resume` ends with the weights of an uninterrupted run; a half-written checkpoint is never loaded.

Every training here runs in its own process: `--deterministic` switches TensorFlow's op determinism on for the
whole process, which must not leak into the other tests of a pytest worker.
"""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from kerasdet.models import run_checkpoints

TRAIN = ["train", "--dataset", "synthetic", "--train-images", "24", "--batch-size", "4", "--image-size", "128",
         "--epochs", "2", "--warmup", "2", "--checkpoint-every", "1", "--deterministic", "--seed", "3"]
#: the default suite kills a RetinaNet run; the slow kills a Faster R-CNN run, whose RPN and RoI samplers draw from
#: random states that the checkpoints must carry
ARCHS = {"retinanet": ["--arch", "retinanet-compact"], "faster_rcnn": ["--arch", "faster-rcnn-compact"]}


def _kerasdet(args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "kerasdet.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _run(args):
    proc = _kerasdet(args)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


def _weights(run):
    values = {}
    with h5py.File(run / "model.weights.h5", "r") as f:
        f.visititems(lambda name, item: values.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return values


def _killed_after(run, step, arch):
    """Starts the run and SIGKILLs it once a whole checkpoint of step `step` or later is on disk (it has trained on a
    little by then); returns the step of the newest whole checkpoint after the kill."""
    proc = _kerasdet([*TRAIN, *ARCHS[arch], "--out", str(run)])
    def reached():
        found = run_checkpoints.latest(run / "checkpoints") if (run / "checkpoints").is_dir() else None
        return found is not None and found.step >= step

    deadline = time.time() + 600
    while not reached() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model.json").exists(), "the run finished before it was killed: nothing was tested"
    return run_checkpoints.latest(run / "checkpoints").step


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final weights of an uninterrupted run, per architecture (trained once, on first use)."""
    made = {}

    def weights(arch):
        if arch not in made:
            run = tmp_path_factory.mktemp("crash") / f"uninterrupted_{arch}"
            _run([*TRAIN, *ARCHS[arch], "--out", str(run)])
            made[arch] = _weights(run)
        return made[arch]

    return weights


def _check_resumed_equals(uninterrupted, run, kill_step, arch):
    reached = _killed_after(run, kill_step, arch)
    assert reached >= kill_step
    printed = _run(["train", "--resume", str(run)])
    assert f"at step {reached}" in printed
    resumed, expected = _weights(run), uninterrupted(arch)
    assert sorted(resumed) == sorted(expected)
    worst = max(float(np.max(np.abs(resumed[k] - expected[k]))) for k in resumed)
    assert worst <= 1e-5, f"{arch} killed at step {reached}: largest weight difference {worst:.3g}"
    history = (run / "history.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["0", "1"]


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(uninterrupted, tmp_path):
    _check_resumed_equals(uninterrupted, tmp_path / "run", 2, "retinanet")


@pytest.mark.slow
@pytest.mark.parametrize("kill_step", [1, 6, 9])
def test_three_kills_of_a_two_stage_run_at_other_steps(uninterrupted, tmp_path, kill_step):
    """The issue's three kills, on Faster R-CNN (random samplers): inside the first epoch, at its end, and inside the
    second."""
    _check_resumed_equals(uninterrupted, tmp_path / "run", kill_step, "faster_rcnn")


def test_a_half_written_checkpoint_is_never_loaded(tmp_path):
    """A json whose weights file is missing (killed between the two writes, or pruned) and a leftover temporary
    file are not checkpoints; the newest whole one is."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "step_00000004.weights.h5").write_bytes(b"whole")
    (folder / "step_00000004.json").write_text(json.dumps({"step": 4, "weights": "step_00000004.weights.h5",
                                                           "epoch_end": False, "random_states": []}))
    (folder / "step_00000005.json").write_text(json.dumps({"step": 5, "weights": "step_00000005.weights.h5",
                                                           "epoch_end": False, "random_states": []}))
    (folder / ".partial-123-step_00000006.weights.h5").write_bytes(b"half")
    (folder / "step_00000007.weights.h5").write_bytes(b"no json yet")
    (folder / "step_00000008.json").write_text('{"step": 8, "weig')  # cut short
    found = run_checkpoints.latest(folder)
    assert found.step == 4 and found.weights == folder / "step_00000004.weights.h5"
    assert run_checkpoints.latest(tmp_path / "nothing") is None


def test_an_older_runs_epoch_checkpoint_still_resumes(tmp_path):
    """Runs made before the step checkpoints kept `epoch_EEE.weights.h5` alone: that is the end of epoch EEE."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("epoch_001.weights.h5", "epoch_002.weights.h5"):
        (folder / name).write_bytes(b"x")
    found = run_checkpoints.latest(folder, older_runs=True)
    assert found.step == -1 and found.random_states is None and run_checkpoints.epoch_of_legacy(found) == 2
    # in a run that writes json records, a bare weights file is half of a checkpoint (killed before its json)
    assert run_checkpoints.latest(folder) is None
