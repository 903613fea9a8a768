"""Label files: read and write int64 [N] label arrays in the formats label-noise releases use.

Readers: `.npy`; raw little-endian int64 without a header (`.int64`, `.bin`, `.raw`; the paper's
released `noisy_labels.npy` is such a file despite its name); `.txt`/`.csv` with one label per
line; `.npz` and `.pt`/`.pth` holding several arrays (CIFAR-N's `CIFAR-10_human.pt` has
clean_label, aggre_label, worse_label, random_label1, ...), of which `key` chooses one.
The format comes from the content (the `\\x93NUMPY`, zip and pickle magic bytes) and the
extension, or from an explicit `fmt`. Every label array is checked (`labels.check_labels`):
integer values, in [0, C) when C is known, and of the expected length when that is known.

Writers: `.npy` (default), `.txt`/`.csv`, raw `.int64`/`.bin`; written to a temporary file in
the same folder and renamed into place, so an error never leaves a partial file behind.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from rolemodels.errors import UserError
from rolemodels.labels import check_labels
from rolemodels.runtime.files import atomic_write, reason

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
RAW_SUFFIXES = (".int64", ".bin", ".raw", ".i8")
TEXT_SUFFIXES = (".txt", ".csv", ".tsv")
PT_SUFFIXES = (".pt", ".pth")
# Names accepted by `fmt=` and the format each one means.
FORMAT_ALIASES = {
    "npy": "npy",
    "npz": "npz",
    "raw": "raw",
    "int64": "raw",
    "bin": "raw",
    "txt": "text",
    "text": "text",
    "csv": "text",
    "pt": "pt",
    "pth": "pt",
    "torch": "pt",
}
WRITE_FORMATS = ("npy", "raw", "text")


class LabelFileWarning(UserWarning):
    """A label file read in a format other than its name suggests."""


# ----------------------------------------------------------------------------- reading


def _canonical_format(fmt: str, source: str) -> str:
    name = str(fmt).lower().lstrip(".")
    if name not in FORMAT_ALIASES:
        raise UserError(f"{source}: unknown format {fmt!r}; expected one of {', '.join(FORMAT_ALIASES)}")
    return FORMAT_ALIASES[name]


def detect_format(path: str | Path) -> str:
    """The format of a label file from its first bytes and extension.

    Returns one of "npy", "npz", "raw", "text", "pt"; UserError when neither tells.
    """
    path = Path(path)
    source = f"labels file {path}"
    suffix = path.suffix.lower()
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(NPY_MAGIC):
        return "npy"
    if suffix in RAW_SUFFIXES:  # raw bytes have no magic; they may start like anything
        return "raw"
    if head.startswith(ZIP_MAGIC):
        return "npz" if suffix == ".npz" else "pt"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle: legacy torch.save
        return "pt"
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix == ".npy":
        # The paper's released noisy_labels.npy is raw int64 without the .npy header.
        warnings.warn(
            f"{source}: no .npy header; reading it as raw little-endian int64 "
            "(name the format raw, e.g. --labels-format raw, to silence this)",
            LabelFileWarning,
            stacklevel=3,
        )
        return "raw"
    if suffix in PT_SUFFIXES:
        raise UserError(f"{source}: not a torch.save file (no zip or pickle header)")
    raise UserError(
        f"{source}: unknown format {suffix or '(no extension)'}; expected .npy, .npz, .int64/.bin (raw), "
        ".txt/.csv or .pt/.pth, or name the format explicitly"
    )


def _read_npy(path: Path, source: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"{source}: cannot read as .npy ({err})") from None


def _read_raw(path: Path, source: str) -> np.ndarray:
    size = path.stat().st_size
    if size % 8:
        raise UserError(
            f"{source}: {size:,} bytes is not a multiple of 8; expected raw little-endian int64 labels"
        )
    return np.fromfile(path, dtype="<i8")


def _read_text(path: Path, source: str) -> np.ndarray:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{source}: not a text file; expected one label per line") from None
    numbered = [(i + 1, line.strip()) for i, line in enumerate(lines) if line.strip()]
    # One header line such as "label" is allowed (what a spreadsheet or pandas writes).
    if numbered and _is_header(numbered[0][1]):
        numbered = numbered[1:]
    tokens = [token for _, token in numbered]
    try:
        return np.array(tokens, dtype=np.int64) if tokens else np.zeros(0, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    values = np.empty(len(tokens), dtype=np.float64)
    for k, (line_number, token) in enumerate(numbered):
        try:
            values[k] = float(token)
        except ValueError:
            raise UserError(
                f"{source}: line {line_number} is {token[:40]!r}; expected one integer label per line"
            ) from None
    return values


def _is_header(line: str) -> bool:
    """A column name like "label" or "noisy_label" (but not "nan" or "inf", which are numbers)."""
    try:
        float(line)
        return False
    except ValueError:
        return line.replace("_", "").replace(" ", "").isalpha()


def _pick(arrays: dict, key: str | None, source: str, option: str) -> object:
    """Choose one entry of a dict of arrays by `key` (optional when there is only one)."""
    names = ", ".join(str(k) for k in arrays)
    if key is None:
        if len(arrays) == 1:
            return next(iter(arrays.values()))
        raise UserError(f"{source}: holds several arrays ({names}); choose one with {option}")
    if key not in arrays:
        raise UserError(f"{source}: no key {key!r}; available keys: {names}")
    return arrays[key]


def _numpy_safe_globals() -> list:
    """The numpy names a torch.save of numpy arrays refers to, for torch.load(weights_only=True)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    dtype_types = [type(np.dtype(code)) for code in "?bBhHiIlLqQefd"]
    return [
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *dtype_types,
    ]


