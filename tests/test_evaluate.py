"""Whole-file enhancement by chunked overlap-add, and the test-set evaluation around it."""

import csv

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from templates.config import RunConfig
from templates.evaluate import chunk_starts, enhance_waveform, evaluate_model
from templates.models.base import MaskingModel

CPU = torch.device("cpu")
SR = 16000


class PointwiseMask(MaskingModel):
    """Mask of each time-frequency bin from that bin's magnitude only (receptive field 1 frame)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(1, 1, kernel_size=1)
        with torch.no_grad():
            self.proj.weight.fill_(-1.5)
            self.proj.bias.fill_(1.0)

    def masker(self, mag):  # (B, 1, F, N) -> (B, F, N)
        return torch.sigmoid(self.proj(torch.log1p(mag))).squeeze(1)


class Identity(nn.Module):
    def forward(self, wav):  # (B, T) -> (B, T)
        return wav.clone()


def _speechy(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    x = env * np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.size)
    return torch.tensor(x, dtype=torch.float32)


def test_chunk_starts_cover_the_signal_with_full_chunks():
    assert chunk_starts(100, 200, 20) == [0]
    starts = chunk_starts(1000, 300, 50)
    assert starts[0] == 0 and starts[-1] == 700
    assert all(b - a <= 250 for a, b in zip(starts, starts[1:], strict=False))
    aligned = chunk_starts(10_000, 3000, 500, align=256)
    assert all(s % 256 == 0 for s in aligned) and aligned[-1] >= 10_000 - 3000 - 255
    assert all(b - a <= 2500 for a, b in zip(aligned, aligned[1:], strict=False))


@pytest.mark.parametrize("n", [100, 300, 1023, 16000, 16000 + 1, 2 * 16000 + 123])
def test_length_is_preserved_for_any_length(n):
    out = enhance_waveform(PointwiseMask(), _speechy(n / SR), CPU, chunk_seconds=0.5,
                           overlap_seconds=0.125)
    assert out.shape == (n,) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_overlap_add_of_identity_is_exact():
    wav = _speechy(2.3)
    out = enhance_waveform(Identity(), wav, CPU, chunk_seconds=0.5, overlap_seconds=0.1)
    assert torch.allclose(out, wav, atol=1e-6)


def test_chunked_matches_unchunked_for_a_pointwise_model():
    model = PointwiseMask()
    wav = _speechy(4.0)
    full = enhance_waveform(model, wav, CPU, chunk_seconds=10.0)  # one pass
    chunked = enhance_waveform(model, wav, CPU, chunk_seconds=1.0, overlap_seconds=0.25)
    assert not torch.allclose(full, wav, atol=1e-2)  # the model really changes the signal
    err_db = 10 * torch.log10((full - chunked).pow(2).sum() / full.pow(2).sum())
    assert err_db < -60, f"chunked differs from unchunked by {err_db:.1f} dB"


def test_eval_mode_and_training_flag_restored():
    model = PointwiseMask().train()
    enhance_waveform(model, _speechy(0.5), CPU)
    assert model.training
    with pytest.raises(ValueError, match="1-D waveform"):
        enhance_waveform(model, torch.zeros(2, 100), CPU)
    with pytest.raises(ValueError, match="overlap_seconds < chunk_seconds"):
        enhance_waveform(model, torch.zeros(100), CPU, chunk_seconds=1.0, overlap_seconds=1.0)


def _write_pairs(folder, n, seconds):
    pairs = []
    for i in range(n):
        clean = _speechy(seconds, seed=i).numpy() * 0.3
        noisy = clean + 0.1 * np.random.default_rng(100 + i).standard_normal(clean.size)
        (folder / "n").mkdir(parents=True, exist_ok=True)
        (folder / "c").mkdir(parents=True, exist_ok=True)
        sf.write(folder / "n" / f"{i:04d}.wav", noisy.astype(np.float32), SR)
        sf.write(folder / "c" / f"{i:04d}.wav", clean.astype(np.float32), SR)
        pairs.append((folder / "n" / f"{i:04d}.wav", folder / "c" / f"{i:04d}.wav"))
    return pairs


def test_evaluate_full_and_first3_score_and_write_csv(tmp_path):
    pairs = _write_pairs(tmp_path, 4, 3.5)
    cfg = RunConfig(model="tiny", work_dir=str(tmp_path / "out"), eval_mode="full")
    res = evaluate_model(Identity(), pairs, cfg, CPU)
    means = res.table.means()
    # identity "enhancement": every enhanced score equals the noisy one
    for key in ("pesq", "stoi", "si_sdr"):
        assert np.isfinite(means["noisy"][key])
        assert means["delta"][key] == pytest.approx(0.0, abs=1e-3)
    assert res.mode == "full" and len(res.examples) == 3
    assert res.examples[0]["name"] == "0000.wav" and res.examples[0]["noisy"].shape == (56000,)
    with open(tmp_path / "out" / "eval_per_file.csv") as fh:
        assert [r["name"] for r in csv.DictReader(fh)] == [f"{i:04d}.wav" for i in range(4)]

    first3 = evaluate_model(PointwiseMask(), pairs, cfg.replace(eval_mode="first3",
                                                                max_test_files=2), CPU)
    assert first3.mode == "first3" and len(first3.table.rows) == 2
    assert first3.examples[0]["enhanced"].shape == (3 * SR,)
    assert first3.table.means()["enhanced"]["pesq"] != pytest.approx(means["enhanced"]["pesq"])


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    pairs = _write_pairs(tmp_path, 2, 1.0)
    bad = tmp_path / "n" / "bad.wav"
    bad.write_bytes(b"not a wav at all")
    pairs.append((bad, pairs[0][1]))
    res = evaluate_model(Identity(), pairs, RunConfig(model="t", work_dir=str(tmp_path)), CPU)
    assert len(res.table.rows) == 2
    assert [name for name, _ in res.table.skipped] == ["bad.wav"]
    assert "unreadable" in res.table.skipped[0][1]
    with pytest.raises(ValueError, match="no test file could be scored .*bad.wav"):
        evaluate_model(Identity(), [(bad, bad)], RunConfig(model="t", work_dir=str(tmp_path)), CPU)


def test_first3_scores_the_first_3_s_of_both_files_at_offset_0(tmp_path):
    # the user's original protocol: noisy and clean cut to the same first 3 s (offset 0, aligned)
    pairs = _write_pairs(tmp_path, 1, 5.0)
    cfg = RunConfig(model="tiny", work_dir=str(tmp_path / "out"), eval_mode="first3")
    res = evaluate_model(Identity(), pairs, cfg, CPU)
    ex = res.examples[0]
    noisy_file, _ = sf.read(pairs[0][0], dtype="float32")
    clean_file, _ = sf.read(pairs[0][1], dtype="float32")
    np.testing.assert_array_equal(ex["noisy"], noisy_file[: 3 * SR])
    np.testing.assert_array_equal(ex["clean"], clean_file[: 3 * SR])
    np.testing.assert_allclose(ex["enhanced"], noisy_file[: 3 * SR], atol=1e-6)
