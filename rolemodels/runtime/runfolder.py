"""The run folder: checked against the configuration, locked, cleared of half-written files.

    with run_folder(out, cfg, force, world) as manifest:   # rank 0 holds the lock until all are done
        ...

The folder's configuration is its `config.toml` (the resolved preset, which `rolemodels run
--config` reads back); a rerun with the same configuration resumes, another is refused with the
keys that differ, unless --force starts the folder over.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rolemodels.config import NOT_RESULTS, Config, config_differences, fill_missing, to_dict, to_toml
from rolemodels.errors import RunError, UserError
from rolemodels.runtime.files import (Notice, open_temp, atomic_write_text, print_notice, reason,
                                      remove_temp_files)
from rolemodels.runtime.lock import LOCK_NAME, RunLock
from rolemodels.runtime.manifest import Manifest
from rolemodels.runtime.world import World

CONFIG_NAME = "config.toml"
LEGACY_CONFIG_NAME = "config.json"  # run folders made before config.toml was the only copy


@contextmanager
def run_folder(out: Path, cfg: Config, force: bool, world: World) -> Iterator[Manifest]:
    """The run folder, ready, and this rank's Manifest; the folder stays locked until every rank is done.

    Rank 0 takes the lock, checks the configuration, removes half-written files and folds in
    what other ranks recorded before a restart, while the other ranks wait; they then check
    that they see the same folder (on several machines it must be on a shared filesystem)."""
    if world.is_main:
        ensure_writable(out)
        with RunLock(out):
            check_config(out, to_dict(cfg), force, ignore=NOT_RESULTS, defaults=to_dict(type(cfg)()))
            remove_temp_files(out)  # what a killed run was writing
            manifest = Manifest(out)
            world.barrier()  # the folder is ready
            yield manifest
            world.barrier()  # no rank writes any more
            manifest.absorb_ranks()
        return
    world.barrier()
    wait_for_file(out / CONFIG_NAME, f"rank {world.rank} does not see the run folder {out} that rank 0 "
                                     f"prepared: on several machines it must be on a filesystem they all share")
    yield Manifest(out, rank=world.rank)
    world.barrier()


def wait_for_file(path: Path, message: str, seconds: float = 30.0) -> None:
    """Wait a little for a file another machine wrote (network filesystems cache), else UserError."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise UserError(message)
        time.sleep(0.5)


def _read_recorded(run_dir: Path) -> tuple[Path, str] | None:
    """(path, text) of the folder's recorded configuration, config.toml or a legacy config.json."""
    for name in (CONFIG_NAME, LEGACY_CONFIG_NAME):
        path = run_dir / name
        try:
            return path, path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except OSError as err:
            raise UserError(f"cannot read {path}: {reason(err)}") from err
    return None


def _parse_recorded(path: Path, text: str) -> dict:
    try:
        old = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except ValueError as err:  # tomllib.TOMLDecodeError is a ValueError
        raise UserError(f"run folder {path.parent} has an unreadable {path.name} ({reason(err)}); "
                        f"use --force to start it over, or another --out") from err
    return old


def check_config(run_dir: str | os.PathLike, resolved: dict, force: bool,
                 ignore: set[str] = frozenset(), notice: Notice = print_notice,
                 defaults: dict | None = None) -> None:
    """Make sure the run folder belongs to this configuration; write it as config.toml.

    resolved: nested dict, section -> key -> value (tuples and paths are compared as they are
    stored: lists and strings). If the folder's config.toml (or a legacy config.json) differs
    outside `ignore` (dotted keys or sections), raise UserError listing the differences.
    force=True starts the run over whenever a configuration is recorded: all previous files
    except the lock are deleted. `defaults` (same layout): a key that the recorded configuration
    lacks counts as its default value there, so a folder made before a key was added still
    resumes when the key is left at its default.
    """
    run_dir = Path(run_dir)
    new = json.loads(json.dumps(resolved, default=str))  # as it will read back from disk
    recorded = _read_recorded(run_dir)
    if recorded is not None and force:
        notice(f"rolemodels: --force: deleting the previous results in {run_dir}")
        _remove_run_contents(run_dir)
    elif recorded is not None:
        old = _parse_recorded(*recorded)
        if defaults is not None:
            old = fill_missing(old, json.loads(json.dumps(defaults, default=str)))
        diffs = config_differences(old, new, ignore)
        if diffs:
            listed = ", ".join(diffs[:12])
            if len(diffs) > 12:
                listed += f", and {len(diffs) - 12} more"
            raise UserError(f"run folder {run_dir} was made with a different configuration: "
                            f"{listed}; use --force to start it over, or another --out")
        if old == new and recorded[0].name == CONFIG_NAME:
            return
    atomic_write_text(run_dir / CONFIG_NAME, to_toml(new))
    (run_dir / LEGACY_CONFIG_NAME).unlink(missing_ok=True)  # one copy of the configuration


def _remove_run_contents(run_dir: Path) -> None:
    """Delete everything in run_dir except the lock. Refuses obviously wrong folders."""
    here, cwd = run_dir.resolve(), Path.cwd().resolve()
    if here == cwd or here in cwd.parents or here == Path.home().resolve():
        raise UserError(f"refusing to empty {run_dir}: it is the current, home or root folder; "
                        f"use a separate --out for each run")
    for entry in run_dir.iterdir():
        if entry.name == LOCK_NAME:
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            message = f"cannot remove {entry} while starting the run over: {reason(err)}"
            raise RunError(message) from err


def ensure_writable(run_dir: str | os.PathLike) -> None:
    """Create run_dir and check a file can be made there; else UserError naming it."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe, fd = open_temp(run_dir, "writable")
        os.close(fd)
        os.unlink(probe)
    except FileExistsError as err:  # mkdir: a file has that name
        raise UserError(f"output folder {run_dir} is not writable: "
                        f"a file with that name exists") from err
    except OSError as err:
        raise UserError(f"output folder {run_dir} is not writable: {reason(err)}") from err
