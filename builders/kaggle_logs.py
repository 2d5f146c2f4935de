"""Read a kernel's log: the stored log of a finished session, or the live stream of a running one."""

from __future__ import annotations

import json
from typing import Callable

from builders.kaggle_credentials import check_credentials
from builders.kaggle_kernel import kernel_string, parse_ref
from builders.kaggle_transport import DEFAULT_RETRY, RetryPolicy, load_api, retrying


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
    kernel = kernel_string(ref, version)
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


