"""Causal CRN ("crn_causal"): the CRN layout made streamable, one STFT hop at a time.

Same structure as CRN v3 (conv encoder stride (2,1) on frequency 257 -> 129 -> 65 -> 33, an LSTM
over time for each of the 33 frequency positions, transposed-conv decoder back to 257 bins,
sigmoid mask), with every operation along time made causal so that frame n's mask depends only
on frames 0..n:

- encoder convs have kernel (3 freq, `time_kernel` time) and are padded on the PAST side only;
  in streaming they keep the last `time_kernel - 1` input frames as a buffer;
- the LSTM is unidirectional; streaming carries its (h, c) state;
- decoder transposed convs have time kernel 1 (no state), with encoder skips (concatenation);
- BatchNorm is frame-wise in eval mode, so it needs no state.

`masker(mag)` processes a whole (B, 1, F, N) magnitude (training, offline inference);
`masker_step(mag_frame, state)` processes one (B, 1, F) frame with carried state and gives the
same mask to float precision. `deploy/streaming.py` adds the STFT analysis/synthesis buffers.
Algorithmic latency: the 512-sample window (32 ms at 16 kHz); the model itself adds no
lookahead.
"""

from __future__ import annotations

import torch
from torch import nn

from templates.models.base import MaskingModel, compress_features
from templates.models.registry import register_model


