"""compat.audio: header reads, partial reads, resampling, and every torchaudio generation."""

import types

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

import compat.audio as ca
from compat.audio import AudioInfo, AudioReadError, audio_info, load_audio, save_audio


def _write(path, data, sr, subtype="FLOAT"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype)
    return path


@pytest.fixture
def ramp16k(tmp_path):
    """2 s mono float wav at 16 kHz whose samples are distinct, so slices can be compared."""
    x = (np.arange(32000, dtype=np.float32) / 32000.0) - 0.5
    return _write(tmp_path / "y_train" / "0001.wav", x, 16000), x


def _fake_torchaudio(with_info: bool, partial_load: bool = True):
    """A stand-in for a torchaudio generation, backed by soundfile; records its calls."""
    calls = []

    def info(path):
        calls.append(("info", path))
        i = sf.info(path)
        return types.SimpleNamespace(num_frames=i.frames, sample_rate=i.samplerate, num_channels=i.channels)

    def load(path, *args, **kwargs):
        if kwargs and not partial_load:
            raise TypeError("load() got an unexpected keyword argument 'frame_offset'")
        calls.append(("load", path, kwargs))
        start = kwargs.get("frame_offset", 0)
        num = kwargs.get("num_frames", -1)
        stop = None if num < 0 else start + num
        data, sr = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
        return torch.from_numpy(data.T.copy()), sr

    mod = types.SimpleNamespace(load=load, calls=calls)
    if with_info:
        mod.info = info
    return mod


def _backends(monkeypatch, soundfile=None, torchaudio=None):
    table = {"soundfile": soundfile, "torchaudio": torchaudio}
    monkeypatch.setattr(ca, "_audio_backend", lambda name: table.get(name))


def test_audio_info_reads_header_with_soundfile(tmp_path):
    p = _write(tmp_path / "a.wav", np.zeros((12000, 2), np.float32), 8000, "PCM_16")
    info = audio_info(p)
    assert info == AudioInfo(frames=12000, sample_rate=8000, channels=2)
    assert info.duration == pytest.approx(1.5)


def test_audio_info_never_decodes(ramp16k, monkeypatch):
    def no_decoding(*a, **k):
        raise AssertionError("audio_info decoded the file")

    monkeypatch.setattr(sf, "read", no_decoding)
    assert audio_info(ramp16k[0]).frames == 32000


def test_audio_info_old_torchaudio_with_info(ramp16k, monkeypatch):
    ta = _fake_torchaudio(with_info=True)
    _backends(monkeypatch, torchaudio=ta)
    assert audio_info(ramp16k[0]) == AudioInfo(32000, 16000, 1)
    assert [c[0] for c in ta.calls] == ["info"]


def test_audio_info_new_torchaudio_without_info_uses_wave_header(tmp_path, monkeypatch):
    # Kaggle's newer torchaudio has no info(), which broke the user's notebooks. No decoding either.
    p = _write(tmp_path / "b.wav", np.zeros((4000, 2), np.float32), 16000, "PCM_16")
    ta = _fake_torchaudio(with_info=False)
    _backends(monkeypatch, torchaudio=ta)
    assert audio_info(p) == AudioInfo(4000, 16000, 2)
    assert ta.calls == []


def test_audio_info_without_any_library(tmp_path, monkeypatch):
    wav = _write(tmp_path / "c.wav", np.zeros(1600, np.float32), 16000, "PCM_16")
    flac = _write(tmp_path / "c.flac", np.zeros(1600, np.float32), 16000, "PCM_16")
    _backends(monkeypatch)
    assert audio_info(wav).frames == 1600
    with pytest.raises(AudioReadError, match="c.flac: cannot read: .*pip install soundfile"):
        audio_info(flac)


