"""IDX files (the MNIST / Fashion-MNIST format), plain or gzipped.

Layout: two zero bytes, a type code, the number of dimensions `ndim`, then `ndim`
big-endian uint32 sizes, then the values in C order, big-endian.
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from rolemodels.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"

# type code -> element type (big-endian, as stored)
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or not (detected by the bytes 1f 8b at the start).

    Returns a writable array in native byte order whose shape is the file's dimensions:
    uint8 for type 0x08, int8 0x09, int16 0x0B, int32 0x0C, float32 0x0D, float64 0x0E.
    Raises UserError for a missing file, a bad header, or a payload that is shorter or
    longer than the dimensions say.
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise UserError(f"IDX file {path}: {len(raw)} bytes, too short for the 4-byte header")
    if raw[0] != 0 or raw[1] != 0:
        raise UserError(
            f"IDX file {path}: starts with bytes {raw[0]:02x} {raw[1]:02x}, expected 00 00 "
            f"(is it an IDX file?)"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise UserError(f"IDX file {path}: unknown type code 0x{code:02X}, expected one of {known}")
    if ndim == 0:
        raise UserError(f"IDX file {path}: 0 dimensions, expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(
            f"IDX file {path}: header declares {ndim} dimensions ({header} header bytes) "
            f"but the file has only {len(raw)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        dims = " x ".join(f"{d:,}" for d in shape)
        problem = "truncated" if actual < expected else "trailing bytes"
        raise UserError(
            f"IDX file {path}: {problem}: dimensions {dims} need {expected:,} payload bytes, "
            f"found {actual:,}"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=True)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError(f"IDX file {path}: not found") from None
    except OSError as err:
        raise UserError(f"IDX file {path}: cannot read it ({err.strerror or err})") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise UserError(
            f"IDX file {path}: gzip data is damaged or truncated ({err}); expected a complete "
            f".gz file"
        ) from None
