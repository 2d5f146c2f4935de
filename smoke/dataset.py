"""A small paired noisy/clean dataset in the Kaggle layout, built locally in seconds.

    python smoke/dataset.py --out local_data [--archives] [--seed 0] [--train 24] [--test 6]
                            [--seconds 4 6] [--snr 0 10] [--real] [--layout vbdemand]

Layout (as `earth16/libri-speech-noise-dataset`): `train/` (noisy), `y_train/` (clean),
`test/`, `y_test/`, the same file names in each pair, 16 kHz mono PCM_16. `--archives` packs
each folder into `<folder>.7z` (holding `<folder>/0001.wav`, ...) and removes the loose folders,
so the notebook's extraction code runs as on Kaggle. The same seed gives the same bytes.
`--layout vbdemand` writes the VoiceBank+DEMAND layout of its Kaggle copy instead (a row of
`templates/datasets.py`): `noisy_trainset_28spk_wav/noisy_trainset_28spk_wav/p226_001.wav`, ...,
`clean_testset_wav/clean_testset_wav/p232_001.wav`, 48 kHz PCM_16 (the 16 kHz signals
resampled), loose folders (no archives), for rehearsing a notebook rendered with that dataset.

Clean speech is synthetic (voiced syllables with a moving pitch and gliding formants, fricative
bursts, pauses between words), loud and structured enough that PESQ detects utterances. Noise is
white, pink, babble, mains hum with harmonics or non-stationary bursts, mixed at a random SNR.
`--real` uses recorded material from Debian packages instead (a speaker's prompts for speech,
game sound effects and hold music for noise); it needs apt-get, dpkg and the `G722` package.
`--real --held-out` keeps the test side apart from the training side, as a benchmark needs:
test clean speech is another speaker (fr-CA prompts, `asterisk-core-sounds-fr-g722`, unpacked
into its own folder) and test noise comes from hold-music tracks and sound effects that no
training pair uses (`HELD_OUT_MUSIC` tracks, every `HELD_OUT_EFFECT_EVERY`-th effect).
"""

import argparse
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, lfilter, resample_poly, sosfilt

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compat.sample_rate import SAMPLE_RATE  # noqa: E402
from templates.datasets import DATASETS  # noqa: E402

NOISE_TYPES = ("white", "pink", "babble", "hum", "bursts")
# Fixed mtime for the wavs before archiving, so that the .7z files are byte-identical too.
ARCHIVE_MTIME = 946684800  # 2000-01-01
REAL_PACKAGES = ("asterisk-core-sounds-en-g722", "openttd-opensfx", "asterisk-moh-opsound-g722")
# --held-out: the test side's speaker, unpacked apart so that plain --real builds never see it.
HELD_OUT_VOICE_PACKAGES = ("asterisk-core-sounds-fr-g722",)
TRAIN_VOICE = "en_US_f_Allison"
HELD_OUT_VOICE = "fr_CA_f_June"
HELD_OUT_MUSIC = 2  # the last 2 of the 5 sorted hold-music tracks are test-only
HELD_OUT_EFFECT_EVERY = 4  # effects 0, 4, 8, ... are test-only
DEFAULT_CACHE = Path.home() / ".cache" / "se-toolkit" / "debs"

# (F1, F2, F3) in Hz of a few English vowels (Peterson & Barney averages).
VOWEL_FORMANTS = (
    (730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
    (570, 840, 2410), (660, 1720, 2410), (440, 1020, 2240), (490, 1350, 1690),
)
FORMANT_BANDWIDTHS = (80.0, 110.0, 160.0)
FORMANT_GAINS = (1.0, 0.6, 0.3)


class RealDataError(RuntimeError):
    """The --real sources could not be fetched or decoded."""


# ----------------------------------------------------------------------------- synthetic speech


def _resonator(freq: float, bandwidth: float, sr: int):
    """Second-order all-pole resonator (b, a), unity-ish gain at `freq`."""
    r = math.exp(-math.pi * bandwidth / sr)
    theta = 2 * math.pi * freq / sr
    return [1.0 - r], [1.0, -2.0 * r * math.cos(theta), r * r]


def _formant_filter(x: np.ndarray, formants, sr: int) -> np.ndarray:
    out = np.zeros_like(x)
    for freq, bw, gain in zip(formants, FORMANT_BANDWIDTHS, FORMANT_GAINS, strict=True):
        b, a = _resonator(freq, bw, sr)
        out += gain * lfilter(b, a, x)
    return out


def _envelope(n: int, sr: int, attack_s: float, release_s: float) -> np.ndarray:
    env = np.ones(n)
    na, nr = min(n // 2, int(attack_s * sr)), min(n // 2, int(release_s * sr))
    if na:
        env[:na] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, na))
    if nr:
        env[n - nr:] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, nr))
    return env


