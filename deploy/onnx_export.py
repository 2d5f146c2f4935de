"""ONNX export of the masker only; the STFT stays outside the graph (in torch or numpy).

The exported graph maps a magnitude `(1, 1, F, N)` float32 to a mask `(1, F, N)` with N
dynamic (any number of frames). Batch is fixed at one: that is how files and streams are
enhanced, and the DPT's attention reshapes do not generalise over batch in the legacy exporter.
torch 2.13's legacy TorchScript exporter (`dynamo=False`) handles LSTM and
`nn.MultiheadAttention` and takes seconds; the dynamo exporter is the fallback.

Known limitation: for DPT the legacy exporter bakes the export's frame count into
`nn.MultiheadAttention`'s reshapes over time, so a DPT graph only runs at `n_frames` (export it
with the length you will feed, e.g. 188 frames = 3 s); CRN and the causal CRN are fully dynamic.

ONNX Runtime reproduces torch's mask within `ONNX_MASK_TOLERANCE` (measured around 1e-6).
`OnnxEnhancer` runs torch STFT -> ONNX masker -> torch iSTFT, matching `model(wav)`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

ONNX_MASK_TOLERANCE = 1e-4


class MaskerGraph(nn.Module):
    """`model.masker` as a module: (B, 1, F, N) magnitude -> (B, F, N) mask."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        return self.model.masker(mag)


def export_masker_onnx(model: nn.Module, path, n_frames: int = 64, opset: int = 17) -> Path:
    """Write `model`'s masker to `path` (.onnx) with a dynamic frame axis; returns the path."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    graph = MaskerGraph(model).cpu().eval()  # the exporter restores the WRAPPER's mode
    mag = torch.rand(1, 1, model.n_freq, n_frames)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    graph, (mag,), str(path), input_names=["magnitude"], output_names=["mask"],
                    dynamic_axes={"magnitude": {3: "frames"}, "mask": {2: "frames"}},
                    opset_version=opset, dynamo=False,
                )
            except Exception:  # the legacy exporter may be gone in a later torch
                frames = torch.export.Dim("frames", min=2, max=1_000_000)
                torch.onnx.export(
                    graph, (mag,), str(path), input_names=["magnitude"], output_names=["mask"],
                    dynamic_shapes=({3: frames},), dynamo=True,
                )
    finally:
        model.train(was_training)
    return path


def onnx_session(path, threads: int = 1):
    """An onnxruntime CPU session (`pip install onnxruntime`)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("ONNX inference needs onnxruntime: pip install onnxruntime") from e
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxEnhancer:
    """torch STFT -> ONNX Runtime masker -> torch iSTFT; call with (T,) or (1, T) -> (T,)."""

    def __init__(self, model: nn.Module, onnx_path, threads: int = 1) -> None:
        self.front_end = model.front_end
        self.session = onnx_session(onnx_path, threads)

    def mask(self, mag: torch.Tensor) -> torch.Tensor:
        """(1, 1, F, N) -> (1, F, N) through ONNX Runtime."""
        out = self.session.run(None, {"magnitude": mag.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(out)

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        wav = wav.reshape(1, -1).float()
        spec = self.front_end.stft(wav)  # 1, F, N
        mask = self.mask(self.front_end.magnitude(spec).unsqueeze(1))
        return self.front_end.istft(self.front_end.apply_mask(spec, mask), wav.shape[-1])[0]
