"""Fetch a kernel version's outputs into ``runs/<slug>/v<N>/``: one folder per version, moved into
place complete with its ``manifest.json`` and never overwritten, and record the fetch in the
run ledger.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from builders import ledger
from builders.kaggle_credentials import check_credentials
from builders.kaggle_kernel import TERMINAL_STATES, kernel_string, parse_ref, version_state
from builders.kaggle_transport import (
    DEFAULT_RETRY,
    KaggleRequestError,
    RetryPolicy,
    load_api,
    retrying,
)

MANIFEST_FILE = "manifest.json"
OUTPUT_PAGE_SIZE = 100  # files per ListKernelSessionOutput page (the client's default is 20)


def _downloaded(tmp: Path, outfiles: list[str], ref: str, version: int) -> list[dict]:
    """Name, size and sha256 of each file the client reported, checked to be there and whole."""
    leftovers = sorted(p.name for p in tmp.rglob("*.kaggle-partial"))
    if leftovers:
        raise KaggleRequestError(f"{ref} version {version}: downloads left unfinished: {', '.join(leftovers)}")
    entries = {}
    for name in outfiles:
        path = Path(name)
        rel = path.relative_to(tmp).as_posix()
        if rel == MANIFEST_FILE:
            raise KaggleRequestError(f"{ref} version {version}: an output named {MANIFEST_FILE} "
                                     "would clash with the manifest")
        if not path.is_file():
            raise KaggleRequestError(f"{ref} version {version}: output {rel!r} was listed but not written")
        entries[rel] = {"name": rel, "size": path.stat().st_size, "sha256": ledger.sha256_file(path)}
    return [entries[k] for k in sorted(entries)]


def fetch_outputs(
    ref: str,
    *,
    runs_dir: Path,
    version: int | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    echo: Callable[[str], None] = print,
) -> Path:
    """Download the outputs of version ``version`` of ``ref`` into ``runs_dir/<slug>/v<N>/``
    and return that folder.

    ``version`` defaults to the ledger's latest push of ``ref``. An existing version folder is
    never overwritten: the fetch is refused (outputs of a Kaggle version do not change, so the
    folder already holds them; delete or rename it to fetch again). The client's
    ``kernels_output`` downloads every page into a hidden temporary folder beside it, checking
    each file against its Content-Length; the folder is renamed into place only when every file
    is complete, so a failure leaves nothing behind. ``manifest.json`` lists name, size and
    sha256 of each file. A version still queued or running is refused: its outputs are not final.
    """
    user, slug = parse_ref(ref)
    runs_dir = Path(runs_dir)
    if version is None:
        push = ledger.latest_push(runs_dir, ref)
        if push is None or push.get("version") is None:
            raise KaggleRequestError(
                f"no push of {ref} with a version number in {ledger.ledger_path(runs_dir)}; "
                "give the version explicitly (--version N)"
            )
        version = int(push["version"])
    version = int(version)
    if version < 1:
        raise KaggleRequestError(f"{ref}: version must be 1 or more, got {version}")
    slug_dir = runs_dir / slug
    dest = slug_dir / f"v{version}"
    if dest.exists():
        raise KaggleRequestError(
            f"{dest} already exists: outputs of {ref} version {version} were fetched before and "
            "are never overwritten; delete or rename that folder to fetch them again"
        )
    check_credentials()
    api = load_api(retry)
    state, failure = version_state(api, ref, version, retry)
    if state not in TERMINAL_STATES:
        raise KaggleRequestError(
            f"{ref} version {version} is {state}; its outputs are not final yet. "
            "Wait for it (status --wait) and fetch again"
        )

    created_slug_dir = not slug_dir.exists()
    slug_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}.partial-", dir=slug_dir))

    def empty_tmp() -> None:
        for child in tmp.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()

    def download() -> list[str]:
        with contextlib.redirect_stdout(io.StringIO()):  # the client's progress chatter
            files, _ = api.kernels_output(kernel_string(ref, version), str(tmp), quiet=True,
                                          page_size=OUTPUT_PAGE_SIZE)
        return files

    try:
        outfiles = retrying(download, f"outputs of {ref} version {version}", retry, before_retry=empty_tmp)
        if not outfiles:
            raise KaggleRequestError(f"{ref} version {version} ({state}) has no output files and no log")
        entries = _downloaded(tmp, outfiles, ref, version)
        log_name = f"{slug}.log" if (tmp / f"{slug}.log").is_file() else None
        manifest = {
            "ref": ref,
            "version": version,
            "state": state,
            "failure_message": failure,
            "fetched_at": ledger.utc_now(),
            "files": entries,
            "log": log_name,
            "total_bytes": sum(e["size"] for e in entries),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            raise KaggleRequestError(f"{dest} appeared while downloading; left it untouched ({exc})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_slug_dir:
            with contextlib.suppress(OSError):
                slug_dir.rmdir()
        raise
    ledger.append_record(runs_dir, {
        "event": "fetch",
        "ref": ref,
        "version": version,
        "state": state,
        "time": manifest["fetched_at"],
        "folder": str(dest.relative_to(runs_dir)),
        "files": len(entries),
        "total_bytes": manifest["total_bytes"],
    })
    echo(f"fetched {ref} version {version} ({state}): {len(entries)} files, "
         f"{manifest['total_bytes']} bytes -> {dest}")
    return dest
