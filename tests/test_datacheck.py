"""templates.datacheck: each defect kind is found, named, handled, and refusal is clear."""

import json

import numpy as np
import pytest
import soundfile as sf

from templates.data import pair_files
from templates.datacheck import DATACHECK_ACTIONS, DataError, check_pairs
from tests.helpers.pairs import SR, make_pairs


def _check(root, **kw):
    kw.setdefault("crop_seconds", 1.0)
    kw.setdefault("n_corr", 4)
    return check_pairs(pair_files(root / "train", root / "y_train"), **kw)


def _kinds(report):
    return {(i.file, i.kind, i.action) for i in report.issues}


def test_clean_dataset_is_usable(tmp_path):
    r = _check(make_pairs(tmp_path, n=6), label="train")
    assert r.ok and r.issues == [] and r.problems == [] and r.refusals == []
    assert r.n_pairs == 6 and len(r.usable_pairs) == 6 and r.n_skipped == 0
    assert r.durations == pytest.approx({"min": 2.0, "mean": 2.0, "max": 2.0})
    assert r.correlation > 0.8 and len(r.correlation_files) == 4
    text = r.format()
    assert "[train]" in text and "6 pairs" in text and "USABLE" in text and "defects: none" in text
    d = json.loads(json.dumps(r.to_dict()))
    assert d["ok"] and d["n_usable"] == 6 and d["correlation"] == pytest.approx(r.correlation)
    r.raise_if_refused()  # no error


def test_unpaired_files_are_named_and_counted(tmp_path):
    root = make_pairs(tmp_path, n=10)
    sf.write(str(root / "train" / "extra.wav"), np.zeros(SR, np.float32), SR)
    sf.write(str(root / "y_train" / "lonely.wav"), np.zeros(SR, np.float32), SR)
    r = _check(root)
    assert ("train/extra.wav", "unpaired", "skip") in _kinds(r)
    assert ("y_train/lonely.wav", "unpaired", "skip") in _kinds(r)
    assert r.ok and r.n_noisy == 11 and r.n_clean == 11  # 1 of 11 unusable: within 10%
    refused = _check(root, max_unusable_fraction=0.05)
    assert not refused.ok and "1 of 11 noisy files are unusable" in refused.refusals[0]


def test_8khz_file_is_resampled(tmp_path):
    root = make_pairs(tmp_path, n=4)
    x, _ = sf.read(str(root / "train" / "0001.wav"), dtype="float32")
    sf.write(str(root / "train" / "0001.wav"), x[::2], 8000, subtype="PCM_16")
    r = _check(root)
    assert "train/0001.wav: sample rate 8000, expected 16000 -> resample" in r.problems
    assert ("train/0001.wav", "pair_rate", "resample") in _kinds(r)
    assert len(r.usable_pairs) == 4 and r.ok


def test_stereo_file_is_downmixed(tmp_path):
    root = make_pairs(tmp_path, n=4)
    x, _ = sf.read(str(root / "y_train" / "0002.wav"), dtype="float32")
    sf.write(str(root / "y_train" / "0002.wav"), np.stack([x, x], 1), SR, subtype="PCM_16")
    r = _check(root, n_corr=4)
    assert "y_train/0002.wav: 2 channels, expected mono -> downmix" in r.problems
    assert ("train/0002.wav", "pair_channels", "downmix") in _kinds(r)
    assert r.ok and r.correlation > 0.8  # the downmixed copy still lines up


def test_unreadable_file_is_skipped(tmp_path):
    root = make_pairs(tmp_path, n=10)
    (root / "y_train" / "0003.wav").write_bytes(b"not audio at all" * 64)
    r = _check(root)
    (issue,) = [i for i in r.issues if i.kind == "unreadable"]
    assert issue.file == "y_train/0003.wav" and issue.action == "skip" and "unreadable (" in issue.detail
    assert len(r.usable_pairs) == 9 and all(n.name != "0003.wav" for n, _ in r.usable_pairs)
    assert r.ok and r.n_skipped == 1


