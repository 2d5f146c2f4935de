"""Peers: the enhancers a user would run instead of training a model, on one (T,) waveform.

`PEERS` maps a row name to `fn(noisy (T,) float64, sample_rate) -> enhanced (T,) float64` of the
same length, so a benchmark (or a notebook's evaluation) scores them with the very scorer and
files it uses for its own models (`templates.metrics.score_pairs`):

- `"noisy"`: the input unchanged (the floor every row is measured against);
- `"wiener"`: a classical single-channel Wiener filter implemented here: minimum-statistics
  noise estimate and decision-directed a-priori SNR (`wiener_enhance`);
- `"noisereduce"`: the `noisereduce` package's non-stationary spectral gating (pip install
  noisereduce);
- `"rnnoise"`: Xiph's RNNoise (a small GRU network trained on real noise, the open model people
  ship in voice chat) through the `pyrnnoise` package's bundled library (pip install pyrnnoise).
The optional packages are the `peers` extra in pyproject.toml; each is imported when its peer
runs, and `PeerUnavailable` names what to install.
"""

import math

import numpy as np
from scipy.signal import istft, resample_poly, stft

from compat.sample_rate import SAMPLE_RATE


class PeerUnavailable(RuntimeError):
    """A peer's package is not installed; the message says what to pip install."""


def _check(wav) -> np.ndarray:
    arr = np.asarray(wav, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"peers take a 1-D waveform (T,), got shape {arr.shape}")
    return arr


def noisy_passthrough(wav, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The noisy input itself: (T,) -> (T,)."""
    return _check(wav).copy()


def _running_min(power: np.ndarray, frames: int) -> np.ndarray:
    """Per-bin minimum over the last `frames` frames: (F, N) -> (F, N)."""
    out = np.empty_like(power)
    for n in range(power.shape[1]):
        out[:, n] = power[:, max(0, n - frames + 1):n + 1].min(axis=1)
    return out


def wiener_enhance(wav, sample_rate: int = SAMPLE_RATE, n_fft: int = 512, hop: int = 256,
                   min_window_s: float = 1.5, alpha: float = 0.98,
                   gain_floor: float = 0.1) -> np.ndarray:
    """Wiener filter with a minimum-statistics noise estimate: (T,) -> (T,).

    Noise power per bin: the recursively smoothed periodogram's minimum over the last
    `min_window_s` seconds, times 1.5 to undo the minimum's bias (Martin 2001, simplified:
    fixed smoothing and bias). A-priori SNR by the decision-directed rule (Ephraim & Malah 1984,
    `alpha` 0.98), gain xi / (1 + xi) floored at `gain_floor` (-20 dB) to limit musical noise;
    the noisy phase is kept. Causal except for the STFT window; no training.
    """
    x = _check(wav)
    if len(x) <= n_fft:
        return x.copy()
    _, _, spec = stft(x, fs=sample_rate, window="hann", nperseg=n_fft, noverlap=n_fft - hop,
                      boundary="zeros", padded=True)  # F, N complex
    power = np.abs(spec) ** 2
    smooth = np.empty_like(power)
    acc = power[:, 0]
    for n in range(power.shape[1]):
        acc = 0.8 * acc + 0.2 * power[:, n]
        smooth[:, n] = acc
    frames = max(1, int(round(min_window_s * sample_rate / hop)))
    noise = 1.5 * _running_min(smooth, frames) + 1e-12  # F, N
    gains = np.empty_like(power)
    prev_clean = np.zeros(power.shape[0])
    for n in range(power.shape[1]):
        gamma = power[:, n] / noise[:, n]  # a-posteriori SNR
        xi = alpha * prev_clean / noise[:, n] + (1 - alpha) * np.maximum(gamma - 1.0, 0.0)
        gain = np.maximum(xi / (1.0 + xi), gain_floor)
        gains[:, n] = gain
        prev_clean = (gain ** 2) * power[:, n]
    _, out = istft(spec * gains, fs=sample_rate, window="hann", nperseg=n_fft,
                   noverlap=n_fft - hop, boundary=True)
    out = np.asarray(out, dtype=np.float64)[: len(x)]
    return np.pad(out, (0, len(x) - len(out)))


def noisereduce_enhance(wav, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`noisereduce.reduce_noise` with its defaults (non-stationary spectral gating)."""
    try:
        import noisereduce
    except ImportError as exc:
        raise PeerUnavailable("the noisereduce peer needs: pip install noisereduce") from exc
    x = _check(wav)
    out = np.asarray(noisereduce.reduce_noise(y=x, sr=int(sample_rate)), dtype=np.float64)
    return out[: len(x)]


#: RNNoise works at 48 kHz in 480-sample frames; its output lags the input by two frames.
RNNOISE_RATE = 48000
RNNOISE_DELAY_FRAMES = 2


def rnnoise_enhance(wav, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """RNNoise through pyrnnoise's bundled librnnoise: (T,) -> (T,), delay compensated.

    Resamples to 48 kHz (polyphase, zero phase), feeds 480-sample frames at 16-bit scale to
    `rnnoise_process_frame`, drops the library's fixed two-frame (20 ms) delay so the output is
    sample-aligned with the input (SI-SDR would otherwise score the shift), and resamples back.
    Calls the C library directly: pyrnnoise's file API reads through ffmpeg.
    """
    try:
        import ctypes

        from pyrnnoise import rnnoise as _rnn
    except (ImportError, OSError) as exc:
        raise PeerUnavailable(f"the rnnoise peer needs: pip install pyrnnoise ({exc})") from exc
    x = _check(wav)
    g = math.gcd(int(sample_rate), RNNOISE_RATE)
    up, down = RNNOISE_RATE // g, int(sample_rate) // g
    x48 = resample_poly(x, up, down) * 32768.0
    frame = int(_rnn.FRAME_SIZE)
    delay = RNNOISE_DELAY_FRAMES * frame
    total = len(x48) + delay
    padded = np.zeros(total + (-total) % frame, dtype=np.float32)
    padded[: len(x48)] = x48
    state = _rnn.create()
    try:
        for start in range(0, len(padded), frame):
            buf = np.ascontiguousarray(padded[start:start + frame])
            ptr = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            _rnn.lib.rnnoise_process_frame(state, ptr, ptr)
            padded[start:start + frame] = buf
    finally:
        _rnn.destroy(state)
    y48 = padded[delay:delay + len(x48)].astype(np.float64) / 32768.0
    out = resample_poly(y48, down, up)[: len(x)]
    return np.pad(out, (0, len(x) - len(out)))


PEERS = {
    "noisy": noisy_passthrough,
    "wiener": wiener_enhance,
    "noisereduce": noisereduce_enhance,
    "rnnoise": rnnoise_enhance,
}
