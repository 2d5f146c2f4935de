"""Audio I/O that survives moving library versions.

Kaggle's newer torchaudio removed ``torchaudio.info``, and decoding a
17-24 s file to learn its length or to cut a 3 s crop wastes most of an epoch's I/O. So:

- ``audio_info`` reads the header only: soundfile, else ``torchaudio.info`` where it still exists,
  else the stdlib ``wave`` header for ``.wav``.
- ``load_audio`` reads only the requested span (soundfile seeks), resamples and downmixes.
- ``save_audio`` writes 16-bit PCM wav, with soundfile or the stdlib.

Backends are looked up at call time through ``_audio_backend`` so a missing or changed library is
handled where it matters, and tests can substitute fake modules.
"""

import importlib
import math
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from compat.sample_rate import SAMPLE_RATE


class AudioReadError(OSError):
    """A file that cannot be read; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: cannot read: {self.reason}")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of one audio file.

    ``subtype`` is the sample encoding in soundfile's names ("PCM_16", "PCM_24", "FLOAT",
    "DOUBLE", ...), or None where the backend does not say. Only "FLOAT" and "DOUBLE" files can
    hold NaN or Inf samples. It is left out of ``==`` so two headers with the same shape compare
    equal whichever backend read them.
    """

    frames: int
    sample_rate: int
    channels: int
    subtype: str | None = field(default=None, compare=False)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _audio_backend(name: str):
    """The module ``name`` ("soundfile" or "torchaudio"), or None when it cannot be imported.

    Imported at call time (not at module import) so the notebook works with whichever of the
    two the image ships, and tests can replace this function to simulate library generations.
    """
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a broken native library (OSError) behind it
        return None


# Float encodings: the only ones whose samples can be NaN or Inf.
AUDIO_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


def _wave_header_info(path: Path) -> AudioInfo:
    """Header of a PCM wav through the stdlib (no decoding; it reads integer PCM only)."""
    with wave.open(str(path), "rb") as w:
        width = w.getsampwidth()
        subtype = "PCM_U8" if width == 1 else f"PCM_{8 * width}"
        return AudioInfo(
            frames=w.getnframes(), sample_rate=w.getframerate(), channels=w.getnchannels(), subtype=subtype
        )


def _torchaudio_subtype(meta) -> str | None:
    """soundfile's subtype name for a ``torchaudio.info`` result (``encoding``, ``bits_per_sample``)."""
    enc = str(getattr(meta, "encoding", "") or "").upper()
    bits = int(getattr(meta, "bits_per_sample", 0) or 0)
    if enc == "PCM_F":
        return {32: "FLOAT", 64: "DOUBLE"}.get(bits)
    if enc == "PCM_S" and bits in (16, 24, 32):
        return f"PCM_{bits}"
    if enc == "PCM_U" and bits == 8:
        return "PCM_U8"
    return {"ULAW": "ULAW", "ALAW": "ALAW", "VORBIS": "VORBIS"}.get(enc)


def audio_info(path) -> AudioInfo:
    """Frames, sample rate, channels and subtype of ``path`` from its header, without decoding.

    Raises ``AudioReadError`` naming the file when the header cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(path, "no such file")
    sf = _audio_backend("soundfile")
    try:
        if sf is not None:
            i = sf.info(str(path))
            return AudioInfo(
                frames=int(i.frames), sample_rate=int(i.samplerate), channels=int(i.channels),
                subtype=getattr(i, "subtype", None) or None,
            )
        ta = _audio_backend("torchaudio")
        if ta is not None and hasattr(ta, "info"):
            i = ta.info(str(path))
            return AudioInfo(
                frames=int(i.num_frames), sample_rate=int(i.sample_rate), channels=int(i.num_channels),
                subtype=_torchaudio_subtype(i),
            )
        if path.suffix.lower() == ".wav":
            return _wave_header_info(path)
    except AudioReadError:
        raise
    except Exception as e:  # every backend has its own error types; name the file either way
        raise AudioReadError(path, f"{type(e).__name__}: {e}") from e
    raise AudioReadError(
        path, "reading this header needs soundfile (pip install soundfile) or a torchaudio with info()"
    )


def _resample_plan(src_rate: int, dst_rate: int) -> tuple[int, int, int]:
    """(up, down, margin): polyphase factors and the input samples the filter reaches each side.

    scipy's ``resample_poly`` uses a FIR of half length ``10 * max(up, down)`` at the upsampled
    rate; ``margin`` input samples around a span make a crop identical to the same span of the
    whole file resampled.
    """
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    margin = math.ceil(10 * max(up, down) / up) + 1
    return up, down, margin


def _to_mono_float32(x: np.ndarray) -> np.ndarray:
    """(frames, channels) or (frames,) -> (frames,) float32; channels averaged."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    return np.ascontiguousarray(x, dtype=np.float32)


