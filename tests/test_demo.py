"""The Gradio demo starts on loopback and enhances a wav through gradio_client."""

import os
import socket

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import templates.models.crn_causal  # noqa: E402,F401  registers "crn_causal"
from templates.models.registry import build_model  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_demo_enhances_uploaded_wav(tmp_path):
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
