"""STFT front end shared by every masking model: analysis, mask application, exact inverse.

The networks never see a waveform: they get magnitudes from here and return a mask, and this
module turns the masked complex spectrum back into a waveform of the original length. Keeping the
transform outside the networks (asteroid's encoder/masker/decoder split) means CRN and DPT differ
only in their maskers, and the losses use the very same transform.

Defaults: n_fft 512, hop 256, periodic Hann window, 257 bins, `center=True`, so
3 s at 16 kHz (48,000 samples) gives 1 + 48000 // 256 = 188 frames.
"""

from __future__ import annotations

import torch
from torch import nn


class STFTFrontEnd(nn.Module):
    """Analysis/synthesis pair with a Hann window kept as a (non-persistent) buffer.

    The window follows the module across devices (`.to(device)`) but is not written to
    checkpoints, so state_dicts hold only trainable weights and BN statistics.

    Args:
        n_fft: FFT size; the number of frequency bins is `n_fft // 2 + 1`.
        hop: hop length in samples. With a Hann window and `hop <= n_fft // 2` the overlap-add
            condition holds, so `istft(stft(x), length=T)` returns `x` to float precision.
    """

    def __init__(self, n_fft: int = 512, hop: int = 256) -> None:
        super().__init__()
        if n_fft <= 0 or hop <= 0 or hop > n_fft // 2:
            raise ValueError(
                f"STFTFrontEnd: need n_fft > 0 and 0 < hop <= n_fft // 2 for an exact inverse, "
                f"got n_fft={n_fft}, hop={hop}"
            )
        self.n_fft = int(n_fft)
        self.hop = int(hop)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    @property
    def n_freq(self) -> int:
        """Number of frequency bins F (257 for n_fft 512)."""
        return self.n_fft // 2 + 1

    def tail_padding(self, length: int) -> int:
        """Zeros appended before analysis so the last samples stay well conditioned.

        With `center=True`, samples past the last frame centre are covered only by that frame's
        falling half window. When `length % hop` exceeds hop / 2 the final samples sit where the
        Hann window is close to zero (about 1e-3 at 6 samples from its end), `istft` divides by
        that tiny envelope, and any mask turns into a loud click at the end of the file (the
        plain round trip already loses 6e-5 at 16,123 samples). Padding to the next hop multiple
        in that case keeps the envelope above 0.5 everywhere; lengths with a remainder of at
        most hop / 2 (48,000 samples: 188 frames) are left unchanged.
        """
        rem = int(length) % self.hop
        return self.hop - rem if rem > self.hop // 2 else 0

    def num_frames(self, length: int) -> int:
        """Frames N that `stft` produces for `length` samples."""
        return 1 + (int(length) + self.tail_padding(length)) // self.hop

    def check_waveform(self, wav: torch.Tensor) -> None:
        """Raise `ValueError` unless `wav` is a float (B, T) batch long enough to analyse."""
        if wav.dim() != 2:
            hint = " (drop the channel axis: wav.squeeze(1))" if wav.dim() == 3 else ""
            raise ValueError(
                f"expected a waveform batch of shape (B, T), got shape {tuple(wav.shape)}{hint}"
            )
        if wav.shape[-1] <= self.n_fft // 2:
            # center=True reflect-pads n_fft // 2 samples, which needs a longer signal.
            raise ValueError(
                f"waveform too short: {wav.shape[-1]} samples, need more than {self.n_fft // 2} "
                f"for n_fft={self.n_fft}"
            )
        if not torch.is_floating_point(wav):
            raise ValueError(f"expected a floating-point waveform, got dtype {wav.dtype}")

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """Complex spectrum of a waveform batch.

        Args:
            wav: (B, T) float waveform.
        Returns:
            (B, F, N) complex64 spectrum, F = n_fft // 2 + 1, N = `num_frames(T)`
            (1 + T // hop when T % hop <= hop / 2, one more frame otherwise).
        """
        self.check_waveform(wav)
        pad = self.tail_padding(wav.shape[-1])
        if pad:
            wav = nn.functional.pad(wav, (0, pad))  # B, T + pad
        # float32 even under AMP: cuFFT half precision needs power-of-two sizes and loses range.
        return torch.stft(
            wav.float(),
            n_fft=self.n_fft,
            hop_length=self.hop,
            window=self.window.to(wav.device),
            center=True,
            return_complex=True,
        )  # B, F, N

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Waveform of exactly `length` samples from a (B, F, N) complex spectrum -> (B, T)."""
        if spec.dim() != 3 or not torch.is_complex(spec):
            raise ValueError(
                f"istft expects a complex spectrum of shape (B, F, N), got shape "
                f"{tuple(spec.shape)} dtype {spec.dtype}"
            )
        if spec.shape[1] != self.n_freq:
            raise ValueError(
                f"istft expects {self.n_freq} frequency bins (n_fft={self.n_fft}), "
                f"got shape {tuple(spec.shape)}"
            )
        return torch.istft(
            spec,
            n_fft=self.n_fft,
            hop_length=self.hop,
            window=self.window.to(spec.device),
            center=True,
            length=int(length),
        )  # B, T

    @staticmethod
    def magnitude(spec: torch.Tensor) -> torch.Tensor:
        """|spec|: (B, F, N) complex -> (B, F, N) real, non-negative."""
        return spec.abs()

    @staticmethod
    def apply_mask(spec: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Multiply each complex bin by a mask: a real one keeps the noisy phase, a complex
        ratio mask also rotates it.

        Args:
            spec: (B, F, N) complex spectrum.
            mask: (B, F, N) real mask (typically in [0, 1]) or complex ratio mask.
        Returns:
            (B, F, N) complex enhanced spectrum.
        """
        if mask.shape != spec.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match spectrum shape {tuple(spec.shape)}"
            )
        if torch.is_complex(mask):
            return spec * mask.to(spec.dtype)
        # An AMP masker returns float16; complex64 * float16 would still promote, but be explicit.
        return spec * mask.to(spec.real.dtype)
