"""SavedModel export for TF Serving: any batch size, any image size, NMS inside the graph (DESIGN.md §7)."""

from __future__ import annotations

import pathlib

import keras
import tensorflow as tf

from kerasdet.data._io import check_max_pixels
from kerasdet.ops._roi_pool import without_fused_kernel

#: the outputs of every family; a model's own list is `model.output_keys` (masks, keypoints...)
OUTPUT_KEYS = ("boxes", "scores", "labels", "num_detections")


#: images of more pixels than this are refused by `serving_bytes` before they are decoded (decompression bombs)
DEFAULT_MAX_PIXELS = 100_000_000


def _bytes_at(data, start, count):
    return tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, count), tf.uint8), tf.int64)


def _header_size(data):
    """int64 (height, width) read from the header of an encoded PNG, JPEG, GIF or BMP image without decoding it;
    (0, 0) when the format is not one of these or the header is too short (decoding then reports the error)."""
    length = tf.strings.length(data)
    magic = tf.strings.substr(data, 0, 4)

    def big_endian(b):
        return ((b[0] * 256 + b[1]) * 256 + b[2]) * 256 + b[3]

    def png():  # IHDR: width and height, 4 bytes each, big-endian, at offset 16
        b = _bytes_at(data, 16, 8)
        return tf.stack([big_endian(b[4:]), big_endian(b[:4])])

    def gif():  # logical screen: width and height, 2 bytes each, little-endian, at offset 6
        b = _bytes_at(data, 6, 4)
        return tf.stack([b[2] + b[3] * 256, b[0] + b[1] * 256])

    def bmp():  # BITMAPINFOHEADER: width and height, signed 4-byte little-endian, at offset 18
        b = _bytes_at(data, 18, 8)
        width, height = big_endian(b[3::-1]), big_endian(b[7:3:-1])
        return tf.stack([tf.where(height >= 2**31, 2**32 - height, height), width])

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)

    return tf.case([
        (tf.equal(magic, b"\x89PNG") & (length >= 24), png),
        (tf.equal(tf.strings.substr(magic, 0, 3), b"GIF") & (length >= 10), gif),
        (tf.equal(tf.strings.substr(magic, 0, 2), b"BM") & (length >= 26), bmp),
        (tf.equal(tf.strings.substr(magic, 0, 2), b"\xff\xd8"), jpeg),
    ], default=lambda: tf.zeros([2], tf.int64))


def _decode_batch(encoded, pad_value=(0.0, 0.0, 0.0), max_pixels=DEFAULT_MAX_PIXELS):
    """Decodes a batch of JPEG/PNG/GIF/BMP strings: (float32 `[B, H, W, 3]`, int32 sizes `[B, 2]`), smaller images
    padded at the bottom/right with the RGB `pad_value` (the model's: the pixel its preprocessing maps to zero); the
    model crops each image back to its size before detecting on it. An image whose header declares more than
    `max_pixels` pixels is refused before it is decoded (an InvalidArgumentError naming the limit)."""
    value = tf.constant(pad_value, tf.float32)

    def decode(data):
        if max_pixels is not None:
            hw = _header_size(data)
            check = tf.debugging.assert_less_equal(
                hw[0] * hw[1], tf.constant(int(max_pixels), tf.int64),
                message=f"serving_bytes: an image's header declares more than max_pixels={int(max_pixels)} pixels "
                        "(refused before decoding)")
            with tf.control_dependencies([check]):
                data = tf.identity(data)
        return tf.cast(tf.io.decode_image(data, channels=3, expand_animations=False), tf.float32) - value

    def decode_one(data):
        image = decode(data)
        return tf.RaggedTensor.from_tensor(image, ragged_rank=1), tf.shape(image)[:2]

    def decode_all():
        # each image decoded once into a ragged batch [B, (H), (W), 3]; to_tensor() pads with 0 at the end of each
        # row and column, which is the pad value once it is added back
        ragged, sizes = tf.map_fn(decode_one, encoded, fn_output_signature=(
            tf.RaggedTensorSpec([None, None, 3], tf.float32, ragged_rank=1), tf.TensorSpec([2], tf.int32)))
        return ragged.to_tensor() + value, sizes

    # map_fn cannot stack zero images of unknown size: an empty request gives an empty [0, 0, 0, 3] batch
    return tf.cond(tf.size(encoded) > 0, decode_all,
                   lambda: (tf.zeros([0, 0, 0, 3], tf.float32), tf.zeros([0, 2], tf.int32)))


def _class_names(model):
    names = getattr(model, "class_names", None)
    return [str(n) for n in names] if names else [str(i) for i in range(model.num_classes)]


