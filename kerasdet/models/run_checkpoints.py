"""Crash-safe training checkpoints: the model, its optimizer, its random state and the data position, every N steps
and at each epoch's end, so that a run killed at any moment resumes where it stood (to the very weights of an
uninterrupted run when TensorFlow's op determinism is on: `kerasdet train --deterministic`).

A checkpoint is two files in the run's `checkpoints/` folder, each written atomically (temporary file, fsync,
rename; `kerasdet.zoo.weights.replace_atomically`):

- `NAME.weights.h5`: `model.save_weights` (the weights and the optimizer's variables: step count, moments);
- `NAME.json`, written second, so that its presence marks a whole checkpoint: the number of batches trained on
  (`step`), the training seconds so far, and the state of every `keras.random.SeedGenerator` in the model (the
  RPN's and the RoI head's samplers draw from them; Keras keeps them out of `save_weights`).

NAME is `step_SSSSSSSS` for a checkpoint inside an epoch (only the newest `keep` of those are kept) and
`epoch_EEE` at the end of epoch EEE (all kept). Where the data stands follows from the step: epoch
`step // steps_per_epoch`, batch `step % steps_per_epoch` of it, when every epoch's batches are a function of
the run's seed and the epoch (see `kerasdet.cli`'s training stream) rather than of how many epochs the process
has iterated.

Example:
    >>> callback = StepCheckpoint("runs/r1/checkpoints", every=200, steps_per_epoch=500)
    >>> model.fit(stream, epochs=3, steps_per_epoch=500, callbacks=[callback])
    >>> latest("runs/r1/checkpoints")        # Checkpoint(step=1500, weights=..., epoch_end=True, ...)
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import keras
import numpy as np

from kerasdet.zoo.weights import replace_atomically, write_text_atomically

#: recorded in a run's command.json by runs that write these checkpoints (older runs kept bare epoch files)
FORMAT = 2


def random_state_variables(model) -> list:
    """The model's variables that `save_weights` leaves out: the states of its `keras.random.SeedGenerator`s, in
    the model's own (deterministic) order."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A whole checkpoint on disk: the batches trained on (`step`), its weights file, whether it ends an epoch, the
    random states and training seconds it recorded (None for a checkpoint of an older run, which kept the weights
    only)."""

    step: int
    weights: pathlib.Path
    epoch_end: bool
    random_states: list | None
    seconds: float | None = None

    def restore(self, model) -> None:
        """Loads the weights and optimizer state (the optimizer must be built) and the random states."""
        model.load_weights(str(self.weights))
        if self.random_states is None:
            return
        variables = random_state_variables(model)
        if len(variables) != len(self.random_states):
            raise ValueError(f"checkpoint {self.weights} holds {len(self.random_states)} random states; the model has "
                             f"{len(variables)}: it is another architecture")
        for variable, value in zip(variables, self.random_states):
            variable.assign(np.asarray(value, dtype=variable.dtype))


def write(folder, name: str, model, step: int, epoch_end: bool, seconds: float | None = None) -> Checkpoint:
    """Writes checkpoint `name` of `model` after `step` batches into `folder` (weights first, then the json)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}.weights.h5"
    replace_atomically(model.save_weights, weights)
    states = [np.asarray(v.numpy()).tolist() for v in random_state_variables(model)]
    record = {"step": int(step), "epoch_end": bool(epoch_end), "weights": weights.name, "random_states": states,
              "seconds": None if seconds is None else round(float(seconds), 1)}
    write_text_atomically(folder / f"{name}.json", json.dumps(record))
    return Checkpoint(int(step), weights, bool(epoch_end), states, record["seconds"])


def latest(folder, older_runs: bool = False) -> Checkpoint | None:
    """The whole checkpoint with the highest step in `folder`, or None. A json whose weights file is missing is
    skipped (never half a checkpoint). With `older_runs` (a run from before these checkpoints), a bare
    `epoch_EEE.weights.h5` counts as the end of epoch EEE, with an unknown step (-1, resolved by the caller from its
    epoch) and no random states; without it, a bare weights file is half of a checkpoint and never loaded."""
    folder = pathlib.Path(folder)
    found = []
    for record_path in folder.glob("*.json"):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        weights = folder / str(record.get("weights", ""))
        if weights.is_file() and isinstance(record.get("step"), int):
            found.append(Checkpoint(record["step"], weights, bool(record.get("epoch_end")), record.get("random_states"),
                                    record.get("seconds")))
    if found:
        return max(found, key=lambda c: (c.step, c.epoch_end))
    legacy = sorted(folder.glob("epoch_*.weights.h5")) if older_runs else []
    if legacy:
        return Checkpoint(-1, legacy[-1], True, None)
    return None


def epoch_of_legacy(checkpoint: Checkpoint) -> int:
    """The epoch number EEE of an older run's `epoch_EEE.weights.h5`."""
    return int(checkpoint.weights.name.split("_")[1].split(".")[0])


class StepCheckpoint(keras.callbacks.Callback):
    """Writes a checkpoint every `every` batches (`step_SSSSSSSS`, the newest `keep` kept) and at the end of each
    epoch (`epoch_EEE`, all kept). It counts the batches itself, from `initial_step` (a resumed run's) on, across
    `fit` calls: the optimizer's `iterations` would lag behind the data when `mixed_float16`'s loss scaling skips a
    step.

    Put it last among the callbacks: the epoch's checkpoint then comes after the other callbacks have recorded the
    epoch (history, progress), and a batch that ends an epoch gets only the epoch's checkpoint.

    Args:
        folder: the checkpoints folder.
        every: batches between checkpoints inside an epoch (0: epoch ends only).
        steps_per_epoch: the run's batches per epoch.
        initial_step: batches trained on before (a resumed run's checkpoint step).
        seconds_before: training seconds before (recorded in each checkpoint, plus this run's own).
        keep: how many in-epoch checkpoints to keep.
    """

    def __init__(self, folder, every: int = 0, steps_per_epoch: int = 1, initial_step: int = 0,
                 seconds_before: float = 0.0, keep: int = 2):
        super().__init__()
        if int(every) < 0:
            raise ValueError(f"`every` must be >= 0; got {every!r}")
        self.folder = pathlib.Path(folder)
        self.every = int(every)
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.step = int(initial_step)
        self.seconds_before = float(seconds_before)
        self.keep = max(int(keep), 1)
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = self._start or time.time()

    def _seconds(self):
        return self.seconds_before + time.time() - self._start

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        ends_epoch = self.step % self.steps_per_epoch == 0
        if self.every and self.step % self.every == 0 and not ends_epoch:
            write(self.folder, f"step_{self.step:08d}", self.model, self.step, False, self._seconds())
            self._prune()

    def on_epoch_end(self, epoch, logs=None):
        write(self.folder, f"epoch_{epoch + 1:03d}", self.model, self.step, True, self._seconds())

    def _prune(self):
        records = sorted(self.folder.glob("step_*.json"))
        for record in records[: -self.keep]:
            record.unlink(missing_ok=True)  # the json first: a weights file without it is no checkpoint
            (self.folder / record.name.replace(".json", ".weights.h5")).unlink(missing_ok=True)