class _CausalCRNEncoderLayer(nn.Module):
    """Conv2d stride (2,1) on frequency, causal in time, BatchNorm, ELU.

    (B, C_in, F, N) -> (B, C_out, (F - 1) // 2 + 1, N)
    """

    def __init__(self, c_in: int, c_out: int, time_kernel: int) -> None:
        super().__init__()
        self.time_kernel = time_kernel
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=(3, time_kernel), stride=(2, 1),
                              padding=(1, 0))
        self.norm = nn.BatchNorm2d(c_out)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (self.time_kernel - 1, 0))  # past-side padding only
        return self.act(self.norm(self.conv(x)))

    def step(self, x: torch.Tensor, buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: x (B, C_in, F, 1), buf (B, C_in, F, time_kernel - 1) previous frames."""
        window = torch.cat([buf, x], dim=-1)  # B, C_in, F, time_kernel
        y = self.act(self.norm(self.conv(window)))  # B, C_out, F', 1
        return y, window[..., 1:]


class _CausalCRNDecoderLayer(nn.Module):
    """ConvTranspose2d stride (2,1), time kernel 1: (B, C_in, F, N) -> (B, C_out, 2F - 1, N)."""

    def __init__(self, c_in: int, c_out: int, last: bool) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(c_in, c_out, kernel_size=(3, 1), stride=(2, 1),
                                         padding=(1, 0))
        self.norm = nn.Identity() if last else nn.BatchNorm2d(c_out)
        self.act = nn.Identity() if last else nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.deconv(x)))


@register_model("crn_causal")
class CausalCRN(MaskingModel):
    """Streamable CRN: causal conv encoder, unidirectional per-frequency LSTM, skip decoder.

    Args:
        channels: encoder channels per layer (the decoder mirrors them); the frequency axis
            halves per layer: 257 -> 129 -> 65 -> 33 for three layers.
        hidden: LSTM hidden size.
        num_layers: LSTM layers.
        time_kernel: encoder conv kernel along time (frames of past context per layer).
        n_fft, hop, compress, output: see `MaskingModel` (`"crm"`: the masker sees |X|, Re X,
            Im X and the last decoder layer outputs a complex ratio mask).
    """

    def __init__(self, channels: tuple[int, ...] = (64, 128, 256), hidden: int = 256,
                 num_layers: int = 2, time_kernel: int = 2, n_fft: int = 512, hop: int = 256,
                 compress: str = "power", output: str = "mask") -> None:
        super().__init__(n_fft=n_fft, hop=hop, compress=compress, output=output)
        channels = tuple(int(c) for c in channels)
        if not channels or time_kernel < 1:
            raise ValueError(f"CausalCRN: need channels and time_kernel >= 1, got {channels}, "
                             f"{time_kernel}")
        self._record_config(channels=channels, hidden=hidden, num_layers=num_layers,
                            time_kernel=time_kernel)
        self.time_kernel = int(time_kernel)
        ins = (self.in_channels,) + channels[:-1]
        self.encoder = nn.ModuleList(
            _CausalCRNEncoderLayer(i, o, self.time_kernel) for i, o in zip(ins, channels, strict=True)
        )
        f_enc = self.n_freq
        for _ in channels:
            f_enc = (f_enc - 1) // 2 + 1
        if (f_enc - 1) * 2 ** len(channels) + 1 != self.n_freq:
            raise ValueError(f"CausalCRN: {self.n_freq} bins do not halve exactly "
                             f"{len(channels)} times (need F = 2^k * m + 1)")
        self.f_enc = f_enc
        self.lstm = nn.LSTM(channels[-1], hidden, num_layers=num_layers, batch_first=True)
        self.lstm_proj = nn.Linear(hidden, channels[-1])
        outs = tuple(reversed(channels[:-1])) + (self.out_channels,)
        self.decoder = nn.ModuleList(
            _CausalCRNDecoderLayer(2 * c, o, last=(k == len(channels) - 1))
            for k, (c, o) in enumerate(zip(reversed(channels), outs, strict=True))
        )

    def parts(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "lstm": nn.ModuleList([self.lstm, self.lstm_proj]),
                "decoder": self.decoder}

    def _ccrn_decode(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """z (B, C, F_enc, N) + encoder outputs -> mask (B, F, N)."""
        for layer, skip in zip(self.decoder, reversed(skips), strict=True):
            z = layer(torch.cat([z, skip], dim=1))
        return self.mask_from_logits(z)  # B, F, N

    def masker(self, mag: torch.Tensor) -> torch.Tensor:
        """(B, C_in, F, N) `masker_input` -> (B, F, N) mask; frame n depends on frames <= n only."""
        self._check_masker_input(mag)
        x = compress_features(mag, self.compress)
        skips = []
        for layer in self.encoder:
            x = layer(x)
            skips.append(x)
        b, c, f_enc, n = x.shape  # B, C, F_enc, N
        seq = x.permute(0, 2, 3, 1).reshape(b * f_enc, n, c)  # B*F_enc, N, C
        seq = self.lstm_proj(self.lstm(seq)[0])
        z = seq.reshape(b, f_enc, n, c).permute(0, 3, 1, 2)  # B, C, F_enc, N
        return self._ccrn_decode(z, skips)

    def init_state(self, batch: int = 1, device=None) -> dict:
        """Zero streaming state: conv buffers per encoder layer and the LSTM's (h, c)."""
        device = device or next(self.parameters()).device
        bufs, f = [], self.n_freq
        for layer in self.encoder:
            bufs.append(torch.zeros(batch, layer.conv.in_channels, f, self.time_kernel - 1,
                                    device=device))
            f = (f - 1) // 2 + 1
        h = torch.zeros(self.lstm.num_layers, batch * self.f_enc, self.lstm.hidden_size,
                        device=device)
        return {"conv": bufs, "lstm": (h, h.clone())}

    def masker_step(self, mag_frame: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One frame: (B, C_in, F) features -> ((B, F) mask, new state). Matches `masker`."""
        if mag_frame.dim() != 3 or mag_frame.shape[1:] != (self.in_channels, self.n_freq):
            raise ValueError(f"masker_step expects (B, {self.in_channels}, {self.n_freq}), "
                             f"got {tuple(mag_frame.shape)}")
        x = compress_features(mag_frame.unsqueeze(-1), self.compress)  # B, C_in, F, 1
        skips, bufs = [], []
        for layer, buf in zip(self.encoder, state["conv"], strict=True):
            x, buf = layer.step(x, buf)
            skips.append(x)
            bufs.append(buf)
        b, c, f_enc, _ = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(b * f_enc, 1, c)  # B*F_enc, 1, C
        out, hc = self.lstm(seq, state["lstm"])
        z = self.lstm_proj(out).reshape(b, f_enc, 1, c).permute(0, 3, 1, 2)  # B, C, F_enc, 1
        return self._ccrn_decode(z, skips)[..., 0], {"conv": bufs, "lstm": hc}


if __name__ == "__main__":
    from templates.models.registry import format_parameter_split

    m = CausalCRN().eval()
    print(format_parameter_split(m))
    with torch.no_grad():
        mag = torch.rand(1, 1, 257, 40)
        full = m.masker(mag)
        mag2 = mag.clone()
        mag2[..., 20:] = torch.rand(1, 1, 257, 20)
        print("causal:", torch.equal(full[..., :20], m.masker(mag2)[..., :20]))
