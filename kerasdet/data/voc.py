"""Pascal VOC xml annotations: reader (`VocDataset`) and `write_voc`.

Layout (Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010)::

    root/Annotations/<id>.xml   root/JPEGImages/<filename>   root/ImageSets/Main/<split>.txt

VOC boxes are 1-based inclusive pixel indices; they are read as continuous xyxy boxes
``[xmin - 1, ymin - 1, xmax, ymax]`` (so a box over the whole image is ``[0, 0, W, H]``) and
written back the same way. XML is parsed with defusedxml: entity expansion, DTDs and external
references are refused.
"""

import os
import xml.etree.ElementTree as std_et  # writing only; all parsing goes through defusedxml

import defusedxml
import defusedxml.ElementTree as safe_et
import numpy as np

from kerasdet.data import _io
from kerasdet.data import _records
from kerasdet.data.dataset_error import DatasetError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")


def _read_ids(path):
    ids = []
    for n, line in enumerate(_io.read_lines(path, "image set file"), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2 or (len(fields) == 2 and fields[1] not in ("-1", "0", "1")):
            raise DatasetError(path, f"expected '<image id>' or '<image id> <-1|0|1>', got "
                                     f"{line!r}", f"line {n}")
        if len(fields) == 2 and fields[1] == "-1":  # class image sets: -1 means "absent"
            continue
        ids.append((fields[0], n))
    return ids


def _parse_xml(path):
    try:
        return safe_et.parse(path, forbid_dtd=True).getroot()
    except FileNotFoundError:
        raise DatasetError(path, "annotation file not found") from None
    except defusedxml.DefusedXmlException as e:
        raise DatasetError(path, f"unsafe XML refused ({type(e).__name__}: {e})") from None
    except safe_et.ParseError as e:
        raise DatasetError(path, f"malformed XML: {e}") from None
    except OSError as e:
        raise DatasetError(path, f"cannot read annotation file: {e.strerror or e}") from None


def _number(node, tag, path, entry, required=True):
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise DatasetError(path, f"missing <{tag}>", entry)
        return None
    try:
        value = float(child.text.strip())
    except ValueError:
        raise DatasetError(path, f"<{tag}> must be a number, got {child.text.strip()!r}",
                           entry) from None
    if not np.isfinite(value):
        raise DatasetError(path, f"<{tag}> must be finite, got {child.text.strip()!r}", entry)
    return value


def _flag(node, tag, path, entry):
    value = _number(node, tag, path, entry, required=False)
    if value is None:
        return 0
    if value not in (0.0, 1.0):
        raise DatasetError(path, f"<{tag}> must be 0 or 1, got {value:g}", entry)
    return int(value)


def _parse_size(root, path):
    size = root.find("size")
    if size is None:
        return None, None
    width = _number(size, "width", path, "<size>", required=False)
    height = _number(size, "height", path, "<size>", required=False)
    if width is None or height is None or width == 0 or height == 0:
        return None, None  # a few VOC files carry 0; the decoded image decides
    if width < 0 or height < 0 or not float(width).is_integer() or not float(height).is_integer():
        raise DatasetError(path, f"<size> must hold positive integers, got width={width:g} "
                                 f"height={height:g}", "<size>")
    return int(height), int(width)


def _object_names(path):
    """The class names of an annotation file's objects."""
    return [(node.text or "").strip() for node in _parse_xml(path).iterfind("object/name") if (node.text or "").strip()]


def _parse_object(obj, j, path, label_of):
    entry = f"object[{j}]"
    name_node = obj.find("name")
    name = (name_node.text or "").strip() if name_node is not None else ""
    if not name:
        raise DatasetError(path, "missing <name>", entry)
    entry = f"object[{j}] ({name})"
    if name not in label_of:
        raise DatasetError(path, f"unknown class name {name!r}; expected one of "
                                 f"{sorted(label_of)}", entry)
    box = obj.find("bndbox")
    if box is None:
        raise DatasetError(path, "missing <bndbox>", entry)
    xmin, ymin, xmax, ymax = (_number(box, t, path, entry) for t in ("xmin", "ymin", "xmax",
                                                                      "ymax"))
    if xmax < xmin or ymax < ymin:
        raise DatasetError(path, f"<bndbox> has xmax < xmin or ymax < ymin (xmin={xmin:g}, "
                                 f"ymin={ymin:g}, xmax={xmax:g}, ymax={ymax:g})", entry)
    return {"box": [xmin - 1.0, ymin - 1.0, xmax, ymax], "label": label_of[name],
            "difficult": _flag(obj, "difficult", path, entry)}


class VocDataset(_records.RecordDataset):
    """A Pascal VOC split read into numpy or tf.data samples.

    All xml files of the split are parsed and checked when the object is made; images are
    decoded when loaded. Errors name the file and the entry (``object[2] (dog)``, ``line 7``).

    Args:
        root: the VOC folder (holding Annotations/, JPEGImages/, ImageSets/).
        split: image set name, read from ``root/ImageSets/Main/<split>.txt``; None reads every
            ``Annotations/*.xml`` (folders without image sets).
        class_names: class names in label order (default: the 20 VOC classes); None reads them from
            the split's XML files (the distinct ``<object><name>`` values, sorted).
        keep_difficult: keep objects marked difficult and add ``targets["difficult"]``; by
            default they are left out (as in the original Fast/Faster R-CNN training).
        image_set_file: explicit image set file (overrides `split`).
        max_pixels: images whose header declares more pixels are refused before decoding (a DatasetError
            naming the file; default 100 MP, None for no limit).

    Returns (from `load` / `dataset`):
        ``(image uint8 [H, W, 3], targets)`` with "boxes" float32 [M, 4] xyxy (continuous,
        clipped to the image), "labels" int32 [M], and "difficult" int32 [M] if kept.

    Example:
        >>> voc = VocDataset("VOCdevkit/VOC2007", "test", keep_difficult=True)
        >>> image, targets = voc.load(0)

    Reference: Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010.
    """

    def __init__(self, root, split="trainval", class_names=VOC_CLASSES, keep_difficult=False,
                 image_set_file=None, max_pixels=_io.DEFAULT_MAX_PIXELS):
        self.max_pixels = _io.check_max_pixels(max_pixels)
        self.root = os.fspath(root)
        if image_set_file is None and split is not None:
            image_set_file = os.path.join(self.root, "ImageSets", "Main", f"{split}.txt")
        self.image_set_file = None if image_set_file is None else os.fspath(image_set_file)
        self.split = split
        entries = self._annotation_files()  # a generator: each file is checked, then parsed, in order
        if class_names is None:
            entries = list(entries)
            class_names = sorted({name for _, xml_path in entries for name in _object_names(xml_path)})
            if not class_names:
                raise DatasetError(self.image_set_file or os.path.join(self.root, "Annotations"),
                                   "no <object><name> in any annotation: class names cannot be read from the XML")
        if isinstance(class_names, str) or not class_names or not all(
                isinstance(c, str) for c in class_names):
            raise ValueError(f"class_names must be a non-empty list of str; received "
                             f"{class_names!r}")
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names has duplicates: {list(class_names)}")
        self._class_names = list(class_names)
        self.keep_difficult = bool(keep_difficult)
        label_of = {name: i for i, name in enumerate(self._class_names)}
        self._records = [self._parse(xml_path, image_id, label_of) for image_id, xml_path in entries]
        self._keys = ("boxes", "labels") + (("difficult",) if self.keep_difficult else ())

    @staticmethod
    def splits(root):
        """The image sets of a VOC folder (``ImageSets/Main/<name>.txt`` without the per-class ones), sorted."""
        folder = os.path.join(os.fspath(root), "ImageSets", "Main")
        if not os.path.isdir(folder):
            return []
        return sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".txt") and "_" not in name)

    def _annotation_files(self):
        """[(image id, xml path)] of the image set, or of every ``Annotations/*.xml`` when there is none."""
        if self.image_set_file is None:
            folder = os.path.join(self.root, "Annotations")
            if not os.path.isdir(folder):
                raise DatasetError(folder, "annotation folder not found")
            stems = sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".xml"))
            if not stems:
                raise DatasetError(folder, "no .xml annotation file")
            yield from ((stem, os.path.join(folder, stem + ".xml")) for stem in stems)
            return
        seen = set()
        for image_id, line in _read_ids(self.image_set_file):
            if image_id in seen:
                raise DatasetError(self.image_set_file, f"duplicate image id {image_id!r}",
                                   f"line {line}")
            seen.add(image_id)
            yield image_id, _io.resolve_inside(self.root, os.path.join("Annotations", image_id + ".xml"),
                                               self.image_set_file, f"line {line}")

    def _parse(self, xml_path, image_id, label_of):
        root = _parse_xml(xml_path)
        if root.tag != "annotation":
            raise DatasetError(xml_path, f"root element must be <annotation>, got <{root.tag}>")
        node = root.find("filename")
        filename = (node.text or "").strip() if node is not None else ""
        filename = filename or image_id + ".jpg"
        path = _io.resolve_inside(os.path.join(self.root, "JPEGImages"), filename, xml_path,
                                  "<filename>")
        height, width = _parse_size(root, xml_path)
        objects = [_parse_object(obj, j, xml_path, label_of)
                   for j, obj in enumerate(root.findall("object"))]
        if not self.keep_difficult:
            objects = [o for o in objects if not o["difficult"]]
        return {"path": path, "image_id": image_id, "height": height, "width": width,
                "source": xml_path, "objects": objects}

    def _targets(self, record, height, width):
        objects = record["objects"]
        boxes, keep = _records.clip_boxes([o["box"] for o in objects], height, width, source=record["source"])
        objects = [o for o, k in zip(objects, keep) if k]
        return {"boxes": boxes[keep], "labels": [o["label"] for o in objects],
                "difficult": [o["difficult"] for o in objects]}


