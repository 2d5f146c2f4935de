"""The weekly GPU hours left, as one line of advice (printed before a push)."""

from __future__ import annotations

from builders.kaggle_credentials import KaggleCredentialsError
from builders.kaggle_transport import DEFAULT_RETRY, KaggleRequestError, RetryPolicy, retrying


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
