"""COCO json detection/segmentation/keypoint annotations: reader (`CocoDataset`) and `write_coco`.

Format reference: Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014, and the
data format page of cocodataset.org. Category ids (any positive ints) map to contiguous labels
0..C-1 in increasing id order, and back. Boxes are read from ``bbox`` ``[x, y, w, h]`` and
returned as xyxy pixels; masks come from polygons or RLE (compressed or not).
"""

import json
import os

import numpy as np

from kerasdet.data import _io
from kerasdet.data import _masks
from kerasdet.data import _records
from kerasdet.data.dataset_error import DatasetError


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _load_json(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(path, "annotation file not found") from None
    except json.JSONDecodeError as e:
        raise DatasetError(path, f"invalid JSON at line {e.lineno} column {e.colno}: "
                                 f"{e.msg}") from None
    except RecursionError:
        raise DatasetError(path, "JSON nested too deeply to be a COCO annotation file") from None
    except UnicodeDecodeError as e:
        raise DatasetError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DatasetError(path, f"cannot read annotation file: {e.strerror or e}") from None


def _list_field(data, key, path, required=True):
    if key not in data:
        if required:
            raise DatasetError(path, f"missing top-level key {key!r}")
        return []
    if not isinstance(data[key], list):
        raise DatasetError(path, f"top-level {key!r} must be a list, got "
                                 f"{type(data[key]).__name__}")
    return data[key]


def _parse_categories(items, path):
    by_id = {}
    for i, cat in enumerate(items):
        entry = f"categories[{i}]"
        if not isinstance(cat, dict):
            raise DatasetError(path, f"must be an object, got {type(cat).__name__}", entry)
        cid = cat.get("id")
        if not _is_int(cid) or cid < 0:
            raise DatasetError(path, f"'id' must be a non-negative int, got {cid!r}", entry)
        if not isinstance(cat.get("name"), str):
            raise DatasetError(path, f"'name' must be a string, got {cat.get('name')!r}", entry)
        if cid in by_id:
            raise DatasetError(path, f"duplicate category id {cid}", entry)
        names = cat.get("keypoints", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(path, "'keypoints' must be a list of names", entry)
        by_id[cid] = dict(cat)
    if not by_id:
        raise DatasetError(path, "'categories' is empty; at least one category is needed")
    return [by_id[k] for k in sorted(by_id)]


def _parse_images(items, path, image_root):
    images = {}
    for i, img in enumerate(items):
        entry = f"images[{i}]"
        if not isinstance(img, dict):
            raise DatasetError(path, f"must be an object, got {type(img).__name__}", entry)
        iid = img.get("id")
        if not _is_int(iid):
            raise DatasetError(path, f"'id' must be an int, got {iid!r}", entry)
        entry = f"images[{i}] (id {iid})"
        if iid in images:
            raise DatasetError(path, f"duplicate image id {iid}", entry)
        size = []
        for key in ("height", "width"):
            value = img.get(key)
            if value is not None and (not _is_int(value) or value <= 0):
                raise DatasetError(path, f"'{key}' must be a positive int, got {value!r}", entry)
            size.append(value)
        if (size[0] is None) != (size[1] is None):
            raise DatasetError(path, "give both 'height' and 'width' or neither", entry)
        file_name = img.get("file_name")
        full = _io.resolve_inside(image_root, file_name, path, entry)
        images[iid] = {"path": full, "image_id": iid, "height": size[0], "width": size[1],
                       "source": path, "file_name": file_name, "anns": []}
    return images


def _check_segmentation(seg, image, path, entry):
    if isinstance(seg, list):
        if not seg:
            return None
        for j, poly in enumerate(seg):
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                raise DatasetError(path, f"segmentation polygon {j} must be a flat list of at "
                                         "least 3 (x, y) pairs", entry)
            for v in poly:
                _records.check_number(v, path, entry, f"segmentation polygon {j} coordinate")
        return seg
    if isinstance(seg, dict):
        size = seg.get("size")
        counts = seg.get("counts")
        if (not isinstance(size, list) or len(size) != 2 or not all(_is_int(s) for s in size)):
            raise DatasetError(path, f"RLE 'size' must be [height, width], got {size!r}", entry)
        if image["height"] is not None and size != [image["height"], image["width"]]:
            raise DatasetError(path, f"RLE size {size} differs from the image size "
                                     f"[{image['height']}, {image['width']}]", entry)
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts):
                raise DatasetError(path, "RLE 'counts' list must hold non-negative ints", entry)
            if sum(counts) != size[0] * size[1]:
                raise DatasetError(path, f"RLE counts sum to {sum(counts)}, expected "
                                         f"{size[0] * size[1]} for size {size}", entry)
        elif not isinstance(counts, str):
            raise DatasetError(path, "RLE 'counts' must be a list of ints or a string", entry)
        return seg
    raise DatasetError(path, f"segmentation must be a list of polygons or an RLE object, got "
                             f"{type(seg).__name__}", entry)


def _parse_annotation(ann, i, path, images, label_of, keypoint_counts):
    entry = f"annotations[{i}]"
    if not isinstance(ann, dict):
        raise DatasetError(path, f"must be an object, got {type(ann).__name__}", entry)
    entry = f"annotations[{i}] (id {ann.get('id')!r})"
    image = images.get(ann.get("image_id")) if _is_int(ann.get("image_id")) else None
    if image is None:
        raise DatasetError(path, f"image_id {ann.get('image_id')!r} is not in 'images'", entry)
    cid = ann.get("category_id")
    if not _is_int(cid) or cid not in label_of:
        raise DatasetError(path, f"category_id {cid!r} is not in 'categories'", entry)
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise DatasetError(path, f"bbox must be a list [x, y, w, h], got {bbox!r}", entry)
    x, y, w, h = (_records.check_number(v, path, entry, "bbox value") for v in bbox)
    if w < 0 or h < 0:
        raise DatasetError(path, f"bbox has negative size (w={w}, h={h})", entry)
    if image["height"] is not None and (x >= image["width"] or y >= image["height"]
                                        or x + w <= 0 or y + h <= 0) and w * h > 0:
        raise DatasetError(path, f"bbox {bbox} lies outside the {image['height']}x"
                                 f"{image['width']} image", entry)
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd not in (0, 1) or isinstance(iscrowd, float):
        raise DatasetError(path, f"iscrowd must be 0 or 1, got {iscrowd!r}", entry)
    seg = ann.get("segmentation")
    if seg is not None:
        seg = _check_segmentation(seg, image, path, entry)
    kps = ann.get("keypoints")
    k = keypoint_counts[label_of[cid]]
    if kps is not None and (kps or k):
        if not isinstance(kps, list) or len(kps) != 3 * k:
            raise DatasetError(path, f"keypoints must be a flat list of {3 * k} numbers (3 per "
                                     f"keypoint of category {cid}), got "
                                     f"{len(kps) if isinstance(kps, list) else kps!r}", entry)
        kps = [_records.check_number(v, path, entry, "keypoint value") for v in kps]
    return {"box": [x, y, x + w, y + h], "label": label_of[cid], "iscrowd": int(iscrowd),
            "segmentation": seg, "keypoints": kps or None, "entry": entry}


class CocoDataset(_records.RecordDataset):
    """A COCO-format annotation file read into numpy or tf.data samples.

    The file is parsed and validated when the object is made; images are decoded when loaded.
    Every error names the file and the entry (e.g. ``annotations[12] (id 907)``).

    Args:
        annotation_file: path of the json file.
        image_root: folder that ``file_name`` entries are relative to; a path that leaves it
            (absolute, ``..``, or a link outside) is refused.
        with_masks: True to load masks (every kept annotation needs a segmentation), False to
            skip them, None (default) for True when every kept annotation has one.
        with_keypoints: like `with_masks` for keypoints; None loads them when a category
            declares keypoint names.
        keep_crowd: keep ``iscrowd=1`` annotations and add ``targets["iscrowd"]``; by default
            crowd regions are left out (as for training in Detectron2).
        max_pixels: images whose header declares more pixels are refused before decoding (a DatasetError
            naming the file; default 100 MP, None for no limit).

    Returns (from `load` / `dataset`):
        ``(image uint8 [H, W, 3], targets)``: "boxes" float32 [M, 4] xyxy pixels (clipped to the
        image; empty ones dropped), "labels" int32 [M], and as enabled "masks" uint8 [M, H, W],
        "keypoints" float32 [M, K, 3] (K = most keypoints of any category), "iscrowd" int32 [M].

    Example:
        >>> coco = CocoDataset("annotations/instances_val2017.json", "val2017")
        >>> ds = coco.dataset()                         # tf.data of (image, targets)
        >>> coco.category_ids[0]                         # label 0 -> COCO id 1
        1
        >>> write_coco(ds, "copy/annotations.json", coco.categories, image_dir="copy/images")

    Reference: Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014.
    """

    def __init__(self, annotation_file, image_root, with_masks=None, with_keypoints=None,
                 keep_crowd=False, max_pixels=_io.DEFAULT_MAX_PIXELS):
        self.max_pixels = _io.check_max_pixels(max_pixels)
        path = os.fspath(annotation_file)
        self.annotation_file = path
        self.image_root = os.fspath(image_root)
        data = _load_json(path)
        if not isinstance(data, dict):
            raise DatasetError(path, f"top level must be a JSON object, got {type(data).__name__}")
        self._categories = _parse_categories(_list_field(data, "categories", path), path)
        self._class_names = [c["name"] for c in self._categories]
        label_of = {c["id"]: i for i, c in enumerate(self._categories)}
        kp_counts = [len(c.get("keypoints", [])) for c in self._categories]
        self._num_keypoints = max(kp_counts)
        images = _parse_images(_list_field(data, "images", path), path, self.image_root)
        for i, ann in enumerate(_list_field(data, "annotations", path, required=False)):
            parsed = _parse_annotation(ann, i, path, images, label_of, kp_counts)
            if parsed["iscrowd"] and not keep_crowd:
                continue
            images[ann["image_id"]]["anns"].append(parsed)
        self._records = list(images.values())
        anns = [a for r in self._records for a in r["anns"]]
        self.with_masks = self._resolve_option(
            with_masks, anns, "segmentation", "with_masks", path)
        if with_keypoints and self._num_keypoints == 0:
            raise DatasetError(path, "with_keypoints=True but no category declares keypoints")
        self.with_keypoints = (self._num_keypoints > 0) if with_keypoints is None else bool(
            with_keypoints)
        self.keep_crowd = bool(keep_crowd)
        self._keys = ("boxes", "labels") + (("masks",) if self.with_masks else ()) + (
            ("keypoints",) if self.with_keypoints else ()) + (
            ("iscrowd",) if self.keep_crowd else ())

    @staticmethod
    def _resolve_option(option, anns, field, name, path):
        if option is None:
            return bool(anns) and all(a[field] is not None for a in anns)
        if option:
            for a in anns:
                if a[field] is None:
                    raise DatasetError(path, f"{name}=True but this annotation has no {field}",
                                       a["entry"])
        return bool(option)

    @property
    def categories(self):
        """The COCO category dicts in label order (sorted by id)."""
        return [dict(c) for c in self._categories]

    @property
    def category_ids(self):
        """COCO category id of every label (label -> id)."""
        return [c["id"] for c in self._categories]

    def labels_to_category_ids(self, labels):
        """Maps an int array of labels to COCO category ids (-1 stays -1)."""
        labels = np.asarray(labels)
        table = np.asarray(self.category_ids + [-1], np.int64)
        bad = (labels < -1) | (labels >= self.num_classes)
        if np.any(bad):
            raise ValueError(f"labels must be in [-1, {self.num_classes}); received "
                             f"{labels[bad][:5].tolist()}")
        return table[labels]

    def category_ids_to_labels(self, category_ids):
        """Maps COCO category ids to labels; raises ValueError for unknown ids."""
        lookup = {cid: i for i, cid in enumerate(self.category_ids)}
        ids = np.asarray(category_ids)
        flat = [lookup.get(int(c)) for c in ids.reshape(-1)]
        if any(v is None for v in flat):
            unknown = sorted({int(c) for c, v in zip(ids.reshape(-1), flat) if v is None})
            raise ValueError(f"category_ids {unknown} are not in {self.annotation_file}")
        return np.asarray(flat, np.int32).reshape(ids.shape)

    def _targets(self, record, height, width):
        anns = record["anns"]
        boxes, keep = _records.clip_boxes([a["box"] for a in anns], height, width, source=record["source"])
        anns = [a for a, k in zip(anns, keep) if k]
        targets = {"boxes": boxes[keep], "labels": [a["label"] for a in anns],
                   "iscrowd": [a["iscrowd"] for a in anns]}
        if self.with_masks:
            masks = np.zeros((len(anns), height, width), np.uint8)
            for j, a in enumerate(anns):
                masks[j] = self._decode_mask(a, height, width)
            targets["masks"] = masks
        if self.with_keypoints:
            kps = np.zeros((len(anns), self._num_keypoints, 3), np.float32)
            for j, a in enumerate(anns):
                if a["keypoints"] is not None:
                    values = np.asarray(a["keypoints"], np.float32).reshape(-1, 3)
                    kps[j, :len(values)] = values
            targets["keypoints"] = kps
        return targets

    def _decode_mask(self, ann, height, width):
        seg = ann["segmentation"]
        if isinstance(seg, list):
            return _masks.polygons_to_mask(seg, height, width)
        if list(seg["size"]) != [height, width]:
            raise DatasetError(self.annotation_file, f"RLE size {seg['size']} differs from the "
                                                     f"decoded image size [{height}, {width}]",
                               ann["entry"])
        try:
            return _masks.rle_to_mask(seg)
        except ValueError as e:
            raise DatasetError(self.annotation_file, f"bad RLE: {e}", ann["entry"]) from None


def _normalise_categories(categories):
    if not isinstance(categories, (list, tuple)) or not categories:
        raise ValueError("categories must be a non-empty list of names or COCO category dicts; "
                         f"received {categories!r}")
    if all(isinstance(c, str) for c in categories):
        return [{"id": i + 1, "name": c} for i, c in enumerate(categories)]
    if all(isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str)
           for c in categories):
        ids = [c["id"] for c in categories]
        if len(set(ids)) != len(ids):
            raise ValueError(f"categories have duplicate ids: {ids}")
        return [dict(c) for c in categories]
    raise ValueError("categories must be all names (str) or all dicts with int 'id' and str "
                     "'name'")