def test_too_short_pair_is_skipped_and_short_crop_padded(tmp_path):
    root = make_pairs(tmp_path, n=10)
    sf.write(str(root / "train" / "0004.wav"), np.zeros(SR // 10, np.float32), SR)  # 0.1 s
    r = _check(root, crop_seconds=3.0)  # 2 s files are shorter than a 3 s crop
    assert ("train/0004.wav", "too_short", "skip") in _kinds(r)
    assert ("train/0000.wav", "short_crop", "pad") in _kinds(r)
    assert len(r.usable_pairs) == 9


def test_length_mismatch_is_trimmed(tmp_path):
    root = make_pairs(tmp_path, n=4)
    x, _ = sf.read(str(root / "y_train" / "0001.wav"), dtype="float32")
    sf.write(str(root / "y_train" / "0001.wav"), x[: SR + SR // 2], SR, subtype="PCM_16")
    r = _check(root)
    (issue,) = [i for i in r.issues if i.kind == "length_mismatch"]
    assert issue.file == "train/0001.wav" and issue.action == "trim"
    assert "noisy 2.000 s but clean 1.500 s" in issue.detail
    assert r.durations["min"] == pytest.approx(1.5)


def test_nan_samples_are_found_in_decoded_files(tmp_path):
    root = make_pairs(tmp_path, n=4)
    x, _ = sf.read(str(root / "train" / "0002.wav"), dtype="float32")
    x[100:110] = np.nan
    sf.write(str(root / "train" / "0002.wav"), x, SR, subtype="FLOAT")
    r = _check(root, n_corr=8)  # every pair decoded
    (issue,) = [i for i in r.issues if i.kind == "non_finite"]
    assert issue.file == "train/0002.wav" and issue.action == "skip" and "10 non-finite" in issue.detail
    assert len(r.usable_pairs) == 3 and "train/0002.wav" not in r.correlation_files
    assert np.isfinite(r.correlation)


@pytest.mark.parametrize("how", ["shifted", "other_file"])
def test_misaligned_pairs_are_refused(tmp_path, how):
    if how == "shifted":
        root = make_pairs(tmp_path, n=6, shift=0.5)
    else:
        root = make_pairs(tmp_path, n=6)
        files = sorted((root / "y_train").glob("*.wav"))
        data = [sf.read(str(f), dtype="float32")[0] for f in files]
        for f, x in zip(files, data[1:] + data[:1], strict=True):  # each clean file replaced by its neighbour
            sf.write(str(f), x, SR, subtype="PCM_16")
    r = _check(root)
    assert abs(r.correlation) < 0.1 and not r.ok
    assert "correlation" in r.refusals[0] and "misaligned" in r.refusals[0]
    assert "REFUSED" in r.format()
    with pytest.raises(DataError, match="data check refused.*correlation .* below 0.3") as ei:
        r.raise_if_refused()
    assert isinstance(ei.value, ValueError)


def test_no_pairs_refused_with_all_reasons(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "y_train").mkdir()
    sf.write(str(tmp_path / "train" / "a.wav"), np.zeros(SR, np.float32), SR)
    sf.write(str(tmp_path / "y_train" / "b.wav"), np.zeros(SR, np.float32), SR)
    r = _check(tmp_path, label="test")
    assert not r.ok and r.correlation is None and r.durations is None
    with pytest.raises(DataError, match=r"refused \[test\]: no noisy/clean pairs \(1 noisy and 1 clean"):
        r.raise_if_refused()
    assert "not measured" in r.format()


def test_all_unreadable_is_refused(tmp_path):
    root = make_pairs(tmp_path, n=2)
    for f in (root / "train").glob("*.wav"):
        f.write_bytes(b"junk" * 100)
    r = _check(root)
    assert not r.ok and "none of the 2 pairs is usable" in r.refusals


def test_every_action_is_known_and_format_truncates(tmp_path):
    root = make_pairs(tmp_path, n=12)
    for f in (root / "train").glob("*.wav"):
        x, _ = sf.read(str(f), dtype="float32")
        sf.write(str(f), x[::2], 8000, subtype="PCM_16")
    r = _check(root)
    assert {i.action for i in r.issues} <= set(DATACHECK_ACTIONS)
    text = r.format(max_per_kind=3)
    assert "sample_rate: 12 (resample 12)" in text and "... and 9 more" in text
    assert r.ok  # resampled, not refused


def test_noisy_folder_holding_the_clean_files_is_refused(tmp_path):
    # Correlation 1.0 passes the alignment check, yet training would learn the identity.
    root = make_pairs(tmp_path, n=5)
    for f in (root / "y_train").iterdir():
        (root / "train" / f.name).write_bytes(f.read_bytes())
    r = _check(root)
    assert not r.ok and r.correlation == pytest.approx(1.0)
    assert any("identical in all 4 sampled pairs" in x and str(root / "train") in x for x in r.refusals)
    with pytest.raises(DataError, match="identical"):
        r.raise_if_refused()
    assert _check(make_pairs(tmp_path / "ok", n=5)).ok  # real noisy files are not identical


@pytest.mark.parametrize("level", [0.0, 1e-5])  # digital silence; dither at -100 dBFS
def test_silent_clean_reference_is_a_named_defect_and_skipped(tmp_path, level):
    root = make_pairs(tmp_path, n=10)
    quiet = level * np.random.default_rng(1).standard_normal(2 * SR).astype(np.float32)
    sf.write(str(root / "y_train" / "0005.wav"), quiet, SR, subtype="FLOAT")
    r = _check(root, n_corr=10)
    (issue,) = [i for i in r.issues if i.kind == "silent_reference"]
    assert issue.file == "y_train/0005.wav" and issue.action == "skip"
    assert ("digital silence" if level == 0 else "RMS -10") in issue.detail
    assert "PESQ cannot score it" in issue.detail
    assert len(r.usable_pairs) == 9 and all(n.name != "0005.wav" for n, _ in r.usable_pairs)
    assert r.ok and r.clean_files_scanned == 10
    assert "silence scan: 10 clean references decoded, 1 silent" in r.format()


def test_quiet_but_real_speech_is_not_silent(tmp_path):
    root = make_pairs(tmp_path, n=4)
    x, _ = sf.read(str(root / "y_train" / "0001.wav"), dtype="float32")
    sf.write(str(root / "y_train" / "0001.wav"), x * 0.05, SR, subtype="PCM_16")  # about -48 dBFS
    r = _check(root)
    assert not [i for i in r.issues if i.kind == "silent_reference"] and len(r.usable_pairs) == 4


def test_resampled_pair_of_equal_duration_is_no_length_mismatch(tmp_path):
    """10.110 s at 44.1 kHz next to 10.110 s at 16 kHz: no 'noisy 10.110 s but clean 10.110 s'."""
    root = make_pairs(tmp_path, n=4, seconds=10.11)
    rng = np.random.default_rng(3)
    n44 = int(round(10.11 * 44100)) + 1  # one source sample more: rounds up at 16 kHz
    sf.write(str(root / "train" / "0002.wav"), 0.1 * rng.standard_normal(n44).astype(np.float32),
             44100, subtype="PCM_16")
    r = _check(root, n_corr=0)
    assert ("train/0002.wav", "pair_rate", "resample") in _kinds(r)
    assert not [i for i in r.issues if i.kind == "length_mismatch"], r.problems


def test_sub_millisecond_length_mismatch_names_the_samples(tmp_path):
    root = make_pairs(tmp_path, n=4)
    x, _ = sf.read(str(root / "y_train" / "0001.wav"), dtype="float32")
    sf.write(str(root / "y_train" / "0001.wav"), x[:-5], SR, subtype="PCM_16")  # 5 samples short
    r = _check(root)
    (issue,) = [i for i in r.issues if i.kind == "length_mismatch"]
    assert ("noisy 2.000 s (32000 samples at 16000 Hz) but clean 2.000 s "
            "(31995 samples at 16000 Hz)") in issue.detail
