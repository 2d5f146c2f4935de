"""A loopback stand-in for Kaggle's kernels API, for driving the REAL kaggle client in tests.

Serves, on 127.0.0.1 and a free port, the kagglesdk RPC routes the toolkit uses
(``POST /api/v1/kernels.KernelsApiService/<Method>``, the path kagglesdk builds for
``KAGGLE_API_ENVIRONMENT=LOCALHOST``) and the output-file downloads (``GET /files/...``). It also
accepts absolute-form request lines, so a client with ``HTTP_PROXY`` pointed here reaches it
while believing it talks to ``http://localhost``.

Behaviour is scripted per test through plain lists (consumed one entry per request; when a list
is empty the server answers normally):
- ``push_plan``, ``status_plan_faults``, ``list_plan``: ``("http", code)`` answers that HTTP
  status with a Kaggle-style JSON error, ``"drop"`` closes the socket without answering,
  ``("hang", seconds)`` answers late, ``("error", message)`` (push only) answers 200 with
  ``error`` set, as Kaggle does for a refused save.
- ``status_states``: the states to report, one per status call (the last one repeats).
- ``file_plan[name]``: ``("http", code)`` or ``"drop_mid"`` (headers and half the body, then the
  socket closes) for downloads of that output file.

Every request is recorded in ``requests`` as ``(method, json_body)``; a SaveKernel body that does
not look like what kaggle 2.2.4 sends is answered 400 and described in ``violations``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

RPC_PREFIX = "/api/v1/kernels.KernelsApiService/"


class FakeKaggle:
    def __init__(self, username: str = "alice", key: str = "fake-kaggle-key-0123456789",
                 max_seconds: float = 60.0):
        self.username = username
        self.key = key
        self.max_seconds = max_seconds
        self.requests: list[tuple[str, dict]] = []
        self.violations: list[str] = []
        self.push_plan: list = []
        self.status_plan_faults: list = []
        self.list_plan: list = []
        self.status_states: list = ["complete"]
        self.status_failure: str | None = None
        # version -> {"files": {name: bytes}, "log": str | None}
        self.outputs: dict[int, dict] = {}
        self.file_plan: dict[str, list] = {}
        self.page_size_cap = 2  # small pages, so paging is exercised
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


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeKaggle
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    # ---- plumbing
    def _send_json(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
        if self.headers.get("Authorization") != f"Basic {expected}":
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
        }.get(method)
        if handler is None:
            self._send_json(404, {"code": 404, "message": f"unknown method {method}"})
            return
        handler(body)

    def _save_kernel(self, body: dict) -> None:
        fake = self.server_fake
        action = fake._next(fake.push_plan)
        if isinstance(action, tuple) and action[0] == "error":
            self._send_json(200, {"ref": "", "url": "", "error": action[1]})
            return
        if self._fault(action):
            return
        problems = _check_save_body(body, fake.username)
        if problems:
            with fake._lock:
                fake.violations.extend(problems)
            self._send_json(400, {"code": 400, "message": "; ".join(problems)})
            return
        slug = body["slug"]
        with fake._lock:
            fake.versions[slug] = fake.versions.get(slug, 0) + 1
            version = fake.versions[slug]
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
        try:
            version = int(body.get("versionLabel"))
        except (TypeError, ValueError):
            self._send_json(400, {"code": 400, "message": "versionLabel missing"})
            return
        run = fake.outputs.get(version)
        if run is None:
            self._send_json(404, {"code": 404, "message": f"no version {version}"})
            return
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

    def do_GET(self):  # noqa: N802 - stdlib name
        fake = self.server_fake
        path = urlsplit(self.path).path
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
    """What a SaveKernel body from kaggle 2.2.4 must hold; returns the problems found."""
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
    if shape is not None and not isinstance(shape, str):
        problems.append(f"machineShape {shape!r} is not a string")
    return problems
