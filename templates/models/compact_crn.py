"""Compact CRN ("compact_crn"): a ~50k-parameter causal model for real time on one CPU thread.

In the family of GTCRN (Rong et al., ICASSP 2024: grouped temporal convolutions, subband
merging, grouped dual-path RNNs), written for this toolkit's masking interface:

- band merging: the 257 bins become 129 bands, the lowest quarter of the spectrum (bins 0..64,
  0-2 kHz, where pitch harmonics need the resolution) kept bin by bin and bins 65..256 merged
  into 64 ERB-spaced bands by a fixed (not learned) interpolation matrix; the band mask is
  spread back to the 257 bins by the same interpolation, so it stays in [0, 1];
- subband features: each band sees itself and its two neighbours (3 input channels);
- encoder: two strided convolutions along frequency (129 -> 65 -> 33 positions, the second
  grouped), then grouped temporal blocks (grouped 1x1, depthwise causal conv along time with
  growing dilation, grouped 1x1, residual, channel shuffle);
- two dual-path blocks at (C, 33): a grouped bidirectional GRU across the 33 frequency
  positions of ONE frame (no look-ahead in time), then a grouped one-way GRU along time per
  position, each with a linear projection, LayerNorm over (frequency, channel) and a residual;
- decoder: the temporal blocks mirrored with additive encoder skips, two transposed convs back
  to 129 bands, sigmoid, band-to-bin spreading.

Causality and streaming: every time operation looks back only (causal-padded depthwise convs,
one-way GRUs); frequency-only operations see one frame. `_run(features, state)` is the single
code path: `masker` runs it on all N frames from a zero state, `masker_step` on one frame
with the carried state (conv buffers of past frames, GRU hidden states), so the two agree to
float precision. `deploy/streaming.py` drives `masker_step` one 16 ms hop at a time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from compat.sample_rate import SAMPLE_RATE
from templates.models.base import MaskingModel, compress_magnitude
from templates.models.registry import register_model


def _erb(freq_hz: torch.Tensor) -> torch.Tensor:
    """ERB-rate (Glasberg & Moore) of a frequency in Hz."""
    return 21.4 * torch.log10(1.0 + 0.00437 * freq_hz)


def band_spread_matrix(n_freq: int, n_low: int, n_high_bands: int,
                       sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(n_freq, n_low + n_high_bands) weights spreading band values back onto bins.

    Bins below `n_low` map to their own band; each higher bin linearly interpolates the two
    ERB-spaced bands whose centres surround it. Rows sum to 1 (convex combinations).
    """
    if not 0 < n_low < n_freq or n_high_bands < 1:
        raise ValueError(f"band layout: need 0 < n_low ({n_low}) < n_freq ({n_freq}) and "
                         f"n_high_bands ({n_high_bands}) >= 1")
    n_bands = n_low + n_high_bands
    spread = torch.zeros(n_freq, n_bands, dtype=torch.float64)
    spread[torch.arange(n_low), torch.arange(n_low)] = 1.0
    hz = torch.arange(n_freq, dtype=torch.float64) * (sample_rate / 2) / (n_freq - 1)
    lo, hi = _erb(hz[n_low]), _erb(hz[-1])
    width = (hi - lo) / n_high_bands  # ERB units per band; centres at lo + (k + 0.5) width
    pos = ((_erb(hz[n_low:]) - lo) / width - 0.5).clamp(0, n_high_bands - 1)
    k0 = pos.floor().long().clamp(max=n_high_bands - 1)
    k1 = (k0 + 1).clamp(max=n_high_bands - 1)
    frac = pos - k0
    rows = torch.arange(n_low, n_freq)
    spread[rows, n_low + k0] += 1.0 - frac
    spread[rows, n_low + k1] += frac
    return spread.float()