def _read_pt(path: Path, source: str, key: str | None) -> object:
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as err:
        raise UserError(f"{source}: cannot be read as tensors or arrays: {reason(err)}") from None
    if isinstance(obj, dict):
        return _pick(obj, key, source, "a key (--labels-key)")
    if key is not None:
        raise UserError(f"{source}: holds a single {type(obj).__name__}, not a dict; key {key!r} does not apply")
    return obj


def _read_npz(path: Path, source: str, key: str | None) -> object:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return np.asarray(_pick({name: archive[name] for name in archive.files}, key, source, "a key"))
    except UserError:
        raise
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"{source}: cannot read as .npz ({err})") from None


def read_labels(
    path: str | Path,
    fmt: str | None = None,
    key: str | None = None,
    num_classes: int | None = None,
    expected_length: int | None = None,
) -> np.ndarray:
    """Read a label file into int64 [N], checked (see `check_labels`).

    fmt: "npy", "npz", "raw" (alias "int64", "bin"), "text" ("txt", "csv"), "pt" ("pth");
    detected from content and extension when None. key: which array of a .pt/.npz dict.
    """
    path = Path(path)
    source = f"labels file {path}"
    if not path.exists():
        raise UserError(f"{source}: no such file")
    if not path.is_file():
        raise UserError(f"{source}: not a regular file")
    if path.stat().st_size == 0:
        raise UserError(f"{source}: is empty; expected labels")
    fmt = _canonical_format(fmt, source) if fmt is not None else detect_format(path)
    if key is not None and fmt not in ("pt", "npz"):
        raise UserError(f"{source}: a key ({key!r}) applies only to .pt/.pth and .npz files, not {fmt}")
    if fmt == "npy":
        values = _read_npy(path, source)
    elif fmt == "raw":
        values = _read_raw(path, source)
    elif fmt == "text":
        values = _read_text(path, source)
    elif fmt == "pt":
        values = _read_pt(path, source, key)
    else:
        values = _read_npz(path, source, key)
    if key is not None:
        source = f"{source} [{key}]"
    labels = check_labels(values, source, num_classes=num_classes, expected_length=expected_length)
    if labels.size == 0:
        raise UserError(f"{source}: holds no labels")
    return labels


# ----------------------------------------------------------------------------- writing


def write_format(path: str | Path, fmt: str | None = None) -> str:
    """The format `write_labels` uses for `path`: "npy", "raw" or "text"."""
    path = Path(path)
    if fmt is not None:
        name = _canonical_format(fmt, f"output {path}")
        if name not in WRITE_FORMATS:
            raise UserError(f"output {path}: cannot write format {fmt!r}; expected npy, raw (int64) or text (txt, csv)")
        return name
    suffix = path.suffix.lower()
    if suffix in ("", ".npy"):
        return "npy"
    if suffix in RAW_SUFFIXES:
        return "raw"
    if suffix in TEXT_SUFFIXES:
        return "text"
    raise UserError(
        f"output {path}: cannot write labels as {suffix}; expected .npy, .txt, .csv, .int64 or .bin"
    )


def write_labels(path: str | Path, labels: np.ndarray, fmt: str | None = None) -> Path:
    """Write labels int [N] to `path` atomically (runtime.files.atomic_write).

    The format comes from `fmt` or the extension (.npy or none: npy; .txt/.csv: one label per
    line; .int64/.bin: raw little-endian int64). Returns the path written.
    """
    path = Path(path)
    fmt = write_format(path, fmt)
    labels = check_labels(labels, f"labels for {path}")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"output {path}: folder {folder} does not exist")
    if path.is_dir():
        raise UserError(f"output {path}: is a folder; expected a file name")
    little = labels.astype("<i8")

    def write(f) -> None:
        if fmt == "npy":
            np.save(f, little, allow_pickle=False)
        elif fmt == "raw":
            f.write(little.tobytes())
        else:
            f.write(("\n".join(map(str, labels.tolist())) + "\n").encode("ascii"))

    atomic_write(path, write)  # a failure (read-only folder, disk full) is one RunError line naming the file
    return path
