"""smoke.dataset: the local paired dataset in the Kaggle layout."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from smoke.dataset import (
    NOISE_TYPES,
    build_local_dataset,
    main,
    make_noise,
    mix_at_snr,
    speech_like,
)

FOLDERS = ("train", "y_train", "test", "y_test")
SMALL = dict(n_train=5, n_test=2, seconds=(1.0, 1.5))


def _digest(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_local_dataset(tmp_path_factory.mktemp("ds") / "data", seed=0, **SMALL)


def test_layout_and_pairing(built):
    names = {d: sorted(p.name for p in (built / d).iterdir()) for d in FOLDERS}
    assert names["train"] == names["y_train"] == [f"{i:04d}.wav" for i in range(1, 6)]
    assert names["test"] == names["y_test"] == ["0006.wav", "0007.wav"]
    for d in FOLDERS:
        for name in names[d]:
            info = sf.info(str(built / d / name))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert 1.0 <= info.duration <= 1.5
            twin = "y_" + d if not d.startswith("y_") else d[2:]
            assert sf.info(str(built / twin / name)).frames == info.frames


def test_manifest_describes_pairs(built):
    meta = json.loads((built / "manifest.json").read_text())
    assert [p["name"] for p in meta["pairs"]] == [f"{i:04d}.wav" for i in range(1, 8)]
    assert {p["noise"] for p in meta["pairs"]} == set(NOISE_TYPES)
    assert all(0 <= p["snr_db"] <= 10 for p in meta["pairs"])


def test_noisy_clean_correlation_is_realistic(built):
    corrs = []
    for noisy_dir, clean_dir in (("train", "y_train"), ("test", "y_test")):
        for path in sorted((built / noisy_dir).iterdir()):
            noisy, _ = sf.read(str(path))
            clean, _ = sf.read(str(built / clean_dir / path.name))
            corrs.append(np.corrcoef(noisy, clean)[0, 1])
    assert all(0.5 < c < 0.97 for c in corrs), corrs
    assert 0.6 < np.mean(corrs) < 0.95


def test_same_seed_same_bytes_other_seed_differs(built, tmp_path):
    again = build_local_dataset(tmp_path / "again", seed=0, **SMALL)
    assert _digest(again) == _digest(built)
    other = build_local_dataset(tmp_path / "other", seed=1, **SMALL)
    d_other, d_built = _digest(other), _digest(built)
    assert d_other.keys() == d_built.keys()
    assert all(d_other[k] != d_built[k] for k in d_other if k.endswith(".wav"))


def test_rebuild_replaces_previous_output(tmp_path):
    out = build_local_dataset(tmp_path / "d", n_train=4, n_test=2, seconds=1.0)
    build_local_dataset(out, n_train=2, n_test=1, seconds=1.0)
    assert sorted(p.name for p in (out / "train").iterdir()) == ["0001.wav", "0002.wav"]
    assert sorted(p.name for p in (out / "y_test").iterdir()) == ["0003.wav"]


def test_archives_nest_each_folder_and_are_deterministic(tmp_path, built):
    import py7zr

    out = build_local_dataset(tmp_path / "arc", seed=0, archives=True, **SMALL)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{d}.7z" for d in FOLDERS] + ["manifest.json"]
    )
    with py7zr.SevenZipFile(out / "train.7z") as archive:
        listed = sorted(f.filename for f in archive.list() if not f.is_directory)
    assert listed == [f"train/{i:04d}.wav" for i in range(1, 6)]
    with py7zr.SevenZipFile(out / "y_test.7z") as archive:
        archive.extractall(tmp_path / "x")
    extracted = (tmp_path / "x" / "y_test" / "0007.wav").read_bytes()
    assert extracted == (built / "y_test" / "0007.wav").read_bytes()
    again = build_local_dataset(tmp_path / "arc2", seed=0, archives=True, **SMALL)
    assert _digest(again) == _digest(out)


def test_speech_like_keeps_pesq_happy_and_noise_lowers_it():
    from pesq import pesq

    rng = np.random.default_rng(0)
    clean = speech_like(rng, 32000)
    assert 0.02 < np.sqrt(np.mean(clean**2)) < 0.08  # about -26 dBFS
    assert np.mean(np.abs(clean) < 1e-4) > 0.1  # has pauses
    assert pesq(16000, clean, clean, "wb") > 4.5
    for kind in NOISE_TYPES:
        noisy, scaled = mix_at_snr(clean, make_noise(kind, rng, len(clean)), 5.0)
        assert np.abs(noisy).max() <= 0.9 + 1e-9
        snr = 10 * np.log10(np.mean(scaled**2) / np.mean((noisy - scaled) ** 2))
        assert snr == pytest.approx(5.0, abs=1e-6)
        assert pesq(16000, scaled, noisy, "wb") < 3.0, kind


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown noise type 'rain'"):
        make_noise("rain", np.random.default_rng(0), 100)
    with pytest.raises(ValueError, match="seconds range"):
        build_local_dataset("unused", seconds=(0.1, 0.2))


def test_cli(tmp_path, capsys):
    rc = main(["--out", str(tmp_path / "cli"), "--train", "3", "--test", "1",
               "--seconds", "1", "--snr", "5", "--seed", "7"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "train: 3 pairs, 1.0-1.0 s" in out and "SNR 5.0-5.0 dB" in out
    assert "test: 1 pairs" in out
    assert main(["--out", str(tmp_path / "bad"), "--seconds", "0.1"]) == 2
    assert "seconds range" in capsys.readouterr().err


def test_real_without_apt_get_says_so(tmp_path, monkeypatch, capsys):
    import smoke.dataset as ds

    monkeypatch.setattr(ds.shutil, "which", lambda tool: None)
    assert main(["--out", str(tmp_path / "r"), "--real", "--cache-dir", str(tmp_path)]) == 1
    assert "--real needs apt-get" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian/Ubuntu)")
def test_real_sources(tmp_path):
    pytest.importorskip("G722")
    from smoke.dataset import DEFAULT_CACHE

    out = build_local_dataset(tmp_path / "real", n_train=2, n_test=1, seconds=(3.0, 4.0),
                              real=True, cache_dir=DEFAULT_CACHE)
    meta = json.loads((out / "manifest.json").read_text())
    assert meta["real"] and {p["noise"] for p in meta["pairs"]} <= {"music", "effects"}
    clean, sr = sf.read(str(out / "y_train" / "0001.wav"))
    noisy, _ = sf.read(str(out / "train" / "0001.wav"))
    assert sr == 16000 and np.std(clean) > 0.01
    assert 0.3 < np.corrcoef(noisy, clean)[0, 1] < 0.999


def test_held_out_needs_real(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "h"), "--held-out"]) == 2  # an option error
    assert "--held-out needs --real" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian/Ubuntu)")
def test_real_held_out_test_side_uses_another_voice_and_noises(tmp_path):
    pytest.importorskip("G722")
    from smoke.dataset import (
        DEFAULT_CACHE,
        HELD_OUT_VOICE,
        HELD_OUT_VOICE_PACKAGES,
        TRAIN_VOICE,
        _RealSources,
        fetch_real_sources,
    )

    out = build_local_dataset(tmp_path / "h", n_train=2, n_test=2, seconds=(3.0, 4.0),
                              real=True, held_out=True, cache_dir=DEFAULT_CACHE)
    meta = json.loads((out / "manifest.json").read_text())
    assert meta["held_out"]
    voices = {(p["split"], p["voice"]) for p in meta["pairs"]}
    assert voices == {("train", TRAIN_VOICE), ("test", HELD_OUT_VOICE)}
    src = _RealSources(fetch_real_sources(DEFAULT_CACHE),
                       fetch_real_sources(DEFAULT_CACHE, HELD_OUT_VOICE_PACKAGES,
                                          "extracted-held-out"))
    test = src.side("test")
    train_ids = {id(x) for x in src.music + src.effects}
    assert test.music and test.effects and not train_ids & {id(x) for x in test.music + test.effects}
    # a plain --real build keeps one speaker: the held-out voice is unpacked elsewhere
    plain = _RealSources(fetch_real_sources(DEFAULT_CACHE))
    assert plain.side("test") is plain and len(plain.prompts) == len(src.prompts)