def band_merge_matrix(spread: torch.Tensor) -> torch.Tensor:
    """(n_bands, n_freq): each band the weighted mean of the bins that spread onto it."""
    merge = spread.t().clone()
    return merge / merge.sum(dim=1, keepdim=True).clamp_min(1e-8)


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, C, F, N): interleave the channels of `groups` groups; the next grouped op mixes them."""
    b, c, f, n = x.shape
    return x.reshape(b, groups, c // groups, f, n).transpose(1, 2).reshape(b, c, f, n)


class _TemporalBlock(nn.Module):
    """Grouped 1x1, depthwise causal (3 freq x `kernel` time, time dilation `dilation`),
    grouped 1x1, residual, channel shuffle: (B, C, F, N) -> (B, C, F, N).

    The depthwise conv reads `(kernel - 1) * dilation` past frames: `buf` holds them
    (B, C, F, past) and the updated buffer is returned.
    """

    def __init__(self, channels: int, kernel: int, dilation: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.past = (kernel - 1) * dilation
        self.pw_in = nn.Sequential(nn.Conv2d(channels, channels, 1, groups=groups),
                                   nn.BatchNorm2d(channels), nn.PReLU(channels))
        self.dw = nn.Conv2d(channels, channels, (3, kernel), padding=(1, 0),
                            dilation=(1, dilation), groups=channels)
        self.dw_post = nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))
        self.pw_out = nn.Sequential(nn.Conv2d(channels, channels, 1, groups=groups),
                                    nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor, buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.pw_in(x)  # B, C, F, N
        window = torch.cat([buf, h], dim=-1)  # B, C, F, past + N
        h = self.pw_out(self.dw_post(self.dw(window)))  # B, C, F, N
        return _channel_shuffle(x + h, self.groups), window[..., window.shape[-1] - self.past:]


class _GroupedGRU(nn.Module):
    """`groups` GRUs on channel slices: (L, S, C) -> (L, S, C_out) with batch_first sequences."""

    def __init__(self, channels: int, hidden: int, groups: int, bidirectional: bool) -> None:
        super().__init__()
        if channels % groups or hidden % groups:
            raise ValueError(f"grouped GRU: channels {channels} and hidden {hidden} must divide "
                             f"into {groups} groups")
        self.groups = groups
        self.rnns = nn.ModuleList(
            nn.GRU(channels // groups, hidden // groups, batch_first=True,
                   bidirectional=bidirectional) for _ in range(groups)
        )

    def forward(self, x: torch.Tensor, h: list[torch.Tensor] | None = None):
        """x (L, S, C); h: per group (D, L, H/groups) or None -> (out (L, S, D*H), new h list)."""
        outs, hs = [], []
        for g, (rnn, xg) in enumerate(zip(self.rnns, x.chunk(self.groups, dim=-1), strict=True)):
            out, hg = rnn(xg, None if h is None else h[g])
            outs.append(out)
            hs.append(hg)
        return torch.cat(outs, dim=-1), hs


class _DualPathBlock(nn.Module):
    """Across frequency within a frame, then along time (one-way GRU, stateful).

    (B, C, F, N) -> (B, C, F, N); the time GRU's hidden state per group is (1, B * F, C / groups).
    The frequency path mixes the F positions of one frame with a learned F x F matrix (shared by
    the channels), then the channels with a linear layer. GTCRN runs a bidirectional GRU across
    frequency here; a streamed frame would then pay 2 x 33 sequential GRU steps per block, which
    costs more than the rest of the model together on one CPU thread, and the two matrix
    products see every position at once.
    """

    def __init__(self, channels: int, n_pos: int, groups: int) -> None:
        super().__init__()
        self.freq_mix = nn.Linear(n_pos, n_pos)
        self.intra_proj = nn.Sequential(nn.PReLU(), nn.Linear(channels, channels))
        self.intra_norm = nn.LayerNorm((n_pos, channels))
        self.inter = _GroupedGRU(channels, channels, groups, bidirectional=False)
        self.inter_proj = nn.Linear(channels, channels)
        self.inter_norm = nn.LayerNorm((n_pos, channels))

    def forward(self, x: torch.Tensor, h: list[torch.Tensor]):
        b, c, f, n = x.shape
        z = x.permute(0, 3, 2, 1)  # B, N, F, C
        mixed = self.freq_mix(z.transpose(2, 3)).transpose(2, 3)  # B, N, F, C: across F
        z = z + self.intra_norm(self.intra_proj(mixed))
        seq = z.transpose(1, 2).reshape(b * f, n, c)  # B*F, N, C: one sequence per position
        out, h = self.inter(seq, h)
        inter = self.inter_proj(out).reshape(b, f, n, c).transpose(1, 2)  # B, N, F, C
        z = z + self.inter_norm(inter)
        return z.permute(0, 3, 2, 1), h  # B, C, F, N


@register_model("compact_crn")
class CompactCRN(MaskingModel):
    """Causal, streamable, ~50k parameters: band merging, grouped convs, grouped dual-path GRUs.

    Args:
        channels: channels C of the encoder, dual-path blocks and decoder.
        dilations: time dilations of the encoder's temporal blocks (the decoder mirrors them).
        time_kernel: depthwise conv kernel along time.
        n_dual_path: dual-path blocks.
        groups: groups of the grouped 1x1 convs and GRUs.
        n_fft, hop, compress: see `MaskingModel`; `output` is "mask" only.
    """

    #: the low bins kept one by one; the rest are merged into as many ERB bands as this
    LOW_FRACTION = 4

    def __init__(self, channels: int = 40, dilations: tuple[int, ...] = (1, 2),
                 time_kernel: int = 3, n_dual_path: int = 2, groups: int = 2, n_fft: int = 512,
                 hop: int = 256, compress: str = "power", output: str = "mask") -> None:
        if output != "mask":  # the band mask is spread over bins: there is no band phase
            raise ValueError(f"CompactCRN estimates a real band mask; output {output!r} is not "
                             f"supported (use output='mask')")
        super().__init__(n_fft=n_fft, hop=hop, compress=compress, output=output)
        dilations = tuple(int(d) for d in dilations)
        if channels % (2 * groups) or time_kernel < 1 or any(d < 1 for d in dilations):
            raise ValueError(f"CompactCRN: channels ({channels}) must divide by 2 * groups "
                             f"({groups}); time_kernel >= 1 and dilations >= 1, got "
                             f"{time_kernel}, {dilations}")
        self._record_config(channels=channels, dilations=dilations, time_kernel=time_kernel,
                            n_dual_path=n_dual_path, groups=groups)
        f = self.n_freq
        n_low = (f - 1) // self.LOW_FRACTION + 1  # 65 of 257
        n_high = (f - 1) // self.LOW_FRACTION  # 64 ERB bands for bins 65..256
        spread = band_spread_matrix(f, n_low, n_high, sample_rate=SAMPLE_RATE)
        self.register_buffer("band_spread", spread, persistent=False)  # F, bands
        self.register_buffer("band_merge", band_merge_matrix(spread), persistent=False)
        self.n_bands = n_low + n_high  # 129
        n_mid = (self.n_bands - 1) // 2 + 1  # 65
        self.n_pos = (n_mid - 1) // 2 + 1  # 33
        if (self.n_pos - 1) * 4 + 1 != self.n_bands:
            raise ValueError(f"CompactCRN: {self.n_bands} bands do not halve twice exactly")
        c = int(channels)
        self.channels, self.groups = c, int(groups)
        self.down = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, c, (5, 1), stride=(2, 1), padding=(2, 0)),
                          nn.BatchNorm2d(c), nn.PReLU(c)),
            nn.Sequential(nn.Conv2d(c, c, (5, 1), stride=(2, 1), padding=(2, 0), groups=groups),
                          nn.BatchNorm2d(c), nn.PReLU(c)),
        ])
        self.enc_blocks = nn.ModuleList(_TemporalBlock(c, time_kernel, d, groups)
                                        for d in dilations)
        self.dual_path = nn.ModuleList(_DualPathBlock(c, self.n_pos, groups)
                                       for _ in range(n_dual_path))
        self.dec_blocks = nn.ModuleList(_TemporalBlock(c, time_kernel, d, groups)
                                        for d in reversed(dilations))
        self.up = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(c, c, (5, 1), stride=(2, 1), padding=(2, 0),
                                             groups=groups), nn.BatchNorm2d(c), nn.PReLU(c)),
            nn.ConvTranspose2d(c, 1, (5, 1), stride=(2, 1), padding=(2, 0)),
        ])

    def parts(self) -> dict[str, nn.Module]:
        return {"encoder": nn.ModuleList([self.down, self.enc_blocks]),
                "dual_path": self.dual_path,
                "decoder": nn.ModuleList([self.dec_blocks, self.up])}

    # ---- one code path for whole files and single frames ----------------------------------
    def _features(self, mag: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, N) magnitude -> (B, 3, bands, N): compressed band values and neighbours."""
        x = compress_magnitude(mag, self.compress)
        bands = torch.einsum("kf,bcfn->bckn", self.band_merge, x)  # B, 1, bands, N
        padded = nn.functional.pad(bands, (0, 0, 1, 1))  # B, 1, bands + 2, N
        k = self.n_bands
        return torch.cat([padded[:, :, :k], bands, padded[:, :, 2:]], dim=1)  # B, 3, bands, N

    def _run(self, feats: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """(B, 3, bands, N) features + state -> ((B, F, N) mask, state after frame N - 1)."""
        x = feats
        for layer in self.down:
            x = layer(x)  # B, C, 65 then 33, N
        skips, enc_bufs = [], []
        for block, buf in zip(self.enc_blocks, state["enc"], strict=True):
            x, buf = block(x, buf)
            skips.append(x)
            enc_bufs.append(buf)
        hs = []
        for block, h in zip(self.dual_path, state["gru"], strict=True):
            x, h = block(x, h)
            hs.append(h)
        dec_bufs = []
        for block, buf, skip in zip(self.dec_blocks, state["dec"], reversed(skips), strict=True):
            x, buf = block(x + skip, buf)
            dec_bufs.append(buf)
        for layer in self.up:
            x = layer(x)  # B, C, 65 then B, 1, 129, N
        band_mask = torch.sigmoid(x[:, 0])  # B, bands, N
        mask = torch.einsum("fk,bkn->bfn", self.band_spread, band_mask)  # B, F, N
        return mask, {"enc": enc_bufs, "gru": hs, "dec": dec_bufs}

    def init_state(self, batch: int = 1, device=None) -> dict:
        """Zero state: per temporal block (B, C, 33, past frames), per GRU group (1, B*33, C/g)."""
        device = device or self.band_merge.device
        c, n = self.channels, self.n_pos

        def bufs(blocks):
            return [torch.zeros(batch, c, n, b.past, device=device) for b in blocks]

        gru = [[torch.zeros(1, batch * n, c // self.groups, device=device)
                for _ in range(self.groups)] for _ in self.dual_path]
        return {"enc": bufs(self.enc_blocks), "gru": gru, "dec": bufs(self.dec_blocks)}

    def masker(self, mag: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, N) magnitude -> (B, F, N) mask; frame n depends on frames <= n only."""
        self._check_masker_input(mag)
        return self._run(self._features(mag), self.init_state(mag.shape[0], mag.device))[0]

    def masker_step(self, mag_frame: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One frame: (B, 1, F) magnitude -> ((B, F) mask, new state). Matches `masker`."""
        if mag_frame.dim() != 3 or mag_frame.shape[1:] != (1, self.n_freq):
            raise ValueError(f"masker_step expects (B, 1, {self.n_freq}), got "
                             f"{tuple(mag_frame.shape)}")
        mask, state = self._run(self._features(mag_frame.unsqueeze(-1)), state)
        return mask[..., 0], state


def multiply_accumulates_per_frame(model: CompactCRN) -> int:
    """Multiply-accumulates of one streamed frame: convs, GRUs and linears, counted with
    forward hooks on a `masker_step` call (norms, activations and the FFT left out)."""
    macs = [0]

    def hook(mod, inputs, output):
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            per_out = math.prod(mod.kernel_size) * mod.in_channels // mod.groups
            if isinstance(mod, nn.ConvTranspose2d):  # each input position feeds a kernel
                macs[0] += inputs[0].numel() * math.prod(mod.kernel_size) * mod.out_channels \
                    // mod.groups
            else:
                macs[0] += output.numel() * per_out
        elif isinstance(mod, nn.GRU):
            d = 2 if mod.bidirectional else 1
            steps = inputs[0].shape[0] * inputs[0].shape[1]  # sequences x steps (batch_first)
            macs[0] += d * 3 * (mod.input_size + mod.hidden_size) * mod.hidden_size * steps
        elif isinstance(mod, nn.Linear):
            macs[0] += inputs[0].numel() // mod.in_features * mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.GRU, nn.Linear))]
    try:
        with torch.no_grad():
            model.masker_step(torch.rand(1, 1, model.n_freq), model.init_state(1))
    finally:
        for h in handles:
            h.remove()
    return macs[0]


if __name__ == "__main__":
    from templates.models.registry import format_parameter_split

    m = CompactCRN().eval()
    print(format_parameter_split(m))
    macs = multiply_accumulates_per_frame(m) * 62.5  # 62.5 frames per second at hop 256
    print(f"~{macs / 1e6:.1f} M multiply-accumulates per second")
    with torch.no_grad():
        mag = torch.rand(1, 1, 257, 40)
        full = m.masker(mag)
        mag2 = mag.clone()
        mag2[..., 20:] = torch.rand(1, 1, 257, 20)
        print("causal:", torch.equal(full[..., :20], m.masker(mag2)[..., :20]))