def _voiced(rng, n: int, f0: float, sr: int) -> np.ndarray:
    """A voiced syllable: harmonic source with a moving pitch through gliding formants."""
    t = np.arange(n) / sr
    glide = rng.uniform(-0.25, 0.25)  # rising or falling intonation over the syllable
    vibrato = 0.03 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 2 * np.pi))
    f0_t = f0 * (1.0 + glide * t / max(t[-1], 1e-3) + vibrato)  # (n,)
    phase = 2 * np.pi * np.cumsum(f0_t) / sr + rng.uniform(0, 2 * np.pi)
    src = np.zeros(n)
    for k in range(1, int(7000 / f0_t.min()) + 1):
        # 1/k spectral tilt of a glottal source; harmonics above 7 kHz are switched off
        src += np.where(k * f0_t < 7000, 1.0 / k, 0.0) * np.sin(k * phase)
    src += 0.02 * rng.standard_normal(n)  # breathiness
    a, b = rng.choice(len(VOWEL_FORMANTS), size=2)
    fade = np.linspace(0.0, 1.0, n)  # formant glide: crossfade two vowel filters
    y = (1 - fade) * _formant_filter(src, VOWEL_FORMANTS[a], sr)
    y += fade * _formant_filter(src, VOWEL_FORMANTS[b], sr)
    return y * _envelope(n, sr, 0.015, 0.04)


def _unvoiced(rng, n: int, sr: int) -> np.ndarray:
    """A fricative: band-passed noise burst (s/sh/f-like)."""
    lo, hi = [(2500, 7000), (1500, 4500), (1000, 7500)][rng.integers(3)]
    sos = butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return sosfilt(sos, rng.standard_normal(n)) * _envelope(n, sr, 0.01, 0.02)


def speech_like(rng, n_samples: int, sr: int = SAMPLE_RATE, f0=None) -> np.ndarray:
    """Synthetic speech (n_samples,) float64 at about -26 dBFS RMS: words of 1-4 syllables
    (optional fricative onset + voiced nucleus) separated by pauses."""
    out = np.zeros(n_samples)
    base_f0 = float(f0) if f0 is not None else rng.uniform(95.0, 230.0)
    pos = int(rng.uniform(0.05, 0.3) * sr)
    while pos < n_samples - int(0.15 * sr):
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.4:
                n = int(rng.uniform(0.04, 0.13) * sr)
                seg = _unvoiced(rng, n, sr) * rng.uniform(0.15, 0.35)
                end = min(n_samples, pos + n)
                out[pos:end] += seg[: end - pos]
                pos = end
            n = int(rng.uniform(0.09, 0.26) * sr)
            seg = _voiced(rng, n, base_f0 * rng.uniform(0.9, 1.15), sr) * rng.uniform(0.5, 1.0)
            end = min(n_samples, pos + n)
            out[pos:end] += seg[: end - pos]
            pos = end
            if pos >= n_samples:
                break
        pos += int(rng.uniform(0.06, 0.45 if rng.random() < 0.85 else 0.8) * sr)
    rms = np.sqrt(np.mean(out**2)) + 1e-12
    return out * (0.05 * 10 ** (rng.uniform(-3, 3) / 20) / rms)


# ----------------------------------------------------------------------------- noises


