"""The run ledger: one JSON object per line in ``runs/ledger.jsonl``.

Every push and every fetch appends a line, so which notebook (git commit, sha256) ran as which
Kaggle kernel version, with which parameters, is never tracked by hand again. Lines are only ever
appended; nothing here rewrites or deletes one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

LEDGER_NAME = "ledger.jsonl"


class LedgerError(ValueError):
    """The ledger file exists but a line of it is not a JSON object."""


def ledger_path(runs_dir: Path) -> Path:
    return Path(runs_dir) / LEDGER_NAME


def utc_now() -> str:
    """Current UTC time as ISO 8601 with a ``Z`` suffix, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def git_state(repo: Path, exclude: Iterable[Path] = ()) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout at ``repo``; ``(None, None)`` outside git.

    Dirty means uncommitted changes to tracked files, except under the folders in ``exclude``
    that lie inside ``repo`` (the runs folder: every push and fetch appends to its ledger, which
    says nothing about the code a notebook was rendered from).
    """
    pathspecs = []
    for folder in exclude:
        try:
            rel = Path(folder).resolve().relative_to(Path(repo).resolve())
        except ValueError:  # outside the checkout: git does not see it anyway
            continue
        pathspecs.append(f":(exclude){rel.as_posix()}")
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no",
             *(["--", *pathspecs] if pathspecs else [])],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def append_record(runs_dir: Path, record: dict) -> Path:
    """Append ``record`` as one line to ``runs_dir/ledger.jsonl`` and return the ledger path.

    The line is serialised completely before the file is opened, then written with one call and
    fsynced, so an interrupted run leaves either the whole line or none of it.
    """
    line = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    path = ledger_path(runs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def read_ledger(runs_dir: Path) -> list[dict]:
    """All records, oldest first; ``[]`` when there is no ledger yet."""
    path = ledger_path(runs_dir)
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LedgerError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise LedgerError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
    return records


def latest_push(runs_dir: Path, ref: str) -> dict | None:
    """The most recent push record for kernel ``ref`` ("user/slug"), or None."""
    for record in reversed(read_ledger(runs_dir)):
        if record.get("event") == "push" and record.get("ref") == ref:
            return record
    return None


def resume_link(meta: dict) -> dict | None:
    """``{"ref", "version"}`` of the kernel's own earlier version in ``meta["kernel_sources"]``.

    A push whose metadata mounts the same kernel's output resumes that version's run
    (``--resume-from``); the push record keeps the link. None when it mounts no such output.
    """
    own = meta.get("id")
    for source in meta.get("kernel_sources") or []:
        parts = str(source).split("/")
        if "/".join(parts[:2]) == own:
            version = int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else None
            return {"ref": own, "version": version}
    return None


def latest_version(runs_dir: Path, ref: str) -> int | None:
    """The version number of the most recent push of ``ref`` the ledger knows, or None."""
    for record in reversed(read_ledger(runs_dir)):
        if record.get("event") == "push" and record.get("ref") == ref and record.get("version"):
            return int(record["version"])
    return None