def _fmt(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.9g}"


def _xml(image_id, filename, image, targets, class_names):
    ann = std_et.Element("annotation")
    std_et.SubElement(ann, "folder").text = "JPEGImages"
    std_et.SubElement(ann, "filename").text = filename
    size = std_et.SubElement(ann, "size")
    std_et.SubElement(size, "width").text = str(image.shape[1])
    std_et.SubElement(size, "height").text = str(image.shape[0])
    std_et.SubElement(size, "depth").text = "3"
    std_et.SubElement(ann, "segmented").text = "0"
    difficult = targets.get("difficult")
    for j in range(targets["labels"].shape[0]):
        obj = std_et.SubElement(ann, "object")
        std_et.SubElement(obj, "name").text = class_names[int(targets["labels"][j])]
        std_et.SubElement(obj, "pose").text = "Unspecified"
        std_et.SubElement(obj, "truncated").text = "0"
        std_et.SubElement(obj, "difficult").text = str(
            int(difficult[j]) if difficult is not None else 0)
        x1, y1, x2, y2 = (float(v) for v in targets["boxes"][j])
        box = std_et.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            std_et.SubElement(box, tag).text = _fmt(value)
    std_et.indent(ann)
    return std_et.tostring(ann, encoding="unicode")


def write_voc(samples, root, class_names=VOC_CLASSES, split="trainval", image_ids=None,
              image_format="png", overwrite=False):
    """Writes samples as a Pascal VOC folder (images, xml files and the split's image set).

    A root may hold several splits: default ids continue after the largest numeric id already there, and
    an existing image set, annotation or image is never replaced unless `overwrite=True`.

    Args:
        samples: unbatched tf.data.Dataset or iterable of ``(image, targets)``; a
            ``targets["difficult"]`` row is written when present.
        root: output folder (Annotations/, JPEGImages/, ImageSets/Main/ are created).
        class_names: class names in label order.
        split: image set name.
        image_ids: optional ids (file stems); default ``000001`` ... after the ids the root holds.
        image_format: "png" (lossless, default) or "jpg".
        overwrite: replace an existing image set file and files of the same ids.

    Returns:
        The list of image ids written.

    Example:
        >>> write_voc(synthetic.dataset("val", 10), "out/voc", synthetic.class_names(), "val")
    """
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg'; received {image_format!r}")
    root = os.fspath(root)
    sets_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if not overwrite:
        _io.refuse_existing(sets_file, "image set", "pass overwrite=True to replace it, or write another split")
    first = 1 if overwrite else _io.next_free_number(os.path.join(root, "Annotations"), os.path.join(root, "JPEGImages"))
    ids = []
    for i, (image, targets) in enumerate(_io.iter_samples(samples, len(class_names))):
        image_id = image_ids[i] if image_ids is not None else f"{first + i:06d}"
        filename = f"{image_id}.{image_format}"
        if not overwrite:
            for path in (os.path.join(root, "JPEGImages", filename), os.path.join(root, "Annotations", image_id + ".xml")):
                _io.refuse_existing(path, f"image id {image_id!r}:", "give other image_ids or pass overwrite=True")
        _io.write_image(os.path.join(root, "JPEGImages", filename), image)
        os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
        with open(os.path.join(root, "Annotations", image_id + ".xml"), "w",
                  encoding="utf-8") as f:
            f.write(_xml(image_id, filename, image, targets, class_names))
        ids.append(image_id)
    os.makedirs(os.path.dirname(sets_file), exist_ok=True)
    with open(sets_file, "w", encoding="utf-8") as f:
        f.write("".join(i + "\n" for i in ids))
    return ids
