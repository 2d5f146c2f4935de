"""Training losses on waveforms: `build_loss(name)(est (B, T), clean (B, T)) -> scalar`.

- `"mag_l1"` (default): L1 between power-compressed STFT magnitudes of the enhanced and clean
  waveforms, through the models' own front end (n_fft 512, hop 256), each utterance normalised by
  the clean signal's level. See `MagL1Loss` for the calibration.
- `"si_sdr"`: negative scale-invariant SDR in dB, averaged over the batch (computed by a
  private helper, so this module does not depend on templates/metrics.py, which comes later in
  the notebook).
- `"mrstft"`: multi-resolution STFT loss (spectral convergence + log-magnitude L1) over
  3 resolutions, as in Parallel WaveGAN.
- `"hybrid"`: compressed-magnitude MSE + compressed-complex MSE + a small SI-SDR term, the
  phase-aware loss of GTCRN / MP-SENet / CMGAN-style models (see `HybridLoss`).
All are differentiable in `est`. `mag_l1` and `mrstft` are 0 for est == clean and positive
otherwise; `si_sdr` reads minus the metric, so it is lowest (about -100 dB) at identity, and
`hybrid` carries a share of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from templates.config import LOSS_NAMES  # noqa: F401  (the names are config's to check)
from templates.stft import STFTFrontEnd


def _check_loss_inputs(est: torch.Tensor, clean: torch.Tensor, name: str) -> None:
    if est.dim() != 2 or est.shape != clean.shape:
        raise ValueError(
            f"{name}: expected est and clean of the same shape (B, T), got "
            f"{tuple(est.shape)} and {tuple(clean.shape)}"
        )


class MagL1Loss(nn.Module):
    """Mean |c(|E| / s) - c(|C| / s)| * scale with c(x) = x ** 0.3 and s per utterance.

    `s = rms(clean) * sqrt(sum(window ** 2))` makes the loss independent of the recording level
    (a unit-RMS white signal has per-bin magnitude about 1 after it) and cannot be gamed by
    scaling the estimate. The 0.3 power compresses the 80 dB range of speech magnitudes so quiet
    high-frequency bins and pauses count, the same weighting the maskers see (templates/models/
    base.py). `scale` only sets the reading, Adam being invariant to it: 0.25 puts noisy-vs-clean
    at the scale of the magnitude-L1 losses in earlier training logs (validation about 0.05
    after training, 0.100 at a plateau).

    Calibration (3 s synthetic speech-like signals: harmonic voiced segments with formants,
    fricative bursts, syllabic envelope and pauses, 4 utterances per cell), noisy-vs-clean loss:
    0 dB: white 0.140, pink 0.118, babble 0.071; 5 dB: 0.110, 0.091, 0.054;
    10 dB: 0.084, 0.069, 0.042; mean over the 9 cells 0.086. Identity is exactly 0.
    """

    def __init__(self, n_fft: int = 512, hop: int = 256, power: float = 0.3, scale: float = 0.25):
        super().__init__()
        self.front_end = STFTFrontEnd(n_fft=n_fft, hop=hop)
        self.power = float(power)
        self.scale = float(scale)
        self._window_norm = math.sqrt(float(self.front_end.window.pow(2).sum()))

    def forward(self, est: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """est, clean: (B, T) -> scalar loss (mean over batch, bins and frames)."""
        _check_loss_inputs(est, clean, "mag_l1")
        level = clean.float().pow(2).mean(dim=-1).sqrt().clamp_min(1e-5) * self._window_norm
        level = level.detach()[:, None, None]  # B, 1, 1
        est_mag = self.front_end.stft(est).abs() / level  # B, F, N
        clean_mag = self.front_end.stft(clean).abs() / level  # B, F, N
        est_c = est_mag.clamp_min(1e-8) ** self.power
        clean_c = clean_mag.clamp_min(1e-8) ** self.power
        return (est_c - clean_c).abs().mean() * self.scale


def _si_sdr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """SI-SDR in dB per utterance: (B, T), (B, T) -> (B,). Means removed, as in the metric."""
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * ref  # B, T
    residual = est - target  # B, T
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (residual.pow(2).sum(-1) + eps))


class SISDRLoss(nn.Module):
    """Negative SI-SDR in dB, averaged over the batch: the reading is minus the metric.

    Unlike the two spectral losses this one is not 0 at identity: SI-SDR of a perfect estimate
    is bounded only by `eps` (about +100 dB for speech-level signals), so the loss reaches about
    -100 there, and it is negative whenever the estimate beats 0 dB. Keeping it equal to minus
    the reported metric (e.g. -8.6 for a CRN at 8.6 dB SI-SDR) was preferred over shifting it.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, est: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """est, clean: (B, T) -> scalar loss in dB."""
        _check_loss_inputs(est, clean, "si_sdr")
        return -_si_sdr(est.float(), clean.float(), self.eps).mean()


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over STFT resolutions.

    Per resolution: SC = ||C| - |E||_F / ||C||_F (per utterance) and
    LM = mean |log(|C| + eps) - log(|E| + eps)|; the loss is the mean of SC + LM over
    `resolutions` ((n_fft, hop) pairs: 256/64, 512/128, 1024/256 by default, spanning 16 to
    64 ms windows so both transients and harmonics are scored).
    """

    def __init__(
        self,
        resolutions: Sequence[tuple[int, int]] = ((256, 64), (512, 128), (1024, 256)),
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.front_ends = nn.ModuleList(STFTFrontEnd(n, h) for n, h in resolutions)
        self.eps = float(eps)

    def forward(self, est: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """est, clean: (B, T) -> scalar loss."""
        _check_loss_inputs(est, clean, "mrstft")
        total = est.new_zeros((), dtype=torch.float32)
        for fe in self.front_ends:
            est_mag = fe.stft(est).abs()  # B, F, N
            clean_mag = fe.stft(clean).abs()  # B, F, N
            diff = (clean_mag - est_mag).flatten(1).norm(dim=-1)  # B
            ref = clean_mag.flatten(1).norm(dim=-1).clamp_min(self.eps)  # B
            sc = (diff / ref).mean()
            lm = (torch.log(clean_mag + self.eps) - torch.log(est_mag + self.eps)).abs().mean()
            total = total + sc + lm
        return total / len(self.front_ends)


class HybridLoss(nn.Module):
    """Phase-aware loss: w_mag * MSE(c|E|, c|C|) + w_cplx * MSE(cE, cC) - w_sisdr * SI-SDR / 10.

    With the level `s` of `MagL1Loss` (clean RMS times the window norm, per utterance),
    c|X| = (|X| / s) ** 0.3 and cX = c|X| * X / |X| (the complex spectrum with its magnitude
    compressed and its phase kept), both through the models' own front end, computed on the
    STFT of the output waveform (a consistent spectrum, as GTCRN's loss does). The complex term
    is what scores phase: a magnitude-only loss is blind to it, so a complex ratio mask trained
    on `mag_l1` has no reason to correct the noisy phase. Weights follow GTCRN's hybrid loss
    (magnitude 0.7, complex 0.3, SI-SDR in tenths of dB, as its -log10 energy ratio) with the
    SI-SDR weight set to 0.1 so that it is the secondary term: for speech in white noise the
    weighted MSE terms fall by about 0.37 from 0 to 10 dB SNR (magnitude MSE 0.59 -> 0.27,
    complex MSE 0.88 -> 0.41), the SI-SDR term by 0.1. Identity gives about -w_sisdr * 10
    (SI-SDR about +100 dB), so the loss is lowest there.
    """

    def __init__(self, n_fft: int = 512, hop: int = 256, power: float = 0.3,
                 mag_weight: float = 0.7, cplx_weight: float = 0.3, sisdr_weight: float = 0.1):
        super().__init__()
        self.front_end = STFTFrontEnd(n_fft=n_fft, hop=hop)
        self.power = float(power)
        self.weights = (float(mag_weight), float(cplx_weight), float(sisdr_weight))
        self._window_norm = math.sqrt(float(self.front_end.window.pow(2).sum()))

    def _compressed(self, wav: torch.Tensor, level: torch.Tensor):
        spec = self.front_end.stft(wav) / level  # B, F, N complex
        mag = spec.abs().clamp_min(1e-8)  # B, F, N
        cmag = mag**self.power
        return cmag, spec * (cmag / mag)  # B, F, N real; B, F, N complex

    def forward(self, est: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """est, clean: (B, T) -> scalar loss."""
        _check_loss_inputs(est, clean, "hybrid")
        est, clean = est.float(), clean.float()
        level = clean.pow(2).mean(dim=-1).sqrt().clamp_min(1e-5) * self._window_norm
        level = level.detach()[:, None, None]  # B, 1, 1
        est_mag, est_c = self._compressed(est, level)
        clean_mag, clean_c = self._compressed(clean, level)
        w_mag, w_cplx, w_sisdr = self.weights
        loss = w_mag * (est_mag - clean_mag).pow(2).mean()
        loss = loss + w_cplx * (est_c - clean_c).abs().pow(2).mean()
        if w_sisdr:
            loss = loss - w_sisdr * _si_sdr(est, clean).mean() / 10
        return loss


def build_loss(name: str = "mag_l1") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Loss module by name (`LOSS_NAMES`); call it as `loss(est (B, T), clean (B, T))`."""
    if name == "mag_l1":
        return MagL1Loss()
    if name == "si_sdr":
        return SISDRLoss()
    if name == "mrstft":
        return MultiResolutionSTFTLoss()
    if name == "hybrid":
        return HybridLoss()
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
