"""The client's loading, failure classes and wire labels (builders/kaggle_transport.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from builders import kaggle_transport
from builders.kaggle_transport import load_api
from tests.helpers.kaggle import FAST, REF, REPO, serve_outputs


def test_import_is_quiet_and_does_not_load_kaggle(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env["HOME"] = str(tmp_path)
    code = (
        "import sys, builders.cli, builders.ledger, builders.compare\n"
        "assert 'kaggle' not in sys.modules, 'kaggle imported'\n"
        "assert 'kagglesdk' not in sys.modules, 'kagglesdk imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert list(tmp_path.iterdir()) == []  # no ~/.config/kaggle or ~/.kaggle created


def test_failure_classes_tls_is_final_408_is_transient():
    import requests

    describe = kaggle_transport.describe_failure
    transient, reason, _ = describe(requests.exceptions.SSLError("bad cert"), 5)
    assert not transient and "TLS" in reason
    response = requests.Response()
    response.status_code = 408
    transient, _, _ = describe(requests.HTTPError(response=response), 5)
    assert transient
    transient, _, _ = describe(requests.ConnectionError("reset"), 5)
    assert transient
    # kernels_status/kernels_output turn a 401/403 into a ValueError raised inside the handler:
    # the status behind it still decides.
    response.status_code = 401
    try:
        try:
            raise requests.HTTPError("denied", response=response)
        except requests.HTTPError:
            raise ValueError("Cannot access kernel 'a/b' (Permission 'kernels.get' was denied)")  # noqa: B904 - as the client does
    except ValueError as exc:
        transient, _, credentials = describe(exc, 5)
    assert not transient and credentials


def test_fake_refuses_a_bare_number_label_as_kaggle_does(fake_kaggle):
    """kaggle 2.2.5 _kernel_version_label: the API names versions v<N>, a bare number is 404."""
    import requests
    from kagglesdk.kernels.types.kernels_api_service import (
        ApiGetKernelSessionStatusRequest,
        ApiListKernelSessionOutputRequest,
    )

    serve_outputs(fake_kaggle, version=1)
    api = load_api(FAST)
    for request_type, call in ((ApiGetKernelSessionStatusRequest, "get_kernel_session_status"),
                               (ApiListKernelSessionOutputRequest, "list_kernel_session_output")):
        request = request_type()
        request.user_name, request.kernel_slug = REF.split("/")
        request.version_label = "1"
        with api.build_kaggle_client() as kaggle, pytest.raises(requests.HTTPError) as info:
            getattr(kaggle.kernels.kernels_api_client, call)(request)
        assert info.value.response.status_code == 404
        request.version_label = "v1"
        with api.build_kaggle_client() as kaggle:
            getattr(kaggle.kernels.kernels_api_client, call)(request)  # answered
        request.version_label = "v2"  # no such version yet
        with api.build_kaggle_client() as kaggle, pytest.raises(requests.HTTPError):
            getattr(kaggle.kernels.kernels_api_client, call)(request)
    # and the official call writes v<N> itself
    assert api.kernels_status(f"{REF}/1").status.name == "COMPLETE"
    assert fake_kaggle.calls("GetKernelSessionStatus")[-1]["versionLabel"] == "v1"
