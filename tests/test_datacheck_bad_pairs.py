"""templates.datacheck on pairs that are bad one by one: a misaligned few, NaN/Inf, undecodable."""

import numpy as np
import pytest
import soundfile as sf

import templates.datacheck as dc
from templates.data import pair_files
from templates.datacheck import DataError, check_pairs
from tests.helpers.pairs import SR, make_pairs


def _check(root, **kw):
    kw.setdefault("crop_seconds", 1.0)
    return check_pairs(pair_files(root / "train", root / "y_train"), **kw)


def _misalign(root, names):
    """Replace the clean file of each name by a time-shifted copy (same length, near-0 correlation)."""
    for name in names:
        f = root / "y_train" / name
        x, _ = sf.read(str(f), dtype="float32")
        sf.write(str(f), np.roll(x, len(x) // 2), SR, subtype="PCM_16")


def test_three_of_eight_misaligned_pairs_are_named_and_refused(tmp_path):
    root = make_pairs(tmp_path, n=8)
    bad = ["0001.wav", "0004.wav", "0006.wav"]
    _misalign(root, bad)
    r = _check(root, n_corr=8)
    assert len(r.correlation_files) == 8
    assert r.correlation > 0.3  # the mean alone would pass: the old rule's blind spot
    low = [i for i in r.issues if i.kind == "low_correlation"]
    assert sorted(i.file for i in low) == [f"train/{b}" for b in bad]
    assert sorted(r.low_corr_files) == [f"train/{b}" for b in bad]
    for i in low:
        name = i.file.split("/")[1]
        assert f"y_train/{name}" in i.detail and "below 0.3" in i.detail and i.action == "skip"
        assert abs(float(i.detail.split("correlation ")[1].split(" ")[0])) < 0.2
    assert not r.ok
    (refusal,) = [x for x in r.refusals if "sampled pairs" in x]
    assert refusal.startswith("3 of 8 sampled pairs have a noisy/clean correlation below 0.3")
    assert all(f"train/{b}" in refusal for b in bad)
    with pytest.raises(DataError, match="3 of 8 sampled pairs"):
        r.raise_if_refused()
    assert "3 of them below 0.3" in r.format()


def test_one_odd_pair_of_eight_is_skipped_not_refused(tmp_path):
    root = make_pairs(tmp_path, n=10)
    r0 = _check(root, n_corr=8)
    (odd,) = [f for f in r0.correlation_files[:1]]  # a pair that is sure to be sampled
    _misalign(root, [odd.split("/")[1]])
    r = _check(root, n_corr=8)
    assert r.low_corr_files == [odd] and r.ok
    assert [(i.file, i.kind, i.action) for i in r.issues] == [(odd, "low_correlation", "skip")]
    assert len(r.usable_pairs) == 9 and all(f"train/{n.name}" != odd for n, _ in r.usable_pairs)
    # The same pair is refused under a stricter rule.
    strict = _check(root, n_corr=8, max_low_corr_fraction=0.1)
    assert not strict.ok and any("1 of 8 sampled pairs" in x for x in strict.refusals)
    # The skipped pair is judged by the correlation rule only, not counted again as "unusable".
    sf.write(str(root / "train" / "extra.wav"), np.zeros(SR, np.float32), SR)  # 1 of 11 unpaired
    assert _check(root, n_corr=8).ok


def test_aligned_and_fully_misaligned_behave_as_before(tmp_path):
    ok = _check(make_pairs(tmp_path / "ok", n=6), n_corr=4)
    assert ok.ok and ok.low_corr_files == [] and ok.issues == []
    bad = _check(make_pairs(tmp_path / "bad", n=6, shift=0.5), n_corr=4)
    assert not bad.ok and "misaligned" in bad.refusals[0] and "below 0.3" in bad.refusals[0]
    assert not any("sampled pairs have" in x for x in bad.refusals)  # one reason, not two
    assert not any("usable" in x for x in bad.refusals)  # not "none usable" for the skipped sample
    assert len(bad.low_corr_files) == 4


def _counting_loader(monkeypatch):
    reads = []
    real = dc.load_audio

    def spy(path, *a, **k):
        reads.append(f"{path.parent.name}/{path.name}")
        return real(path, *a, **k)

    monkeypatch.setattr(dc, "load_audio", spy)
    return reads


def test_nan_in_float_wav_outside_the_correlation_sample_is_skipped(tmp_path, monkeypatch):
    root = make_pairs(tmp_path, n=10)
    sampled = set(_check(root, n_corr=2).correlation_files)
    victim = next(f"{i:04d}.wav" for i in range(10) if f"train/{i:04d}.wav" not in sampled)
    inf_victim = next(f"{i:04d}.wav" for i in range(9, -1, -1) if f"train/{i:04d}.wav" not in sampled)
    x, _ = sf.read(str(root / "y_train" / victim), dtype="float32")
    x[-5:] = np.nan  # at the end: outside any first-second crop too
    sf.write(str(root / "y_train" / victim), x, SR, subtype="FLOAT")
    y, _ = sf.read(str(root / "train" / inf_victim), dtype="float32")
    y[SR + 3] = np.inf
    sf.write(str(root / "train" / inf_victim), y.astype(np.float64), SR, subtype="DOUBLE")
    clean_float = "0000.wav" if "0000.wav" not in (victim, inf_victim) else "0002.wav"
    z, _ = sf.read(str(root / "y_train" / clean_float), dtype="float32")
    sf.write(str(root / "y_train" / clean_float), z, SR, subtype="FLOAT")  # finite: kept

    reads = _counting_loader(monkeypatch)
    r = _check(root, n_corr=2, max_unusable_fraction=0.5)
    nf = {(i.file, i.action): i.detail for i in r.issues if i.kind == "non_finite"}
    assert set(nf) == {(f"y_train/{victim}", "skip"), (f"train/{inf_victim}", "skip")}
    assert "5 non-finite samples (FLOAT wav)" in nf[(f"y_train/{victim}", "skip")]
    assert "1 non-finite samples (DOUBLE wav)" in nf[(f"train/{inf_victim}", "skip")]
    names = {n.name for n, _ in r.usable_pairs}
    assert victim not in names and inf_victim not in names and clean_float in names
    assert len(r.usable_pairs) == 8 and r.float_files_checked == 3
    assert "3 float files decoded" in r.format() and "2 with NaN/Inf skipped" in r.format()
    # Integer PCM noisy files are decoded only for the correlation crops, never scanned whole;
    # every clean reference is scanned whole for silence (and read again if sampled).
    floats = {f"y_train/{victim}", f"train/{inf_victim}", f"y_train/{clean_float}"}
    corr_noisy = {f"train/{f.split('/')[1]}" for f in r.correlation_files}
    noisy_reads = [x for x in reads if x.startswith("train/")]
    assert set(noisy_reads) <= {f"train/{inf_victim}"} | corr_noisy
    assert floats <= set(reads)
    assert sum(1 for x in noisy_reads if x not in floats) == len(r.correlation_files)
    assert {x for x in reads if x.startswith("y_train/")} == {f"y_train/{i:04d}.wav" for i in range(10)}
    assert r.clean_files_scanned == 10


def test_float_file_that_fails_to_decode_is_named_and_skipped(tmp_path, monkeypatch):
    # The header reads, the body does not (e.g. a disk error mid-file): named, skipped, no crash.
    root = make_pairs(tmp_path, n=10)
    p = root / "train" / "0005.wav"
    x, _ = sf.read(str(p), dtype="float32")
    sf.write(str(p), x, SR, subtype="FLOAT")
    real = dc.load_audio

    def flaky(path, *a, **k):
        if path == p and k.get("offset", 0) == 0 and k.get("frames") == 30 * SR:
            raise dc.AudioReadError(path, "Error: unspecified internal error")
        return real(path, *a, **k)

    monkeypatch.setattr(dc, "load_audio", flaky)
    r = _check(root, n_corr=2)
    assert ("train/0005.wav", "unreadable", "skip") in {(i.file, i.kind, i.action) for i in r.issues}
    assert len(r.usable_pairs) == 9 and r.ok
