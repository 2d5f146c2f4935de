"""VAD: detectors find speech bursts, gating attenuates pauses only, speech-only scores."""

import numpy as np
import pytest

from deploy.vad import (
    VADError,
    compare_detectors,
    detect_speech,
    energy_vad,
    frames_to_samples,
    gate_non_speech,
    reference_activity,
    score_activity,
    speech_only_scores,
    webrtc_vad,
)

SR = 16000


def _bursty(seed=0, seconds=3.0, snr_db=10.0):
    """Voiced-like bursts (harmonics of 150 Hz, AM) at 0.3-1.0 s and 1.6-2.5 s, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12))
    voiced *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    on = ((t >= 0.3) & (t < 1.0)) | ((t >= 1.6) & (t < 2.5))
    clean = 0.3 * voiced * on
    noise = rng.standard_normal(len(t))
    p_s = np.mean(clean[on] ** 2)
    noise *= np.sqrt(p_s / 10 ** (snr_db / 10)) / noise.std()
    return (clean + noise).astype(np.float32), clean.astype(np.float32), on


def test_reference_activity_matches_bursts():
    _, clean, on = _bursty()
    ref = reference_activity(clean, SR, 30)
    truth = frames_to_samples(ref, len(clean), SR, 30)
    assert np.mean(truth == on) > 0.97


# WebRTC calls broadband noise speech below ~20 dB SNR (measured: accuracy 0.55 at 5-10 dB),
# so it is checked on cleaner input at its most aggressive setting.
@pytest.mark.parametrize("detector,snr_db,kw", [("energy", 10, {}), ("energy", 20, {}),
                                                ("webrtc", 30, {"aggressiveness": 3})])
def test_detectors_find_speech_in_noise(detector, snr_db, kw):
    noisy, clean, _ = _bursty(snr_db=snr_db)
    ref = reference_activity(clean, SR, 30)
    s = score_activity(detect_speech(noisy, SR, detector, **kw), ref, detector)
    assert s.recall > 0.9, s
    assert s.accuracy > 0.75, s


def test_compare_detectors_reports_every_config():
    rows = compare_detectors([_bursty(seed=s)[:2] for s in range(2)], SR)
    names = [r.detector for r in rows]
    assert names == ["energy", "webrtc-0", "webrtc-1", "webrtc-2", "webrtc-3"]
    assert all(0 <= r.f1 <= 1 for r in rows)


def test_gate_attenuates_pauses_not_speech():
    noisy, clean, on = _bursty()
    active = reference_activity(clean, SR, 30)
    gated = gate_non_speech(noisy, active, SR, atten_db=20, smooth_ms=20)
    mask = frames_to_samples(active, len(noisy), SR, 30)
    # Away from the transitions: pauses drop by 20 dB, speech is untouched.
    core_pause = np.convolve(~mask, np.ones(800), "same") >= 800
    core_speech = np.convolve(mask, np.ones(800), "same") >= 800
    ratio = np.sum(gated[core_pause] ** 2) / np.sum(noisy[core_pause] ** 2)
    assert 10 * np.log10(ratio) == pytest.approx(-20, abs=0.1)
    np.testing.assert_allclose(gated[core_speech], noisy[core_speech], rtol=1e-6)
    assert np.max(np.abs(np.diff(gated))) < 2 * np.max(np.abs(np.diff(noisy)))  # no clicks


def test_gate_zero_db_is_identity_and_rejects_negative():
    noisy, clean, _ = _bursty()
    active = energy_vad(noisy, SR)
    np.testing.assert_allclose(gate_non_speech(noisy, active, SR, atten_db=0), noisy, rtol=1e-6)
    with pytest.raises(VADError, match="atten_db"):
        gate_non_speech(noisy, active, SR, atten_db=-3)


def test_speech_only_scores_ignore_pauses():
    noisy, clean, _ = _bursty()
    active = reference_activity(clean, SR, 30)
    # Garbage in the pauses does not change speech-only SI-SDR of a perfect estimate.
    est = clean.copy()
    est[~frames_to_samples(active, len(est), SR, 30)] = 1.0
    s = speech_only_scores(clean, est, active, SR)
    assert s["si_sdr"] > 60
    assert s["stoi"] > 0.99
    assert 0.4 < s["speech_fraction"] < 0.7
    assert speech_only_scores(clean, noisy, active, SR)["si_sdr"] < 15


def test_bad_input_errors_name_the_problem():
    with pytest.raises(VADError, match="shape"):
        energy_vad(np.zeros((2, 100)))
    with pytest.raises(VADError, match="8/16/32/48 kHz"):
        webrtc_vad(np.zeros(22050), sample_rate=22050)
    with pytest.raises(VADError, match="unknown VAD detector"):
        detect_speech(np.zeros(1600), SR, "silero")


def _numpy_si_sdr(ref, est):
    """The formula speech_only_scores used before it called templates.metrics.si_sdr."""
    r0, e0 = ref - ref.mean(), est - est.mean()
    alpha = np.dot(e0, r0) / (np.dot(r0, r0) + 1e-12)
    target = alpha * r0
    return 10 * np.log10((np.sum(target**2) + 1e-12) / (np.sum((e0 - target) ** 2) + 1e-12))


@pytest.mark.parametrize("snr_db", [-5, 0, 10, 30])
def test_speech_only_si_sdr_equals_the_plain_formula(snr_db):
    noisy, clean, _ = _bursty(seed=3, snr_db=snr_db)
    active = reference_activity(clean, SR, 30)
    mask = frames_to_samples(active, len(clean), SR, 30)
    want = _numpy_si_sdr(clean[mask].astype(np.float64), noisy[mask].astype(np.float64))
    got = speech_only_scores(clean, noisy, active, SR)["si_sdr"]
    assert got == pytest.approx(want, abs=1e-3)


def test_speech_only_stoi_is_none_when_pystoi_finds_too_little_speech():
    # 0.6 s marked as speech, but only 0.1 s of it is audible: pystoi drops the silent frames
    # and would return 1e-5 with a warning; that must not be reported as a STOI of 0.
    t = np.arange(SR) / SR
    clean = np.where((t >= 0.2) & (t < 0.3), 0.3 * np.sin(2 * np.pi * 200 * t), 1e-7)
    active = np.zeros(len(clean) // 480 + 1, bool)
    active[6:26] = True  # 0.18-0.78 s
    s = speech_only_scores(clean, clean, active, SR)
    assert s["stoi"] is None
    assert s["si_sdr"] > 60


def test_speech_only_scores_reject_activity_for_a_shorter_signal():
    noisy, clean, _ = _bursty()
    active = reference_activity(clean[:SR], SR, 30)  # 1 s of decisions for a 3 s signal
    with pytest.raises(VADError, match="fewer than the signal's 48000"):
        speech_only_scores(clean, noisy, active, SR)


def test_silent_reference_has_no_speech():
    assert not reference_activity(np.zeros(SR), SR, 30).any()
    s = speech_only_scores(np.zeros(SR), np.ones(SR), reference_activity(np.zeros(SR)), SR)
    assert np.isnan(s["si_sdr"]) and s["stoi"] is None and s["speech_fraction"] == 0.0


def test_make_detector_fails_up_front_naming_the_package(monkeypatch):
    from deploy.vad import VADUnavailable, make_detector

    noisy, clean, _ = _bursty()
    det = make_detector("webrtc", aggressiveness=3)
    np.testing.assert_array_equal(det(noisy, SR, 30), webrtc_vad(noisy, SR, 30, 3))
    np.testing.assert_array_equal(make_detector("energy")(noisy, SR), energy_vad(noisy, SR))
    with pytest.raises(VADError, match="unknown VAD detector 'silero'"):
        make_detector("silero")
    with pytest.raises(VADError, match="aggressiveness"):
        make_detector("webrtc", aggressiveness=5)
    monkeypatch.setitem(__import__("sys").modules, "webrtcvad", None)  # import fails
    with pytest.raises(VADUnavailable, match="pip install webrtcvad-wheels") as err:
        make_detector("webrtc")
    assert isinstance(err.value, ImportError) and isinstance(err.value, ValueError)
    with pytest.raises(ImportError, match="pip install webrtcvad-wheels"):
        detect_speech(noisy, SR, "webrtc")
    assert make_detector("energy")(noisy, SR).any()  # energy needs no package
