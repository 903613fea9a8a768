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
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rolemodels.config import NOT_RESULTS, Config, to_dict
from rolemodels.config_toml import config_differences, fill_missing, to_toml
from rolemodels.errors import RunError, UserError
from rolemodels.runtime.files import (
    Notice,
    atomic_write_json,
    atomic_write_text,
    open_temp,
    print_notice,
    reason,
    remove_temp_files,
)
from rolemodels.runtime.lock import LOCK_NAME, RunLock
from rolemodels.runtime.manifest import Manifest, is_run_folder, recorded_files
from rolemodels.runtime.world import World

CONFIG_NAME = "config.toml"
INPUTS_NAME = "inputs.json"  # fingerprints of the arrays the run read (data, noise files)
LEGACY_CONFIG_NAME = "config.json"  # run folders made before config.toml was the only copy


@contextmanager
def run_folder(out: Path, cfg: Config, force: bool, world: World,
               inputs: Callable[[], dict[str, dict]] | None = None) -> Iterator[Manifest]:
    """The run folder, ready, and this rank's Manifest; the folder stays locked until every rank is done.

    Rank 0 takes the lock, checks the configuration, removes half-written files and folds in
    what other ranks recorded before a restart, while the other ranks wait; they then check
    that they see the same folder (on several machines it must be on a shared filesystem).
    inputs: gives the fingerprints of the run's inputs (rank 0 computes them; see check_config)."""
    if world.is_main:
        ensure_writable(out)
        with RunLock(out):
            check_config(out, to_dict(cfg), force, ignore=NOT_RESULTS, defaults=to_dict(type(cfg)()),
                         inputs=inputs() if inputs else None)
            remove_temp_files(out)  # what a killed run was writing
            manifest = Manifest(out)
            manifest.mark()  # known as ours from now on (--force deletes only folders that are)
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
                 defaults: dict | None = None, inputs: dict[str, dict] | None = None) -> None:
    """Make sure the run folder belongs to this configuration; write it as config.toml.

    resolved: nested dict, section -> key -> value (tuples and paths are compared as they are
    stored: lists and strings). If the folder's config.toml (or a legacy config.json) differs
    outside `ignore` (dotted keys or sections), raise UserError listing the differences.
    force=True starts the run over whenever a configuration is recorded: all previous files
    except the lock are deleted. `defaults` (same layout): a key that the recorded configuration
    lacks counts as its default value there, so a folder made before a key was added still
    resumes when the key is left at its default.

    inputs: the fingerprints of the run's inputs ({"noise.labels_file": {"what": ..., "sha256": ...,
    "size": ...}, ...}), kept in inputs.json: an input whose contents changed at the same path is
    refused like a changed key (folders made before inputs.json was kept record it now).
    """
    run_dir = Path(run_dir)
    new = json.loads(json.dumps(resolved, default=str))  # as it will read back from disk
    recorded = _read_recorded(run_dir)
    if recorded is not None and force:
        _remove_run_contents(run_dir, notice)
        recorded = None
    if recorded is not None:
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
        _check_inputs(run_dir, inputs)
        if old != new or recorded[0].name != CONFIG_NAME:
            atomic_write_text(run_dir / CONFIG_NAME, to_toml(new))
    else:
        atomic_write_text(run_dir / CONFIG_NAME, to_toml(new))
    (run_dir / LEGACY_CONFIG_NAME).unlink(missing_ok=True)  # one copy of the configuration
    if inputs is not None:
        atomic_write_json(run_dir / INPUTS_NAME, inputs)


def _check_inputs(run_dir: Path, inputs: dict[str, dict] | None) -> None:
    """Refuse a folder whose recorded inputs differ from these (same path, other contents)."""
    path = run_dir / INPUTS_NAME
    if inputs is None or not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        raise UserError(f"run folder {run_dir} has an unreadable {INPUTS_NAME} ({reason(err)}); "
                        f"use --force to start it over, or another --out") from err
    changed = []
    for key in sorted(set(old) | set(inputs)):
        before, now = old.get(key), inputs.get(key)
        if not isinstance(before, dict) or now is None or before.get("sha256") != now["sha256"]:
            what = (now or before or {}).get("what", key) if isinstance(now or before, dict) else key
            was = before.get("sha256", "?")[:12] if isinstance(before, dict) else "none"
            changed.append(f"{key} ({what}): sha256 {was} -> {now['sha256'][:12] if now else 'none'}")
    if changed:
        raise UserError(f"run folder {run_dir} was made from other inputs: {'; '.join(changed)}; their "
                        f"contents changed since, so its results would mix old and new; use --force to start it "
                        f"over, or another --out")


# Files every run folder may hold beside those the manifest records (the manifest itself, the
# configuration, the inputs' fingerprints, reports and logs): what --force may delete.
OUR_NAMES = ("config.toml", "config.json", "inputs.json", "manifest.json", "results.json", "report.md",
             "metrics.jsonl", "figures/confusion.png", "figures/teachers.png",
             "diagnostics.json", "suspected_label_errors.csv")  # the last two: `rolemodels distill`'s
OUR_PATTERNS = ("manifest.rank*.json", "metrics.rank*.jsonl")


def _remove_run_contents(run_dir: Path, notice: Notice = print_notice) -> None:
    """Delete what a run of ours wrote in run_dir (never the lock, never anything else).

    The folder must be a run folder of ours (its manifest.json says so): --force on any other
    folder is refused and deletes nothing. Files the manifest records and the names of our
    layout are deleted, then the folders this leaves empty; anything else stays, with a notice."""
    here, cwd = run_dir.resolve(), Path.cwd().resolve()
    if here == cwd or here in cwd.parents or here == Path.home().resolve():
        raise UserError(f"refusing to empty {run_dir}: it is the current, home or root folder; "
                        f"use a separate --out for each run")
    if not is_run_folder(run_dir):
        raise UserError(f"refusing --force on {run_dir}: it is not a rolemodels run folder (no manifest.json of "
                        f"ours), so nothing was deleted; use another --out, or empty it yourself")
    notice(f"rolemodels: --force: deleting the previous results in {run_dir}")
    recorded = [Path(key) for key in recorded_files(run_dir)]
    ours = [run_dir / key for key in recorded if not key.is_absolute() and ".." not in key.parts]
    ours += [run_dir / name for name in OUR_NAMES]
    ours += [path for pattern in OUR_PATTERNS for path in run_dir.glob(pattern)]
    for path in ours:
        if path.name == LOCK_NAME:
            continue
        try:
            if path.is_file() or path.is_symlink():
                path.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            raise RunError(f"cannot remove {path} while starting the run over: {reason(err)}") from err
    remove_temp_files(run_dir)
    for folder in sorted((p for p in run_dir.rglob("*") if p.is_dir() and not p.is_symlink()),
                         key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only folders left empty
        except OSError:
            pass
    kept = [p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
            if not p.is_dir() and p.name != LOCK_NAME]
    if kept:
        listed = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
        notice(f"rolemodels: --force kept {len(kept)} file(s) in {run_dir} that no run of ours wrote: {listed}")


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
