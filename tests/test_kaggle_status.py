"""A kernel version's state, with the REAL kaggle client against a loopback fake server."""

from __future__ import annotations

import pytest

from builders.kaggle_status import kernel_status
from builders.kaggle_transport import KaggleRequestError
from tests.helpers.kaggle import FAST, REF, USER


@pytest.mark.parametrize("wire, state", [
    ("queued", "queued"), ("running", "running"), ("complete", "complete"),
    ("error", "error"), ("cancelAcknowledged", "cancelled"), ("cancelRequested", "cancel_requested"),
])
def test_status_states(fake_kaggle, wire, state):
    fake_kaggle.versions[REF] = 1
    fake_kaggle.status_states = [wire]
    seen = []
    assert kernel_status(REF, echo=seen.append, retry=FAST) == state
    assert seen == [f"{REF}: {state}"]
    (body,) = fake_kaggle.calls("GetKernelSessionStatus")
    assert body["userName"] == USER and body["kernelSlug"] == REF.split("/")[1]
    assert "versionLabel" not in body  # the latest version


def test_status_wait_echoes_changes_only(fake_kaggle):
    fake_kaggle.versions[REF] = 1
    fake_kaggle.status_states = ["queued", "queued", "running", "running", "running", "error"]
    fake_kaggle.status_failure = "CUDA error: no kernel image"
    seen = []
    state = kernel_status(REF, wait=True, interval=0.01, timeout=10, echo=seen.append, retry=FAST)
    assert state == "error"
    assert seen == [f"{REF}: queued (CUDA error: no kernel image)",
                    f"{REF}: running (CUDA error: no kernel image)",
                    f"{REF}: error (CUDA error: no kernel image)"]
    assert len(fake_kaggle.calls("GetKernelSessionStatus")) == 6


def test_status_wait_time_limit(fake_kaggle):
    fake_kaggle.versions[REF] = 1
    fake_kaggle.status_states = ["running"]
    seen = []
    with pytest.raises(KaggleRequestError, match="still running after waiting 0.2 s"):
        kernel_status(REF, wait=True, interval=0.05, timeout=0.2, echo=seen.append, retry=FAST)
    assert seen == [f"{REF}: running"]
    assert 2 <= len(fake_kaggle.calls("GetKernelSessionStatus")) <= 6


def test_status_transient_retry(fake_kaggle):
    fake_kaggle.versions[REF] = 1
    fake_kaggle.status_plan_faults = [("http", 502), "drop"]
    assert kernel_status(REF, echo=lambda _: None, retry=FAST) == "complete"
    assert len(fake_kaggle.calls("GetKernelSessionStatus")) == 3


def test_status_bad_ref():
    with pytest.raises(KaggleRequestError, match="<user>/<slug>"):
        kernel_status("just-a-slug")


def test_status_of_a_version_sends_v_label(fake_kaggle):
    fake_kaggle.versions[REF] = 3
    fake_kaggle.status_states = ["error"]
    fake_kaggle.status_failure = "CUDA out of memory"
    seen = []
    assert kernel_status(REF, version=2, echo=seen.append, retry=FAST) == "error"
    assert seen == [f"{REF} version 2: error (CUDA out of memory)"]
    assert fake_kaggle.calls("GetKernelSessionStatus")[-1]["versionLabel"] == "v2"
    with pytest.raises(KaggleRequestError, match="HTTP 404"):
        kernel_status(REF, version=4, echo=seen.append, retry=FAST)