def _annotation(targets, j, image_id, ann_id, category, keypoint_decimals=None):
    """COCO annotation dict of object `j`; keypoint values are rounded to `keypoint_decimals`
    decimals when given (the synthetic dataset's exports use 3)."""
    x1, y1, x2, y2 = (float(v) for v in targets["boxes"][j])
    ann = {"id": ann_id, "image_id": image_id, "category_id": category["id"],
           "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
           "iscrowd": int(targets["iscrowd"][j]) if "iscrowd" in targets else 0}
    if "masks" in targets:
        mask = targets["masks"][j]
        ann["segmentation"] = _masks.mask_to_rle(mask)
        ann["area"] = float(np.count_nonzero(mask))
    names = category.get("keypoints") or []
    if "keypoints" in targets and names:
        kp = np.asarray(targets["keypoints"][j], np.float32)[:len(names)]
        values = [float(v) for v in kp.reshape(-1)]
        if keypoint_decimals is not None:
            values = [round(v, keypoint_decimals) for v in values]
        ann["keypoints"] = values
        ann["num_keypoints"] = int(np.count_nonzero(kp[:, 2] > 0))
    return ann


def write_coco(samples, annotation_file, categories, image_dir=None, file_names=None, overwrite=False):
    """Writes samples as a COCO json (and their images as PNG files).

    Nothing is overwritten unless `overwrite=True`: an existing json is refused, and default image names
    continue after the largest numeric name `image_dir` already holds (two jsons can share one image folder).

    Args:
        samples: unbatched tf.data.Dataset or iterable of ``(image, targets)`` in this
            package's form (boxes xyxy pixels, labels, optional masks/keypoints/iscrowd).
        annotation_file: json path to write, or None to only return the dict.
        categories: class names (ids 1..C in label order) or COCO category dicts in label order
            (e.g. `CocoDataset.categories`, to keep ids and keypoint names).
        image_dir: folder for the images (``file_name`` is relative to it); None writes none.
        file_names: optional list of file names (default ``000001.png`` ... after those in `image_dir`).
        overwrite: replace an existing json and image files of the same names.

    Returns:
        The COCO dict (image ids 1..N in order). Masks are written as compressed RLE and set
        ``area``; without masks ``area`` is the box area.

    Example:
        >>> write_coco(synthetic.dataset("val", 10), "out/val.json",
        ...            synthetic.categories(), image_dir="out/images")
    """
    cats = _normalise_categories(categories)
    if annotation_file is not None and not overwrite:
        _io.refuse_existing(annotation_file, "annotation file")
    first = _io.next_free_number(image_dir) if image_dir is not None and not overwrite else 1
    images, annotations = [], []
    for i, (image, targets) in enumerate(_io.iter_samples(samples, len(cats))):
        image_id = i + 1
        name = file_names[i] if file_names is not None else f"{first + i:06d}.png"
        if image_dir is not None:
            if not overwrite:
                _io.refuse_existing(os.path.join(image_dir, name), "image file", "give other file_names or pass "
                                    "overwrite=True")
            _io.write_image(os.path.join(image_dir, name), image)
        images.append({"id": image_id, "file_name": name, "height": int(image.shape[0]),
                       "width": int(image.shape[1])})
        for j in range(targets["labels"].shape[0]):
            annotations.append(_annotation(targets, j, image_id, len(annotations) + 1,
                                           cats[int(targets["labels"][j])]))
    data = {"images": images, "annotations": annotations, "categories": cats}
    if annotation_file is not None:
        folder = os.path.dirname(os.path.abspath(annotation_file))
        os.makedirs(folder, exist_ok=True)
        with open(annotation_file, "w", encoding="utf-8") as f:
            json.dump(data, f)
    return data
