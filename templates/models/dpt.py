"""DPT v3: convolutional encoder, dual-path transformer (frequency then time), mask decoder.

A budget of 904,705 parameters with d_model 128, 4 heads, feed-forward 512 and
2 dual-path blocks. Choices, and where the count lands:
- encoder: Conv2d 1 -> 64 -> 128, kernel 3x3, stride (2, 1), padding 1, BatchNorm and ReLU after
  each; frequency 257 -> 129 -> 65 (74,880 params);
- core: each block is a `TransformerEncoderLayer` over the 65 frequency positions of every frame,
  then one over the N frames of every frequency position (pre-norm, GELU, dropout 0.1; 198,272
  params per layer, 793,088 for 2 blocks); a learned frequency-position embedding
  (128 x 65 = 8,320 params) is added before the first block, because attention is blind to
  order and a mask depends strongly on which band it is in (the encoder's zero padding only
  marks the two edges);
- additive skip: encoder output + dual-path output;
- decoder: bilinear upsampling 65 -> 257 bins, Conv2d 128 -> 32 (3x3) + BatchNorm + ReLU,
  Conv2d 32 -> 1 (1x1), sigmoid (36,993 params).
Total 913,281 = budget + 0.95% (without the position embedding this layout has 904,961,
+0.03%). Attention over all frames makes the model non-causal. `default_warmup_epochs = 3`
tells the trainer to warm the learning rate up.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from templates.models.base import MaskingModel, compress_features
from templates.models.registry import register_model


@register_model("dpt")
class DPT(MaskingModel):
    """Dual-path transformer mask estimator.

    Args:
        n_fft, hop, compress, output: front end, input compression and mask type (see
            `MaskingModel`).
        enc_channels: channels of the encoder convs before the last one, which outputs
            `d_model`; every conv halves the frequency axis (rounding up).
        d_model: transformer width.
        n_heads: attention heads (must divide `d_model`).
        d_ff: feed-forward width of each transformer layer.
        n_blocks: dual-path blocks (each = one frequency layer + one time layer).
        dropout: transformer dropout.
        freq_pos_emb: add a learned embedding per encoded frequency position.
        dec_channels: channels of the 3x3 conv after upsampling.
    """

    default_warmup_epochs = 3

    def __init__(
        self,
        n_fft: int = 512,
        hop: int = 256,
        compress: str = "power",
        output: str = "mask",
        *,
        enc_channels: Sequence[int] = (64,),
        d_model: int = 128,
        n_heads: int = 4,
        d_ff: int = 512,
        n_blocks: int = 2,
        dropout: float = 0.1,
        freq_pos_emb: bool = True,
        dec_channels: int = 32,
    ) -> None:
        super().__init__(n_fft=n_fft, hop=hop, compress=compress, output=output)
        enc_channels = tuple(int(c) for c in enc_channels)
        if int(d_model) % int(n_heads):
            raise ValueError(f"DPT: d_model {d_model} is not divisible by n_heads {n_heads}")
        self._record_config(
            enc_channels=enc_channels,
            d_model=int(d_model),
            n_heads=int(n_heads),
            d_ff=int(d_ff),
            n_blocks=int(n_blocks),
            dropout=float(dropout),
            freq_pos_emb=bool(freq_pos_emb),
            dec_channels=int(dec_channels),
        )

        enc_layers: list[nn.Module] = []
        in_ch, f_enc = self.in_channels, self.n_freq
        for out_ch in (*enc_channels, int(d_model)):
            enc_layers += [
                nn.Conv2d(in_ch, out_ch, 3, stride=(2, 1), padding=1),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
            in_ch, f_enc = out_ch, (f_enc - 1) // 2 + 1
        self.encoder = nn.Sequential(*enc_layers)
        self.f_enc = f_enc

        self.freq_pos = (
            nn.Parameter(torch.zeros(1, int(d_model), f_enc, 1)) if freq_pos_emb else None
        )

        def _layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(
                int(d_model),
                int(n_heads),
                dim_feedforward=int(d_ff),
                dropout=float(dropout),
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )

        self.freq_layers = nn.ModuleList(_layer() for _ in range(int(n_blocks)))
        self.time_layers = nn.ModuleList(_layer() for _ in range(int(n_blocks)))

        self.decoder = nn.Sequential(
            nn.Conv2d(int(d_model), int(dec_channels), 3, padding=1),
            nn.BatchNorm2d(int(dec_channels)),
            nn.ReLU(inplace=True),
            nn.Conv2d(int(dec_channels), self.out_channels, kernel_size=1),
        )

    def parts(self) -> dict[str, nn.Module]:
        return {
            "encoder": self.encoder,
            "dual_path": nn.ModuleList(
                [
                    self.freq_layers,
                    self.time_layers,
                    nn.ParameterList([] if self.freq_pos is None else [self.freq_pos]),
                ]
            ),
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
        skip = self.encoder(x)  # B, D, f_enc, N
        batch, dim, f_enc, n_frames = skip.shape
        x = skip if self.freq_pos is None else skip + self.freq_pos  # B, D, f_enc, N
        for freq_layer, time_layer in zip(self.freq_layers, self.time_layers, strict=True):
            # Attention across frequency: one sequence of f_enc tokens per frame.
            x = x.permute(0, 3, 2, 1).reshape(batch * n_frames, f_enc, dim)  # B*N, f_enc, D
            x = freq_layer(x)
            x = x.reshape(batch, n_frames, f_enc, dim)  # B, N, f_enc, D
            # Attention across time: one sequence of N tokens per frequency position.
            x = x.permute(0, 2, 1, 3).reshape(batch * f_enc, n_frames, dim)  # B*f_enc, N, D
            x = time_layer(x)
            x = x.reshape(batch, f_enc, n_frames, dim).permute(0, 3, 1, 2)  # B, D, f_enc, N
        x = x + skip  # B, D, f_enc, N
        x = nn.functional.interpolate(
            x, size=(self.n_freq, n_frames), mode="bilinear", align_corners=False
        )  # B, D, F, N
        x = self.decoder(x)  # B, C_out, F, N
        return self.mask_from_logits(x)  # B, F, N


if __name__ == "__main__":
    from templates.models.registry import format_parameter_split

    print(format_parameter_split(DPT()))
