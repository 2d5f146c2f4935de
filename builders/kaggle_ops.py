"""Kaggle round trip with the official client (kaggle>=2.2.5): push a push folder, watch it, read
its log, fetch its outputs.

The client does the talking: ``KaggleApi.kernels_push``, ``kernels_status("owner/slug/N")``,
``kernels_output("owner/slug/N", path)`` (every page), ``kernels_logs`` /
``kernels_logs_cli(follow=True)`` and ``quota_view``; it writes versions as ``v<N>`` on the wire
(``KaggleApi._kernel_version_label``). This module adds what the client lacks: the checks before a
push (one GPU run at a time, a machine shape Kaggle offers, no API key in the files), retries and
timeouts (``builders/kaggle_transport.py``), the kernel's latest version number (the client's
``kernels_pull`` asks for it but only writes files), the run ledger (``builders/ledger.py``,
``runs/README.md``) and the fetched outputs' home: ``runs/<slug>/v<N>/``, one folder per kernel
version, moved into place complete with its ``manifest.json`` and never overwritten.

The ``kaggle`` package is imported only inside these functions: at import it prints an
"Authentication required" banner when no credentials exist and creates ``~/.config/kaggle``, so
rendering a notebook (which imports this module through the builder CLI) must not trigger it.
Credentials are checked before the import (``builders/kaggle_credentials.py``), and their values
are never written anywhere.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from builders import ledger
from builders.kaggle_credentials import (  # noqa: F401 - part of this module's interface
    PLACEHOLDER_USER,
    REJECTED_HELP,
    KaggleCredentialsError,
    check_credentials,
)
from builders.kaggle_transport import (  # noqa: F401 - part of this module's interface
    DEFAULT_RETRY,
    KaggleRequestError,
    RetryPolicy,
    describe_failure,
    http_status,
    load_api,
    retrying,
    warn,
)
from builders.metadata import resolve_accelerator

METADATA_FILE = "kernel-metadata.json"
MANIFEST_FILE = "manifest.json"
TERMINAL_STATES = frozenset({"complete", "error", "cancelled"})
#: States of a version that still holds (or waits for) a GPU session: a push then starts a second.
BUSY_STATES = frozenset({"queued", "running"})
OUTPUT_PAGE_SIZE = 100  # files per ListKernelSessionOutput page (the client's default is 20)
# Kaggle's KernelWorkerStatus enum names -> the words users see and that we return.
_STATE_NAMES = {
    "QUEUED": "queued",
    "RUNNING": "running",
    "COMPLETE": "complete",
    "ERROR": "error",
    "CANCEL_REQUESTED": "cancel_requested",
    "CANCEL_ACKNOWLEDGED": "cancelled",
    "NEW_SCRIPT": "new_script",
}
_REF_RE = re.compile(r"^([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)$")
_TOOLKIT_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# Local checks (no network, no kaggle import)


def parse_ref(ref: str) -> tuple[str, str]:
    """``"user/slug"`` -> ``(user, slug)``; a clear ``KaggleRequestError`` otherwise."""
    match = _REF_RE.match(str(ref).strip())
    if not match:
        raise KaggleRequestError(
            f"kernel ref {ref!r} is not of the form <user>/<slug> (e.g. alice/dpt-speech-enhancement)"
        )
    return match.group(1), match.group(2)


def _kernel(ref: str, version: int | None) -> str:
    """The client's kernel string: ``owner/slug`` or ``owner/slug/N`` (it sends ``v<N>``)."""
    return ref if version is None else f"{ref}/{int(version)}"


