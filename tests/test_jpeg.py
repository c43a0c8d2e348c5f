"""JPEG frame decoding: the header walk and the direct libjpeg path against Pillow's own `Image.open` path."""

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from reid.data.jpeg import dct_scale, decode_frame, frame_header

# name -> (stored width x height, mode, save options): the ways a dataset's JPEGs differ
VARIANTS = {
    "baseline": ((128, 256), "RGB", {"quality": 90}),
    "444": ((128, 256), "RGB", {"quality": 75, "subsampling": 0}),
    "progressive": ((128, 256), "RGB", {"quality": 90, "progressive": True}),
    "metadata": ((128, 256), "RGB", {"exif": b"Exif\0\0" + bytes(9), "icc_profile": bytes(99)}),
    "odd_size": ((125, 251), "RGB", {"quality": 85}),
    "gray": ((128, 256), "L", {"quality": 90}),
    "cmyk": ((128, 256), "CMYK", {"quality": 90}),
}
SIZES = [(128, 64), (144, 72), (64, 32), (32, 16), (100, 50), (300, 150)]  # (height, width)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """name -> path of a photo crop saved as each variant."""
    folder = tmp_path_factory.mktemp("jpeg")
    photo = load_sample_images().images[0]
    paths = {}
    for name, ((width, height), mode, options) in VARIANTS.items():
        paths[name] = str(folder / f"{name}.jpg")
        crop = Image.fromarray(photo[100 : 100 + height, 200 : 200 + width])
        crop.convert(mode).save(paths[name], **options)
    return paths


def pillow_reference(path: str, height: int, width: int) -> np.ndarray:
    """What Pillow's documented API gives: open, draft to the size, RGB, bilinear resize if still needed."""
    with Image.open(path) as img:
        img.draft("RGB", (width, height))
        img = img.convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(img)


@pytest.mark.parametrize("name", VARIANTS)
def test_frame_header_reads_size_components_and_bits(frames, name):
    (width, height), mode, _ = VARIANTS[name]
    with open(frames[name], "rb") as file:
        assert frame_header(file.read()) == (height, width, len(mode), 8)


def test_frame_header_skips_fill_bytes(frames):
    """T.81 B.1.1.2: any marker may be preceded by 0xFF fill bytes."""
    with open(frames["baseline"], "rb") as file:
        data = file.read()
    padded = data[:2] + b"\xff\xff\xff" + data[2:]
    assert frame_header(padded) == frame_header(data) == (256, 128, 3, 8)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "start-of-image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "ends before the frame header"),
        (b"\xff\xd8\xff\xda\x00\x08" + bytes(20), "no frame header"),
        (b"\xff\xd8\x00\x00", "no marker at byte 2"),
    ],
)
def test_frame_header_rejects_what_is_no_jpeg(data, message):
    with pytest.raises(ValueError, match=message):
        frame_header(data)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("height, width", SIZES)
def test_decode_frame_equals_pillows_path(frames, name, height, width):
    ours = decode_frame(frames[name], height, width)
    assert ours.shape == (height, width, 3) and ours.dtype == np.uint8 and ours.flags.writeable
    assert np.array_equal(ours, pillow_reference(frames[name], height, width))


def test_dct_scale_is_the_largest_that_covers_the_size():
    assert [dct_scale(256, 128, h, w) for h, w in SIZES] == [2, 1, 4, 8, 2, 1]
    assert dct_scale(256, 128, 128, 16) == 2  # the tighter side decides


def test_a_truncated_jpeg_is_an_unreadable_frame_named_in_the_error(frames, tmp_path):
    with open(frames["baseline"], "rb") as file:
        data = file.read()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match=str(path)):
        decode_frame(str(path), 128, 64)


def test_colour_jpegs_skip_image_open(frames, monkeypatch):
    """The speed comes from not parsing headers in Python: 8-bit colour JPEGs never reach `Image.open`."""

    def refuse(*args, **kwargs):
        raise AssertionError("Image.open was called")

    monkeypatch.setattr("reid.data.jpeg._open_jpeg", refuse)
    for name in ("baseline", "444", "progressive", "metadata", "odd_size"):
        assert np.array_equal(decode_frame(frames[name], 128, 64), pillow_reference(frames[name], 128, 64))
    with pytest.raises(AssertionError, match="Image.open was called"):
        decode_frame(frames["gray"], 128, 64)


def test_pillows_decompression_bomb_limit_still_holds(frames, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the frame has 32,768 pixels: over twice that
    with pytest.raises(Image.DecompressionBombError):
        decode_frame(frames["baseline"], 128, 64)