def _read_span_soundfile(sf, path: Path, start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) at the file's rate, (frames, channels) float32; seeks, no full decode."""
    data, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    return data


def _read_span_torchaudio(ta, path: Path, start: int, stop: int | None) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and the file's rate, through ``torchaudio.load``."""
    num = -1 if stop is None else max(0, stop - start)
    try:
        wav, sr = ta.load(str(path), frame_offset=start, num_frames=num)  # (C, T)
    except TypeError:  # a generation without partial-read arguments: decode, then slice
        wav, sr = ta.load(str(path))
        wav = wav[:, start:] if stop is None else wav[:, start:stop]
    return wav.detach().cpu().numpy().astype(np.float32).T, int(sr)


def load_audio(path, sample_rate: int = SAMPLE_RATE, offset: int = 0, frames: int | None = None) -> torch.Tensor:
    """Mono float32 waveform ``(samples,)`` at ``sample_rate``, reading only the requested span.

    ``offset`` and ``frames`` count samples at the TARGET rate; they are converted to the file's
    rate, so a crop of an 8 kHz file matches the same crop of its 16 kHz resampled whole.
    ``frames=None`` reads to the end. The result is shorter than ``frames`` when the file ends
    first (callers pad). Channels are averaged; a different file rate is resampled with
    ``scipy.signal.resample_poly``. Raises ``AudioReadError`` naming the file.
    """
    path = Path(path)
    if offset < 0:
        raise ValueError(f"{path}: offset must be >= 0, got {offset}")
    if frames is not None and frames < 0:
        raise ValueError(f"{path}: frames must be >= 0 or None, got {frames}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    if frames == 0:
        return torch.zeros(0, dtype=torch.float32)
    sf = _audio_backend("soundfile")
    ta = None if sf is not None else _audio_backend("torchaudio")
    if sf is None and ta is None:
        raise AudioReadError(path, "no audio backend: pip install soundfile")
    if not path.is_file():
        raise AudioReadError(path, "no such file")

    try:
        info = None
        if sf is None and (offset or frames is not None):
            try:
                info = audio_info(path)
            except AudioReadError:
                info = None  # no header reader for this format here: decode whole, then slice
        if info is None and sf is None:
            data, file_rate = _read_span_torchaudio(ta, path, 0, None)
            up, down, _ = _resample_plan(file_rate, sample_rate)
            j0 = offset
        else:
            info = info or audio_info(path)
            file_rate, n_file = info.sample_rate, info.frames
            up, down, margin = _resample_plan(file_rate, sample_rate)
            if up == down:
                start = min(offset, n_file)
                stop = n_file if frames is None else min(n_file, offset + frames)
                j0 = 0
            else:
                # Span in file samples, widened by the filter's reach, starting on a multiple of
                # `down` so output sample j of the span is exactly global output sample j0 + j.
                lo = max(0, offset * down // up - margin)
                start = (lo // down) * down
                if frames is None:
                    stop = n_file
                else:
                    stop = min(n_file, -(-(offset + frames) * down // up) + margin)
                start = min(start, n_file)
                j0 = offset - start * up // down
            if sf is not None:
                data = _read_span_soundfile(sf, path, start, stop)
            else:
                data, file_rate = _read_span_torchaudio(ta, path, start, stop)
    except AudioReadError:
        raise
    except Exception as e:
        raise AudioReadError(path, f"{type(e).__name__}: {e}") from e

    x = _to_mono_float32(data)  # (n,) at the file's rate
    if up != down and x.size:
        from scipy.signal import resample_poly

        x = resample_poly(x, up, down).astype(np.float32)  # (ceil(n * up / down),)
    x = x[j0:] if frames is None else x[j0 : j0 + frames]
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def save_audio(path, wav, sample_rate: int) -> Path:
    """Write ``wav`` ((T,) mono or (C, T)) as 16-bit PCM wav, creating the parent folder.

    Samples are clipped to [-1, 1] first: libsndfile would otherwise wrap loud peaks around.
    """
    path = Path(path)
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().float().numpy()
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]  # (T, 1)
    elif x.ndim == 2:
        x = x.T  # (C, T) -> (T, C)
    else:
        raise ValueError(f"{path}: expected a (T,) or (C, T) waveform, got shape {tuple(x.shape)}")
    x = np.clip(np.nan_to_num(x), -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf = _audio_backend("soundfile")
    if sf is not None:
        sf.write(str(path), x, int(sample_rate), subtype="PCM_16", format="WAV")
    else:
        pcm = np.round(x * 32767.0).astype("<i2")
        with wave.open(str(path), "wb") as w:
            w.setnchannels(x.shape[1])
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(pcm.tobytes())
    return path
