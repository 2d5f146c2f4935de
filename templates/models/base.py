"""Masking-model base: STFT -> masker -> mask application -> inverse STFT.

Modelled on asteroid's `BaseEncoderMaskerDecoder` (`asteroid/models/base_models.py`): the four
steps are separate, and a new model overrides only `masker`. Everything a plot or an export
needs (the noisy spectrum, its magnitude, the mask, the enhanced spectrum) is reachable through
`enhance_spec`.

Magnitude compression. Maskers receive the raw magnitude |X| (B, 1, F, N) and compress it first
with `compress_magnitude` (default `"power"`: |X| ** 0.3). Raw STFT magnitudes of speech span
about 80 dB (1e-4 .. 1e2 for [-1, 1] audio), so a linear input lets a few loud low-frequency
bins dominate every convolution and LayerNorm. The 0.3 power law (used by GTCRN and the
compressed-spectrum SE literature) shrinks that to about 24 dB, is scale-covariant (a level
change becomes one multiplicative factor, which BatchNorm/LayerNorm absorb, unlike log1p whose
behaviour switches from linear to logarithmic around |X| = 1 depending on the recording level),
and keeps quiet high-frequency bins visible to the network. The mask is still applied to the
uncompressed complex spectrum, so the inverse stays exact. `"log1p"` and `"none"` (the seed's
raw input) remain available through the constructor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from templates.stft import STFTFrontEnd

MAG_COMPRESSIONS = ("power", "log1p", "none")


def compress_magnitude(mag: torch.Tensor, mode: str = "power") -> torch.Tensor:
    """Dynamic-range compression of a non-negative magnitude tensor (any shape).

    `"power"`: mag ** 0.3 (clamped at 1e-8 so the gradient stays finite at silent bins);
    `"log1p"`: log(1 + mag); `"none"`: unchanged.
    """
    if mode == "power":
        return mag.clamp_min(1e-8) ** 0.3
    if mode == "log1p":
        return torch.log1p(mag)
    if mode == "none":
        return mag
    raise ValueError(f"unknown magnitude compression {mode!r}; choose one of {MAG_COMPRESSIONS}")


class MaskingModel(nn.Module):
    """A speech enhancer that predicts a real mask for the noisy complex STFT.

    Subclasses implement `masker` (and list their sub-modules in `parts` for parameter
    accounting); the STFT, mask application and inverse live here.

    Args:
        n_fft: FFT size of the front end (F = n_fft // 2 + 1 bins).
        hop: hop length of the front end.
        compress: magnitude compression applied inside the masker, one of `MAG_COMPRESSIONS`.
    """

    #: Epochs of linear learning-rate warmup the trainer should apply for this model.
    default_warmup_epochs: int = 0
    #: Registry name, set by `templates.models.registry.register_model`.
    model_name: str = ""

    def __init__(self, n_fft: int = 512, hop: int = 256, compress: str = "power") -> None:
        super().__init__()
        if compress not in MAG_COMPRESSIONS:
            raise ValueError(
                f"unknown magnitude compression {compress!r}; choose one of {MAG_COMPRESSIONS}"
            )
        self.front_end = STFTFrontEnd(n_fft=n_fft, hop=hop)
        self.compress = compress
        self._config: dict[str, Any] = {"n_fft": int(n_fft), "hop": int(hop), "compress": compress}

    # ---- configuration -------------------------------------------------------------------
    def _record_config(self, **kwargs: Any) -> None:
        """Subclasses call this with their own constructor arguments (JSON-friendly values)."""
        for key, value in kwargs.items():
            self._config[key] = list(value) if isinstance(value, tuple) else value

    def get_config(self) -> dict[str, Any]:
        """Constructor kwargs: `type(model)(**model.get_config())` rebuilds the architecture."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._config.items()}

    @property
    def n_freq(self) -> int:
        """Frequency bins F of the front end."""
        return self.front_end.n_freq

    def parts(self) -> dict[str, nn.Module]:
        """Named sub-modules for `parameter_split` (encoder / core / decoder); override."""
        return {}

    # ---- the four steps ------------------------------------------------------------------
    def masker(self, mag: torch.Tensor) -> torch.Tensor:
        """Predict a mask from a magnitude: (B, 1, F, N) -> (B, F, N). Subclasses override."""
        raise NotImplementedError(f"{type(self).__name__} must implement masker()")

    def _check_masker_input(self, mag: torch.Tensor) -> None:
        if mag.dim() != 4 or mag.shape[1] != 1 or mag.shape[2] != self.n_freq:
            raise ValueError(
                f"{type(self).__name__}.masker expects a magnitude of shape "
                f"(B, 1, {self.n_freq}, N), got shape {tuple(mag.shape)}"
            )

    def enhance_spec(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run analysis, masker and mask application without the inverse.

        Args:
            wav: (B, T) noisy waveform.
        Returns:
            dict with `spec` (B, F, N) complex noisy spectrum, `mag` (B, F, N) its magnitude,
            `mask` (B, F, N) the predicted mask, `enhanced_spec` (B, F, N) complex.
        """
        spec = self.front_end.stft(wav)  # B, F, N complex
        mag = self.front_end.magnitude(spec)  # B, F, N
        mask = self.masker(mag.unsqueeze(1))  # B, F, N
        if mask.shape != spec.shape:
            raise ValueError(
                f"{type(self).__name__}.masker returned shape {tuple(mask.shape)}, "
                f"expected {tuple(spec.shape)}"
            )
        enhanced = self.front_end.apply_mask(spec, mask)  # B, F, N complex
        return {"spec": spec, "mag": mag, "mask": mask, "enhanced_spec": enhanced}

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Enhance a batch of waveforms.

        Args:
            wav: (B, T) noisy waveform, any T > n_fft // 2.
        Returns:
            (B, T) enhanced waveform of exactly the input length.
        """
        self.front_end.check_waveform(wav)
        out = self.enhance_spec(wav)
        return self.front_end.istft(out["enhanced_spec"], length=wav.shape[-1])  # B, T
