"""benchmarks/int8_quality.py: skipped metrics are left out (not crashes), speech-only columns."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from deploy.vad import reference_activity, speech_only_scores

SR = 16000
_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "int8_quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("int8_quality_under_test", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _file(seed, seconds=2.0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    voiced = sum(np.sin(2 * np.pi * (140 + 10 * seed) * k * t) / k for k in range(1, 12))
    voiced *= (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) * (((t > 0.2) & (t < 0.9)) | (t > 1.2))
    clean = (0.3 * voiced).astype(np.float32)
    noisy = (clean + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    return clean, noisy, rng


def _files():
    files, outputs = [], {"fp32": [], "int8": []}
    for seed in range(3):
        clean, noisy, rng = _file(seed)
        files.append((f"f{seed}.wav", clean, noisy))
        outputs["fp32"].append((clean + 0.01 * rng.standard_normal(len(clean))).astype(np.float32))
        outputs["int8"].append((clean + 0.02 * rng.standard_normal(len(clean))).astype(np.float32))
    outputs["int8"][1] = np.zeros_like(outputs["int8"][1])  # PESQ cannot score silence
    return files, outputs


def test_skipped_pesq_is_left_out_of_all_rows_and_counted(bench):
    files, outputs = _files()
    scores = bench.score_side_by_side(files, outputs, "reference", workers=1)
    assert scores["used"]["pesq"] == 2
    assert [name for name, _ in scores["left_out"]["pesq"]] == ["f1.wav"]
    assert "int8: degraded signal is silent" in scores["left_out"]["pesq"][0][1]
    # noisy and fp32 PESQ means are over the same two files as INT8
    from templates.metrics import pesq_wb

    for system, idx in (("noisy", 2), ("fp32", None)):
        want = np.mean([pesq_wb(files[i][1], files[i][2] if idx else outputs["fp32"][i], SR)
                        for i in (0, 2)])
        assert scores["means"][system]["pesq"] == pytest.approx(want, abs=1e-6)
    assert scores["used"]["si_sdr"] == 3 and not scores["left_out"]["si_sdr"]
    assert scores["means"]["fp32"]["si_sdr"] > scores["means"]["int8"]["si_sdr"]
    report = bench.format_report(scores, {"fp32": 1.0, "int8": 0.5}, 3, "reference")
    assert "PESQ: 1 of 3 files skipped (left out of all three rows): f1.wav (" in report
    assert "INT8 speed-up (1 thread, whole files): 2.00x" in report
    for title in ("sp SI-SDR", "sp STOI"):
        assert title in report.splitlines()[0]
    assert "clean-reference activity" in report
    assert "skipped: none" not in report and "\nSI-SDR:" not in report
    scores["left_out"] = {key: [] for key in scores["left_out"]}
    assert "skipped: none (every metric scored all 3 files)" in bench.format_report(
        scores, {"fp32": 1.0, "int8": 0.5}, 3, "reference")


def test_speech_only_columns_use_the_clean_reference_activity(bench):
    files, outputs = _files()
    scores = bench.score_side_by_side(files, outputs, "reference", workers=1)
    sp = [speech_only_scores(c, y, reference_activity(c, SR), SR)
          for (_, c, _), y in zip(files, outputs["fp32"], strict=True)]
    assert scores["means"]["fp32"]["sp_si_sdr"] == pytest.approx(
        np.mean([s["si_sdr"] for s in sp]), abs=1e-6)
    assert scores["means"]["fp32"]["sp_stoi"] == pytest.approx(
        np.mean([s["stoi"] for s in sp]), abs=1e-6)
    # speech-only SI-SDR of the noisy input is higher than whole-file: pauses hold only noise
    assert scores["means"]["noisy"]["sp_si_sdr"] > scores["means"]["noisy"]["si_sdr"]
    assert 0.5 < scores["speech_fraction"] < 0.9
    webrtc = bench.score_side_by_side(files, outputs, "webrtc", workers=1)
    assert all(math.isfinite(v) for v in webrtc["means"]["int8"].values())


def test_missing_webrtcvad_fails_before_training(bench, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "webrtcvad", None)
    with pytest.raises(SystemExit) as err:
        bench.main(["--out", str(tmp_path), "--speech-vad", "webrtc"])
    assert err.value.code == 2
    assert "pip install webrtcvad-wheels" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # nothing built or trained
