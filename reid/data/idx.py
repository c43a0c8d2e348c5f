"""Reader for the IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/)."""

import gzip
import zlib
from pathlib import Path

import numpy as np

from reid.errors import DataError

# IDX type code -> big-endian numpy dtype.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Reads an IDX file, gzip-compressed or raw, into a writable native-endian array.

    Layout: 2 zero bytes, a type code (see `_DTYPES`), the number of dimensions ndim, then ndim
    big-endian uint32 sizes and the big-endian data in C order. Compression is detected from the
    gzip magic bytes, not the file name. MNIST images give (N, 28, 28) uint8, labels (N,) uint8.

    Raises:
        DataError: the file is missing, unreadable, not gzip/IDX, or its payload size does not match
            the header.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"Cannot read the IDX file {path}: {e}. Check that the file exists and is a complete copy "
            "(re-download it if it was cut off)."
        ) from e
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(
            f"{path} is not an IDX file: it should start with two zero bytes, a type code and the number "
            f"of dimensions, but starts with {raw[:4].hex(' ') or 'nothing'}. Point to the original "
            "MNIST-style files (e.g. train-images-idx3-ubyte.gz)."
        )
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise DataError(
            f"{path} has the unknown IDX type code 0x{code:02X} (known: {known}). The file is corrupt or "
            "not in IDX format; replace it with the original."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path} is truncated: its header announces {ndim} dimensions ({header} header bytes) but the "
            f"file has only {len(raw)} bytes. Replace it with a complete copy."
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        problem = "truncated" if len(raw) - header < expected else "longer than its header says"
        raise DataError(
            f"{path} is {problem}: shape {shape} of {dtype.name} needs {expected} data bytes after the "
            f"{header}-byte header, but there are {len(raw) - header}. Replace it with the original file."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))
