"""Atomic writes: a reader sees the old file or the whole new one, never half of one.

Every file is written to a `.tmp-...` file in its folder, flushed to disk and renamed into
place; a process killed mid-write leaves only a `.tmp-` file, which `remove_temp_files` clears.
This is the one writer every command uses.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import sys
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from rolemodels.errors import RunError

TEMP_PREFIX = ".tmp-"
HASH_BLOCK = 1 << 20  # checksums stream the file in 1 MiB blocks

Notice = Callable[[str], None]


def print_notice(line: str) -> None:
    """Default `notice`: one line to stderr."""
    print(line, file=sys.stderr, flush=True)


# Library texts that advise loading pickles (torch's `weights_only=False`, numpy's
# `allow_pickle=True`) would tell a user to let a file run code: we say what the file holds instead.
PICKLE_ADVICE = ("weights_only", "allow_pickle")
PICKLE_REFUSED = "it holds pickled Python objects, which are refused: loading them could run code"


def reason(err: BaseException) -> str:
    """One line saying what went wrong, without the file name (the caller names it)."""
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror
    else:
        text = str(err) or type(err).__name__
    if any(advice in text for advice in PICKLE_ADVICE):
        return PICKLE_REFUSED
    return " ".join(text.split())


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable. Not every system can open a folder; then skip."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def open_temp(folder: Path, name: str) -> tuple[Path, int]:
    """Create `folder/.tmp-<name>.<random>` exclusively; return its path and descriptor.

    Unlike tempfile.mkstemp, the file gets the usual permissions (0o666 less umask).
    """
    while True:
        temp = folder / f"{TEMP_PREFIX}{name[:100]}.{secrets.token_hex(4)}"
        try:
            return temp, os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call `write(f)` on a temporary file next to `path`, fsync it, rename it into place.

    On any failure the temporary file is removed, `path` keeps its old content and
    the error is raised as RunError naming `path` (KeyboardInterrupt passes through).
    Only a regular file (or a new name) is ever replaced: renaming onto a device, a pipe or a
    folder would destroy it, so such a `path` is refused.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a device, pipe or socket)"
        raise RunError(f"cannot write {path}: it is {kind}, and only files are replaced")
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp, fd = open_temp(path.parent, path.name)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        temp = None
        _fsync_folder(path.parent)
    except BaseException as err:
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
        if isinstance(err, Exception):
            raise RunError(f"cannot write {path}: {reason(err)}") from err
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see module docstring)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def finite_json(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None: JSON has no such numbers, and a
    reader should see "no value", not an `Infinity` that most JSON parsers refuse."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(value) for value in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as JSON (indent 2, keys in their given order; NaN and infinities as null) to
    `path` atomically."""
    atomic_write(path, lambda f: f.write((json.dumps(finite_json(obj), indent=2, allow_nan=False) + "\n").encode()))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a log file (not atomic: a log may end in a partial line); a failure is
    one RunError naming the file and what went wrong (e.g. "No space left on device")."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    except OSError as err:
        raise RunError(f"cannot write {path}: {reason(err)}") from err


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save `array` in .npy format (no pickles) to `path` atomically; `path` is used as given."""
    atomic_write(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def atomic_save_torch(path: str | os.PathLike, obj: Any) -> None:
    """torch.save `obj` (tensors, state dicts, plain containers) to `path` atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_torch(path: str | os.PathLike) -> Any:
    """torch.load with weights_only=True onto the CPU; failures raise RunError naming `path`."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:
        raise RunError(f"cannot read {path}: {reason(err)}") from err


def remove_temp_files(run_dir: str | os.PathLike) -> int:
    """Delete `.tmp-*` files left in `run_dir` by a process that was killed mid-write.

    Call it while holding the RunLock. Returns how many were removed.
    """
    removed = 0
    for temp in Path(run_dir).rglob(f"{TEMP_PREFIX}*"):
        if temp.is_file() or temp.is_symlink():
            try:
                temp.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def file_sha256(path: str | os.PathLike) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex digest) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    block = bytearray(HASH_BLOCK)
    view = memoryview(block)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(block):
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()


def arrays_sha256(*arrays: Any, rows: int = 65536) -> tuple[int, str]:
    """(bytes, SHA-256) of arrays or tensors (memory-mapped ones included), read `rows` rows at a
    time: the fingerprint of the data a run used, whatever file it came from. None is skipped."""
    digest, size = hashlib.sha256(), 0
    for array in arrays:
        if array is None:
            continue
        digest.update(f"{tuple(array.shape)} {array.dtype}".encode())
        for first in range(0, array.shape[0], rows):
            block = np.ascontiguousarray(torch.as_tensor(array[first:first + rows]).numpy())
            digest.update(block.data)
            size += block.nbytes
    return size, digest.hexdigest()
