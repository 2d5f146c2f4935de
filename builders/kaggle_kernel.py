"""A kernel on Kaggle as the other Kaggle operations name and ask about it: its ref
(``owner/slug``), the client's kernel string for one version, its newest version number and the
state of a version.

The client writes versions as ``v<N>`` on the wire (``KaggleApi._kernel_version_label``); it has
no call for the newest version number (``kernels_pull`` asks for it but only writes files), so
``latest_version`` sends that request itself. The ``kaggle`` client is never imported here at
module import (``builders/kaggle_transport.py`` loads it when a request is made).
"""

from __future__ import annotations

import re
from typing import Any

from builders.kaggle_transport import (
    DEFAULT_RETRY,
    KaggleRequestError,
    RetryPolicy,
    http_status,
    retrying,
)

TERMINAL_STATES = frozenset({"complete", "error", "cancelled"})
#: States of a version that still holds (or waits for) a GPU session: a push then starts a second.
BUSY_STATES = frozenset({"queued", "running"})
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
REF_RE = re.compile(r"^([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)$")


def parse_ref(ref: str) -> tuple[str, str]:
    """``"user/slug"`` -> ``(user, slug)``; a clear ``KaggleRequestError`` otherwise."""
    match = REF_RE.match(str(ref).strip())
    if not match:
        raise KaggleRequestError(
            f"kernel ref {ref!r} is not of the form <user>/<slug> (e.g. alice/dpt-speech-enhancement)"
        )
    return match.group(1), match.group(2)


def kernel_string(ref: str, version: int | None) -> str:
    """The client's kernel string: ``owner/slug`` or ``owner/slug/N`` (it sends ``v<N>``)."""
    return ref if version is None else f"{ref}/{int(version)}"


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


def version_state(api, ref: str, version: int | None, retry: RetryPolicy) -> tuple[str, str | None]:
    """(state, failure message or None) of ``ref``'s ``version`` (None: its latest)."""
    kernel = kernel_string(ref, version)
    try:
        response = retrying(lambda: api.kernels_status(kernel), f"status of {kernel}", retry)
    except KaggleRequestError as exc:
        if http_status(exc.__cause__) == 404:
            what = f"{ref} has no version {version}" if version is not None else f"there is no kernel {ref}"
            raise KaggleRequestError(f"{what} on Kaggle (HTTP 404); check the user, the slug and "
                                     "--version (a kernel exists once it was pushed)") from exc
        raise
    return _state_name(response.status), (response.failure_message or None)
