"""Watch a kernel: the state of its latest version (or one version), optionally until it ends."""

from __future__ import annotations

import time
from typing import Callable

from builders.kaggle_credentials import check_credentials
from builders.kaggle_kernel import TERMINAL_STATES, parse_ref, version_state
from builders.kaggle_transport import DEFAULT_RETRY, KaggleRequestError, RetryPolicy, load_api


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
        state, failure = version_state(api, ref, version, retry)
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


