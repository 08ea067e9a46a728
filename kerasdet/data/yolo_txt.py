"""YOLO txt annotations (darknet / ultralytics layout): reader (`YoloTxtDataset`), `write_yolo_txt`.

Each image ``.../images/<split>/<name>.<ext>`` has a label file ``.../labels/<split>/<name>.txt``
(the last ``images`` folder of the path replaced by ``labels``; an image path without an
``images`` folder keeps its label file beside it, as in darknet) with one line per object::

    <class index> <x centre> <y centre> <width> <height>      # all four normalised to [0, 1]

A missing or empty label file means an image without objects. Class names come from
``classes.txt`` (or darknet's ``obj.names``) in the root, or are passed in.

Reference: Redmon and Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017 (darknet format).
"""

import os

import numpy as np

from kerasdet.data import _io
from kerasdet.data import _records
from kerasdet.data.dataset_error import DatasetError

_TOLERANCE = 1e-6
_NAME_FILES = ("classes.txt", "obj.names")


def _read_class_names(root):
    for name in _NAME_FILES:
        path = os.path.join(root, name)
        if os.path.exists(path):
            names = [line.strip() for line in _io.read_lines(path, "class names file")]
            names = [n for n in names if n]
            if not names:
                raise DatasetError(path, "class names file is empty")
            if len(set(names)) != len(names):
                raise DatasetError(path, f"class names file has duplicate names: {names}")
            return names
    raise DatasetError(os.path.join(root, _NAME_FILES[0]),
                       "class names file not found (pass class_names= or write one name per line "
                       f"into {' or '.join(_NAME_FILES)})")


def label_path_for(image_path):
    """The label file of an image: last ``images`` folder -> ``labels``, extension -> .txt."""
    head, _ = os.path.splitext(image_path)
    parts = head.split(os.sep)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return os.sep.join(parts) + ".txt"


def _parse_label_file(path, num_classes):
    """Returns (labels [M], normalised cxcywh [M, 4]); an absent file means no objects."""
    if not os.path.exists(path):
        return np.zeros((0,), np.int32), np.zeros((0, 4), np.float32)
    labels, boxes = [], []
    for n, line in enumerate(_io.read_lines(path, "label file"), start=1):
        fields = line.split()
        if not fields:
            continue
        entry = f"line {n}"
        if len(fields) != 5:
            hint = " (polygon/segment lines are not supported)" if len(fields) > 5 else ""
            raise DatasetError(path, f"expected 5 values '<class> <x> <y> <w> <h>', got "
                                     f"{len(fields)}: {line.strip()!r}{hint}", entry)
        try:
            cls = int(fields[0])
        except ValueError:
            raise DatasetError(path, f"class index must be an integer, got {fields[0]!r}",
                               entry) from None
        if not 0 <= cls < num_classes:
            raise DatasetError(path, f"class index {cls} out of range [0, {num_classes})", entry)
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise DatasetError(path, f"box values must be numbers, got {fields[1:]}",
                               entry) from None
        if not all(np.isfinite(values)):
            raise DatasetError(path, f"box values must be finite, got {fields[1:]}", entry)
        cx, cy, w, h = values
        if min(values) < -_TOLERANCE or max(values) > 1 + _TOLERANCE:
            raise DatasetError(path, f"box values must be normalised to [0, 1], got {fields[1:]}"
                                     " (pixel coordinates?)", entry)
        if w <= 0 or h <= 0:
            raise DatasetError(path, f"box width and height must be > 0, got w={w} h={h}", entry)
        labels.append(cls)
        boxes.append(values)
    return np.asarray(labels, np.int32), np.asarray(boxes, np.float32).reshape(-1, 4)


