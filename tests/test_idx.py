"""Tests of read_idx: round trips through files written here with struct, malformed files, real MNIST."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from reid.data.idx import read_idx
from reid.errors import DataError

# type code, struct format character of one element, numpy dtype of the result
TYPES = [
    (0x08, "B", np.uint8),
    (0x09, "b", np.int8),
    (0x0B, "h", np.int16),
    (0x0C, "i", np.int32),
    (0x0D, "f", np.float32),
    (0x0E, "d", np.float64),
]


def idx_bytes(code: int, shape: tuple[int, ...], values: list, fmt: str) -> bytes:
    """IDX bytes built with struct alone, independently of the reader."""
    header = struct.pack(">BBBB", 0, 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    return header + struct.pack(f">{len(values)}{fmt}", *values)


def write(path: Path, data: bytes, compress: bool) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(("code", "fmt", "dtype"), TYPES)
@pytest.mark.parametrize("shape", [(5,), (2, 3), (2, 3, 4), (0, 4)])
def test_round_trip(tmp_path, compress, code, fmt, dtype, shape):
    n = int(np.prod(shape))
    if dtype in (np.float32, np.float64):
        values = [0.5 * i - 3.25 for i in range(n)]
    else:
        info = np.iinfo(dtype)  # extremes check sign handling and byte order
        values = [[info.min, info.max, 1, 0][i % 4] if i < 4 else i % 100 for i in range(n)]
    path = write(tmp_path / "a-idx", idx_bytes(code, shape, values, fmt), compress)
    array = read_idx(path)
    assert array.shape == shape
    assert array.dtype == dtype and array.dtype.isnative
    assert array.flags.writeable
    np.testing.assert_array_equal(array, np.array(values, dtype=dtype).reshape(shape))


def test_accepts_str_paths_and_detects_gzip_by_content(tmp_path):
    data = idx_bytes(0x08, (3,), [1, 2, 3], "B")
    raw_named_gz = write(tmp_path / "raw.gz", data, compress=False)
    gz_named_raw = write(tmp_path / "gz-idx1-ubyte", data, compress=True)
    assert read_idx(str(raw_named_gz)).tolist() == read_idx(gz_named_raw).tolist() == [1, 2, 3]


GOOD = idx_bytes(0x0B, (2, 3), list(range(6)), "h")  # 4 + 8 header bytes, 12 data bytes

MALFORMED = {
    "empty": (b"", ["not an IDX file", "nothing"]),
    "bad magic": (b"\x01\x00" + GOOD[2:], ["not an IDX file", "01 00 0b 02"]),
    "unknown type": (GOOD[:2] + b"\x0a" + GOOD[3:], ["unknown IDX type code 0x0A", "0x08"]),
    "truncated header": (GOOD[:9], ["truncated", "2 dimensions", "12 header bytes", "only 9 bytes"]),
    "truncated data": (GOOD[:-1], ["truncated", "(2, 3)", "int16", "12 data bytes", "there are 11"]),
    "trailing bytes": (GOOD + b"\x00", ["longer than its header says", "there are 13"]),
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_files_raise_data_error_naming_the_file(tmp_path, case, compress):
    data, words = MALFORMED[case]
    path = write(tmp_path / "bad-idx", data, compress)
    with pytest.raises(DataError) as info:
        read_idx(path)
    for word in [str(path), *words]:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "data",
    [None, gzip.compress(GOOD)[:-6], b"\x1f\x8bnot gzip at all"],
    ids=["missing", "cut gzip", "bad gzip"],
)
def test_missing_or_broken_files_raise_data_error(tmp_path, data):
    path = tmp_path / "broken.gz"
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(DataError, match="Cannot read the IDX file .*broken.gz"):
        read_idx(path)


CLASS_COUNTS = {  # published per-class counts of labels 0..9
    ("mnist", "train"): [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    ("mnist", "t10k"): [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    ("fashion-mnist", "train"): [6000] * 10,
    ("fashion-mnist", "t10k"): [1000] * 10,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_files(name):
    folder = Path("/work/shared/data") / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is not here")
    for split, n in [("train", 60000), ("t10k", 10000)]:
        images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz")
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.uint8
        assert np.bincount(labels).tolist() == CLASS_COUNTS[name, split]
