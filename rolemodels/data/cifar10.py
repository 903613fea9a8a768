"""CIFAR-10 from the Python-pickle batches folder `cifar-10-batches-py/`.

The folder holds `data_batch_1` .. `data_batch_5`, `test_batch` and `batches.meta`.
Each batch is a pickled dict with bytes keys: b"data" uint8 [n, 3072] (the red 32x32
plane, then green, then blue, each row-major) and b"labels" a list of ints; the meta
dict has b"label_names". Pickles are read with a restricted unpickler that can build
dicts, lists, bytes, ints, strings and numpy arrays and nothing else, so a malicious
file cannot run code.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request

import numpy as np
import torch

from rolemodels.errors import UserError
from rolemodels.runtime.files import reason

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
META = "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
NUM_CLASSES = 10


# --------------------------------------------------------------------------- loading


def load_cifar10(
    root: str | os.PathLike, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Load CIFAR-10 from `root`, the `cifar-10-batches-py` folder or its parent.

    Returns (x_train uint8[50000, 32, 32, 3], y_train int64[50000], x_test uint8[10000,
    32, 32, 3], y_test int64[10000], class_names). The training set is data_batch_1 ..
    data_batch_5 in that order, the order of the published noisy-label files.
    With `download=True` a missing folder is fetched from the Toronto site into `root`.
    """
    root = os.fspath(root)
    folder = find_folder(root)
    if folder is None:
        if not download:
            raise UserError(
                f"CIFAR-10: no {FOLDER}/ folder at {root} (expected {root}/{FOLDER}/ with "
                f"{', '.join(TRAIN_BATCHES)}, {TEST_BATCH}, {META}); set data.download=true "
                f"to fetch it, or point root at the folder"
            )
        download_cifar10(root)
        folder = os.path.join(root, FOLDER)
    missing = [n for n in [*TRAIN_BATCHES, TEST_BATCH, META] if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise UserError(f"CIFAR-10 folder {folder}: missing {', '.join(missing)}")

    train = [read_batch(os.path.join(folder, name)) for name in TRAIN_BATCHES]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    x_test, y_test = read_batch(os.path.join(folder, TEST_BATCH))
    class_names = read_meta(os.path.join(folder, META))
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test),
        class_names,
    )


def find_folder(root: str) -> str | None:
    """The batches folder: `root/cifar-10-batches-py` or `root` itself; None if neither."""
    inner = os.path.join(root, FOLDER)
    if os.path.isdir(inner):
        return inner
    if os.path.isfile(os.path.join(root, TRAIN_BATCHES[0])) or os.path.isfile(os.path.join(root, META)):
        return root
    return None


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (images uint8[n, 32, 32, 3] channels-last, labels int64[n])."""
    batch = _as_bytes_keys(safe_unpickle(path), path)
    for key in (b"data", b"labels"):
        if key not in batch:
            raise UserError(
                f"CIFAR-10 batch {_short(path)}: no {key!r} entry (found {sorted(batch)}); "
                f"expected b'data' and b'labels'"
            )
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"CIFAR-10 batch {_short(path)}: b'data' is {got}, expected uint8 [n, 3072]")
    try:
        y = np.asarray(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    except (TypeError, ValueError):
        y = np.asarray([], dtype=object)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"CIFAR-10 batch {_short(path)}: b'labels' is not a flat list of integers")
    if len(y) != len(data):
        raise UserError(f"CIFAR-10 batch {_short(path)}: {len(y):,} labels but {len(data):,} images")
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise UserError(
            f"CIFAR-10 batch {_short(path)}: labels range over [{y.min()}, {y.max()}], expected 0..9"
        )
    # channel-planar [n, 3, 32, 32] -> channels-last [n, 32, 32, 3]
    x = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return x, y.astype(np.int64)


def read_meta(path: str) -> list[str]:
    """`batches.meta` -> the ten class names, as str."""
    meta = _as_bytes_keys(safe_unpickle(path), path)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise UserError(f"CIFAR-10 meta {_short(path)}: expected b'label_names', a list of 10 names")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


# --------------------------------------------------------------------------- safe pickles


class _Refused(pickle.UnpicklingError):
    """The pickle asked for something outside the allowed list."""


def _reconstruct_functions() -> dict[tuple[str, str], object]:
    try:  # numpy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,  # how Python 3 protocol-2 pickles store bytes
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        if hasattr(numeric, "_frombuffer"):
            allowed[(module, "_frombuffer")] = numeric._frombuffer
    return allowed


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise _Refused(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    ALLOWED = _reconstruct_functions()

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"refusing to load {module}.{name}") from None


def safe_unpickle(path: str):
    """Unpickle `path` (encoding='bytes') allowing only plain containers and numpy arrays."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise UserError(f"CIFAR-10 file {path}: not found") from None
    except _Refused as err:
        raise UserError(f"CIFAR-10 file {_short(path)}: not a CIFAR-10 pickle ({reason(err)})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise UserError(
            f"CIFAR-10 file {_short(path)}: truncated or damaged pickle ({type(err).__name__}: {err})"
        ) from None


