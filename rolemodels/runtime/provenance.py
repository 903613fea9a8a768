"""Where a result came from: the package version, the git commit and a hash of the source."""
from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path

from rolemodels.version import __version__

PACKAGE = Path(__file__).resolve().parents[1]  # the rolemodels/ folder


@lru_cache(maxsize=None)
def source_hash() -> str:
    """SHA-256 over the package's Python files (their paths and contents, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=None)
def git_commit() -> str:
    """The checkout's commit (with "+changes" when files differ from it), or "unknown" outside one."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}+changes" if changed else commit


def provenance() -> dict[str, str]:
    """{"version", "git_commit", "source_sha256"}: enough to find the code that made a result."""
    return {"version": __version__, "git_commit": git_commit(), "source_sha256": source_hash()}
