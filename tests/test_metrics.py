"""templates.metrics: SI-SDR against hand-computed values, PESQ/STOI behaviour, the score table."""

import csv
import math

import numpy as np
import pytest
import torch

from smoke.dataset import make_noise, mix_at_snr, speech_like
from templates.metrics import (
    MetricSkipped,
    ScoreRow,
    ScoreTable,
    pesq_wb,
    score_pairs,
    si_sdr,
    stoi_score,
)

SR = 16000


def _speech(seed=0, seconds=2.0):
    return speech_like(np.random.default_rng(seed), int(seconds * SR))


# ----------------------------------------------------------------------------- SI-SDR


def _orthogonal_mix(ref, ratio_db, gen):
    """ref + noise with noise orthogonal to zero-mean ref at energy ratio `ratio_db`."""
    ref = ref - ref.mean()
    noise = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    noise -= noise.mean()
    noise -= (noise @ ref) / (ref @ ref) * ref  # remove the component along ref
    noise *= torch.sqrt((ref @ ref) / (noise @ noise) / 10 ** (ratio_db / 10))
    return ref + noise


@pytest.mark.parametrize("ratio_db", [-5.0, 0.0, 10.0, 23.5])
def test_si_sdr_matches_known_energy_ratio(ratio_db):
    gen = torch.Generator().manual_seed(3)
    ref = torch.randn(8000, generator=gen, dtype=torch.float64)
    est = _orthogonal_mix(ref, ratio_db, gen)
    value = si_sdr(est, ref)
    assert value.shape == (1,)
    assert value.item() == pytest.approx(ratio_db, abs=1e-3)


def test_si_sdr_scale_and_offset_invariant_and_batched():
    gen = torch.Generator().manual_seed(4)
    ref = torch.randn(3, 4000, generator=gen)
    est = ref + 0.5 * torch.randn(3, 4000, generator=gen)
    base = si_sdr(est, ref)
    assert base.shape == (3,)
    torch.testing.assert_close(si_sdr(7.5 * est, ref), base, atol=1e-4, rtol=0)
    torch.testing.assert_close(si_sdr(est + 3.0, ref - 1.0), base, atol=1e-4, rtol=0)
    rows = torch.cat([si_sdr(est[i], ref[i]) for i in range(3)])
    torch.testing.assert_close(rows, base)
    # sign flip is not "scale invariance": -ref explains est perfectly too (alpha < 0)
    assert si_sdr(-est, ref)[0].item() == pytest.approx(base[0].item(), abs=1e-4)


def test_si_sdr_of_reference_itself_is_large_and_noise_is_low():
    ref = torch.randn(2, 4000)
    assert (si_sdr(ref, ref) > 60).all()
    assert (si_sdr(torch.randn(2, 4000), ref) < -10).all()


def test_si_sdr_is_differentiable():
    est = torch.randn(2, 1000, requires_grad=True)
    (-si_sdr(est, torch.randn(2, 1000)).mean()).backward()
    assert est.grad is not None and torch.isfinite(est.grad).all()


def test_si_sdr_shape_mismatch_states_shapes():
    with pytest.raises(ValueError, match=r"est \(2, 100\) and ref \(2, 99\)"):
        si_sdr(torch.zeros(2, 100), torch.zeros(2, 99))
    with pytest.raises(ValueError, match=r"\(1, 2, 100\)"):
        si_sdr(torch.zeros(1, 2, 100), torch.zeros(1, 2, 100))


# ----------------------------------------------------------------------------- PESQ / STOI


@pytest.fixture(scope="module")
def speech_pair():
    clean = _speech(0)
    noise = make_noise("babble", np.random.default_rng(5), len(clean))
    noisy, clean = mix_at_snr(clean, noise, 0.0)
    return clean, noisy