@pytest.mark.parametrize("gen", ["soundfile", "ta_info", "ta_noinfo", "none"])
def test_garbage_file_error_names_file(tmp_path, monkeypatch, gen):
    bad = tmp_path / "y_train" / "0012.wav"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00garbage, not a RIFF header" * 10)
    if gen == "ta_info":
        _backends(monkeypatch, torchaudio=_fake_torchaudio(True))
    elif gen == "ta_noinfo":
        _backends(monkeypatch, torchaudio=_fake_torchaudio(False))
    elif gen == "none":
        _backends(monkeypatch)
    with pytest.raises(AudioReadError) as ei:
        audio_info(bad)
    assert isinstance(ei.value, OSError)
    assert str(ei.value).startswith(f"{bad}: cannot read: ")
    if gen != "none":
        with pytest.raises(AudioReadError, match="0012.wav: cannot read"):
            load_audio(bad, offset=10, frames=100)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AudioReadError, match="nope.wav: cannot read: no such file"):
        audio_info(tmp_path / "nope.wav")
    with pytest.raises(AudioReadError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")


def test_load_whole_and_partial(ramp16k):
    path, x = ramp16k
    whole = load_audio(path)
    assert whole.dtype == torch.float32 and whole.shape == (32000,)
    np.testing.assert_array_equal(whole.numpy(), x)
    crop = load_audio(path, offset=1234, frames=4800)
    np.testing.assert_array_equal(crop.numpy(), x[1234 : 1234 + 4800])
    tail = load_audio(path, offset=31000, frames=4800)  # file ends first: shorter, callers pad
    np.testing.assert_array_equal(tail.numpy(), x[31000:])
    assert load_audio(path, offset=40000, frames=10).shape == (0,)
    np.testing.assert_array_equal(load_audio(path, offset=100).numpy(), x[100:])


def test_partial_read_reads_only_the_crop(ramp16k, monkeypatch):
    path, _ = ramp16k
    spans = []
    real_read = sf.read

    def spy(file, *args, start=0, stop=None, **kw):
        spans.append((start, stop))
        return real_read(file, *args, start=start, stop=stop, **kw)

    monkeypatch.setattr(sf, "read", spy)
    load_audio(path, offset=16000, frames=800)
    assert spans == [(16000, 16800)]


def test_stereo_is_averaged(tmp_path):
    left = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    right = np.full(1000, 0.25, np.float32)
    p = _write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000)
    np.testing.assert_allclose(load_audio(p).numpy(), (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("file_rate", [8000, 22050, 44100])
def test_resampled_crop_equals_crop_of_resampled_whole(tmp_path, file_rate):
    rng = np.random.default_rng(file_rate)
    x = (rng.standard_normal(file_rate * 2) * 0.1).astype(np.float32)
    p = _write(tmp_path / f"r{file_rate}.wav", x, file_rate)
    whole = load_audio(p, sample_rate=16000)
    assert whole.shape == (32000,)
    g = np.gcd(16000, file_rate)
    np.testing.assert_allclose(whole.numpy(), resample_poly(x, 16000 // g, file_rate // g), atol=1e-5)
    for off, n in [(0, 500), (777, 4800), (20001, 3000), (31000, 4000)]:
        crop = load_audio(p, sample_rate=16000, offset=off, frames=n)
        np.testing.assert_allclose(crop.numpy(), whole.numpy()[off : off + n], atol=1e-6)


@pytest.mark.parametrize("with_info", [True, False])
@pytest.mark.parametrize("partial_load", [True, False])
def test_torchaudio_fallback_matches_soundfile(tmp_path, monkeypatch, with_info, partial_load):
    x = np.random.default_rng(0).standard_normal((16000, 2)).astype(np.float32) * 0.1
    # PCM_16: the stdlib wave header can read it when torchaudio lacks info() (float wavs it
    # cannot, and those are decoded whole, then sliced).
    p = _write(tmp_path / "t.wav", x, 8000, "PCM_16")
    ref_whole = load_audio(p).numpy()
    ref_crop = load_audio(p, offset=5000, frames=3000).numpy()
    ta = _fake_torchaudio(with_info=with_info, partial_load=partial_load)
    _backends(monkeypatch, torchaudio=ta)
    np.testing.assert_allclose(load_audio(p).numpy(), ref_whole, atol=1e-6)
    np.testing.assert_allclose(load_audio(p, offset=5000, frames=3000).numpy(), ref_crop, atol=1e-6)
    loads = [c for c in ta.calls if c[0] == "load"]
    if partial_load:
        assert loads[-1][2]["frame_offset"] > 0  # the crop was a partial read


def test_no_backend_at_all_is_a_clear_error(ramp16k, monkeypatch):
    _backends(monkeypatch)
    with pytest.raises(AudioReadError, match="pip install soundfile"):
        load_audio(ramp16k[0])


def test_bad_arguments(ramp16k):
    with pytest.raises(ValueError, match="offset"):
        load_audio(ramp16k[0], offset=-1)
    with pytest.raises(ValueError, match="frames"):
        load_audio(ramp16k[0], frames=-5)


@pytest.mark.parametrize("with_soundfile", [True, False])
def test_save_audio_roundtrip(tmp_path, monkeypatch, with_soundfile):
    if not with_soundfile:
        _backends(monkeypatch)
    wav = torch.linspace(-1.5, 1.5, 16000)  # peaks beyond full scale are clipped, not wrapped
    out = save_audio(tmp_path / "new" / "dir" / "e.wav", wav, 16000)
    assert out.is_file()
    i = sf.info(str(out))
    assert (i.samplerate, i.channels, i.frames, i.subtype) == (16000, 1, 16000, "PCM_16")
    back, _ = sf.read(str(out), dtype="float32")
    np.testing.assert_allclose(back, np.clip(wav.numpy(), -1, 1), atol=1e-4)  # 16-bit steps
    stereo = save_audio(tmp_path / "s.wav", torch.zeros(2, 100), 8000)
    assert sf.info(str(stereo)).channels == 2
    with pytest.raises(ValueError, match="shape"):
        save_audio(tmp_path / "x.wav", torch.zeros(1, 2, 3), 8000)


def test_subtype_from_every_header_reader(tmp_path, monkeypatch):
    # Only FLOAT/DOUBLE wavs can hold NaN/Inf: the data check decodes exactly those, so every
    # backend must say which encoding a file has (or None where it cannot tell).
    pcm = _write(tmp_path / "p.wav", np.zeros(800, np.float32), 16000, "PCM_16")
    pcm24 = _write(tmp_path / "p24.wav", np.zeros(800, np.float32), 16000, "PCM_24")
    flt = _write(tmp_path / "f.wav", np.zeros(800, np.float32), 16000, "FLOAT")
    assert (audio_info(pcm).subtype, audio_info(flt).subtype) == ("PCM_16", "FLOAT")
    _backends(monkeypatch)  # stdlib wave: integer PCM only
    assert (audio_info(pcm).subtype, audio_info(pcm24).subtype) == ("PCM_16", "PCM_24")
    # torchaudio.info reports encoding + bits_per_sample; an older fake without them gives None.
    _backends(monkeypatch, torchaudio=_fake_torchaudio(with_info=True))
    assert audio_info(flt).subtype is None
    for enc, bits, want in [("PCM_F", 32, "FLOAT"), ("PCM_F", 64, "DOUBLE"), ("PCM_S", 16, "PCM_16"),
                            ("PCM_U", 8, "PCM_U8"), ("MP3", 0, None)]:
        meta = types.SimpleNamespace(num_frames=800, sample_rate=16000, num_channels=1,
                                     encoding=enc, bits_per_sample=bits)
        ta = types.SimpleNamespace(info=lambda path, m=meta: m, load=None)
        _backends(monkeypatch, torchaudio=ta)
        assert audio_info(flt) == AudioInfo(800, 16000, 1) and audio_info(flt).subtype == want


def test_audio_info_reports_subtype(tmp_path):
    x = np.zeros(800, np.float32)
    for subtype in ("PCM_16", "PCM_24", "FLOAT", "DOUBLE"):
        p = _write(tmp_path / f"{subtype}.wav", x, 16000, subtype)
        assert audio_info(p).subtype == subtype
    assert AudioInfo(1, 2, 3).subtype is None  # old constructors still work
    assert AudioInfo(1, 2, 3, "FLOAT") == AudioInfo(1, 2, 3)  # not part of equality
