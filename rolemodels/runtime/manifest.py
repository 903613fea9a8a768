"""The manifest: size and SHA-256 of every finished file of a run folder.

    manifest = Manifest(run_dir)
    if not manifest.is_valid(path):       # finished and intact? else recompute
        atomic_save_torch(path, teacher)
        manifest.record(path)

A file without a matching record is treated as unfinished (or damaged) and recomputed.
Under torchrun, rank r > 0 records into its own `manifest.rank<r>.json` (see Manifest).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from rolemodels.errors import RunError
from rolemodels.runtime.files import Notice, atomic_write_json, file_sha256, print_notice, reason

MANIFEST_NAME = "manifest.json"
RANK_MANIFEST_GLOB = "manifest.rank*.json"
# Written into every manifest: what tells a run folder of ours from any folder (--force deletes only ours).
FORMAT_KEY, FORMAT = "format", "rolemodels run folder 1"


def _good_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and type(entry.get("size")) is int and isinstance(entry.get("sha256"), str)


def is_run_folder(run_dir: str | os.PathLike) -> bool:
    """Whether run_dir was made by a rolemodels run: its manifest.json carries our format marker,
    or (folders made before the marker) holds nothing but size-and-checksum records."""
    try:
        data = json.loads((Path(run_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    if data.get(FORMAT_KEY) == FORMAT:
        return True
    return bool(data) and all(_good_entry(entry) for entry in data.values())


def recorded_files(run_dir: str | os.PathLike) -> list[str]:
    """The relative paths manifest.json records (what a run of ours wrote there)."""
    try:
        data = json.loads((Path(run_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [key for key, entry in data.items() if _good_entry(entry)] if isinstance(data, dict) else []


class Manifest:
    """`run_dir/manifest.json`: relative path -> {"size": int, "sha256": str} of finished files.

    Paths given to the methods are ordinary paths (absolute, or relative to the
    current folder, e.g. `run_dir / "teachers/teacher3.pt"`) of files inside run_dir.
    Create the Manifest after check_config, which may empty the run folder.

    Several processes (torchrun's ranks, `rank` > 0) share a run folder without sharing a
    file: each file is recorded, checked and forgotten only by the rank that writes it, and
    rank r > 0 saves what it recorded or forgot into its own `manifest.rank<r>.json`. Rank 0's
    Manifest, made while the other ranks wait, folds those files into manifest.json (what a
    killed run recorded), and `absorb_ranks` does so again once every rank has finished.
    """

    def __init__(self, run_dir: str | os.PathLike, notice: Notice = print_notice, rank: int = 0):
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.path = self.run_dir / (MANIFEST_NAME if rank == 0 else f"manifest.rank{rank}.json")
        self.notice = notice
        self._lock = threading.Lock()  # teachers trained side by side record from their own threads
        self.entries: dict[str, dict[str, Any]] = self._load(self.run_dir / MANIFEST_NAME)
        self.changes: dict[str, dict[str, Any] | None] = {}  # rank > 0: its records (None: forgotten)
        if rank == 0:
            self.absorb_ranks()

    def _load(self, path: Path, tombstones: bool = False) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            self.notice(f"rolemodels: {path} is unreadable ({reason(err)}); "
                        f"treating the files it records in {self.run_dir} as unfinished")
            return {}
        if not isinstance(data, dict):
            data = {}
        return {key: entry for key, entry in data.items() if _good_entry(entry) or (tombstones and entry is None)}

    def absorb_ranks(self) -> None:
        """Rank 0, while no other rank writes: fold every manifest.rank<r>.json into manifest.json."""
        rank_files = sorted(self.run_dir.glob(RANK_MANIFEST_GLOB))
        if not rank_files:
            return
        with self._lock:
            for path in rank_files:  # one writer per file and run, so their keys do not overlap
                for key, entry in self._load(path, tombstones=True).items():
                    if entry is None:
                        self.entries.pop(key, None)
                    else:
                        self.entries[key] = entry
            self._save()
        for path in rank_files:
            path.unlink(missing_ok=True)

    def _save(self) -> None:
        atomic_write_json(self.path, {FORMAT_KEY: FORMAT, **(self.entries if self.rank == 0 else self.changes)})

    def mark(self) -> None:
        """Write manifest.json now (rank 0), so the folder is known as ours before anything is recorded."""
        if self.rank == 0 and not self.path.exists():
            with self._lock:
                self._save()

    def key(self, path: str | os.PathLike) -> str:
        """The manifest's name for `path`: its path relative to run_dir, with '/'."""
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(self.run_dir))
        if rel == "." or rel == ".." or rel.startswith(".." + os.sep):
            raise RunError(f"{path} is not a file inside the run folder {self.run_dir}")
        return Path(rel).as_posix()

    def __contains__(self, path: str | os.PathLike) -> bool:
        return self.key(path) in self.entries

    def record(self, path: str | os.PathLike) -> dict[str, Any]:
        """Record the size and checksum of a finished file and save the manifest."""
        key = self.key(path)
        try:
            size, sha256 = file_sha256(path)
        except OSError as err:
            raise RunError(f"cannot read {path}: {reason(err)}") from err
        entry = {"size": size, "sha256": sha256}
        with self._lock:
            self.entries[key] = entry
            self.changes[key] = entry
            self._save()
        return entry

    def forget(self, path: str | os.PathLike) -> None:
        """Drop the record of `path` (the file itself is left alone)."""
        key = self.key(path)
        with self._lock:
            if self.entries.pop(key, None) is not None:
                self.changes[key] = None
                self._save()

    def is_valid(self, path: str | os.PathLike) -> bool:
        """True if `path` exists and matches its record.

        A file that exists without a record, or with a different size or checksum,
        is unfinished or damaged: one notice line, then the file and its record are
        deleted and the answer is False, so the caller recomputes it.
        """
        key = self.key(path)
        entry = self.entries.get(key)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            if entry is not None:
                self.forget(path)
            return False
        except OSError as err:
            raise RunError(f"cannot read {path}: {reason(err)}") from err

        if entry is None:
            problem = "has no record in manifest.json"
        elif size != entry["size"]:
            problem = f"size {size:,} != {entry['size']:,}"
        else:
            try:
                size, sha256 = file_sha256(path)
            except OSError as err:
                raise RunError(f"cannot read {path}: {reason(err)}") from err
            if size == entry["size"] and sha256 == entry["sha256"]:
                return True
            problem = f"checksum {sha256[:12]} != {entry['sha256'][:12]}"

        self.notice(f"rolemodels: {key} is corrupt or incomplete ({problem}); recomputing it")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise RunError(f"cannot delete damaged file {path}: {reason(err)}") from err
        self.forget(path)
        return False