def test_pesq_and_stoi_rank_noisy_below_clean(speech_pair):
    clean, noisy = speech_pair
    p_clean, p_noisy = pesq_wb(clean, clean), pesq_wb(clean, noisy)
    assert p_clean > 4.0 and 1.0 <= p_noisy < p_clean - 1.0
    s_clean, s_noisy = stoi_score(clean, clean), stoi_score(clean, noisy)
    assert s_clean > 0.99 and s_noisy < s_clean - 0.05
    # torch input works the same
    assert pesq_wb(torch.from_numpy(clean), torch.from_numpy(noisy)) == pytest.approx(p_noisy)


def test_pesq_resamples_other_rates(speech_pair):
    from scipy.signal import resample_poly

    clean, noisy = speech_pair
    c48, n48 = resample_poly(clean, 3, 1), resample_poly(noisy, 3, 1)
    assert pesq_wb(c48, n48, 48000) == pytest.approx(pesq_wb(clean, noisy), abs=0.1)


def _click_in_silence(n):
    ref = np.zeros(n)
    ref[1000:1320] = 0.3 * np.random.default_rng(0).standard_normal(320)
    return ref


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda c: (c, np.zeros_like(c)), "degraded signal is silent"),
        (lambda c: (np.zeros_like(c), c), "reference is silent"),
        (lambda c: (c[:1600], c[:1600]), "0.10 s long; PESQ needs at least 0.25 s"),
        (lambda c: (c, np.where(np.arange(len(c)) == 5, np.nan, c)), "non-finite"),
        # a lone 20 ms click in a silent reference: pesq 0.0.4 finds no utterance in it
        (lambda c: (_click_in_silence(len(c)), c),
         "no utterances detected"),
    ],
    ids=["silent-deg", "silent-ref", "0.1s", "nan", "no-utterance"],
)
def test_pesq_failures_become_metric_skipped(speech_pair, make, reason):
    ref, deg = make(speech_pair[0])
    with pytest.raises(MetricSkipped, match=reason):
        pesq_wb(ref, deg)


def test_pesq_real_library_nan_failure_is_what_we_catch(speech_pair):
    # documents pesq 0.0.4's behaviour that pesq_wb turns into MetricSkipped
    from pesq import pesq

    clean = speech_pair[0]
    with pytest.raises(ValueError, match="NaN"):
        pesq(SR, clean, np.zeros_like(clean), "wb")


def test_length_mismatch_is_a_bug_not_a_skip(speech_pair):
    clean, noisy = speech_pair
    with pytest.raises(ValueError, match="ref has 32000 samples but deg has 31999") as info:
        pesq_wb(clean, noisy[:-1])
    assert not isinstance(info.value, MetricSkipped)
    with pytest.raises(ValueError, match="expected a 1-D waveform"):
        stoi_score(clean[None], noisy[None])


def test_stoi_too_short_is_skipped(speech_pair):
    clean = speech_pair[0]
    with pytest.raises(MetricSkipped, match="too little speech"):
        stoi_score(clean[:1600], clean[:1600])


# ----------------------------------------------------------------------------- score table


@pytest.fixture(scope="module")
def items():
    """Four speech-like files; 'enhanced' is a cleaner mix than 'noisy'."""
    out = []
    for i in range(4):
        clean = _speech(10 + i, seconds=1.5)
        noise = make_noise(("white", "babble", "hum", "bursts")[i], np.random.default_rng(i),
                           len(clean))
        scale = np.sqrt(np.mean(clean**2) / np.mean(noise**2))
        noisy = clean + scale * noise  # 0 dB
        enhanced = clean + 0.1 * scale * noise  # 20 dB
        out.append((f"{i:04d}.wav", clean, noisy, enhanced))
    return out


