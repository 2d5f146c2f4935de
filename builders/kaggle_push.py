"""Push a push folder (notebook + ``kernel-metadata.json``) as a new version of its kernel, with
the official client's ``kernels_push``, and record it in the run ledger.

What this adds to the client: the checks before a push (one GPU run at a time, a machine shape
Kaggle offers, no placeholder owner, no API key in the files), a push whose reply was lost never
repeated once Kaggle saved it, and the ledger record (``builders/ledger.py``, ``runs/README.md``).
Credentials are checked before the client is imported (``builders/kaggle_credentials.py``), and
their values are never written anywhere.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

from builders import ledger
from builders.kaggle_credentials import (
    PLACEHOLDER_USER,
    REJECTED_HELP,
    KaggleCredentialsError,
    check_credentials,
)
from builders.kaggle_kernel import BUSY_STATES, REF_RE, latest_version, parse_ref, version_state
from builders.kaggle_quota import gpu_quota_line
from builders.kaggle_transport import (
    DEFAULT_RETRY,
    KaggleRequestError,
    RetryPolicy,
    describe_failure,
    load_api,
    warn,
)
from builders.metadata import resolve_accelerator

METADATA_FILE = "kernel-metadata.json"
_TOOLKIT_ROOT = Path(__file__).resolve().parents[1]


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


def _server_ref(response_ref: str | None, fallback: str) -> str:
    """Kaggle answers ``/code/<user>/<slug>`` or a URL; the ledger keeps ``<user>/<slug>``."""
    text = (response_ref or "").strip()
    text = re.sub(r"^https?://[^/]+", "", text).lstrip("/")
    text = re.sub(r"^code/", "", text)
    return text if REF_RE.match(text) else fallback


def _check_not_busy(api, ref: str, force: bool, retry: RetryPolicy, echo) -> int | None:
    """The kernel's latest version before the push; refuses when it is queued or running."""
    before = latest_version(api, ref, retry)
    if before is None:
        echo(f"{ref} is not on Kaggle yet: this push creates it")
        return None
    state, _ = version_state(api, ref, before, retry)
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


