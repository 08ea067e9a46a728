"""`kerasdet.data.read_image`: RGB uint8 from any common file, EXIF orientation applied, decompression bombs refused."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from kerasdet.data import DatasetError, read_image


def _png_declaring(width, height):
    """A tiny PNG whose header declares width x height (its pixel data is not a full image)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_gray_rgba_and_16_bit_images_come_out_rgb_uint8(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (12, 9), np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgba = rng.integers(0, 256, (7, 5, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (12, 9, 3) and out.dtype == np.uint8 and np.array_equal(out[..., 1], gray)
    out = read_image(tmp_path / "rgba.png")
    assert out.shape == (7, 5, 3) and np.array_equal(out, rgba[..., :3])


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with orientation 6 (rotate 90 clockwise to view) comes out upright."""
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = (255, 0, 0)           # stored: red on the left half
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(image).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "phone.jpg")
    assert out.shape == (40, 20, 3)      # upright: taller than wide
    assert out[:18, :, 0].mean() > 200 and out[22:, :, 0].mean() < 60   # red now on top


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_declaring(20000, 20000))
    with pytest.raises(DatasetError, match="max_pixels"):
        read_image(tmp_path / "bomb.png")
    with pytest.raises(DatasetError, match="max_pixels"):
        read_image(tmp_path / "bomb.png", max_pixels=10_000)


def test_missing_and_undecodable_files_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_image(tmp_path / "none.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DatasetError, match="text.png"):
        read_image(tmp_path / "text.png")


@pytest.mark.parametrize("reader", ["coco", "voc", "yolo"])
def test_readers_take_a_configurable_pixel_limit(tmp_path, reader):
    from kerasdet.data import CocoDataset, DatasetError, VocDataset, YoloTxtDataset, write_coco, write_voc, \
        write_yolo_txt

    image = np.zeros((40, 50, 3), np.uint8)
    sample = [(image, {"boxes": np.array([[2.0, 3.0, 20.0, 30.0]], np.float32), "labels": np.array([0])})]
    if reader == "coco":
        write_coco(sample, tmp_path / "a.json", [{"id": 1, "name": "a"}], image_dir=tmp_path / "images")
        make = lambda limit: CocoDataset(tmp_path / "a.json", tmp_path / "images", max_pixels=limit)  # noqa: E731
    elif reader == "voc":
        write_voc(sample, tmp_path / "voc", ["a"], split="train")
        make = lambda limit: VocDataset(tmp_path / "voc", "train", ["a"], max_pixels=limit)  # noqa: E731
    else:
        write_yolo_txt(sample, tmp_path / "yolo", ["a"])
        make = lambda limit: YoloTxtDataset(tmp_path / "yolo", max_pixels=limit)  # noqa: E731
    assert make(None).load(0)[0].shape == (40, 50, 3) and make(2000).load(0)[0].shape == (40, 50, 3)
    with pytest.raises(DatasetError, match="larger than max_pixels=1999"):
        make(1999).load(0)  # 40 x 50 = 2000 pixels, read from the header
    with pytest.raises(ValueError, match="`max_pixels`"):
        make(0)
