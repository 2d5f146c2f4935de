"""A loopback stand-in for Kaggle's kernels API, for driving the REAL kaggle client in tests.

Serves, on 127.0.0.1 and a free port, the kagglesdk RPC routes the toolkit uses
(``POST /api/v1/kernels.KernelsApiService/<Method>``, the path kagglesdk builds for
``KAGGLE_API_ENVIRONMENT=LOCALHOST``), the live-log route (``GET /api/v1/kernels/logs/stream/
<owner>/<slug>``) and the output-file downloads (``GET /files/...``). It also accepts
absolute-form request lines, so a client with ``HTTP_PROXY`` pointed here reaches it while
believing it talks to ``http://localhost``.

It follows Kaggle's contract as the official client (kaggle 2.2.5, kagglesdk 0.1.38) documents
it, not the toolkit's assumptions; each rule names the client source it mirrors
(``kae`` = kaggle/api/kaggle_api_extended.py):
- Versions are ``v<N>`` on the wire; a bare number is answered 404
  (``KaggleApi._kernel_version_label``, kae:9882: "the API expects them written as `v<N>` and
  returns 404 for the bare number"). No label means the latest version. See ``_version``.
- A kernel that was never pushed is 403 by default, ``missing_kernel_code``: Kaggle checks the
  'kernels.get' permission first, and the client's own 401/403 message for kernels_status/
  kernels_output/kernels_logs gives "a wrong kernel slug" as the most likely cause (kae:7655,
  7538, 7705); which of 403/404 the live API sends is not confirmed, so tests try both. A version
  above the latest is 404 (kae:9882).
- Output listings are paginated with ``pageSize``/``pageToken`` -> ``nextPageToken``, the log
  only on the first page (``kernels_output`` follows the tokens and writes ``response.log``
  once, kae:7478-7596); pages here hold at most ``page_size_cap`` files so paging is exercised.
- ``GetKernel`` answers ``metadata.currentVersionNumber`` (kagglesdk ``ApiKernelMetadata``,
  asked by ``kernels_pull``, kae:7337).
- ``GetAcceleratorQuotaStatistics`` answers ``gpuQuota.timeUsed``/``totalTimeAllowed`` as
  kagglesdk durations (``"<seconds>s"``) and ``quotaRefreshTime`` (``quota_view``, kae:6747).
- The log stream answers ``text/event-stream`` ``data:`` events ending with ``END_OF_LOG`` while
  the session runs, and the stored JSON list of events once it ended (``kernels_logs_stream``,
  kae:7715; ``versionLabel`` as a query parameter, kae:7736).
- An access token is checked by ``IntrospectToken`` (``active`` and ``username`` for the token
  ``token``, ``active`` false otherwise: the client then falls back to the key, kae:1562, 1604)
  and sent as ``Authorization: Bearer`` (kagglesdk ``KaggleHttpClient._try_fill_auth``).
- SaveKernel bodies are checked as ``kernels_push`` builds them (kae:7145): slug, title of 5+
  characters, cell sources as single strings, ``dockerImagePinningType`` one of
  ``valid_push_pinning_types`` (kae:1187), ``machineShape`` one of the documented shapes
  (kaggle-cli docs/kernels.md, "Accelerators available"); a save creates the next version.

Behaviour is scripted per test through plain lists (consumed one entry per request; when a list
is empty the server answers normally):
- ``push_plan``, ``status_plan_faults``, ``list_plan``, ``get_kernel_plan``, ``quota_plan``,
  ``introspect_plan``:
  ``("http", code)`` answers that HTTP status with a Kaggle-style JSON error, ``"drop"`` closes
  the socket without answering, ``("hang", seconds)`` answers late, ``("error", message)`` (push
  only) answers 200 with ``error`` set, as Kaggle does for a refused save. Push only:
  ``("saved_then_hang", seconds)`` and ``("saved_then_http", code)`` save the version first and
  then answer late or with an error: a reply lost after Kaggle did the work.
- ``status_states``: the states to report, one per status call (the last one repeats).
- ``file_plan[name]``: ``("http", code)`` or ``"drop_mid"`` (headers and half the body, then the
  socket closes) for downloads of that output file.
- ``log_events``: the log lines the session wrote.

Every request is recorded in ``requests`` as ``(method, json_body)``; a SaveKernel body that does
not look like what kaggle 2.2.5 sends is answered 400 and described in ``violations``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

RPC_PREFIX = "/api/v1/kernels.KernelsApiService/"
#: kagglesdk ``OAuthClient.introspect_token``, asked by ``KaggleApi._introspect_token`` at sign-in
#: when an access token exists (KAGGLE_API_TOKEN, ~/.kaggle/access_token).
INTROSPECT_PATH = "/api/v1/security.OAuthService/IntrospectToken"
LOGS_PREFIX = "/api/v1/kernels/logs/stream/"  # kae:7741-7742, "{endpoint}/api" outside PROD
#: kaggle-cli docs/kernels.md, "Accelerators available as of Feb 2026" (retired ones included:
#: Kaggle accepts them and runs a replacement, kae:486 _RETIRED_ACCELERATORS).
DOCUMENTED_SHAPES = ("NvidiaTeslaP100", "TpuV38", "NvidiaTeslaT4", "NvidiaTeslaT4Highmem",
                     "Tpu1VmV38", "NvidiaTeslaA100", "NvidiaL4", "TpuV5E8", "NvidiaL4X1", "TpuV6E8",
                     "NvidiaH100", "NvidiaRtxPro6000")
PINNING_TYPES = ("original", "latest")  # kae:1187 valid_push_pinning_types
_LABEL_RE = re.compile(r"^v([0-9]+)$")


class NotFound(Exception):
    """Answered as Kaggle's 404, or ``code``."""

    def __init__(self, message: str, code: int = 404):
        super().__init__(message)
        self.code = code


