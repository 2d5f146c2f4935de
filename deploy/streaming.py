"""Frame-by-frame (streaming) enhancement with a causal model (`crn_causal`, `compact_crn`).

`StreamingEnhancer(model)` takes audio in chunks of any size (typically one hop, 256 samples =
16 ms at 16 kHz) and returns enhanced audio as soon as it is final. It carries:

- the analysis buffer: the last `n_fft` input samples (plus the reflect padding that
  `STFTFrontEnd`'s `center=True` puts before the first sample and after the last one);
- the model state (`masker_step(frame, state)` / `init_state(batch)`: `CausalCRN`'s causal-conv
  frame buffers and LSTM (h, c), `CompactCRN`'s temporal-conv buffers and GRU states);
- the synthesis buffers: the overlap-add numerator and the window-square envelope.

The output equals `model(wav)` on the whole file (same causal model) to float precision: the
frames, masks and overlap-add normalisation are those of `torch.stft`/`torch.istft` with
`center=True`; `flush()` adds the end padding once the input ends.

Latency. Algorithmic latency = window + lookahead = 512 samples (32 ms at 16 kHz) + 0 (the
causal models look at no future frame). Output block k (samples [256k, 256k+256)) is final when
input sample 256(k+2)-1 has arrived, i.e. 512 samples after the block's first sample arrived.
Per-hop compute time is measured by `benchmarks/latency.py` (budget: 16 ms per hop).
"""

from __future__ import annotations

import torch

from compat.sample_rate import SAMPLE_RATE
from templates.models.base import MaskingModel

ALGORITHMIC_LATENCY_SAMPLES = 512  # the window; the causal models add no lookahead
ALGORITHMIC_LATENCY_MS = 1000.0 * ALGORITHMIC_LATENCY_SAMPLES / SAMPLE_RATE


def algorithmic_latency_ms(model: MaskingModel, sample_rate: int = SAMPLE_RATE) -> float:
    """Window length in ms (the model has no lookahead): 32.0 for n_fft 512 at 16 kHz."""
    return 1000.0 * model.front_end.n_fft / sample_rate


