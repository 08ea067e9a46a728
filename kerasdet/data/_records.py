"""Shared base of the file-format readers: a list of parsed records -> numpy or tf.data samples."""

import numpy as np
import tensorflow as tf

from kerasdet.data import _io
from kerasdet.data.dataset_error import DatasetError

TARGET_DTYPES = {"boxes": np.float32, "labels": np.int32, "masks": np.uint8,
                 "keypoints": np.float32, "iscrowd": np.int32, "difficult": np.int32}


def _tensor_shape(key, num_keypoints):
    return {"boxes": [None, 4], "labels": [None], "masks": [None, None, None],
            "keypoints": [None, num_keypoints, 3], "iscrowd": [None],
            "difficult": [None]}[key]


class RecordDataset:
    """Base of CocoDataset, VocDataset and YoloTxtDataset (not public).

    Subclasses parse and validate their annotation files eagerly in ``__init__``, store one
    record per image in ``self._records`` (each with at least "path", "image_id", "source"
    and optional "width"/"height"), set ``self._keys`` (target keys every sample carries) and
    implement ``_targets(record, height, width)``.
    """

    _records = ()
    _keys = ("boxes", "labels")
    _num_keypoints = 0
    _class_names = ()

    def __len__(self):
        return len(self._records)

    @property
    def class_names(self):
        """Class names in label order."""
        return list(self._class_names)

    @property
    def num_classes(self):
        return len(self._class_names)

    @property
    def image_paths(self):
        """Absolute image paths in sample order."""
        return [r["path"] for r in self._records]

    @property
    def image_ids(self):
        """Image ids (COCO ids, VOC ids, YOLO file stems) in sample order."""
        return [r["image_id"] for r in self._records]

    @property
    def target_keys(self):
        """The keys every sample's targets dict carries."""
        return list(self._keys)

    def load(self, index):
        """Loads sample `index` as numpy ``(image uint8 [H, W, 3], targets dict)``.

        Raises:
            DatasetError: the image is missing, undecodable, or not the size the annotation says.
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int; received {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        record = self._records[int(index)]
        image = _io.read_image(record["path"], max_pixels=getattr(self, "max_pixels", _io.DEFAULT_MAX_PIXELS))
        height, width = image.shape[:2]
        declared = (record.get("height"), record.get("width"))
        if declared[0] is not None and (declared[0], declared[1]) != (height, width):
            raise DatasetError(
                record["path"], f"image is {height}x{width} (HxW) but {record['source']} "
                                f"declares {declared[0]}x{declared[1]}")
        targets = self._targets(record, height, width)
        targets = {k: np.asarray(targets[k], TARGET_DTYPES[k]) for k in self._keys}
        return image, targets

    def _targets(self, record, height, width):
        raise NotImplementedError

    def dataset(self, shuffle=False, seed=None):
        """Returns a tf.data.Dataset of ``(image uint8 [H, W, 3], targets)``.

        Images are decoded lazily and in parallel; a file that cannot be decoded fails the
        iteration with an error whose message names its path.

        Args:
            shuffle: shuffle the sample order (re-shuffled every epoch).
            seed: seed of the shuffle.
        """
        keys = list(self._keys)

        def load_numpy(index):
            image, targets = self.load(int(index))
            return [image] + [targets[k] for k in keys]

        def load(index):
            outs = tf.numpy_function(
                load_numpy, [index], [tf.uint8] + [tf.as_dtype(TARGET_DTYPES[k]) for k in keys],
                stateful=False)
            image = tf.ensure_shape(outs[0], [None, None, 3])
            targets = {k: tf.ensure_shape(v, _tensor_shape(k, self._num_keypoints))
                       for k, v in zip(keys, outs[1:])}
            return image, targets

        indices = tf.data.Dataset.range(len(self))
        if shuffle:
            indices = indices.shuffle(max(len(self), 1), seed=seed,
                                      reshuffle_each_iteration=True)
        return indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def __repr__(self):
        return (f"{type(self).__name__}({len(self)} images, {self.num_classes} classes, "
                f"targets {self.target_keys})")


def check_number(value, source, entry, what):
    """Returns float(value) or raises DatasetError if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(source, f"{what} must be a number, got {value!r}", entry)
    value = float(value)
    if not np.isfinite(value):
        raise DatasetError(source, f"{what} must be finite, got {value!r}", entry)
    return value


def clip_boxes(boxes, height, width, source=None):
    """Clips xyxy boxes to the image and returns (clipped boxes, keep mask of non-empty ones).

    The one rule of every reader (COCO, VOC, YOLO): a box partly outside the image is clipped to it; a box of
    zero area in the file is left out; a box of positive area wholly outside the image is refused (with
    `source`, a DatasetError naming the file and the object), since it cannot belong to this image.
    """
    given = np.asarray(boxes, np.float32).reshape(-1, 4)
    boxes = given.copy()
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    outside = ~keep & (given[:, 2] > given[:, 0]) & (given[:, 3] > given[:, 1])
    if source is not None and outside.any():
        j = int(np.flatnonzero(outside)[0])
        raise DatasetError(source, f"object {j} has the box {given[j].tolist()} (xyxy), wholly outside the "
                                   f"{height}x{width} image")
    return boxes, keep
