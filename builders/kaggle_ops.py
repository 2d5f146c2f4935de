"""Kaggle round trip with the official client: push a notebook folder, watch it, fetch its outputs.

Every push and fetch is recorded in the run ledger (``runs/ledger.jsonl``, see
``builders/ledger.py`` and ``runs/README.md``); outputs land in ``runs/<slug>/v<N>/``, one folder
per kernel version, written once and never overwritten.

The ``kaggle`` package is imported only inside these functions: at import it prints an
"Authentication required" banner when no credentials exist and creates ``~/.config/kaggle``, so
rendering a notebook (which imports this module through the builder CLI) must not trigger it.
Credentials are checked before the import, and their values are never written anywhere.

Client notes (kaggle 2.2.4, kagglesdk 0.1.37): ``KaggleApi.kernels_push`` reads the folder and
sends ``ApiSaveKernelRequest``; it has no retry and its HTTP session has no timeout, so this
module adds both. ``KaggleApi.kernels_status``/``kernels_output`` drop the version label and
write download bodies without checking the HTTP status, so status and outputs go through the
client's own kagglesdk requests (``versionLabel`` set) and a checked, hashed download.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from builders import ledger

PLACEHOLDER_USER = "your-kaggle-username"
METADATA_FILE = "kernel-metadata.json"
MANIFEST_FILE = "manifest.json"
TERMINAL_STATES = frozenset({"complete", "error", "cancelled"})
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
_CREDENTIALS_HELP = (
    "No Kaggle credentials found. Put your API token in ~/.kaggle/kaggle.json "
    '({"username": "...", "key": "..."}, chmod 600; from kaggle.com > Settings > API > '
    "Create New Token), or set KAGGLE_USERNAME and KAGGLE_KEY in the environment "
    "(KAGGLE_CONFIG_DIR moves the kaggle.json folder)."
)


class KaggleCredentialsError(RuntimeError):
    """No usable Kaggle credentials (builder CLI exit code 2). The message is fit to print."""


class KaggleRequestError(RuntimeError):
    """A Kaggle request failed or was refused (builder CLI exit code 1). Fit to print."""


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures (HTTP 5xx/429, timeouts, dropped connections) are retried.

    ``attempts`` counts the first try; the wait before try k+1 is
    ``min(max_delay, backoff * 2**(k-1))`` seconds. ``request_timeout`` bounds each HTTP request
    (connect and each read), so a silent server becomes a retried timeout instead of a hang.
    """

    attempts: int = 4
    backoff: float = 2.0
    max_delay: float = 60.0
    request_timeout: float = 120.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.backoff * 2 ** (attempt - 1))


DEFAULT_RETRY = RetryPolicy()


# --------------------------------------------------------------------------------------------
# Local checks: metadata and credentials (no network, no kaggle import)


def parse_ref(ref: str) -> tuple[str, str]:
    """``"user/slug"`` -> ``(user, slug)``; a clear ``KaggleRequestError`` otherwise."""
    match = _REF_RE.match(str(ref).strip())
    if not match:
        raise KaggleRequestError(
            f"kernel ref {ref!r} is not of the form <user>/<slug> (e.g. alice/dpt-speech-enhancement)"
        )
    return match.group(1), match.group(2)


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


def kaggle_json_path() -> Path:
    """Where the kaggle client looks for kaggle.json (same rule as kaggle 2.2.4)."""
    config_dir = os.environ.get("KAGGLE_CONFIG_DIR")
    if config_dir:
        return Path(config_dir) / "kaggle.json"
    home_dir = Path(os.path.expanduser("~")) / ".kaggle"
    if sys.platform.startswith("linux") and not home_dir.exists():
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return Path(xdg) / "kaggle" / "kaggle.json"
    return home_dir / "kaggle.json"