class YoloTxtDataset(_records.RecordDataset):
    """A YOLO-txt dataset read into numpy or tf.data samples.

    Label files are parsed and checked when the object is made (errors name the file and
    line); images are decoded when loaded, and normalised boxes become pixels then.

    Args:
        root: dataset root.
        split: sub-folder of ``root/images`` (e.g. "train"), or None for ``root/images``
            itself. Ignored when `image_list` is given.
        class_names: class names in label order, or None to read ``root/classes.txt`` or
            ``root/obj.names``.
        image_list: optional text file listing image paths relative to `root`, one per line
            (darknet's train.txt); paths leaving `root` are refused.
        max_pixels: images whose header declares more pixels are refused before decoding (a DatasetError
            naming the file; default 100 MP, None for no limit).

    Returns (from `load` / `dataset`):
        ``(image uint8 [H, W, 3], targets)`` with "boxes" float32 [M, 4] xyxy pixels (clipped)
        and "labels" int32 [M].

    Example:
        >>> ds = YoloTxtDataset("my_yolo_data", split="val").dataset()

    Reference: Redmon and Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017.
    """

    def __init__(self, root, split=None, class_names=None, image_list=None, max_pixels=_io.DEFAULT_MAX_PIXELS):
        self.max_pixels = _io.check_max_pixels(max_pixels)
        self.root = os.fspath(root)
        if class_names is None:
            class_names = _read_class_names(self.root)
        elif isinstance(class_names, str) or not class_names or not all(
                isinstance(c, str) for c in class_names):
            raise ValueError(f"class_names must be a non-empty list of str or None; received "
                             f"{class_names!r}")
        self._class_names = list(class_names)
        self.split = split
        self._records = [self._record(path, image_id, source)
                         for path, image_id, source in self._images(image_list)]

    def _images(self, image_list):
        if image_list is not None:
            image_list = os.fspath(image_list)
            result = []
            for n, line in enumerate(_io.read_lines(image_list, "image list"), start=1):
                rel = line.strip()
                if rel:
                    path = _io.resolve_inside(self.root, rel, image_list, f"line {n}")
                    result.append((path, os.path.splitext(rel)[0], image_list))
            return result
        folder = os.path.join(self.root, "images", *(() if self.split is None else (self.split,)))
        if not os.path.isdir(folder):
            raise DatasetError(folder, "image folder not found")
        result = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(_io.IMAGE_EXTENSIONS):
                    rel = os.path.relpath(os.path.join(dirpath, name), folder)
                    path = _io.resolve_inside(folder, rel, folder, None)
                    result.append((path, os.path.splitext(rel)[0], folder))
        return result

    def _record(self, path, image_id, source):
        label_file = label_path_for(path)
        labels, boxes = _parse_label_file(label_file, self.num_classes)
        return {"path": path, "image_id": image_id, "source": source, "label_file": label_file,
                "labels": labels, "cxcywh": boxes}

    def _targets(self, record, height, width):
        c = record["cxcywh"]
        xyxy = np.stack([(c[:, 0] - c[:, 2] / 2) * width, (c[:, 1] - c[:, 3] / 2) * height,
                         (c[:, 0] + c[:, 2] / 2) * width, (c[:, 1] + c[:, 3] / 2) * height],
                        axis=1) if len(c) else np.zeros((0, 4), np.float32)
        boxes, keep = _records.clip_boxes(xyxy, height, width, source=record["label_file"])
        return {"boxes": boxes[keep], "labels": record["labels"][keep]}


def write_yolo_txt(samples, root, class_names, split=None, file_names=None, overwrite=False):
    """Writes samples in the YOLO-txt layout (``images/``, ``labels/``, ``classes.txt``).

    Nothing is overwritten unless `overwrite=True`: default names continue after the largest numeric name
    the split's folders hold, an existing image or label file is refused, and so is a ``classes.txt`` with
    other names.

    Args:
        samples: unbatched tf.data.Dataset or iterable of ``(image, targets)``.
        root: output folder.
        class_names: class names in label order (written to ``root/classes.txt``).
        split: optional sub-folder name under images/ and labels/.
        file_names: optional image file names (default ``000001.png`` ... after those already there).
        overwrite: replace existing files of the same names and another ``classes.txt``.

    Returns:
        The list of image paths written.

    Example:
        >>> write_yolo_txt(synthetic.dataset("train", 100), "out/yolo", synthetic.class_names(),
        ...                split="train")
    """
    root = os.fspath(root)
    sub = () if split is None else (split,)
    paths = []
    os.makedirs(root, exist_ok=True)
    names_file = os.path.join(root, "classes.txt")
    if os.path.exists(names_file) and not overwrite and _read_class_names(root) != list(class_names):
        raise FileExistsError(f"{names_file} holds other class names ({_read_class_names(root)}); pass "
                              "overwrite=True to replace it")
    with open(names_file, "w", encoding="utf-8") as f:
        f.write("".join(n + "\n" for n in class_names))
    first = 1 if overwrite else _io.next_free_number(os.path.join(root, "images", *sub),
                                                     os.path.join(root, "labels", *sub))
    for i, (image, targets) in enumerate(_io.iter_samples(samples, len(class_names))):
        name = file_names[i] if file_names is not None else f"{first + i:06d}.png"
        image_path = os.path.join(root, "images", *sub, name)
        if not overwrite:
            for path in (image_path, label_path_for(image_path)):
                _io.refuse_existing(path, "file", "give other file_names or pass overwrite=True")
        _io.write_image(image_path, image)
        height, width = image.shape[:2]
        lines = []
        for box, label in zip(targets["boxes"], targets["labels"]):
            x1, y1, x2, y2 = (float(v) for v in box)
            lines.append(f"{int(label)} {(x1 + x2) / 2 / width:.8f} {(y1 + y2) / 2 / height:.8f} "
                         f"{(x2 - x1) / width:.8f} {(y2 - y1) / height:.8f}\n")
        label_file = label_path_for(image_path)
        os.makedirs(os.path.dirname(label_file), exist_ok=True)
        with open(label_file, "w", encoding="utf-8") as f:
            f.write("".join(lines))
        paths.append(image_path)
    return paths