class StreamingEnhancer:
    """Chunk-in, chunk-out enhancement of one mono stream with a causal model (eval mode).

    Usage: `out = [s.process(chunk) for chunk in chunks] + [s.flush()]`; `torch.cat(out)` has
    the input's length. `process` returns (k,) float32 (k may be 0 at the start: the first
    output block needs 512 input samples).
    """

    def __init__(self, model: MaskingModel) -> None:
        if not hasattr(model, "masker_step"):
            raise TypeError(f"{type(model).__name__} is not streamable (no masker_step); use a "
                            f"causal model such as 'crn_causal' or 'compact_crn'")
        self.model = model.eval()
        fe = self.front_end = model.front_end
        self.n_fft, self.hop = fe.n_fft, fe.hop
        self.pad = self.n_fft // 2
        self.window = fe.window.detach().float().cpu()
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self.state = self.model.init_state(1, device=torch.device("cpu"))
        self.raw = torch.zeros(0)  # input kept until the front reflect padding can be built
        self.xp = None  # padded input not yet consumed by a frame, starts at frame `self.k`
        self.n_in = 0
        self.last = torch.zeros(0)  # the last pad + 1 input samples
        self.k = 0  # next frame index
        self.ola = torch.zeros(self.n_fft)  # numerator, starts at padded position k * hop
        self.env = torch.zeros(self.n_fft)  # window-square envelope, same alignment
        self.n_out = 0  # output samples emitted so far
        self.finished = False
        self.max_frames = float("inf")  # known once the input ends

    @torch.no_grad()
    def _frame(self, seg: torch.Tensor) -> None:
        """Analyse, mask and overlap-add one n_fft segment of the padded input (frame self.k)."""
        spec = torch.fft.rfft(seg * self.window)  # F complex
        feats = self.model.masker_input(spec.view(1, -1, 1))[..., 0]  # 1, C_in, F
        mask, self.state = self.model.masker_step(feats, self.state)
        frame = torch.fft.irfft(spec * mask[0], n=self.n_fft) * self.window
        self.ola[: self.n_fft] += frame
        self.env[: self.n_fft] += self.window**2
        self.k += 1

    def _emit(self, upto: int) -> torch.Tensor:
        """Output samples [n_out, upto) of the trimmed signal; upto in trimmed coordinates.

        ola[0] sits at padded position (k - 1) * hop, i.e. trimmed position (k-1)*hop - pad.
        """
        base = (self.k - 1) * self.hop - self.pad
        a, b = self.n_out - base, upto - base
        out = self.ola[a:b] / self.env[a:b]
        self.n_out = upto
        return out

    def _advance(self) -> None:
        """Shift the synthesis buffers by one hop after a frame."""
        self.ola = torch.cat([self.ola[self.hop:], torch.zeros(self.hop)])
        self.env = torch.cat([self.env[self.hop:], torch.zeros(self.hop)])

    def _run_frames(self, limit: int) -> list[torch.Tensor]:
        """Run every frame the buffered input allows; return output made final, capped at limit."""
        outs = []
        while self.xp is not None and self.xp.numel() >= self.n_fft and self.k < self.max_frames:
            if self.k > 0:
                self._advance()
            self._frame(self.xp[: self.n_fft])
            self.xp = self.xp[self.hop:]
            # No later frame reaches padded positions < k * hop (k = frames done), so they are
            # final; trimmed coordinates drop the front padding.
            final = min(self.k * self.hop - self.pad, limit)
            if final > self.n_out:
                outs.append(self._emit(final))
        return outs

    def process(self, chunk: torch.Tensor) -> torch.Tensor:
        """Feed (k,) samples; returns the (m,) output samples that became final."""
        if self.finished:
            raise RuntimeError("stream already flushed; call reset() to start a new one")
        chunk = torch.as_tensor(chunk, dtype=torch.float32).reshape(-1).cpu()
        self.n_in += chunk.numel()
        self.last = torch.cat([self.last, chunk])[-(self.pad + 1):]  # for the end reflection
        if self.xp is None:
            self.raw = torch.cat([self.raw, chunk])
            if self.raw.numel() <= self.pad:  # reflect padding needs samples 1..pad
                return torch.zeros(0)
            front = self.raw[1: self.pad + 1].flip(0)
            self.xp, self.raw = torch.cat([front, self.raw]), torch.zeros(0)
        else:
            self.xp = torch.cat([self.xp, chunk])
        outs = self._run_frames(self.n_in)
        return torch.cat(outs) if outs else torch.zeros(0)

    def flush(self) -> torch.Tensor:
        """End of input: reflect-pad the end, run the last frames, return the remaining output."""
        if self.finished:
            return torch.zeros(0)
        self.finished = True
        if self.xp is None:
            raise ValueError(f"stream too short: {self.n_in} samples, need more than {self.pad}")
        # STFTFrontEnd zero-pads some lengths to a hop multiple first (see its tail_padding),
        # then center=True ends the padded signal with the reflection x[T-2], ..., x[T-1-pad].
        zeros = torch.zeros(self.front_end.tail_padding(self.n_in))
        self.last = torch.cat([self.last, zeros])[-(self.pad + 1):]
        tail = self.last[:-1].flip(0)
        self.xp = torch.cat([self.xp, zeros, tail])
        self.max_frames = self.front_end.num_frames(self.n_in)
        outs = self._run_frames(self.n_in)
        if self.n_out < self.n_in:
            outs.append(self._emit(self.n_in))
        return torch.cat(outs) if outs else torch.zeros(0)


@torch.no_grad()
def stream_enhance(model: MaskingModel, wav: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Enhance (T,) by feeding `chunk` samples at a time; returns (T,)."""
    s = StreamingEnhancer(model)
    wav = wav.reshape(-1)
    outs = [s.process(wav[i: i + chunk]) for i in range(0, wav.numel(), chunk)]
    outs.append(s.flush())
    return torch.cat(outs)
