"""Weights files of the zoo: sha256-checked loading with errors that name the file."""

from __future__ import annotations

import hashlib
import os
import pathlib


def sha256_of(path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path, expected_sha256: str | None) -> pathlib.Path:
    """Returns `path` if it exists (and matches `expected_sha256` when given); raises otherwise.

    Raises:
        FileNotFoundError: the file is missing (the message names it).
        ValueError: the file's sha256 differs from the card's (both digests in the message).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if not str(path).endswith(".weights.h5"):
        raise ValueError(f"weights file {path} must be a Keras `.weights.h5` file")
    if expected_sha256 is not None:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise ValueError(
                f"weights file {path} has sha256 {actual}, but its card expects {expected_sha256}: "
                "the file is corrupt or belongs to another model"
            )
    return path


def load_into(model, path, expected_sha256: str | None = None, what: str = "model") -> None:
    """Loads a `.weights.h5` file into a built `model`, turning architecture mismatches into a clear error."""
    path = check_file(path, expected_sha256)
    try:
        model.load_weights(str(path))
    except OSError as err:  # h5py: truncated or not HDF5 at all; its message does not name the file
        raise OSError(f"weights file {path} cannot be read as HDF5 (truncated or not a .weights.h5 file): "
                      f"{err}") from err
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"weights file {path} does not fit the architecture of {what} "
            f"({type(model).__name__}, {model.count_params()} parameters): {err}"
        ) from err


def replace_atomically(write, path) -> pathlib.Path:
    """Calls `write(tmp)` for a temporary file beside `path`, flushes it to disk (fsync) and renames it onto `path`:
    a reader, or a run resumed after a crash, sees the old file or the whole new one, never half of one.

    Example:
        >>> replace_atomically(lambda tmp: model.save_weights(tmp), "run/checkpoints/epoch_003.weights.h5")
    """
    path = pathlib.Path(path)
    # the temporary name keeps the suffix Keras requires and matches no `epoch_*` glob
    tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # the rename itself, on file systems that journal directories separately
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def write_text_atomically(path, text: str) -> pathlib.Path:
    """`replace_atomically` for a text file: `path` holds its old text or all of `text`, never part of it.

    Example:
        >>> write_text_atomically("run/progress.json", json.dumps(progress))
    """
    return replace_atomically(lambda tmp: pathlib.Path(tmp).write_text(text), path)


def save_model_weights(model, path, image_size) -> pathlib.Path:
    """Saves only the model's own variables (no optimizer state) to a `.weights.h5` file.

    `model.save_weights` on a compiled model also stores the optimizer's slots (3x the size for
    AdamW); the zoo ships inference weights, so they are copied into a fresh, uncompiled twin first.
    """
    twin = type(model).from_config(model.get_config())
    twin.build_for_size(image_size)
    twin.set_weights(model.get_weights())
    twin.save_weights(str(path))
    return pathlib.Path(path)


def transfer_matching(source, target) -> list[str]:
    """Copies every variable of `source` into the variable of `target` with the same path and shape.

    Paths are compared below the model: a leading `<model name>/` (which Keras adds to the variables of
    layers first built inside the model's `call`, so that it differs between a fresh and a reloaded model,
    or between families) is ignored.

    Returns the paths of `target`'s variables that were left as initialised (no match by path or a
    different shape): for a fine-tuning rebuild these must be the class head's alone.
    """
    def relative(model, path):
        prefix = f"{model.name}/"
        return path[len(prefix):] if path.startswith(prefix) else path

    by_path = {relative(source, v.path): v for v in source.weights}
    skipped = []
    for v in target.weights:
        s = by_path.get(relative(target, v.path))
        if s is not None and tuple(s.shape) == tuple(v.shape):
            v.assign(s)
        else:
            skipped.append(v.path)
    return skipped
