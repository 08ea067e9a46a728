"""File helpers shared by the dataset readers and writers: images, safe paths, samples."""

import os

import cv2
import numpy as np

from kerasdet.data.dataset_error import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def resolve_inside(root, relative, source, entry):
    """Joins `relative` to `root` and refuses paths that leave `root`.

    Args:
        root: the dataset root folder.
        relative: the path found in the annotation file.
        source: the annotation file (for the error message).
        entry: where in `source` the path was found (for the error message).

    Returns:
        The absolute, resolved path (symbolic links followed).

    Raises:
        DatasetError: `relative` is absolute, empty, or resolves outside `root`.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise DatasetError(source, f"image path must be a non-empty string, got {relative!r}",
                           entry)
    if os.path.isabs(relative) or relative.startswith(("/", "\\")) or (
            len(relative) > 1 and relative[1] == ":"):
        raise DatasetError(source, f"image path {relative!r} is absolute; paths must be "
                                   f"relative to the dataset root {str(root)!r}", entry)
    root_real = os.path.realpath(root)
    full = os.path.realpath(os.path.join(root_real, relative))
    if os.path.commonpath([root_real, full]) != root_real:
        raise DatasetError(source, f"image path {relative!r} leaves the dataset root "
                                   f"{str(root)!r} (resolves to {full!r}); refused", entry)
    return full


def read_lines(path, what):
    """Reads a UTF-8 text file as a list of lines; DatasetError names `path` and `what`
    (e.g. "label file") when the file is missing or unreadable."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise DatasetError(path, f"{what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot read {what}: {e}") from None


def to_rgb_uint8(array, path):
    """Converts a decoded image (gray, gray+alpha, BGR, BGRA; 8 or 16 bit) to RGB uint8."""
    if array.dtype == np.uint16:
        array = (array.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        raise DatasetError(path, f"unsupported image pixel type {array.dtype}; "
                                 "expected 8- or 16-bit")
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    channels = array.shape[2]
    if channels == 1:
        return cv2.cvtColor(array[..., 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:
        return cv2.cvtColor(np.ascontiguousarray(array[..., 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    raise DatasetError(path, f"image has {channels} channels; expected 1, 2, 3 or 4")


def read_image(path):
    """Reads an image file as RGB uint8 [H, W, 3].

    Grayscale and alpha images are converted (alpha dropped). Raises DatasetError naming the
    path when the file is missing or cannot be decoded.
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    except OSError as e:
        raise DatasetError(path, f"cannot read image file: {e.strerror or e}") from None
    array = None
    if data:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        array = _decode_with_pillow(data)
    if array is None:
        raise DatasetError(path, f"cannot decode image ({len(data)} bytes; not a readable "
                                 "JPEG/PNG/BMP/WebP/TIFF/GIF file)")
    return to_rgb_uint8(array, path)


def _decode_with_pillow(data):
    import io
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            return cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR)
    except Exception:  # noqa: BLE001 - any failure means "cannot decode"
        return None


def write_image(path, image):
    """Writes RGB uint8 [H, W, 3] to `path` (format from the extension)."""
    ext = os.path.splitext(path)[1] or ".png"
    ok, encoded = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode image as {ext!r} for {path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(encoded.tobytes())


def _to_numpy(value):
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _sample_image(image, index):
    image = _to_numpy(image)
    if image.ndim == 3 and image.shape[-1] in (1, 4):
        image = image[..., :1].repeat(3, -1) if image.shape[-1] == 1 else image[..., :3]
    if image.ndim != 3 or image.shape[-1] != 3:
        hint = " (a batch? unbatch first)" if image.ndim == 4 else ""
        raise ValueError(f"samples[{index}]: image must have shape [H, W, 3] (or 1/4 channels);"
                         f" received shape {image.shape}{hint}")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.number):
            raise TypeError(f"samples[{index}]: image must be numeric; received {image.dtype}")
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return image


def iter_samples(samples, num_classes):
    """Yields validated numpy ``(image, targets)`` pairs for the writers.

    Accepts an unbatched tf.data.Dataset or any iterable of ``(image, targets)``. Rows with
    label -1 (batch padding) are removed.
    """
    if isinstance(samples, tuple) and len(samples) == 2 and isinstance(samples[1], dict):
        raise TypeError("samples must be an iterable of (image, targets) pairs; received a "
                        "single pair - wrap it in a list")
    for index, item in enumerate(samples):
        if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[1], dict):
            raise TypeError(f"samples[{index}] must be an (image, targets dict) pair; "
                            f"received {type(item).__name__}")
        image = _sample_image(item[0], index)
        targets = {k: _to_numpy(v) for k, v in item[1].items()}
        if "boxes" not in targets or "labels" not in targets:
            raise ValueError(f"samples[{index}]: targets need 'boxes' and 'labels'; "
                             f"received keys {sorted(targets)}")
        boxes = targets["boxes"].astype(np.float32)
        labels = targets["labels"].astype(np.int64)
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
            raise ValueError(f"samples[{index}]: boxes must be [M, 4] and labels [M]; received "
                             f"boxes {boxes.shape} and labels {labels.shape} (unbatch first)")
        keep = labels >= 0
        if np.any(labels[keep] >= num_classes):
            raise ValueError(f"samples[{index}]: labels must be in [0, {num_classes}); "
                             f"received {labels[keep].max()}")
        targets = {k: v[keep] if (v.ndim >= 1 and v.shape[0] == keep.shape[0]) else v
                   for k, v in targets.items()}
        targets["boxes"] = boxes[keep]
        targets["labels"] = labels[keep]
        yield image, targets
