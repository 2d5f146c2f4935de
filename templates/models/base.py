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
uncompressed complex spectrum, so the inverse stays exact. `"log1p"` and `"none"` (the raw
magnitude) remain available through the constructor.

Output: a real magnitude mask or a complex ratio mask (`output`, recorded in `get_config`).
- `"mask"` (the default): the masker sees |X| (B, 1, F, N) and returns a sigmoid
  mask in [0, 1]; the enhanced spectrum keeps the noisy phase, which caps SI-SDR and PESQ at low
  SNR (the phase error of a bin where noise dominates is never corrected).
- `"crm"`: a complex ratio mask, as in DCCRN / GTCRN. The masker sees |X|, Re X, Im X
  (B, 3, F, N; compressed together, see `compress_features`) and returns a complex mask
  (B, F, N) with real and imaginary parts in (-1, 1) (tanh, as GTCRN's last layer), so it can
  rotate the phase as well as scale the magnitude. Checkpoints written before this option had
  no `output` key in their config; they are `"mask"` models, which stays the constructor's
  default so that they load unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from templates.stft import STFTFrontEnd

MAG_COMPRESSIONS = ("power", "log1p", "none")
#: Masker outputs: a real magnitude mask, or a complex ratio mask.
MASK_OUTPUTS = ("mask", "crm")


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


def compress_features(x: torch.Tensor, mode: str = "power") -> torch.Tensor:
    """Compress masker input features: (B, C, F, N) -> (B, C, F, N), C = 1 or 3.

    Channel 0 is the magnitude |X| (`compress_magnitude`). Channels 1 and 2, when present, are
    Re X and Im X; they are scaled by c(|X|) / |X|, which compresses the complex spectrum's
    magnitude in the same way while keeping its phase.
    """
    mag = x[:, :1]  # B, 1, F, N
    cmag = compress_magnitude(mag, mode)
    if x.shape[1] == 1:
        return cmag
    scale = cmag / mag.clamp_min(1e-8)  # B, 1, F, N
    return torch.cat([cmag, x[:, 1:] * scale], dim=1)


class MaskingModel(nn.Module):
    """A speech enhancer that predicts a (real or complex) mask for the noisy complex STFT.

    Subclasses implement `masker` (and list their sub-modules in `parts` for parameter
    accounting); the STFT, mask application and inverse live here.

    Args:
        n_fft: FFT size of the front end (F = n_fft // 2 + 1 bins).
        hop: hop length of the front end.
        compress: magnitude compression applied inside the masker, one of `MAG_COMPRESSIONS`.
        output: `"mask"` (real sigmoid mask from |X|) or `"crm"` (complex ratio mask from
            |X|, Re X, Im X); see the module docstring.
    """

    #: Epochs of linear learning-rate warmup the trainer should apply for this model.
    default_warmup_epochs: int = 0
    #: Registry name, set by `templates.models.registry.register_model`.
    model_name: str = ""

    def __init__(
        self, n_fft: int = 512, hop: int = 256, compress: str = "power", output: str = "mask"
    ) -> None:
        super().__init__()
        if compress not in MAG_COMPRESSIONS:
            raise ValueError(
                f"unknown magnitude compression {compress!r}; choose one of {MAG_COMPRESSIONS}"
            )
        if output not in MASK_OUTPUTS:
            raise ValueError(f"unknown masker output {output!r}; choose one of {MASK_OUTPUTS}")
        self.front_end = STFTFrontEnd(n_fft=n_fft, hop=hop)
        self.compress = compress
        self.output = output
        self._config: dict[str, Any] = {
            "n_fft": int(n_fft), "hop": int(hop), "compress": compress, "output": output,
        }

    @property
    def in_channels(self) -> int:
        """Masker input channels: 1 (|X|) for `"mask"`, 3 (|X|, Re X, Im X) for `"crm"`."""
        return 3 if self.output == "crm" else 1

    @property
    def out_channels(self) -> int:
        """Channels of the masker's last layer: 1 mask logit, or 2 (real, imag) for `"crm"`."""
        return 2 if self.output == "crm" else 1

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
        """Predict a mask from `masker_input` features: (B, C_in, F, N) -> (B, F, N).

        C_in = `in_channels`; the mask is real for `"mask"`, complex for `"crm"`. Subclasses
        override, compressing with `compress_features` and finishing with `mask_from_logits`.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement masker()")

    def _check_masker_input(self, mag: torch.Tensor) -> None:
        if mag.dim() != 4 or mag.shape[1] != self.in_channels or mag.shape[2] != self.n_freq:
            what = "a magnitude" if self.in_channels == 1 else "features (|X|, Re X, Im X)"
            raise ValueError(
                f"{type(self).__name__}.masker expects {what} of shape "
                f"(B, {self.in_channels}, {self.n_freq}, N), got shape {tuple(mag.shape)}"
            )

    def masker_input(self, spec: torch.Tensor) -> torch.Tensor:
        """Masker features of a complex spectrum: (B, F, N) -> (B, C_in, F, N), uncompressed."""
        mag = self.front_end.magnitude(spec).unsqueeze(1)  # B, 1, F, N
        if self.output != "crm":
            return mag
        return torch.cat([mag, spec.real.unsqueeze(1), spec.imag.unsqueeze(1)], dim=1)

    def mask_from_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The masker's last-layer output (B, out_channels, F, N) -> mask (B, F, N).

        `"mask"`: sigmoid, real in [0, 1]. `"crm"`: tanh(z_re) + j tanh(z_im), complex64, or
        the real pair (B, 2, F, N) while `export_mask_pair` is set (ONNX has no complex
        tensors; `templates.export` sets it on the copy it exports).
        """
        if self.output == "crm":
            z = torch.tanh(z.float())
            if getattr(self, "export_mask_pair", False):
                return z  # B, 2, F, N: real, imag
            return torch.complex(z[:, 0], z[:, 1])  # B, F, N
        return torch.sigmoid(z[:, 0])  # B, F, N

    def enhance_spec(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run analysis, masker and mask application without the inverse.

        Args:
            wav: (B, T) noisy waveform.
        Returns:
            dict with `spec` (B, F, N) complex noisy spectrum, `mag` (B, F, N) its magnitude,
            `mask` (B, F, N) the predicted mask (complex for `"crm"`), `enhanced_spec`
            (B, F, N) complex.
        """
        spec = self.front_end.stft(wav)  # B, F, N complex
        mag = self.front_end.magnitude(spec)  # B, F, N
        mask = self.masker(self.masker_input(spec))  # B, F, N
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