def _pink(rng, n: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec /= np.sqrt(np.maximum(freqs, 20.0))
    return np.fft.irfft(spec, n)


def make_noise(kind: str, rng, n: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Noise of type `kind` (one of NOISE_TYPES), (n,) float64, arbitrary level."""
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        return _pink(rng, n)
    if kind == "babble":
        voices = [speech_like(rng, n, sr) for _ in range(int(rng.integers(4, 7)))]
        return np.sum(voices, axis=0)
    if kind == "hum":
        t = np.arange(n) / sr
        mains = float(rng.choice([50.0, 60.0]))
        hum = sum(
            h**-0.7 * np.sin(2 * np.pi * h * mains * t + rng.uniform(0, 2 * np.pi))
            for h in range(1, 12)
        )
        floor = _pink(rng, n)
        return hum + 0.05 * floor / (np.std(floor) + 1e-12)
    if kind == "bursts":
        noise = 0.1 * rng.standard_normal(n)  # quiet floor between events
        pos = int(rng.uniform(0, 0.5) * sr)
        while pos < n:
            length = int(rng.uniform(0.03, 0.4) * sr)
            decay = np.exp(-np.arange(length) / (length / rng.uniform(2, 6)))
            src = rng.standard_normal(length) if rng.random() < 0.5 else _pink(rng, length)
            end = min(n, pos + length)
            noise[pos:end] += (rng.uniform(0.5, 2.0) * decay * src / (np.std(src) + 1e-12))[
                : end - pos
            ]
            pos = end + int(rng.uniform(0.1, 1.0) * sr)
        return noise
    raise ValueError(f"unknown noise type {kind!r}; expected one of {NOISE_TYPES}")


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float):
    """(noisy, clean) with noise scaled to `snr_db` over the whole clip, both scaled by one gain
    so the louder peaks at 0.9 at most (PCM_16 must not clip; the pair stays aligned)."""
    p_clean = np.mean(clean**2)
    p_noise = np.mean(noise**2) + 1e-20
    noisy = clean + noise * np.sqrt(p_clean / (p_noise * 10 ** (snr_db / 10)))
    peak = max(np.abs(noisy).max(), np.abs(clean).max(), 1e-9)
    gain = min(1.0, 0.9 / peak)
    return noisy * gain, clean * gain


# ----------------------------------------------------------------------------- real sources


def _run(cmd, cwd=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def fetch_real_sources(cache_dir=None, packages=REAL_PACKAGES, folder: str = "extracted") -> Path:
    """Download (once) and unpack the Debian `packages` with speech and noise; returns the
    folder (`cache_dir/folder`) they are unpacked into."""
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise RealDataError(
                f"--real needs {tool} (Debian/Ubuntu) to fetch {', '.join(packages)}; "
                f"build the synthetic dataset instead (omit --real)"
            )
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not list(cache.glob(f"{p}_*.deb"))]
    if missing:
        rc, out = _run(["apt-get", "download", *missing], cwd=cache)
        if rc != 0:
            _run(["apt-get", "update"])
            rc, out = _run(["apt-get", "download", *missing], cwd=cache)
        if rc != 0:
            raise RealDataError(f"apt-get download {' '.join(missing)} failed in {cache}:\n{out}")
    root = cache / folder
    for pkg in packages:
        deb = sorted(cache.glob(f"{pkg}_*.deb"))[-1]
        marker = root / f".{deb.name}.done"
        if not marker.exists():
            rc, out = _run(["dpkg", "-x", str(deb), str(root)])
            if rc != 0:
                raise RealDataError(f"dpkg -x {deb} failed:\n{out}")
            marker.touch()
    return root


def _decode_g722(path: Path) -> np.ndarray:
    try:
        import G722
    except ImportError as exc:
        raise RealDataError("--real needs the G722 package: pip install G722") from exc
    pcm = G722.G722(SAMPLE_RATE, 64000).decode(path.read_bytes())
    return np.asarray(pcm, dtype=np.float64) / 32768.0


def _opensfx_sounds(cat: Path) -> list:
    """The wav sounds inside OpenTTD's opensfx.cat, resampled to 16 kHz mono."""
    data = cat.read_bytes()
    n_entries = (struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF) // 8
    sounds = []
    for i in range(n_entries):
        off, size = struct.unpack_from("<II", data, 8 * i)
        chunk = data[off & 0x7FFFFFFF : (off & 0x7FFFFFFF) + size]
        j = chunk.find(b"RIFF")
        if j < 0:
            continue  # a few entries are not wav data
        length = struct.unpack_from("<I", chunk, j + 4)[0]
        wav, sr = sf.read(io.BytesIO(chunk[j : j + 8 + length]), dtype="float64", always_2d=True)
        wav = wav.mean(axis=1)
        if sr != SAMPLE_RATE:
            g = math.gcd(sr, SAMPLE_RATE)
            wav = resample_poly(wav, SAMPLE_RATE // g, sr // g)
        if len(wav) > SAMPLE_RATE // 4 and np.std(wav) > 1e-4:
            sounds.append(wav)
    return sounds


def _decode_prompts(folder: Path) -> list:
    prompts = sorted(p for p in folder.rglob("*.g722") if "silence" not in p.parts)
    if not prompts:
        raise RealDataError(f"no .g722 prompts under {folder}")
    decoded = [_trim_silence(_decode_g722(p)) for p in prompts]
    return [p for p in decoded if len(p) > SAMPLE_RATE // 5]


class _RealSources:
    """Speech prompts and noise recordings loaded from the unpacked packages.

    With `held_out_root` (the unpacked `HELD_OUT_VOICE_PACKAGES`), `side("test")` gives another
    speaker and noise recordings that `side("train")` never uses; without it both sides share
    everything (the plain `--real` dataset).
    """

    def __init__(self, root: Path, held_out_root: Path | None = None):
        sounds = root / "usr" / "share" / "asterisk" / "sounds"
        voice = sounds / TRAIN_VOICE
        self.prompts = _decode_prompts(voice if voice.is_dir() else sounds)
        moh = sorted((root / "usr" / "share" / "asterisk" / "moh").glob("*.g722"))
        self.music = [_decode_g722(p) for p in moh]
        cats = sorted(root.rglob("opensfx.cat"))
        self.effects = _opensfx_sounds(cats[0]) if cats else []
        if not self.music and not self.effects:
            raise RealDataError(f"no noise recordings (hold music, opensfx) under {root}")
        self.held_out = None
        if held_out_root is not None:
            other = held_out_root / "usr" / "share" / "asterisk" / "sounds" / HELD_OUT_VOICE
            if len(self.music) <= HELD_OUT_MUSIC or len(self.effects) < 2 * HELD_OUT_EFFECT_EVERY:
                raise RealDataError(f"too few noise recordings under {root} to hold some out "
                                    f"({len(self.music)} music tracks, {len(self.effects)} effects)")
            test_fx = set(range(0, len(self.effects), HELD_OUT_EFFECT_EVERY))
            self.held_out = _RealSources.__new__(_RealSources)
            self.held_out.prompts = _decode_prompts(other)
            self.held_out.music = self.music[-HELD_OUT_MUSIC:]
            self.held_out.effects = [e for i, e in enumerate(self.effects) if i in test_fx]
            self.held_out.held_out = None
            self.music = self.music[:-HELD_OUT_MUSIC]
            self.effects = [e for i, e in enumerate(self.effects) if i not in test_fx]

    def side(self, split: str) -> "_RealSources":
        """The sources for `split` ("train" or "test")."""
        return self.held_out if split == "test" and self.held_out is not None else self

    def speech(self, rng, n: int) -> np.ndarray:
        out, pos = np.zeros(n), int(rng.uniform(0.05, 0.3) * SAMPLE_RATE)
        while pos < n:
            p = self.prompts[int(rng.integers(len(self.prompts)))]
            end = min(n, pos + len(p))
            out[pos:end] = p[: end - pos]
            pos = end + int(rng.uniform(0.08, 0.35) * SAMPLE_RATE)
        return out

    def noise(self, rng, n: int):
        """(noise (n,), kind): a hold-music excerpt or a chain of sound effects."""
        if self.music and (not self.effects or rng.random() < 0.4):
            track = self.music[int(rng.integers(len(self.music)))]
            start = int(rng.integers(max(1, len(track) - n)))
            return np.resize(track[start:], n), "music"
        out, pos = np.zeros(n), 0
        while pos < n:
            fx = self.effects[int(rng.integers(len(self.effects)))]
            end = min(n, pos + len(fx))
            out[pos:end] += fx[: end - pos] / (np.std(fx) + 1e-12)
            pos = end - int(rng.uniform(0, 0.2) * SAMPLE_RATE)  # slight overlaps
        return out, "effects"


def _trim_silence(x: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    idx = np.flatnonzero(np.abs(x) > threshold)
    return x[idx[0] : idx[-1] + 1] if len(idx) else x[:0]


# ----------------------------------------------------------------------------- the dataset


def _file_rng(seed: int, split: int, index: int):
    # one independent stream per file: a file's content does not depend on how many are built
    return np.random.default_rng([seed, split, index])


def _write_pcm16(path: Path, wav: np.ndarray, rate: int = SAMPLE_RATE):
    """Write 16 kHz `wav` as PCM_16 at `rate` (resampled; an integer multiple of 16 kHz)."""
    if rate != SAMPLE_RATE:
        wav = np.clip(resample_poly(wav, rate // SAMPLE_RATE, 1), -1.0, 1.0)
    sf.write(str(path), wav.astype(np.float64), rate, subtype="PCM_16", format="WAV")


def layout_splits(layout: str):
    """((train noisy, train clean), (test noisy, test clean)) folder names of a dataset row."""
    if layout not in DATASETS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(sorted(DATASETS))}")
    f = DATASETS[layout].folders
    return ((f["train_noisy"], f["train_clean"]), (f["test_noisy"], f["test_clean"]))


def _pair_name(layout: str, split_id: int, index: int) -> str:
    if layout == "vbdemand":  # VCTK names: training speakers p226..., test speakers p232...
        return f"p{(226, 232)[split_id]}_{index:03d}.wav"
    return f"{index:04d}.wav"


def _pack_archives(out: Path, folders):
    import py7zr

    for folder in folders:
        src = out / folder
        for f in [src, *src.iterdir()]:
            os.utime(f, (ARCHIVE_MTIME, ARCHIVE_MTIME))
        with py7zr.SevenZipFile(out / f"{folder}.7z", "w") as archive:
            for f in sorted(src.iterdir()):
                archive.write(f, arcname=f"{folder}/{f.name}")
        shutil.rmtree(src)


def build_local_dataset(
    out,
    *,
    n_train: int = 24,
    n_test: int = 6,
    seconds=(4.0, 6.0),
    seed: int = 0,
    archives: bool = False,
    real: bool = False,
    snr_db=(0.0, 10.0),
    cache_dir=None,
    held_out: bool = False,
    layout: str = "libri",
) -> Path:
    """Write the paired dataset under `out` (see the module docstring); returns `out`.

    `layout`: a row of `templates.datasets.DATASETS` giving the folder names and the rate the
    files are written at ("vbdemand": nested folders, 48 kHz, no archives).

    `seconds` and `snr_db` are (low, high) ranges drawn per file, or one number. Earlier
    outputs of this function in `out` (the four folders, their archives, manifest.json) are
    replaced. A `manifest.json` lists each pair's split, name, seconds, noise and SNR (and
    speaker with `held_out`, which needs `real`: see the module docstring).
    """
    lo_s, hi_s = (seconds, seconds) if np.isscalar(seconds) else seconds
    lo_snr, hi_snr = (snr_db, snr_db) if np.isscalar(snr_db) else snr_db
    if n_train < 1 or n_test < 1:
        raise ValueError(f"need at least one train and one test pair, got {n_train}/{n_test}")
    if not 0.25 < lo_s <= hi_s or not math.isfinite(hi_s) or hi_s > 3600:
        raise ValueError(f"seconds range {seconds} must satisfy 0.25 < low <= high <= 3600")
    if not (math.isfinite(lo_snr) and math.isfinite(hi_snr) and lo_snr <= hi_snr):
        raise ValueError(f"SNR range {snr_db} must be finite numbers of dB with low <= high")
    if held_out and not real:
        raise ValueError("--held-out needs --real (the synthetic data has no voices to hold out)")
    splits = layout_splits(layout)
    rate = DATASETS[layout].sample_rate
    nested = layout != "libri"  # the Kaggle copy of VoiceBank+DEMAND: name/name/*.wav
    if nested and archives:
        raise ValueError(f"layout {layout!r} is loose folders on Kaggle; omit --archives")
    out = Path(out)
    blocker = next((p for p in [out, *out.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ValueError(f"--out {out}: {blocker} is a file; give a folder for the dataset")
    # Fetch the real material before touching `out`: a failed download leaves it as it was.
    sources = None
    if real:
        held_root = (fetch_real_sources(cache_dir, HELD_OUT_VOICE_PACKAGES, "extracted-held-out")
                     if held_out else None)
        sources = _RealSources(fetch_real_sources(cache_dir), held_root)
    out.mkdir(parents=True, exist_ok=True)
    for noisy_dir, clean_dir in splits:
        for name in (noisy_dir, clean_dir):
            shutil.rmtree(out / name, ignore_errors=True)
            (out / f"{name}.7z").unlink(missing_ok=True)
            (out / name / name if nested else out / name).mkdir(parents=True)

    manifest = []
    counts = (n_train, n_test)
    for split_id, (noisy_dir, clean_dir) in enumerate(splits):
        first = 1 + (n_train if split_id else 0)  # test names continue after train's
        for k in range(counts[split_id]):
            index = first + k
            rng = _file_rng(seed, split_id, index)
            n = int(round(rng.uniform(lo_s, hi_s) * SAMPLE_RATE))
            snr = float(rng.uniform(lo_snr, hi_snr))
            if sources is None:
                kind = NOISE_TYPES[(index - 1) % len(NOISE_TYPES)]
                clean, noise = speech_like(rng, n), make_noise(kind, rng, n)
            else:
                side = sources.side("test" if split_id else "train")
                clean = side.speech(rng, n)
                noise, kind = side.noise(rng, n)
            noisy, clean = mix_at_snr(clean, noise, snr)
            name = _pair_name(layout, split_id, index)
            for folder, wav in ((noisy_dir, noisy), (clean_dir, clean)):
                _write_pcm16((out / folder / folder if nested else out / folder) / name, wav, rate)
            entry = {"split": ("train", "test")[split_id], "name": name, "seconds": n / SAMPLE_RATE,
                     "noise": kind, "snr_db": round(snr, 3)}
            if held_out:
                entry["voice"] = HELD_OUT_VOICE if split_id else TRAIN_VOICE
            manifest.append(entry)
    if archives:
        _pack_archives(out, [d for pair in splits for d in pair])
    (out / "manifest.json").write_text(json.dumps(
        {"seed": seed, "real": real, "archives": archives, "sample_rate": rate, "layout": layout,
         **({"held_out": True} if held_out else {}), "pairs": manifest}, indent=1) + "\n")
    return out


def summarize(out) -> str:
    """Short text summary of a built dataset from its manifest."""
    meta = json.loads((Path(out) / "manifest.json").read_text())
    lines = [f"{out}: {'real' if meta['real'] else 'synthetic'} data, seed {meta['seed']}, "
             f"{meta.get('layout', 'libri')} layout at {meta['sample_rate']} Hz"
             + (", packed as .7z" if meta["archives"] else "")
             + (", test voice and noises held out" if meta.get("held_out") else "")]
    for split in ("train", "test"):
        rows = [p for p in meta["pairs"] if p["split"] == split]
        secs = [p["seconds"] for p in rows]
        snrs = [p["snr_db"] for p in rows]
        kinds = sorted({p["noise"] for p in rows})
        lines.append(
            f"  {split}: {len(rows)} pairs, {min(secs):.1f}-{max(secs):.1f} s "
            f"({sum(secs):.0f} s total), SNR {min(snrs):.1f}-{max(snrs):.1f} dB, "
            f"noise {', '.join(kinds)}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--archives", action="store_true", help="pack folders into .7z")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=24, help="training pairs")
    parser.add_argument("--test", type=int, default=6, help="test pairs")
    parser.add_argument("--seconds", type=float, nargs="+", default=[4.0, 6.0],
                        metavar="S", help="clip length, or a LOW HIGH range")
    parser.add_argument("--snr", type=float, nargs="+", default=[0.0, 10.0],
                        metavar="DB", help="SNR in dB, or a LOW HIGH range")
    parser.add_argument("--real", action="store_true",
                        help="recorded speech and noise from Debian packages (apt-get)")
    parser.add_argument("--held-out", action="store_true",
                        help="with --real: test pairs use another speaker and noise recordings "
                             "that no training pair uses")
    parser.add_argument("--layout", default="libri", choices=sorted(DATASETS),
                        help="folder names and rate of this dataset row (default libri)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"where --real keeps the packages (default {DEFAULT_CACHE})")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed {args.seed}: must be >= 0")
    for opt in ("seconds", "snr"):
        if len(getattr(args, opt)) > 2:
            parser.error(f"--{opt} takes one value or a LOW HIGH pair")
    seconds = args.seconds if len(args.seconds) == 2 else args.seconds[0]
    snr = args.snr if len(args.snr) == 2 else args.snr[0]
    try:
        out = build_local_dataset(
            args.out, n_train=args.train, n_test=args.test, seconds=seconds, seed=args.seed,
            archives=args.archives, real=args.real, snr_db=snr, cache_dir=args.cache_dir,
            held_out=args.held_out,
            layout=args.layout,
        )
    except ValueError as exc:  # an option out of range or an --out that cannot be a folder
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RealDataError as exc:  # the real material could not be fetched: nothing was changed
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. --out not writable
        print(f"error: {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(summarize(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