def read_kernel_metadata(folder: Path) -> dict:
    """Read and check ``folder/kernel-metadata.json`` before anything touches the network."""
    path = Path(folder) / METADATA_FILE
    if not Path(folder).is_dir():
        raise KaggleRequestError(f"{folder}: push folder not found (render it with the builder first)")
    if not path.is_file():
        raise KaggleRequestError(f"{path}: not found; a push folder needs {METADATA_FILE}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KaggleRequestError(f"{path}: cannot read it as JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise KaggleRequestError(f"{path}: expected a JSON object")
    ref = meta.get("id")
    if not isinstance(ref, str):
        raise KaggleRequestError(f"{path}: 'id' missing; expected \"<user>/<slug>\"")
    user, _ = parse_ref(ref)
    if user == PLACEHOLDER_USER:
        raise KaggleRequestError(
            f"{path}: id {ref!r} still has the placeholder user {PLACEHOLDER_USER!r}; "
            "render again with your Kaggle user name (the builder's --user option, or edit the "
            "builder's spec) before pushing"
        )
    code_file = meta.get("code_file")
    if not isinstance(code_file, str) or not code_file:
        raise KaggleRequestError(f"{path}: 'code_file' missing; it names the notebook to push")
    if not (Path(folder) / code_file).is_file():
        raise KaggleRequestError(f"{path}: code_file {code_file!r} not found in {folder}")
    return meta


def _refuse_leaked_secrets(paths: list[Path], secrets: list[str]) -> None:
    """A notebook or metadata that contains the API key must not leave this machine."""
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        if any(len(s) >= 6 and s in text for s in secrets):
            raise KaggleCredentialsError(
                f"{path}: contains your Kaggle API key; remove it (the client authenticates "
                "from kaggle.json or the environment) and render again"
            )


def _scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` with any string containing a secret replaced, for the ledger."""
    if isinstance(value, str):
        return "<redacted>" if any(len(s) >= 6 and s in value for s in secrets) else value
    if isinstance(value, dict):
        return {str(k): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return _scrub(str(value), secrets)


# --------------------------------------------------------------------------------------------
# Questions to Kaggle: latest version, state, quota


def _state_name(status: Any) -> str:
    name = getattr(status, "name", None) or str(status)
    return _STATE_NAMES.get(name.upper(), name.lower())


def _latest_version_once(api, ref: str) -> int | None:
    """The kernel's newest version number; None when Kaggle has no such kernel (404/403).

    The client's ``kernels_pull`` sends this very request (``GetKernel``) but only writes the
    source and metadata to files, without ``current_version_number``; so it is asked here.
    """
    from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

    user, slug = parse_ref(ref)
    request = ApiGetKernelRequest()
    request.user_name = user
    request.kernel_slug = slug
    try:
        with api.build_kaggle_client() as kaggle:
            response = kaggle.kernels.kernels_api_client.get_kernel(request)
    except Exception as exc:  # noqa: BLE001 - only "no such kernel" is an answer here
        if http_status(exc) in (403, 404):
            return None
        raise
    metadata = response.metadata
    number = getattr(metadata, "current_version_number", None) if metadata is not None else None
    return int(number) if number else None


def latest_version(api, ref: str, retry: RetryPolicy = DEFAULT_RETRY) -> int | None:
    """``ref``'s newest version on Kaggle, or None when the kernel does not exist yet."""
    return retrying(lambda: _latest_version_once(api, ref), f"latest version of {ref}", retry)


def _status(api, ref: str, version: int | None, retry: RetryPolicy) -> tuple[str, str | None]:
    kernel = _kernel(ref, version)
    try:
        response = retrying(lambda: api.kernels_status(kernel), f"status of {kernel}", retry)
    except KaggleRequestError as exc:
        if http_status(exc.__cause__) == 404:
            what = f"{ref} has no version {version}" if version is not None else f"there is no kernel {ref}"
            raise KaggleRequestError(f"{what} on Kaggle (HTTP 404); check the user, the slug and "
                                     "--version (a kernel exists once it was pushed)") from exc
        raise
    return _state_name(response.status), (response.failure_message or None)


def gpu_quota_line(api, retry: RetryPolicy = DEFAULT_RETRY) -> str:
    """One line on the weekly GPU hours left, from the client's ``quota_view`` (as
    ``kaggle quota`` prints it: remaining = allowed - used). Never raises: the quota is advice."""
    try:
        response = retrying(api.quota_view, "GPU quota", retry)
    except (KaggleRequestError, KaggleCredentialsError) as exc:
        return f"weekly GPU quota: unknown ({exc})"
    quota = response.gpu_quota
    if quota is None or quota.total_time_allowed is None:
        return "weekly GPU quota: Kaggle sent none"
    used = quota.time_used.total_seconds() / 3600 if quota.time_used is not None else 0.0
    total = quota.total_time_allowed.total_seconds() / 3600
    refresh = response.quota_refresh_time
    resets = f"; resets {refresh:%Y-%m-%d %H:%M} UTC" if refresh is not None else ""
    return f"weekly GPU quota: {max(0.0, total - used):.1f} h left of {total:.1f} h (used {used:.1f} h{resets})"


# --------------------------------------------------------------------------------------------
# push


def _server_ref(response_ref: str | None, fallback: str) -> str:
    """Kaggle answers ``/code/<user>/<slug>`` or a URL; the ledger keeps ``<user>/<slug>``."""
    text = (response_ref or "").strip()
    text = re.sub(r"^https?://[^/]+", "", text).lstrip("/")
    text = re.sub(r"^code/", "", text)
    return text if _REF_RE.match(text) else fallback


def _check_not_busy(api, ref: str, force: bool, retry: RetryPolicy, echo) -> int | None:
    """The kernel's latest version before the push; refuses when it is queued or running."""
    before = latest_version(api, ref, retry)
    if before is None:
        echo(f"{ref} is not on Kaggle yet: this push creates it")
        return None
    state, _ = _status(api, ref, before, retry)
    if state in BUSY_STATES:
        message = (f"{ref} version {before} is {state} on Kaggle; a push now would start a second "
                   "GPU run beside it")
        if not force:
            raise KaggleRequestError(f"refusing to push: {message}. Wait for it (--status --wait) "
                                     "or pass --force")
        warn(f"warning: {message}; pushing anyway (--force)")
    else:
        echo(f"{ref} version {before} is {state}")
    return before


def _push_once(api, folder: Path, ref: str, shape: str, before: int | None, retry: RetryPolicy):
    """``(response, None)`` from the client's push, or ``(None, (version, reason))`` when a push
    whose reply was lost (timeout, 5xx) had been saved by Kaggle: never pushed twice."""
    for attempt in range(1, retry.attempts + 1):
        try:
            return api.kernels_push(str(folder), None, shape), None
        except Exception as exc:  # noqa: BLE001 - classified below
            transient, reason, credentials = describe_failure(exc, retry.request_timeout)
            if credentials:
                raise KaggleCredentialsError(f"push of {ref} failed: {reason}. {REJECTED_HELP}") from exc
            if not transient:
                raise KaggleRequestError(f"push of {ref} failed: {reason}") from exc
            # The request may have reached Kaggle and saved a version all the same.
            try:
                now = latest_version(api, ref, retry)
            except (KaggleRequestError, KaggleCredentialsError) as check:
                raise KaggleRequestError(
                    f"push of {ref} failed ({reason}), and whether Kaggle saved a version is "
                    f"unknown ({check}); look with --status before pushing again") from exc
            if now is not None and (before is None or now > before):
                return None, (now, reason)
            if attempt == retry.attempts:
                raise KaggleRequestError(f"push of {ref} failed after {attempt} attempts: {reason}") from exc
            delay = retry.delay(attempt)
            warn(f"push of {ref}: {reason}; Kaggle holds no new version, retrying in {delay:.3g} s "
                 f"(attempt {attempt + 1} of {retry.attempts})")
            time.sleep(delay)
    raise AssertionError("unreachable")


def push_notebook(
    folder: Path,
    *,
    runs_dir: Path,
    params: dict,
    accelerator: str,
    retry: RetryPolicy = DEFAULT_RETRY,
    echo: Callable[[str], None] = print,
    force: bool = False,
) -> dict:
    """Push the push folder ``folder`` as a new version of its kernel; return the ledger record
    (also appended to ``runs_dir/ledger.jsonl``).

    ``accelerator`` (a GPU machine shape such as "NvidiaTeslaT4"; empty: the metadata's
    ``machine_shape``) is sent as the client's ``acc``; any other name is refused. Before the
    push: the kernel's latest version must not be queued or running (``force`` pushes anyway) and
    the weekly GPU hours left are echoed. A push whose reply was lost (timeout, 5xx) is repeated
    only when Kaggle's latest version did not move; when it did, that version is recorded. Nothing
    is written and the folder is not modified when the push fails.
    """
    folder = Path(folder)
    meta = read_kernel_metadata(folder)
    ref = meta["id"]
    try:
        shape, _ = resolve_accelerator(accelerator or str(meta.get("machine_shape") or ""))
    except ValueError as exc:
        raise KaggleRequestError(f"{folder / METADATA_FILE}: {exc}") from exc
    secrets = check_credentials()
    notebook = folder / meta["code_file"]
    _refuse_leaked_secrets([notebook, folder / METADATA_FILE], secrets)
    notebook_sha = ledger.sha256_file(notebook)
    commit, dirty = ledger.git_state(_TOOLKIT_ROOT, exclude=[Path(runs_dir)])
    api = load_api(retry)
    before = _check_not_busy(api, ref, force, retry, echo)
    echo(gpu_quota_line(api, retry))
    response, saved = _push_once(api, folder, ref, shape, before, retry)
    record: dict[str, Any] = {"event": "push"}
    if response is not None:
        if response.error:
            raise KaggleRequestError(f"Kaggle refused the push of {ref}: {response.error}")
        for label, bad in (
            ("dataset", response.invalid_dataset_sources),
            ("competition", response.invalid_competition_sources),
            ("kernel", response.invalid_kernel_sources),
            ("model", response.invalid_model_sources),
        ):
            if bad:
                warn(f"warning: Kaggle did not attach these {label} sources to {ref}: {', '.join(bad)}")
        version = response.version_number
        if version is None:
            warn(f"warning: Kaggle accepted {ref} but sent no version number; pass --version to fetch")
        record.update(ref=_server_ref(response.ref, ref), version=version, url=response.url,
                      kernel_id=response.kernel_id or None)
    else:
        version, reason = saved
        warn(f"push of {ref}: {reason}, but Kaggle holds a new version {version}: recorded it "
             "instead of pushing again")
        record.update(ref=ref, version=version, url=f"https://www.kaggle.com/code/{ref}",
                      kernel_id=None, recovered_from=reason)
    record.update({
        "time": ledger.utc_now(),
        "git_commit": commit,
        "git_dirty": dirty,
        "notebook": notebook.name,
        "notebook_sha256": notebook_sha,
        "params": _scrub(dict(params or {}), secrets),
        "accelerator": shape,
        "docker_image_pinning_type": meta.get("docker_image_pinning_type"),
        "docker_image": meta.get("docker_image"),
        "resumes": ledger.resume_link(meta),  # the earlier version this run continues, or None
    })
    ledger.append_record(runs_dir, record)
    echo(f"pushed {record['ref']} version {version}: {record['url']}")
    return record


# --------------------------------------------------------------------------------------------
# status and logs


def kernel_status(
    ref: str,
    *,
    wait: bool = False,
    interval: float = 30.0,
    timeout: float = 3600.0,
    echo: Callable[[str], None] = print,
    version: int | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> str:
    """State of kernel ``ref`` (its latest version, or ``version``): "queued", "running",
    "complete", "error", "cancelled", ...

    With ``wait``, polls every ``interval`` seconds, echoing the state each time it changes,
    until a terminal state (complete, error, cancelled) or ``timeout`` seconds have passed; the
    latter raises ``KaggleRequestError`` naming the last state seen.
    """
    parse_ref(ref)
    check_credentials()
    api = load_api(retry)
    label = ref if version is None else f"{ref} version {int(version)}"
    start = time.monotonic()
    last = None
    while True:
        state, failure = _status(api, ref, version, retry)
        if state != last:
            echo(f"{label}: {state}" + (f" ({failure})" if failure else ""))
            last = state
        if not wait or state in TERMINAL_STATES:
            return state
        if time.monotonic() - start + interval > timeout:
            raise KaggleRequestError(
                f"{label} is still {state} after waiting {timeout:g} s; "
                "check again later (status --wait) or look at the kernel page"
            )
        time.sleep(interval)


def log_lines(text: str) -> list[str]:
    """A kernel log as lines: Kaggle stores it as a JSON list of ``{stream_name, time, data}``
    events (the shape the client's ``_iter_blob_lines`` reads); other text is split as it is."""
    try:
        events = json.loads(text)
    except ValueError:
        return text.splitlines()
    events = events if isinstance(events, list) else [events]
    lines: list[str] = []
    for event in events:
        data = event.get("data") if isinstance(event, dict) else None
        if isinstance(data, str):
            lines.extend(data.rstrip("\n").split("\n"))
    return lines


def kernel_logs(
    ref: str,
    *,
    version: int | None = None,
    follow: bool = False,
    echo: Callable[[str], None] = print,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> None:
    """Print the log of ``ref``'s latest session (or of ``version``).

    Without ``follow``: the stored log, through the client's ``kernels_logs``. With ``follow``:
    the live stream through the client's ``kernels_logs_cli(follow=True)`` (``kaggle kernels logs
    --follow``), which prints each line as the session writes it, reconnects after a dropped
    connection and returns when the session's log ends.
    """
    parse_ref(ref)
    check_credentials()
    kernel = _kernel(ref, version)
    if not follow:
        api = load_api(retry)
        text = retrying(lambda: api.kernels_logs(kernel), f"log of {kernel}", retry)
        for line in log_lines(text):
            echo(line)
        return
    # A live stream is quiet between epochs: allow long reads; the client reconnects on drops.
    stream = RetryPolicy(attempts=1, request_timeout=max(retry.request_timeout, 900.0))
    api = load_api(stream)
    retrying(lambda: api.kernels_logs_cli(kernel, follow=True), f"live log of {kernel}", stream)


# --------------------------------------------------------------------------------------------
# fetch


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
    state, failure = _status(api, ref, version, retry)
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
            files, _ = api.kernels_output(_kernel(ref, version), str(tmp), quiet=True,
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
