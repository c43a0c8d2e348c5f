"""JPEG frames decoded straight to the size training needs.

libjpeg can decode at 1/2, 1/4 or 1/8 of the stored size (DCT scaling), so a 256 x 128 MARS frame comes
out at 128 x 64 with about half the work and no resize. Pillow's `Image.open` also parses every header
segment in Python, about a fifth of a small frame's decode time; the frame header (SOFn) alone gives the
size and the number of colour components, so 8-bit colour JPEGs go straight to Pillow's libjpeg decoder
with the same arguments `Image.open` would pass, and anything else takes the `Image.open` path.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image

START_OF_IMAGE = b"\xff\xd8"
FRAME_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
"""The second byte of the SOFn markers (ITU T.81, table B.1); 0xC4, 0xC8 and 0xCC are other segments."""
HEADER_END_MARKERS = frozenset({0xD9, 0xDA})  # end of image, start of scan: no frame header follows


def frame_header(data: bytes) -> tuple[int, int, int, int]:
    """(height, width, components, bits per sample) from the frame header of a JPEG file's bytes.

    Walks the marker segments from the start of the image to the first SOFn segment. Raises ValueError
    when the bytes do not start as a JPEG, or end or break off before a frame header.
    """
    if not data.startswith(START_OF_IMAGE):
        raise ValueError("no JPEG start-of-image marker")
    at = len(START_OF_IMAGE)
    try:
        while True:
            if data[at] != 0xFF:
                raise ValueError(f"no marker at byte {at}")
            while data[at + 1] == 0xFF:  # fill bytes before a marker
                at += 1
            marker = data[at + 1]
            if marker in FRAME_MARKERS:
                bits, height, width, components = struct.unpack_from(">BHHB", data, at + 4)
                return height, width, components, bits
            if marker in HEADER_END_MARKERS:
                raise ValueError("no frame header before the image data")
            at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    except (IndexError, struct.error):
        raise ValueError("the file ends before the frame header") from None


def dct_scale(height: int, width: int, out_height: int, out_width: int) -> int:
    """The largest libjpeg DCT scale denominator (8, 4, 2 or 1) whose decode still covers the output size,
    as Pillow's `draft` picks it."""
    fits = min(width // out_width, height // out_height)
    return next((s for s in (8, 4, 2) if fits >= s), 1)


def _direct_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) of a JPEG that Pillow's decoder can take directly: 8 bits, 3 components (what
    `Image.open` decodes as raw mode "RGB", leaving the colour space to libjpeg) and within Pillow's
    decompression-bomb limit. None for anything else (no JPEG, grey, CMYK, 12-bit, a height set later by a
    DNL segment), which takes the `Image.open` path."""
    try:
        height, width, components, bits = frame_header(data)
    except ValueError:
        return None
    if components == 3 and bits == 8 and 0 < height * width <= Image.MAX_IMAGE_PIXELS:
        return height, width
    return None


def _open_jpeg(path: str, height: int, width: int) -> Image.Image:
    """Any JPEG through `Image.open`, drafted to the smallest DCT scale covering the size, as RGB."""
    with Image.open(path, formats=("JPEG",)) as img:  # no probing of other formats' headers
        img.draft("RGB", (width, height))
        return img.convert("RGB")


def decode_frame(path: str, height: int, width: int) -> np.ndarray:
    """The JPEG at `path` as RGB uint8 (height, width, 3).

    Decoded at the smallest DCT scale that still covers the size, then resized bilinearly if the scaled
    size is not the requested one. An unreadable file, or one that is not a JPEG, raises OSError.
    """
    with open(path, "rb") as file:
        data = file.read()
    size = _direct_size(data)
    if size is None:
        img = _open_jpeg(path, height, width)
    else:
        scale = dct_scale(*size, height, width)
        scaled = (-(-size[1] // scale), -(-size[0] // scale))  # (width, height), rounded up as libjpeg does
        try:
            img = Image.frombytes("RGB", scaled, data, "jpeg", "RGB", "", scale, 0)
        except ValueError as error:  # Pillow's words for a truncated or broken stream
            raise OSError(f"{path}: {error}") from None
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    frame = np.empty((height, width, 3), np.uint8)
    frame.data.cast("B")[:] = img.tobytes()  # 3-7% faster in all than np.array(img)'s array interface
    return frame
