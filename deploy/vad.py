"""Voice activity detection: speech-only metrics and residual-noise gating in pauses.

Two detectors work on 16 kHz (or 8/32/48 kHz) mono float waveforms and return one boolean per
frame (``frame_ms`` long, no overlap):

- ``webrtc_vad``: Google's WebRTC GMM detector (``webrtcvad-wheels``), aggressiveness 0-3.
- ``energy_vad``: frame energy above an adaptive noise floor (a low percentile of the frame
  energies) plus a margin, with a hangover so word endings are kept.

Which one the toolkit uses by default is decided by measurement, not taste:
``compare_detectors`` scores each detector on noisy input against the activity of the clean
reference (``reference_activity``); ``benchmarks/int8_quality.py`` runs it on the local test set
from ``smoke.dataset.build_local_dataset``. ``DEFAULT_DETECTOR``'s comment gives the numbers
behind the choice.

``gate_non_speech`` attenuates non-speech frames by ``atten_db`` with a smoothed gain so the
gate does not click; ``speech_only_scores`` computes SI-SDR and STOI over speech frames only
(with ``templates.metrics``' ``si_sdr`` and ``stoi_score``). ``make_detector`` builds a detector
once, up front, so a missing ``webrtcvad`` is one clear error instead of one per file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compat.sample_rate import SAMPLE_RATE

DETECTORS = ("webrtc", "energy")
# Chosen from compare_detectors on the local test set (benchmarks/int8_quality.py, 6 files, noisy
# input vs clean-reference activity): WebRTC aggressiveness 3 acc 0.718 / prec 0.711 / rec 0.991 /
# F1 0.828; energy acc 0.705 / prec 0.842 / rec 0.719 / F1 0.744. Energy separates better when it
# says "speech" but misses 28% of speech frames, which a pause gate would then attenuate; WebRTC
# almost never misses speech, so gating with it is safe (if mild). Hence WebRTC, aggressiveness 3.
DEFAULT_DETECTOR = "webrtc"


class VADError(ValueError):
    """Bad VAD input (rate, frame size, shape); the message says what was found."""


class VADUnavailable(VADError, ImportError):
    """The detector's package is not installed; the message says what to install.

    Both a ``VADError`` (a ValueError, which command lines report as a usage error) and an
    ``ImportError``.
    """


WEBRTC_INSTALL = "pip install webrtcvad-wheels"


def _import_webrtcvad():
    try:
        import webrtcvad
    except ImportError as e:  # optional dependency of the deploy extra
        raise VADUnavailable(
            f"the webrtc VAD detector needs the webrtcvad package: {WEBRTC_INSTALL} "
            f"(or choose the energy detector)"
        ) from e
    return webrtcvad


def _as_mono(wav) -> np.ndarray:
    """(T,) float64 from a numpy array or torch tensor of shape (T,)."""
    x = wav.detach().cpu().numpy() if hasattr(wav, "detach") else np.asarray(wav)
    if x.ndim != 1:
        raise VADError(f"expected a mono waveform of shape (T,), got shape {tuple(x.shape)}")
    return x.astype(np.float64, copy=False)


def _frame_len(sample_rate: int, frame_ms: int) -> int:
    n = sample_rate * frame_ms // 1000
    if n <= 0 or sample_rate * frame_ms % 1000:
        raise VADError(f"frame_ms={frame_ms} is not a whole number of samples at {sample_rate} Hz")
    return n


def _frame_energies_db(x: np.ndarray, n: int) -> np.ndarray:
    """Mean-square energy in dB of each full frame (trailing partial frame zero-padded)."""
    n_frames = max(1, -(-len(x) // n))
    padded = np.zeros(n_frames * n)
    padded[: len(x)] = x
    frames = padded.reshape(n_frames, n)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def _hangover(active: np.ndarray, frames: int) -> np.ndarray:
    """Keep each active run going for ``frames`` more frames (word endings are quiet)."""
    if frames <= 0:
        return active
    out = active.copy()
    last = -(10**9)
    for i, a in enumerate(active):
        if a:
            last = i
        elif i - last <= frames:
            out[i] = True
    return out


def reference_activity(clean, sample_rate: int = SAMPLE_RATE, frame_ms: int = 30,
                       rel_db: float = -40.0) -> np.ndarray:
    """Ground-truth activity of a CLEAN signal: frames within ``rel_db`` of its loudest frame.

    (n_frames,) bool. The clean reference has no noise, so a fixed level below its peak separates
    speech from pauses; this is what the detectors are scored against.
    """
    x = _as_mono(clean)
    e = _frame_energies_db(x, _frame_len(sample_rate, frame_ms))
    if not np.any(x):  # a silent reference has no speech (not "every frame is near the peak")
        return np.zeros(len(e), dtype=bool)
    return e > (e.max() + rel_db)


def energy_vad(wav, sample_rate: int = SAMPLE_RATE, frame_ms: int = 30, margin_db: float = 6.0,
               floor_percentile: float = 10.0, hangover_frames: int = 3) -> np.ndarray:
    """(n_frames,) bool: frames whose energy exceeds the noise floor by ``margin_db``.

    The floor is the ``floor_percentile``-th percentile of frame energies, which in speech with
    pauses sits on the background noise level.
    """
    x = _as_mono(wav)
    e = _frame_energies_db(x, _frame_len(sample_rate, frame_ms))
    floor = np.percentile(e, floor_percentile)
    return _hangover(e > floor + margin_db, hangover_frames)


def webrtc_vad(wav, sample_rate: int = SAMPLE_RATE, frame_ms: int = 30, aggressiveness: int = 3,
               hangover_frames: int = 3) -> np.ndarray:
    """(n_frames,) bool from WebRTC's detector (``pip install webrtcvad-wheels``)."""
    webrtcvad = _import_webrtcvad()
    if sample_rate not in (8000, 16000, 32000, 48000):
        raise VADError(f"webrtcvad supports 8/16/32/48 kHz, got {sample_rate} Hz")
    if frame_ms not in (10, 20, 30):
        raise VADError(f"webrtcvad frames are 10, 20 or 30 ms, got {frame_ms}")
    if not 0 <= aggressiveness <= 3:
        raise VADError(f"aggressiveness must be 0..3, got {aggressiveness}")
    x = _as_mono(wav)
    n = _frame_len(sample_rate, frame_ms)
    n_frames = max(1, -(-len(x) // n))
    pcm = np.zeros(n_frames * n, dtype=np.int16)
    # Peak-normalise so the detector's level thresholds see a usable range.
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    scale = 0.9 / peak if peak > 0 else 1.0
    pcm[: len(x)] = np.clip(x * scale * 32767.0, -32768, 32767).astype(np.int16)
    vad = webrtcvad.Vad(aggressiveness)
    active = np.array(
        [vad.is_speech(pcm[i * n:(i + 1) * n].tobytes(), sample_rate) for i in range(n_frames)]
    )
    return _hangover(active, hangover_frames)


def make_detector(name: str = DEFAULT_DETECTOR, **kw) -> Callable[..., np.ndarray]:
    """The named detector ("webrtc" or "energy") as ``fn(wav, sample_rate=16000, frame_ms=30)``.

    Checks everything that does not depend on the audio now, so a caller that builds it before
    its loop fails once: an unknown name raises ``VADError``, a missing ``webrtcvad`` raises
    ``VADUnavailable`` (a ``VADError`` and an ``ImportError``) naming ``pip install
    webrtcvad-wheels``. ``kw`` are the detector's options (e.g. ``aggressiveness``).
    """
    if name == "energy":
        fn = energy_vad
    elif name == "webrtc":
        _import_webrtcvad()
        if not 0 <= kw.get("aggressiveness", 3) <= 3:
            raise VADError(f"aggressiveness must be 0..3, got {kw['aggressiveness']}")
        fn = webrtc_vad
    else:
        raise VADError(f"unknown VAD detector {name!r}; choose one of {list(DETECTORS)}")

    def detector(wav, sample_rate: int = SAMPLE_RATE, frame_ms: int = 30) -> np.ndarray:
        return fn(wav, sample_rate, frame_ms, **kw)

    detector.__name__ = f"{name}_detector"
    return detector


def detect_speech(wav, sample_rate: int = SAMPLE_RATE, detector: str = DEFAULT_DETECTOR,
                  frame_ms: int = 30, **kw) -> np.ndarray:
    """(n_frames,) bool with the named detector ("webrtc" or "energy"); see ``make_detector``."""
    return make_detector(detector, **kw)(wav, sample_rate, frame_ms)


def frames_to_samples(active: np.ndarray, n_samples: int, sample_rate: int = SAMPLE_RATE,
                      frame_ms: int = 30) -> np.ndarray:
    """(n_samples,) bool: each frame's decision repeated over its samples."""
    n = _frame_len(sample_rate, frame_ms)
    active = np.asarray(active, dtype=bool)
    if active.ndim != 1 or len(active) * n < n_samples:
        raise VADError(
            f"{active.shape} frame decisions of {frame_ms} ms at {sample_rate} Hz cover "
            f"{active.size * n} samples, fewer than the signal's {n_samples}; compute them on "
            f"this signal (same rate and frame_ms)"
        )
    return np.repeat(np.asarray(active, dtype=bool), n)[:n_samples].copy() if n_samples else \
        np.zeros(0, dtype=bool)


def gate_non_speech(wav, active: np.ndarray, sample_rate: int = SAMPLE_RATE, frame_ms: int = 30,
                    atten_db: float = 12.0, smooth_ms: float = 20.0) -> np.ndarray:
    """(T,) float32: ``wav`` with non-speech frames attenuated by ``atten_db``.

    The per-sample gain (1 in speech, 10^(-atten_db/20) in pauses) is smoothed by a moving
    average of ``smooth_ms`` so gate transitions do not click.
    """
    if atten_db < 0:
        raise VADError(f"atten_db must be >= 0, got {atten_db}")
    x = _as_mono(wav)
    floor = 10.0 ** (-atten_db / 20.0)
    gain = np.where(frames_to_samples(active, len(x), sample_rate, frame_ms), 1.0, floor)
    k = max(1, int(sample_rate * smooth_ms / 1000))
    if k > 1 and len(gain) > 0:
        padded = np.pad(gain, (k // 2, k - 1 - k // 2), mode="edge")
        gain = np.convolve(padded, np.ones(k) / k, mode="valid")
    return (x * gain).astype(np.float32)


@dataclass
class DetectorScore:
    """Frame-level agreement of a detector with the clean reference activity."""

    detector: str
    accuracy: float
    precision: float
    recall: float
    f1: float


def score_activity(pred: np.ndarray, ref: np.ndarray, name: str = "") -> DetectorScore:
    """Accuracy, precision, recall and F1 of ``pred`` against ``ref`` (same length bools)."""
    n = min(len(pred), len(ref))
    p, r = np.asarray(pred[:n], bool), np.asarray(ref[:n], bool)
    tp = float(np.sum(p & r))
    prec = tp / max(1.0, float(p.sum()))
    rec = tp / max(1.0, float(r.sum()))
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return DetectorScore(name, float(np.mean(p == r)) if n else 0.0, prec, rec, f1)


def compare_detectors(pairs, sample_rate: int = SAMPLE_RATE, frame_ms: int = 30) -> list[DetectorScore]:
    """Mean agreement of each detector on noisy inputs with the clean reference activity.

    ``pairs``: iterable of ``(noisy (T,), clean (T,))`` arrays at ``sample_rate``. Rows for
    energy and WebRTC aggressiveness 0-3 (WebRTC skipped if not installed).
    """
    configs: list[tuple[str, dict]] = [("energy", {})]
    try:
        import webrtcvad  # noqa: F401
        configs += [(f"webrtc-{a}", {"aggressiveness": a}) for a in range(4)]
    except ImportError:
        pass
    sums = {name: np.zeros(4) for name, _ in configs}
    count = 0
    for noisy, clean in pairs:
        ref = reference_activity(clean, sample_rate, frame_ms)
        for name, kw in configs:
            det = "energy" if name == "energy" else "webrtc"
            s = score_activity(detect_speech(noisy, sample_rate, det, frame_ms, **kw), ref)
            sums[name] += [s.accuracy, s.precision, s.recall, s.f1]
        count += 1
    if count == 0:
        raise VADError("compare_detectors got no pairs")
    return [DetectorScore(name, *(sums[name] / count)) for name, _ in configs]


def speech_only_scores(clean, enhanced, active: np.ndarray, sample_rate: int = SAMPLE_RATE,
                       frame_ms: int = 30) -> dict:
    """SI-SDR (dB) and STOI over the speech frames only (samples where ``active``).

    Returns ``{"si_sdr": float, "stoi": float or None, "speech_fraction": float}``. SI-SDR is
    ``templates.metrics.si_sdr`` and NaN without speech samples; STOI is
    ``templates.metrics.stoi_score`` and None when fewer than ~0.4 s of speech remain or pystoi
    finds too few non-silent frames in them (it would otherwise return 1e-5).
    """
    import torch

    from templates.metrics import MetricSkipped, si_sdr, stoi_score

    ref, est = _as_mono(clean), _as_mono(enhanced)
    n = min(len(ref), len(est))
    mask = frames_to_samples(active, n, sample_rate, frame_ms)
    r, e = ref[:n][mask], est[:n][mask]
    out = {"si_sdr": float("nan"), "stoi": None, "speech_fraction": float(mask.mean()) if n else 0.0}
    if len(r) == 0:
        return out
    out["si_sdr"] = float(si_sdr(torch.from_numpy(e), torch.from_numpy(r))[0])
    if len(r) >= int(0.4 * sample_rate):
        try:
            out["stoi"] = stoi_score(r, e, sample_rate)
        except MetricSkipped:
            pass
    return out
