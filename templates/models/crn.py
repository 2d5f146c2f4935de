"""CRN v3: convolutional encoder, per-frequency LSTM over time, transposed-conv decoder.

1,811,009 parameters (encoder 20.5%, LSTM 58.1%, decoder 21.4%), from these choices:
- encoder: three Conv2d, kernel 3x3, stride (2, 1), padding 1, each followed by BatchNorm and
  ReLU; frequency 257 -> 129 -> 65 -> 33, channels 1 -> 64 -> 128 -> 256 (370,560 params);
- core: one 2-layer LSTM (input 256, hidden 256) shared by all 33 encoded frequency positions,
  each position a separate sequence over time: (B, 256, 33, N) -> (B*33, N, 256)
  (1,052,672 params);
- decoder: three ConvTranspose2d, kernel 3x3, stride (2, 1), padding 1, output_padding (1, 0),
  each with BatchNorm and ReLU; frequency 33 -> 66 -> 132 -> 264, channels 256 -> 128 -> 64 -> 32,
  then a 1x1 conv to one channel, bilinear interpolation 264 -> 257 and a sigmoid
  (387,777 params). No skip connections: the decoder's 66/132 rows do not line up with the
  encoder's 129/65.
The encoder/decoder kernels see 3 frames, so the model is not causal; the LSTM is unidirectional.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from templates.models.base import MaskingModel, compress_features
from templates.models.registry import register_model


@register_model("crn")
class CRN(MaskingModel):
    """Convolutional recurrent mask estimator.

    Args:
        n_fft, hop, compress, output: front end, input compression and mask type (see
            `MaskingModel`).
        enc_channels: output channels of the encoder convs; each halves the frequency axis
            (rounding up), so three layers map 257 bins to 33.
        kernel_size: (freq, time) kernel of every encoder and decoder conv; odd sizes.
        lstm_hidden: LSTM hidden size. When it differs from `enc_channels[-1]` a linear layer
            projects back to the encoder width.
        lstm_layers: stacked LSTM layers.
        dec_channels: output channels of the transposed convs; each doubles the frequency axis.
    """

    default_warmup_epochs = 0

    def __init__(
        self,
        n_fft: int = 512,
        hop: int = 256,
        compress: str = "power",
        output: str = "mask",
        *,
        enc_channels: Sequence[int] = (64, 128, 256),
        kernel_size: Sequence[int] = (3, 3),
        lstm_hidden: int = 256,
        lstm_layers: int = 2,
        dec_channels: Sequence[int] = (128, 64, 32),
    ) -> None:
        super().__init__(n_fft=n_fft, hop=hop, compress=compress, output=output)
        enc_channels = tuple(int(c) for c in enc_channels)
        dec_channels = tuple(int(c) for c in dec_channels)
        kf, kt = (int(k) for k in kernel_size)
        if not enc_channels or not dec_channels:
            raise ValueError("CRN: enc_channels and dec_channels must not be empty")
        if kf % 2 == 0 or kt % 2 == 0:
            raise ValueError(f"CRN: kernel_size must be odd, got {(kf, kt)}")
        self._record_config(
            enc_channels=enc_channels,
            kernel_size=(kf, kt),
            lstm_hidden=int(lstm_hidden),
            lstm_layers=int(lstm_layers),
            dec_channels=dec_channels,
        )
        pad = (kf // 2, kt // 2)

        enc_layers: list[nn.Module] = []
        in_ch = self.in_channels
        for out_ch in enc_channels:
            enc_layers += [
                nn.Conv2d(in_ch, out_ch, (kf, kt), stride=(2, 1), padding=pad),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
            in_ch = out_ch
        self.encoder = nn.Sequential(*enc_layers)

        self.lstm = nn.LSTM(in_ch, int(lstm_hidden), num_layers=int(lstm_layers), batch_first=True)
        self.lstm_proj = (
            nn.Identity() if int(lstm_hidden) == in_ch else nn.Linear(int(lstm_hidden), in_ch)
        )

        dec_layers: list[nn.Module] = []
        for out_ch in dec_channels:
            dec_layers += [
                nn.ConvTranspose2d(
                    in_ch, out_ch, (kf, kt), stride=(2, 1), padding=pad, output_padding=(1, 0)
                ),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
            in_ch = out_ch
        dec_layers.append(nn.Conv2d(in_ch, self.out_channels, kernel_size=1))
        self.decoder = nn.Sequential(*dec_layers)

    def parts(self) -> dict[str, nn.Module]:
        return {
            "encoder": self.encoder,
            "lstm": nn.ModuleList([self.lstm, self.lstm_proj]),
            "decoder": self.decoder,
        }

    def masker(self, mag: torch.Tensor) -> torch.Tensor:
        """Mask from the noisy STFT's features.

        Args:
            mag: (B, C_in, F, N) `masker_input`: |X| (C_in 1), or |X|, Re X, Im X (C_in 3).
        Returns:
            (B, F, N) mask: real in [0, 1], or complex for `output="crm"`.
        """
        self._check_masker_input(mag)
        x = compress_features(mag, self.compress)  # B, C_in, F, N
        x = self.encoder(x)  # B, C, f_enc, N
        batch, chans, f_enc, n_frames = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(batch * f_enc, n_frames, chans)  # B*f_enc, N, C
        seq, _ = self.lstm(seq)  # B*f_enc, N, H
        seq = self.lstm_proj(seq)  # B*f_enc, N, C
        x = seq.reshape(batch, f_enc, n_frames, chans).permute(0, 3, 1, 2)  # B, C, f_enc, N
        x = self.decoder(x)  # B, C_out, f_dec, N
        x = nn.functional.interpolate(
            x, size=(self.n_freq, n_frames), mode="bilinear", align_corners=False
        )  # B, C_out, F, N
        return self.mask_from_logits(x)  # B, F, N


if __name__ == "__main__":
    from templates.models.registry import format_parameter_split

    print(format_parameter_split(CRN()))
