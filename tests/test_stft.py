"""STFT front end: frame counts, exact inverse, mask application, shape errors."""

import re

import pytest
import torch

from templates.stft import STFTFrontEnd


def test_seed_geometry_three_seconds():
    fe = STFTFrontEnd()
    spec = fe.stft(torch.randn(2, 48000))
    assert spec.shape == (2, 257, 188)
    assert spec.dtype == torch.complex64
    assert fe.n_freq == 257 and fe.num_frames(48000) == 188


@pytest.mark.parametrize("length", [16000, 16000 + 123, 48000, 16000 + 129, 16000 + 255, 300])
def test_round_trip_exact(length):
    fe = STFTFrontEnd()
    wav = torch.randn(2, length)
    spec = fe.stft(wav)
    assert spec.shape[-1] == fe.num_frames(length)
    out = fe.istft(spec, length)
    assert out.shape == wav.shape
    assert (out - wav).abs().max().item() < 1e-5


def test_tail_stays_well_conditioned_under_masking():
    # A mask makes the spectrum inconsistent; without tail padding the last samples blow up.
    fe = STFTFrontEnd()
    wav = torch.randn(1, 16383)  # 16383 % 256 == 255: the last sample sits at the window's edge
    spec = fe.stft(wav)
    mask = torch.rand(spec.shape, generator=torch.Generator().manual_seed(1))
    out = fe.istft(fe.apply_mask(spec, mask), wav.shape[-1])
    assert out[:, -64:].abs().max() < 4 * out[:, :-64].abs().max()


def test_apply_mask_scales_bins_and_keeps_phase():
    fe = STFTFrontEnd()
    spec = fe.stft(torch.randn(1, 4000))
    half = fe.apply_mask(spec, torch.full(spec.shape, 0.5))
    torch.testing.assert_close(half, spec * 0.5)
    with pytest.raises(ValueError, match="does not match"):
        fe.apply_mask(spec, torch.ones(1, 257, 3))


def test_window_moves_but_is_not_saved():
    fe = STFTFrontEnd()
    assert "window" not in fe.state_dict()
    assert fe.window.shape == (512,)


@pytest.mark.parametrize("shape", [(2, 1, 16000), (16000,), (1, 2, 3, 4000)])
def test_wrong_shape_names_the_shape(shape):
    with pytest.raises(ValueError, match=re.escape(str(tuple(shape)))):
        STFTFrontEnd().stft(torch.randn(*shape))


def test_too_short_and_bad_settings():
    with pytest.raises(ValueError, match="too short"):
        STFTFrontEnd().stft(torch.randn(1, 200))
    with pytest.raises(ValueError, match="hop"):
        STFTFrontEnd(n_fft=512, hop=400)
    with pytest.raises(ValueError, match="257 frequency bins"):
        STFTFrontEnd().istft(torch.zeros(1, 100, 5, dtype=torch.complex64), 1000)
