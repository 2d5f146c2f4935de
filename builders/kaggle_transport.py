"""The official kaggle client, loaded lazily, with what it lacks: a request timeout and retries.

kaggle 2.2.5 / kagglesdk 0.1.38 send every request without a timeout
(``KaggleHttpClient.call`` in kagglesdk/kaggle_http_client.py) and retry nothing but single file
downloads (``KaggleApi.download_file``). ``load_api`` returns the client with a timeout on each
HTTP request; ``retrying`` repeats a call on the failures worth repeating and turns every failure
into a message fit to print.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from builders.kaggle_credentials import CREDENTIALS_HELP, REJECTED_HELP, KaggleCredentialsError


class KaggleRequestError(RuntimeError):
    """A Kaggle request failed or was refused (builder CLI exit code 1). Fit to print."""


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures (HTTP 5xx/429/408, timeouts, dropped connections) are retried.

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


def warn(message: str) -> None:
    print(message, file=sys.stderr)


def load_api(retry: RetryPolicy = DEFAULT_RETRY):
    """Import the official client and return an authenticated ``KaggleApi`` whose HTTP requests
    time out after ``retry.request_timeout`` seconds and whose file downloads are retried
    ``retry.attempts - 1`` times.

    Call ``check_credentials`` first: without credentials the client prints its banner and exits.
    """
    noise = io.StringIO()
    try:
        with contextlib.redirect_stdout(noise):
            import requests
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as exc:
        raise KaggleRequestError(
            f"the kaggle client cannot be imported ({exc}); install it with: pip install 'kaggle>=2.2.5'"
        ) from exc

    class _TimeoutAdapter(requests.adapters.HTTPAdapter):
        def __init__(self, timeout: float):
            super().__init__()
            self._timeout = timeout

        def send(self, request, timeout=None, **kwargs):
            return super().send(request, timeout=self._timeout if timeout is None else timeout, **kwargs)

    class _TimedKaggleApi(KaggleApi):
        def build_kaggle_client(self):
            client = super().build_kaggle_client()
            http = client.http_client()
            # The session is created lazily; create it now (the client's own __enter__ reuses it)
            # and mount adapters that add the timeout.
            http._init_session()
            for prefix in ("http://", "https://"):
                http._session.mount(prefix, _TimeoutAdapter(retry.request_timeout))
            return client

        def download_file(self, response, outfile, http_client, quiet=True, resume=False,
                          chunk_size=1048576, max_retries=5, timeout=300):
            # kernels_output calls this with the client's defaults; use this policy's instead.
            return super().download_file(response, outfile, http_client, quiet, resume, chunk_size,
                                         max(0, retry.attempts - 1), retry.request_timeout)

    api = _TimedKaggleApi()
    try:
        with contextlib.redirect_stdout(noise):
            # With an access token the client asks Kaggle who it belongs to (IntrospectToken) and
            # lets anything but a 400/403/404 escape: retried and worded here like any request.
            retrying(api.authenticate, "signing in to Kaggle", retry)
    except SystemExit as exc:
        raise KaggleCredentialsError(CREDENTIALS_HELP) from exc
    for line in noise.getvalue().splitlines():
        # check_credentials already warned about the file mode, in our words.
        if line.strip() and "readable by other users" not in line:
            warn(line)
    return api


def _http_error(exc: BaseException | None):
    """The ``HTTPError`` (with a response) behind ``exc``: itself, or the one the client turned
    into a ``ValueError`` (kernels_status/kernels_output/kernels_logs do so for 401/403)."""
    import requests

    if exc is None:
        return None
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, requests.HTTPError) and candidate.response is not None:
            return candidate
    return None


def http_status(exc: BaseException | None) -> int | None:
    """The HTTP status behind ``exc`` (see :func:`_http_error`), or None."""
    error = _http_error(exc)
    return error.response.status_code if error is not None else None


def _output_file_name(error) -> str | None:
    """The file name when ``error`` came from downloading an output file, else None.

    kagglesdk sends every API call as a POST (``KaggleHttpClient._prepare_request``); a GET other
    than the log stream is ``kernels_output`` fetching a file from the signed link a listing gave.
    """
    from urllib.parse import unquote, urlsplit

    request = error.response.request
    if request is None or request.method != "GET" or "/logs/stream/" in (request.url or ""):
        return None
    return unquote(urlsplit(request.url).path.rsplit("/", 1)[-1]) or "an output file"


def describe_failure(exc: BaseException, timeout: float) -> tuple[bool, str, bool]:
    """``(transient, reason, credentials_problem)`` for an exception from a request."""
    import requests

    error = _http_error(exc)
    if error is not None:
        code = error.response.status_code
        name = _output_file_name(error)
        if name is not None and code in (401, 403, 404, 410):
            # The link carries no credentials and the listing just proved access: it expired or
            # went stale. Listing the outputs again gives fresh links.
            return True, f"HTTP {code} downloading {name} (its download link was refused or expired)", False
        # Kaggle's own message; the client's ValueError around it guesses at benchmark slugs.
        detail = str(error) or "no detail"
        if code == 401:
            return False, f"Kaggle rejected the credentials (HTTP {code}: {detail})", True
        if code == 403:
            return False, ("HTTP 403 from Kaggle: no access to that kernel (not pushed yet under "
                           "this user, a wrong user or slug, or another account's private "
                           "kernel)"), False
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
    if isinstance(exc, ValueError):
        return False, f"the client refused the request: {exc}", False
    return False, f"{type(exc).__name__}: {exc}", False


def retrying(call: Callable[[], Any], what: str, retry: RetryPolicy,
             before_retry: Callable[[], None] | None = None) -> Any:
    """``call()``, repeated on transient failures as ``retry`` says; ``before_retry`` runs before
    each repeat (to clear what a failed attempt left). Every failure becomes one of ours."""
    for attempt in range(1, retry.attempts + 1):
        try:
            return call()
        except (KaggleRequestError, KaggleCredentialsError):
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised as ours
            transient, reason, credentials = describe_failure(exc, retry.request_timeout)
            if credentials:
                raise KaggleCredentialsError(f"{what} failed: {reason}. {REJECTED_HELP}") from exc
            if not transient:
                raise KaggleRequestError(f"{what} failed: {reason}") from exc
            if attempt == retry.attempts:
                raise KaggleRequestError(f"{what} failed after {attempt} attempts: {reason}") from exc
            delay = retry.delay(attempt)
            warn(f"{what}: {reason}; retrying in {delay:.3g} s (attempt {attempt + 1} of {retry.attempts})")
            time.sleep(delay)
            if before_retry is not None:
                before_retry()
    raise AssertionError("unreachable")
