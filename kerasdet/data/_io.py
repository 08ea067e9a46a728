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


#: the largest image `read_image` decodes by default (pixels): 20000 x 20000 would need 1.1 GiB
DEFAULT_MAX_PIXELS = 100_000_000


def check_max_pixels(max_pixels, name="max_pixels"):
    """Raises unless `max_pixels` is None or a positive int (the decoding limit of readers and exports)."""
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1):
        raise ValueError(f"`{name}` must be a positive int (pixels) or None for no limit; got {max_pixels!r}")
    return max_pixels


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Reads an image file as RGB uint8 `[H, W, 3]`, the way every kerasdet reader and the CLI do.

    Grayscale and alpha images are converted (alpha dropped), 16-bit images scaled to 8 bits, and a JPEG's
    EXIF orientation applied (a phone photo comes out upright). The size is read from the header before
    decoding, so a small file that declares an enormous image (a decompression bomb) is refused instead of
    filling the memory.

    Args:
        path: the image file (JPEG, PNG, BMP, WebP, TIFF, GIF).
        max_pixels: refuse images of more pixels than this (None: no limit).

    Returns:
        uint8 `[H, W, 3]` RGB.

    Raises:
        DatasetError (a ValueError) naming the path when the file is missing, cannot be decoded, or is too large.

    Example:
        >>> image = kerasdet.data.read_image("photo.jpg")
        >>> detections = model.predict(image)       # one image: outputs without the batch axis
    """
    check_max_pixels(max_pixels)
    path = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    except OSError as e:
        raise DatasetError(path, f"cannot read image file: {e.strerror or e}") from None
    size, orientation = _header_size_and_orientation(data)
    if size is not None and max_pixels is not None and size[0] * size[1] > max_pixels:
        raise DatasetError(path, f"image of {size[0]} x {size[1]} pixels is larger than max_pixels={max_pixels} "
                                 "(a decompression bomb, or pass a larger max_pixels)")
    if orientation not in (None, 1):
        array = _decode_with_pillow(data, upright=True)
        if array is not None:
            return to_rgb_uint8(array, path)
    array = None
    if data:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        array = _decode_with_pillow(data)
    if array is None:
        raise DatasetError(path, f"cannot decode image ({len(data)} bytes; not a readable "
                                 "JPEG/PNG/BMP/WebP/TIFF/GIF file)")
    return to_rgb_uint8(array, path)


def _header_size_and_orientation(data):
    """((width, height), EXIF orientation) from the file's header without decoding the pixels, or (None, None)."""
    import io
    import warnings

    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: the caller checks the size
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(io.BytesIO(data)) as im:
                    size, orientation = im.size, 1
                    if im.format in ("JPEG", "MPO", "TIFF", "WEBP"):  # PNG keeps EXIF after the pixels
                        try:
                            orientation = im.getexif().get(0x0112, 1)
                        except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, as viewers do
                            orientation = 1
                    return size, orientation
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except Exception:  # noqa: BLE001 - an unreadable header is left to the decoders to report
        return None, None


def _decode_with_pillow(data, upright=False):
    import io
    from PIL import Image, ImageOps
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = (ImageOps.exif_transpose(im) if upright else im).convert("RGB")
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


def next_free_number(*folders):
    """1 + the largest number among the file stems in `folders` (0 when none is numeric): where a writer's
    default names (000001, ...) continue so that it never overwrites what a folder already holds."""
    largest = 0
    for folder in folders:
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                stem = os.path.splitext(name)[0]
                if stem.isdigit():
                    largest = max(largest, int(stem))
    return largest + 1


def refuse_existing(path, what, hint="pass overwrite=True to replace it"):
    """FileExistsError when `path` exists: writers do not overwrite earlier output by default."""
    if os.path.exists(path):
        raise FileExistsError(f"{what} {path} exists; {hint}")


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
        raw_labels = targets["labels"]
        if raw_labels.dtype.kind == "f" and raw_labels.size and not np.all(raw_labels == np.round(raw_labels)):
            raise ValueError(f"samples[{index}]: labels must be integers; received {raw_labels.tolist()}")
        labels = raw_labels.astype(np.int64)
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
            raise ValueError(f"samples[{index}]: boxes must be [M, 4] and labels [M]; received "
                             f"boxes {boxes.shape} and labels {labels.shape} (unbatch first)")
        if np.any(labels < -1):
            raise ValueError(f"samples[{index}]: labels must be in [-1, {num_classes}) (-1: padding); "
                             f"received {labels.min()}")
        keep = labels >= 0
        if not np.all(np.isfinite(boxes[keep])):
            row = int(np.flatnonzero(~np.all(np.isfinite(boxes[keep]), axis=1))[0])
            raise ValueError(f"samples[{index}]: boxes must be finite; box {row} is {boxes[keep][row].tolist()}")
        if np.any(labels[keep] >= num_classes):
            raise ValueError(f"samples[{index}]: labels must be in [0, {num_classes}); "
                             f"received {labels[keep].max()}")
        targets = {k: v[keep] if (v.ndim >= 1 and v.shape[0] == keep.shape[0]) else v
                   for k, v in targets.items()}
        targets["boxes"] = boxes[keep]
        targets["labels"] = labels[keep]
        yield image, targets
