"""Peers of the quality benchmark: same length out, they enhance, RNNoise is sample-aligned."""

from __future__ import annotations

import numpy as np
import pytest

from smoke.dataset import make_noise, mix_at_snr, speech_like
from templates.metrics import si_sdr
from templates.peers import PEERS, PeerUnavailable, rnnoise_enhance, wiener_enhance


def _pair(seed=0, seconds=3.0, kind="white", snr=5.0):
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    return mix_at_snr(speech_like(rng, n), make_noise(kind, rng, n), snr)


def _sisdr(est, ref):
    import torch

    return float(si_sdr(torch.from_numpy(est).float(), torch.from_numpy(ref).float())[0])


@pytest.mark.parametrize("name", sorted(PEERS))
def test_every_peer_keeps_the_length(name):
    noisy, _ = _pair(seconds=1.234)
    try:
        out = PEERS[name](noisy, 16000)
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    assert out.shape == noisy.shape and np.isfinite(out).all()


def test_wiener_improves_speech_in_stationary_noise():
    noisy, clean = _pair(kind="white", snr=5.0)
    assert _sisdr(wiener_enhance(noisy), clean) > _sisdr(noisy, clean) + 2.0
    with pytest.raises(ValueError, match="1-D"):
        wiener_enhance(np.zeros((2, 100)))


def test_rnnoise_output_is_aligned_with_its_input():
    """The library's 20 ms delay is removed: a lag would wreck SI-SDR."""
    pytest.importorskip("pyrnnoise")
    noisy, clean = _pair(kind="white", snr=10.0)
    out = rnnoise_enhance(noisy)
    lags = range(-400, 401, 4)
    best = max(lags, key=lambda k: float(np.dot(np.roll(out, -k), clean)))
    assert abs(best) <= 4
    assert _sisdr(out, clean) > _sisdr(noisy, clean)