def check_credentials(warn: Callable[[str], None] | None = None) -> list[str]:
    """Make sure the client will find credentials; return the secret strings (never printed).

    Sources, as the client reads them: KAGGLE_USERNAME + KAGGLE_KEY, kaggle.json, or an access
    token (KAGGLE_API_TOKEN, ~/.kaggle/access_token). Warns when kaggle.json is readable by
    other users. Raises ``KaggleCredentialsError`` naming both usual places otherwise.
    """
    warn = warn or _warn
    secrets: list[str] = []
    found = False
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        secrets.append(os.environ["KAGGLE_KEY"])
        found = True
    path = kaggle_json_path()
    if path.is_file():
        mode = path.stat().st_mode
        if os.name != "nt" and mode & 0o077:
            warn(
                f"warning: {path} is readable by other users (mode {mode & 0o777:o}); "
                f"run: chmod 600 {path}"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            if not found:
                raise KaggleCredentialsError(f"{path}: not valid JSON ({exc}). {_CREDENTIALS_HELP}") from exc
            data = {}
        if isinstance(data, dict) and data.get("username") and data.get("key"):
            secrets.append(str(data["key"]))
            found = True
    token = os.environ.get("KAGGLE_API_TOKEN")
    token_file = Path(os.path.expanduser("~")) / ".kaggle" / "access_token"
    if token:
        secrets.append(token)
        found = True
    elif token_file.is_file():
        try:
            file_token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KaggleCredentialsError(f"{token_file}: cannot read ({exc}). {_CREDENTIALS_HELP}") from exc
        if file_token:
            secrets.append(file_token)
            found = True
    if not found:
        raise KaggleCredentialsError(_CREDENTIALS_HELP)
    return [s for s in secrets if s]


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


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


# --------------------------------------------------------------------------------------------
# The client, loaded lazily, with a request timeout


def load_api(retry: RetryPolicy = DEFAULT_RETRY):
    """Import the official client and return an authenticated ``KaggleApi`` (a subclass whose
    HTTP sessions time out after ``retry.request_timeout`` seconds).

    Call ``check_credentials`` first: without credentials the client prints its banner and exits.
    """
    noise = io.StringIO()
    try:
        with contextlib.redirect_stdout(noise):
            import requests
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as exc:
        raise KaggleRequestError(
            f"the kaggle client cannot be imported ({exc}); install it with: pip install 'kaggle>=2.0' six"
        ) from exc

    class _TimeoutAdapter(requests.adapters.HTTPAdapter):
        def __init__(self, timeout: float):
            super().__init__()
            self._timeout = timeout

        def send(self, request, timeout=None, **kwargs):
            return super().send(request, timeout=self._timeout if timeout is None else timeout, **kwargs)

    class _TimedKaggleApi(KaggleApi):
        request_timeout = retry.request_timeout

        def build_kaggle_client(self):
            client = super().build_kaggle_client()
            http = client.http_client()
            # kagglesdk 0.1.37 sends without a timeout; its session is created lazily, so create
            # it now (the client's own __enter__ reuses it) and mount adapters that add one.
            http._init_session()
            for prefix in ("http://", "https://"):
                http._session.mount(prefix, _TimeoutAdapter(self.request_timeout))
            return client

    api = _TimedKaggleApi()
    try:
        with contextlib.redirect_stdout(noise):
            api.authenticate()
    except SystemExit as exc:
        raise KaggleCredentialsError(_CREDENTIALS_HELP) from exc
    for line in noise.getvalue().splitlines():
        # check_credentials already warned about the file mode, in our words.
        if line.strip() and "readable by other users" not in line:
            _warn(line)
    return api


def _describe_failure(exc: BaseException, timeout: float) -> tuple[bool, str, bool]:
    """``(transient, reason, credentials_problem)`` for an exception from a request."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        detail = str(exc) or exc.response.reason
        if code in (401,):
            return False, f"Kaggle rejected the credentials (HTTP {code}: {detail})", True
        if code >= 500 or code in (408, 429):
            return True, f"HTTP {code} from Kaggle ({detail})", False
        return False, f"HTTP {code} from Kaggle ({detail})", False
    if isinstance(exc, requests.Timeout):
        return True, f"no answer from Kaggle within {timeout:g} s", False
    if isinstance(exc, requests.exceptions.SSLError):
        # A certificate problem does not go away by asking again (it subclasses ConnectionError).
        return False, f"TLS failure talking to Kaggle ({exc})", False
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return True, f"connection failed or dropped ({type(exc).__name__}: {exc})", False
    if isinstance(exc, _TransientDownloadError):
        return True, str(exc), False
    if isinstance(exc, ValueError):
        return False, f"the client refused the request: {exc}", False
    return False, f"{type(exc).__name__}: {exc}", False


class _TransientDownloadError(IOError):
    """A download that ended early or answered 5xx; worth another try."""


def _retrying(call: Callable[[], Any], what: str, retry: RetryPolicy) -> Any:
    for attempt in range(1, retry.attempts + 1):
        try:
            return call()
        except (KaggleRequestError, KaggleCredentialsError):
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised as ours
            transient, reason, credentials = _describe_failure(exc, retry.request_timeout)
            if credentials:
                raise KaggleCredentialsError(f"{what} failed: {reason}. {_CREDENTIALS_HELP}") from exc
            if not transient:
                raise KaggleRequestError(f"{what} failed: {reason}") from exc
            if attempt == retry.attempts:
                raise KaggleRequestError(
                    f"{what} failed after {attempt} attempts: {reason}"
                ) from exc
            delay = retry.delay(attempt)
            _warn(f"{what}: {reason}; retrying in {delay:.3g} s (attempt {attempt + 1} of {retry.attempts})")
            time.sleep(delay)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# push


def _server_ref(response_ref: str | None, fallback: str) -> str:
    """Kaggle answers ``/code/<user>/<slug>`` or a URL; the ledger keeps ``<user>/<slug>``."""
    text = (response_ref or "").strip()
    text = re.sub(r"^https?://[^/]+", "", text).lstrip("/")
    text = re.sub(r"^code/", "", text)
    return text if _REF_RE.match(text) else fallback


def push_notebook(
    folder: Path,
    *,
    runs_dir: Path,
    params: dict,
    accelerator: str,
    retry: RetryPolicy = DEFAULT_RETRY,
    echo: Callable[[str], None] = print,
) -> dict:
    """Push the rendered push folder ``folder`` as a new version of its kernel; return the
    ledger record (also appended to ``runs_dir/ledger.jsonl``).

    ``accelerator`` (a Kaggle machine shape such as "NvidiaTeslaT4"; empty keeps the metadata's
    ``machine_shape``) is sent as the client's ``acc``. Nothing is written and the folder is not
    modified when the push fails. A push retried after a timeout or 5xx may have been saved by
    Kaggle the first time too; then Kaggle holds one more version than the ledger, and the
    ledger's version (from the successful reply) is the one that runs last.
    """
    folder = Path(folder)
    meta = read_kernel_metadata(folder)
    ref = meta["id"]
    secrets = check_credentials()
    notebook = folder / meta["code_file"]
    _refuse_leaked_secrets([notebook, folder / METADATA_FILE], secrets)
    notebook_sha = ledger.sha256_file(notebook)
    commit, dirty = ledger.git_state(_TOOLKIT_ROOT)
    api = load_api(retry)
    acc = accelerator or None
    response = _retrying(lambda: api.kernels_push(str(folder), None, acc), f"push of {ref}", retry)
    if response is None:
        raise KaggleRequestError(f"push of {ref} failed: the client returned no response")
    if response.error:
        raise KaggleRequestError(f"Kaggle refused the push of {ref}: {response.error}")
    for label, bad in (
        ("dataset", response.invalid_dataset_sources),
        ("competition", response.invalid_competition_sources),
        ("kernel", response.invalid_kernel_sources),
        ("model", response.invalid_model_sources),
    ):
        if bad:
            _warn(f"warning: Kaggle did not attach these {label} sources to {ref}: {', '.join(bad)}")
    version = response.version_number
    if version is None:
        _warn(f"warning: Kaggle accepted {ref} but sent no version number; pass --version to fetch")
    record = {
        "event": "push",
        "ref": _server_ref(response.ref, ref),
        "version": version,
        "url": response.url,
        "kernel_id": response.kernel_id or None,
        "time": ledger.utc_now(),
        "git_commit": commit,
        "git_dirty": dirty,
        "notebook": notebook.name,
        "notebook_sha256": notebook_sha,
        "params": _scrub(dict(params or {}), secrets),
        "accelerator": accelerator or meta.get("machine_shape"),
    }
    ledger.append_record(runs_dir, record)
    echo(f"pushed {record['ref']} version {version}: {response.url}")
    return record


# --------------------------------------------------------------------------------------------
# status


def _state_name(status: Any) -> str:
    name = getattr(status, "name", None) or str(status)
    return _STATE_NAMES.get(name.upper(), name.lower())


def _get_status(api, user: str, slug: str, version: int | None, retry: RetryPolicy) -> tuple[str, str | None]:
    from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelSessionStatusRequest

    def call():
        with api.build_kaggle_client() as kaggle:
            request = ApiGetKernelSessionStatusRequest()
            request.user_name = user
            request.kernel_slug = slug
            if version is not None:
                request.version_label = str(version)
            return kaggle.kernels.kernels_api_client.get_kernel_session_status(request)

    label = f"{user}/{slug}" + (f" version {version}" if version is not None else "")
    response = _retrying(call, f"status of {label}", retry)
    return _state_name(response.status), response.failure_message


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
    """State of kernel ``ref`` ("queued", "running", "complete", "error", "cancelled", ...).

    With ``wait``, polls every ``interval`` seconds, echoing the state each time it changes,
    until a terminal state (complete, error, cancelled) or ``timeout`` seconds have passed; the
    latter raises ``KaggleRequestError`` naming the last state seen.
    """
    user, slug = parse_ref(ref)
    check_credentials()
    api = load_api(retry)
    start = time.monotonic()
    last = None
    while True:
        state, failure = _get_status(api, user, slug, version, retry)
        if state != last:
            echo(f"{ref}: {state}" + (f" ({failure})" if failure else ""))
            last = state
        if not wait or state in TERMINAL_STATES:
            return state
        if time.monotonic() - start + interval > timeout:
            raise KaggleRequestError(
                f"{ref} is still {state} after waiting {timeout:g} s; "
                "check again later (status --wait) or look at the kernel page"
            )
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# fetch


def _safe_relative(name: str, ref: str) -> PurePosixPath:
    """An output file name as a relative path that stays inside the run folder."""
    rel = PurePosixPath(name.replace("\\", "/"))
    if not name or rel.is_absolute() or ".." in rel.parts or rel.parts[0] in ("", "."):
        raise KaggleRequestError(f"{ref}: Kaggle listed an output with an unsafe name {name!r}")
    return rel


def _list_outputs(api, user: str, slug: str, version: int, retry: RetryPolicy):
    """All ``(file_name, url)`` of a version's outputs over every page, and its log text."""
    from kagglesdk.kernels.types.kernels_api_service import ApiListKernelSessionOutputRequest

    files: list[tuple[str, str]] = []
    log = None
    token = None
    for _ in range(10_000):  # bounded: a server that repeats a page token cannot loop forever
        def call(token=token):
            with api.build_kaggle_client() as kaggle:
                request = ApiListKernelSessionOutputRequest()
                request.user_name = user
                request.kernel_slug = slug
                request.version_label = str(version)
                request.page_size = 100
                if token:
                    request.page_token = token
                return kaggle.kernels.kernels_api_client.list_kernel_session_output(request)

        response = _retrying(call, f"output list of {user}/{slug} version {version}", retry)
        files.extend((item.file_name, item.url) for item in response.files or [])
        log = log or response.log
        token = response.next_page_token
        if not token:
            return files, log
    raise KaggleRequestError(f"output list of {user}/{slug} version {version}: too many pages")


def _download(session, url: str, dest: Path, what: str, retry: RetryPolicy) -> tuple[int, str]:
    """Stream ``url`` into ``dest``; return ``(size, sha256)``. Short bodies are an error."""
    import hashlib

    def call():
        with session.get(url, stream=True, timeout=retry.request_timeout) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise _TransientDownloadError(f"HTTP {response.status_code} while downloading {what}")
            response.raise_for_status()
            expected = response.headers.get("Content-Length")
            digest = hashlib.sha256()
            size = 0
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as fh:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    fh.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            if expected is not None and int(expected) != size and "Content-Encoding" not in response.headers:
                raise _TransientDownloadError(f"{what}: got {size} of {expected} bytes")
            return size, digest.hexdigest()

    return _retrying(call, f"download of {what}", retry)


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
    folder already holds them; delete or rename it to fetch again). Files arrive in a hidden
    temporary folder beside it that is renamed into place only when every file is complete, so a
    failure leaves nothing behind. ``manifest.json`` lists name, size and sha256 of each file.
    A version still queued or running is refused, since its outputs are not final yet.
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
    state, failure = _get_status(api, user, slug, version, retry)
    if state not in TERMINAL_STATES:
        raise KaggleRequestError(
            f"{ref} version {version} is {state}; its outputs are not final yet. "
            "Wait for it (status --wait) and fetch again"
        )
    files, log = _list_outputs(api, user, slug, version, retry)
    if not files and not log:
        raise KaggleRequestError(f"{ref} version {version} ({state}) has no output files and no log")

    import requests

    created_slug_dir = not slug_dir.exists()
    slug_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}.partial-", dir=slug_dir))
    try:
        entries = []
        seen = set()
        # Output URLs are pre-signed storage links: a plain session, never the Kaggle credentials.
        with requests.Session() as session:
            for name, url in sorted(files):
                rel = _safe_relative(name, ref)
                if str(rel) in seen or str(rel) == MANIFEST_FILE:
                    raise KaggleRequestError(f"{ref} version {version}: output {name!r} listed twice or clashes with {MANIFEST_FILE}")
                seen.add(str(rel))
                size, sha = _download(session, url, tmp / rel, f"{name} ({ref} v{version})", retry)
                entries.append({"name": str(rel), "size": size, "sha256": sha})
        log_name = None
        if log:
            log_name = f"{slug}.log"
            if log_name not in seen:
                (tmp / log_name).write_text(log, encoding="utf-8")
                data = (tmp / log_name).read_bytes()
                entries.append({"name": log_name, "size": len(data), "sha256": ledger.sha256_file(tmp / log_name)})
        entries.sort(key=lambda e: e["name"])
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