class FakeKaggle:
    def __init__(self, username: str = "alice", key: str = "fake-kaggle-key-0123456789",
                 max_seconds: float = 60.0, token: str | None = None):
        self.username = username
        self.key = key
        self.token = token  # an access token Kaggle knows, or None
        self.max_seconds = max_seconds
        self.requests: list[tuple[str, dict]] = []
        self.violations: list[str] = []
        self.push_plan: list = []
        self.status_plan_faults: list = []
        self.list_plan: list = []
        self.get_kernel_plan: list = []
        self.quota_plan: list = []
        self.introspect_plan: list = []
        # weekly GPU quota, hours
        self.gpu_hours_used = 8.5
        self.gpu_hours_allowed = 30.0
        self.log_events: list[str] = []
        self.status_states: list = ["complete"]
        self.status_failure: str | None = None
        # version -> {"files": {name: bytes}, "log": str | None}
        self.outputs: dict[int, dict] = {}
        self.file_plan: dict[str, list] = {}
        self.page_size_cap = 2  # small pages, so paging is exercised
        self.missing_kernel_code = 403  # what a never-pushed kernel gets (see the module doc)
        # "owner/slug" -> latest version number; a kernel is on "Kaggle" once it has one
        self.versions: dict[str, int] = {}
        self.downloads: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._timer: threading.Timer | None = None

    # ---- lifecycle
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeKaggle":
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        # Bounded: a test that forgets to stop it (or hangs) does not leave it running.
        self._timer = threading.Timer(self.max_seconds, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()
            server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- helpers for tests
    def calls(self, method: str) -> list[dict]:
        return [body for name, body in self.requests if name == method]

    def _next(self, plan: list):
        with self._lock:
            return plan.pop(0) if plan else None

    def _save_version(self, ref: str) -> int:
        with self._lock:
            self.versions[ref] = self.versions.get(ref, 0) + 1
            return self.versions[ref]

    def _version(self, ref: str, label) -> int:
        """The version a request's ``versionLabel`` names, as Kaggle reads it.

        kae:9882 ``_kernel_version_label``: the API names versions ``v<N>`` and answers a bare
        number with 404; an absent label means the latest version. Unknown kernel/version: 404.
        """
        latest = self.versions.get(ref, 0)
        if latest == 0:
            raise NotFound(f"Permission 'kernels.get' was denied for {ref}" if self.missing_kernel_code == 403
                           else f"kernel {ref} not found", self.missing_kernel_code)
        if label in (None, ""):
            return latest
        match = _LABEL_RE.match(str(label))
        if not match:
            raise NotFound(f"version {label!r} of {ref} not found (versions are named v<N>)")
        number = int(match.group(1))
        if not 1 <= number <= latest:
            raise NotFound(f"version {label} of {ref} not found")
        return number


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeKaggle
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    # ---- plumbing
    def _send_json(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout test)
            self.close_connection = True

    def _fault(self, action) -> bool:
        """Carry out a scripted fault; True when the request is answered (or dropped)."""
        if action is None:
            return False
        if action == "drop":
            self.close_connection = True
            return True
        kind, value = action
        if kind == "http":
            self._send_json(value, {"code": value, "message": f"fake server error {value}"})
            return True
        if kind == "hang":
            time.sleep(value)
            return False
        raise ValueError(f"unknown scripted action {action!r}")

    def _authorised(self) -> bool:
        fake = self.server_fake
        expected = base64.b64encode(f"{fake.username}:{fake.key}".encode()).decode()
        accepted = {f"Basic {expected}"} | ({f"Bearer {fake.token}"} if fake.token else set())
        if self.headers.get("Authorization") not in accepted:
            self._send_json(401, {"code": 401, "message": "Unauthenticated"})
            return False
        return True

    # ---- routes
    def do_POST(self):  # noqa: N802 - stdlib name
        fake = self.server_fake
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            body = {"_unparsable": True}
        if path == INTROSPECT_PATH:
            with fake._lock:
                fake.requests.append(("IntrospectToken", {"token": "<redacted>"}))
            if not self._fault(fake._next(fake.introspect_plan)):
                known = fake.token is not None and body.get("token") == fake.token
                self._send_json(200, {"active": True, "username": fake.username} if known else {})
            return
        if not path.startswith(RPC_PREFIX):
            self._send_json(404, {"code": 404, "message": f"no route {path}"})
            return
        method = path[len(RPC_PREFIX):]
        with fake._lock:
            fake.requests.append((method, body))
        if not self._authorised():
            return
        handler = {
            "SaveKernel": self._save_kernel,
            "GetKernelSessionStatus": self._status,
            "ListKernelSessionOutput": self._list_output,
            "GetKernel": self._get_kernel,
            "GetAcceleratorQuotaStatistics": self._quota,
        }.get(method)
        if handler is None:
            self._send_json(404, {"code": 404, "message": f"unknown method {method}"})
            return
        try:
            handler(body)
        except NotFound as exc:
            self._send_json(exc.code, {"code": exc.code, "message": str(exc)})

    def _save_kernel(self, body: dict) -> None:
        fake = self.server_fake
        action = fake._next(fake.push_plan)
        if isinstance(action, tuple) and action[0] == "error":
            self._send_json(200, {"ref": "", "url": "", "error": action[1]})
            return
        saved_first = isinstance(action, tuple) and action[0].startswith("saved_then_")
        if not saved_first and self._fault(action):
            return
        problems = _check_save_body(body, fake.username)
        if problems:
            with fake._lock:
                fake.violations.extend(problems)
            self._send_json(400, {"code": 400, "message": "; ".join(problems)})
            return
        slug = body["slug"]
        version = fake._save_version(slug)
        if saved_first:  # Kaggle saved the version; the reply is what goes wrong
            kind, value = action
            if self._fault(("hang" if kind == "saved_then_hang" else "http", value)):
                return
        self._send_json(200, {
            "ref": f"/code/{slug}",
            "url": f"https://www.kaggle.com/code/{slug}",
            "versionNumber": version,
            "kernelId": 110525753,
        })

    def _status(self, body: dict) -> None:
        fake = self.server_fake
        if self._fault(fake._next(fake.status_plan_faults)):
            return
        fake._version(f"{body.get('userName')}/{body.get('kernelSlug')}", body.get("versionLabel"))
        with fake._lock:
            state = fake.status_states.pop(0) if len(fake.status_states) > 1 else fake.status_states[0]
        payload = {"status": state}
        if fake.status_failure:
            payload["failureMessage"] = fake.status_failure
        self._send_json(200, payload)

    def _list_output(self, body: dict) -> None:
        fake = self.server_fake
        if self._fault(fake._next(fake.list_plan)):
            return
        version = fake._version(f"{body.get('userName')}/{body.get('kernelSlug')}", body.get("versionLabel"))
        run = fake.outputs.get(version, {"files": {}, "log": None})
        names = sorted(run["files"])
        start = int(body.get("pageToken") or 0)
        size = min(int(body.get("pageSize") or 20), fake.page_size_cap)
        page = names[start:start + size]
        payload = {
            "files": [{"fileName": n, "url": f"{fake.url}/files/{version}/{quote(n)}"} for n in page],
        }
        if start + size < len(names):
            payload["nextPageToken"] = str(start + size)
        if run.get("log") and start == 0:
            payload["log"] = run["log"]
        self._send_json(200, payload)

    def _get_kernel(self, body: dict) -> None:
        fake = self.server_fake
        if self._fault(fake._next(fake.get_kernel_plan)):
            return
        ref = f"{body.get('userName')}/{body.get('kernelSlug')}"
        version = fake._version(ref, body.get("versionLabel"))
        self._send_json(200, {
            "metadata": {"ref": f"/code/{ref}", "slug": ref, "title": "fake kernel",
                         "currentVersionNumber": fake.versions[ref], "language": "python",
                         "kernelType": "notebook"},
            "blob": {"source": json.dumps({"cells": [], "version": version}), "language": "python",
                     "kernelType": "notebook", "slug": body.get("kernelSlug")},
        })

    def _quota(self, body: dict) -> None:
        fake = self.server_fake
        if self._fault(fake._next(fake.quota_plan)):
            return
        self._send_json(200, {
            "quotaRefreshTime": "2026-12-05T00:00:00.000Z",
            "gpuQuota": {"timeUsed": f"{fake.gpu_hours_used * 3600:.0f}s",
                         "totalTimeAllowed": f"{fake.gpu_hours_allowed * 3600:.0f}s"},
        })

    def _logs(self, path: str, query: dict) -> None:
        """kae:7715 ``kernels_logs_stream``: SSE while running, the stored list once ended."""
        fake = self.server_fake
        ref = unquote(path[len(LOGS_PREFIX):])
        label = (query.get("versionLabel") or [None])[0]
        with fake._lock:
            fake.requests.append(("LogsStream", {"ref": ref, "versionLabel": label}))
        try:
            fake._version(ref, label)
        except NotFound as exc:
            self._send_json(exc.code, {"code": exc.code, "message": str(exc)})
            return
        running = fake.status_states[0] in ("running", "queued")
        events = [{"stream_name": "stdout", "time": float(i), "data": line + "\n"}
                  for i, line in enumerate(fake.log_events)]
        if running:
            body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: END_OF_LOG\n\n"
            data, kind = body.encode(), "text/event-stream"
        else:
            data, kind = json.dumps(events).encode(), "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - stdlib name
        fake = self.server_fake
        split = urlsplit(self.path)
        path = split.path
        if path.startswith(LOGS_PREFIX):
            if self._authorised():
                self._logs(path, parse_qs(split.query))
            return
        parts = path.split("/", 3)  # "", "files", version, name
        if len(parts) != 4 or parts[1] != "files":
            self._send_json(404, {"code": 404, "message": f"no route {path}"})
            return
        version, name = int(parts[2]), unquote(parts[3])
        with fake._lock:
            fake.downloads.append(name)
        data = fake.outputs.get(version, {}).get("files", {}).get(name)
        if data is None:
            self._send_json(404, {"code": 404, "message": f"no file {name}"})
            return
        action = fake._next(fake.file_plan.setdefault(name, []))
        if action == "drop_mid":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if self._fault(action):
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _check_save_body(body: dict, username: str) -> list[str]:
    """What a SaveKernel body from kaggle 2.2.5 ``kernels_push`` (kae:7145) holds; the problems."""
    problems = []
    slug = body.get("slug")
    if not isinstance(slug, str) or slug.count("/") != 1 or not slug.startswith(username + "/"):
        problems.append(f"slug {slug!r} is not '{username}/<slug>'")
    title = body.get("newTitle")
    if not isinstance(title, str) or len(title) < 5:
        problems.append(f"newTitle {title!r} missing or shorter than 5 characters")
    try:
        notebook = json.loads(body.get("text") or "")
        cells = notebook["cells"]
        if not all(isinstance(c.get("source"), str) for c in cells):
            problems.append("text: cell sources must be single strings")
    except (ValueError, KeyError, TypeError):
        problems.append("text is not a notebook JSON with cells")
    if body.get("language") != "python":
        problems.append(f"language {body.get('language')!r} is not 'python'")
    if body.get("kernelType") != "notebook":
        problems.append(f"kernelType {body.get('kernelType')!r} is not 'notebook'")
    for key in ("isPrivate", "enableGpu", "enableInternet"):
        if not isinstance(body.get(key), bool):
            problems.append(f"{key} missing or not a boolean")
    sources = body.get("datasetDataSources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) and s.count("/") == 1 for s in sources):
        problems.append(f"datasetDataSources {sources!r} is not a list of 'owner/slug'")
    shape = body.get("machineShape")
    if shape is not None and shape not in DOCUMENTED_SHAPES:
        problems.append(f"machineShape {shape!r} is not a machine shape ({', '.join(DOCUMENTED_SHAPES)})")
    pinning = body.get("dockerImagePinningType")
    if pinning is not None and pinning not in PINNING_TYPES:
        problems.append(f"dockerImagePinningType {pinning!r} is not one of {PINNING_TYPES}")
    image = body.get("dockerImage")
    if image is not None and "@sha256:" not in str(image):
        problems.append(f"dockerImage {image!r} is not an image named by digest")
    return problems