def test_score_pairs_enhanced_beats_noisy(items):
    table = score_pairs(items, workers=1)
    assert [r.name for r in table.rows] == [it[0] for it in items]
    assert table.skipped == [] and table.n_scored == 4 == table.n_files
    m = table.means()
    for key in ("pesq", "stoi", "si_sdr"):
        assert m["enhanced"][key] > m["noisy"][key]
        assert m["delta"][key] == pytest.approx(m["enhanced"][key] - m["noisy"][key])
    assert m["noisy"]["si_sdr"] == pytest.approx(0.0, abs=0.5)
    assert m["enhanced"]["si_sdr"] == pytest.approx(20.0, abs=0.5)


def test_score_pairs_skips_silent_and_short_files(items):
    name, clean, noisy, _ = items[0]
    short = items[1][1][:1600]
    bad = [
        (name, clean, noisy, np.zeros_like(clean)),  # model output silent
        ("short.wav", short, short * 0.5, short),  # 0.1 s
    ]
    table = score_pairs([*bad, *items[1:]], workers=1)
    assert table.n_files == 5 and table.n_scored == 3
    reasons = dict(table.skipped)
    assert list(reasons) == [name, "short.wav"]
    assert "pesq enhanced: degraded signal is silent" in reasons[name]
    assert "pesq noisy" not in reasons[name]
    assert "pesq noisy: 0.10 s long" in reasons["short.wav"]
    assert "stoi noisy: too little speech" in reasons["short.wav"]
    row = table.rows[0]
    assert math.isnan(row.pesq_enh) and math.isfinite(row.pesq_noisy)
    assert math.isfinite(row.stoi_enh) and math.isfinite(row.sisdr_enh)  # still scored
    # PESQ means exclude the skipped files; SI-SDR keeps the silent-output file
    ref = score_pairs(items[1:], workers=1).means()
    m = table.means()
    assert m["noisy"]["pesq"] == pytest.approx(ref["noisy"]["pesq"])
    assert m["enhanced"]["pesq"] == pytest.approx(ref["enhanced"]["pesq"])
    assert m["enhanced"]["si_sdr"] < ref["enhanced"]["si_sdr"]


def test_parallel_and_sequential_tables_are_identical(items):
    silent = (items[0][0] + "-silent", items[0][1], items[0][2], np.zeros_like(items[0][1]))
    data = [*items, silent]
    seq = score_pairs(data, workers=1)
    par = score_pairs(data, workers=2)
    def plain(table):  # NaN != NaN, so compare with NaN as None
        return [[None if v != v else v for v in vars(r).values()] for r in table.rows]

    assert plain(par) == plain(seq)
    assert math.isnan(par.rows[-1].pesq_enh)
    assert par.skipped == seq.skipped


def test_score_pairs_rejects_mismatched_lengths(items):
    name, clean, noisy, enhanced = items[0]
    with pytest.raises(ValueError, match="0000.wav: clean, noisy and enhanced lengths differ"):
        score_pairs([(name, clean, noisy, enhanced[:-3])], workers=1)


def test_to_csv(tmp_path):
    nan = float("nan")
    table = ScoreTable(
        rows=[ScoreRow("a.wav", 1.5, 2.0, 0.7, 0.8, 1.0, 9.0),
              ScoreRow("b.wav", 1.2, nan, 0.6, 0.7, 0.5, 3.0)],
        skipped=[("b.wav", "pesq enhanced: degraded signal is silent")],
    )
    path = tmp_path / "scores.csv"
    table.to_csv(path)
    rows = list(csv.DictReader(path.open()))
    assert [r["name"] for r in rows] == ["a.wav", "b.wav"]
    assert float(rows[0]["sisdr_enh"]) == 9.0 and rows[1]["pesq_enh"] == ""
    assert rows[1]["skipped_reason"] == "pesq enhanced: degraded signal is silent"
    m = table.means()
    assert m["noisy"]["pesq"] == 1.5 and m["delta"]["pesq"] == 0.5  # b.wav excluded
    assert m["noisy"]["stoi"] == pytest.approx(0.65)
    assert table.n_scored == 1
    assert math.isnan(ScoreTable().means()["delta"]["stoi"])
