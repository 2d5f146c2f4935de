"""The Gradio demo starts on loopback and enhances a wav through gradio_client."""

import os
import socket

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
# gradio_client builds huggingface_hub headers, which fetch an agent registry from huggingface.co
# and send telemetry unless the hub is offline: the test's client must not reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from templates.models.registry import build_model  # noqa: E402

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "", None}


@pytest.fixture()
def no_network(monkeypatch):
    """Fail any DNS lookup or connection to a non-loopback address (the demo must stay local)."""
    attempts = []
    real_getaddrinfo, real_connect, real_connect_ex = (
        socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex)

    def _host(address):
        return address[0] if isinstance(address, tuple) else address

    def getaddrinfo(host, *a, **kw):
        if host not in _LOCAL_HOSTS:
            attempts.append(host)
            raise OSError(f"test_demo: network lookup of {host!r} refused")
        return real_getaddrinfo(host, *a, **kw)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and _host(address) not in _LOCAL_HOSTS:
            attempts.append(address)
            raise OSError(f"test_demo: connection to {address!r} refused")
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and _host(address) not in _LOCAL_HOSTS:
            attempts.append(address)
            return 111  # ECONNREFUSED
        return real_connect_ex(self, address)

    try:  # in case huggingface_hub was imported (constants read) before this module set the env
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    except ImportError:
        pass
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return attempts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_demo_enhances_uploaded_wav(tmp_path, no_network):
    from gradio_client import Client, handle_file

    from demo.app import build_app

    torch.manual_seed(0)
    model = build_model("crn_causal", channels=[4, 8, 8], hidden=16).eval()
    noisy = (0.2 * np.random.default_rng(0).standard_normal(22050)).astype(np.float32)
    sf.write(tmp_path / "noisy.wav", noisy, 22050)
    app = build_app(model)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
               share=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        audio_path, _plot, timing = client.predict(handle_file(str(tmp_path / "noisy.wav")), 0,
                                                   api_name="/enhance")
        out, rate = sf.read(audio_path)
        assert rate == 22050 and len(out) == len(noisy)
        assert np.abs(out).max() > 0
        assert timing.startswith("processing time:") and "real-time factor" in timing
    finally:
        app.close()
    assert no_network == []  # nothing tried to leave the machine