def saved_model(model, path, overwrite: bool = False, mask_threshold=None, label_names: bool = False,
                max_pixels=DEFAULT_MAX_PIXELS, xla: bool = False) -> pathlib.Path:
    """Writes `model` as a SavedModel with two signatures for TF Serving.

    - `serving_default`: `images` uint8 `[None, None, None, 3]` (any batch size, any image size the
      family accepts) -> `boxes [B, N, 4]`, `scores [B, N]`, `labels int32 [B, N]` (-1 padding),
      `num_detections int32 [B]`, plus the family's own outputs (`model.output_keys`: masks,
      keypoints...), NMS inside the graph. Families that detect on external proposals
      (`model.needs_rois`) also take `rois` float32 `[None, None, 4]` (xyxy pixels, padding rows -1).
    - `serving_bytes`: `images` string `[None]` of encoded JPEG/PNG -> the same outputs; each image of
      the request is detected at its own size, so its results are those it gets alone, whatever the other
      images (masks come at the request's largest size, zero outside the image: crop them to it).

    The class names travel in the export: `tf.saved_model.load(path).class_names[0]` is a string variable `[C]`
    (the model's `class_names`, or "0".."C-1" when it has none), and `label_names=True` adds a `label_names`
    output, string `[B, N]` ("" for padding rows). The export loads with `tf.saved_model.load(path)` in a
    process that never imports kerasdet.

    Args:
        model: a built `kerasdet.models.Detector`.
        path: output folder (e.g. "serving/1" for TF Serving's version layout).
        overwrite: replace an existing non-empty folder.
        mask_threshold: for models with pasted `masks` (Mask R-CNN): None serves float32 probabilities in
            0..1; a threshold in (0, 1) serves uint8 binary masks (4x smaller responses).
        label_names: also serve each detection's class name (`label_names`).
        max_pixels: `serving_bytes` refuses an image whose header declares more pixels, before decoding it (None:
            no limit).
        xla: keep the XLA-compiled forward pass of a model built with `xla_forward=True` (TF Serving on a CPU then
            needs XLA enabled); by default the export runs the forward pass without XLA.

    Returns:
        The folder written.

    Example:
        >>> kerasdet.export.saved_model(kerasdet.zoo.load("retinanet_resnet18_shapes"), "serving/1")
        >>> served = tf.saved_model.load("serving/1")
        >>> served.signatures["serving_default"](images=tf.zeros([2, 256, 256, 3], tf.uint8))["boxes"].shape
        TensorShape([2, 100, 4])
    """
    if not hasattr(model, "detect"):
        raise TypeError(f"`model` must be a kerasdet Detector (with .detect); got {type(model).__name__}")
    if not model.built:
        raise ValueError("`model` is not built: call it once (or `model.build_for_size(size)`) before exporting")
    if not isinstance(path, (str, pathlib.PurePath)):
        raise TypeError(f"`path` must be a str or pathlib.Path; got {type(path).__name__}")
    check_max_pixels(max_pixels)
    path = pathlib.Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"`path` {path} exists and is not empty; pass overwrite=True to replace it")

    if getattr(model, "xla_forward", False) and not xla:
        with model.without_xla_forward():  # traced without XLA; xla=True here only stops this branch
            return saved_model(model, path, overwrite=overwrite, mask_threshold=mask_threshold,
                               label_names=label_names, max_pixels=max_pixels, xla=True)
    keys = tuple(getattr(model, "output_keys", OUTPUT_KEYS))
    if mask_threshold is not None:
        if "masks" not in keys or getattr(model, "mask_output", None) != "pasted":
            raise ValueError("`mask_threshold` applies to models that output masks pasted into the image "
                             f"(Mask R-CNN with mask_output='pasted'); this {type(model).__name__} outputs {keys}")
        if not 0.0 < float(mask_threshold) < 1.0:
            raise ValueError(f"`mask_threshold` must be in (0, 1); got {mask_threshold!r}")
        saved_threshold = model.mask_threshold
        model.mask_threshold = float(mask_threshold)
        try:
            return saved_model(model, path, overwrite=overwrite, label_names=label_names, max_pixels=max_pixels,
                               xla=xla)
        finally:
            model.mask_threshold = saved_threshold
    image_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    bytes_spec = tf.TensorSpec([None], tf.string, name="images")
    archive = keras.export.ExportArchive()
    archive.track(model)
    names = _class_names(model)
    archive.add_variable_collection("class_names", [tf.Variable(names, trainable=False, name="class_names")])
    if label_names:
        names_table = tf.constant(names)

        def with_names(out):
            named = tf.gather(names_table, tf.maximum(out["labels"], 0))
            return dict(out, label_names=tf.where(out["labels"] >= 0, named, ""))
    else:
        def with_names(out):
            return out
    # RoI max pooling's XLA-compiled forward kernel stays out of exports (serving then needs no XLA)
    with without_fused_kernel():
        if getattr(model, "needs_rois", False):
            # families that classify external proposals: both signatures also take rois [B, R, 4] (xyxy pixels,
            # padding rows -1)
            rois_spec = tf.TensorSpec([None, None, 4], tf.float32, name="rois")

            def detect_with_rois(images, rois):
                out = model.detect({"images": images, "rois": rois})
                return with_names({k: out[k] for k in keys})

            def detect_bytes_with_rois(encoded, rois):
                images, sizes = _decode_batch(encoded, model.input_pad_value, max_pixels)
                out = model.detect_padded({"images": images, "rois": rois}, sizes)
                return with_names({k: out[k] for k in keys})

            archive.add_endpoint(name="serving_default", fn=detect_with_rois, input_signature=[image_spec, rois_spec])
            archive.add_endpoint(name="serving_bytes", fn=detect_bytes_with_rois, input_signature=[bytes_spec, rois_spec])
        else:
            def detect(images):
                out = model.detect(images)
                return with_names({k: out[k] for k in keys})

            def detect_bytes(encoded):
                images, sizes = _decode_batch(encoded, model.input_pad_value, max_pixels)
                out = model.detect_padded(images, sizes)
                return with_names({k: out[k] for k in keys})

            archive.add_endpoint(name="serving_default", fn=detect, input_signature=[image_spec])
            archive.add_endpoint(name="serving_bytes", fn=detect_bytes, input_signature=[bytes_spec])
        archive.write_out(str(path), verbose=False)
    return path