def _as_bytes_keys(obj, path: str) -> dict:
    if not isinstance(obj, dict):
        raise UserError(f"CIFAR-10 file {_short(path)}: holds a {type(obj).__name__}, expected a dict")
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _short(path: str) -> str:
    """`cifar-10-batches-py/data_batch_3` rather than the full path."""
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


# --------------------------------------------------------------------------- download


def download_cifar10(root: str) -> None:
    """Fetch the official tarball into `root`, check its md5 and extract the batches folder."""
    os.makedirs(root, exist_ok=True)
    archive = os.path.join(root, "cifar-10-python.tar.gz")
    if not (os.path.isfile(archive) and md5_of(archive) == MD5):
        download_file([URL], archive, "CIFAR-10")
    digest = md5_of(archive)
    if digest != MD5:
        raise UserError(f"CIFAR-10 archive {archive}: md5 {digest}, expected {MD5} (damaged download?)")
    extract_tar_folder(archive, FOLDER, root)


def extract_tar_folder(archive: str, folder: str, dest: str) -> None:
    """Extract the regular files under `folder/` from a tar archive into `dest`.

    Anything else (links, devices, absolute paths, `..`) is refused, so an archive can
    write nowhere but `dest/folder/`. Extraction goes to a temporary folder first.
    """
    staging = tempfile.mkdtemp(prefix=".extract-", dir=dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = member.name.replace("\\", "/").split("/")
                if member.name.startswith("/") or ".." in parts or parts[0] != folder:
                    raise UserError(f"archive {archive}: unexpected member {member.name!r}")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise UserError(f"archive {archive}: member {member.name!r} is not a regular file")
                target = os.path.join(staging, *[p for p in parts if p not in ("", ".")])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, out, 1 << 20)
        final = os.path.join(dest, folder)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(os.path.join(staging, folder), final)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UserError(f"archive {archive}: cannot extract ({reason(err)})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_file(urls: list[str], dest: str, what: str, timeout: float = 60.0) -> None:
    """Download the first of `urls` that answers into `dest` (written atomically).

    Raises UserError naming every URL tried when none can be reached (e.g. no network).
    """
    errors = []
    for url in urls:
        tmp = dest + ".part"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            os.replace(tmp, dest)
            return
        except (urllib.error.URLError, OSError, ValueError) as err:
            errors.append(f"{url}: {getattr(err, 'reason', err)}")
            if os.path.exists(tmp):
                os.remove(tmp)
    raise UserError(
        f"{what}: download failed ({'; '.join(errors)}). Without network access, fetch the "
        f"file elsewhere and place it at {dest}"
    )


def md5_of(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["load_cifar10", "read_batch", "read_meta", "safe_unpickle", "download_cifar10", "download_file"]
