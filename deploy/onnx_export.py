"""ONNX export of the masker only; the STFT stays outside the graph (in torch or numpy).

The exported graph maps a magnitude `(1, 1, F, N)` float32 to a mask `(1, F, N)` (a complex
ratio mask model: features |X|, Re X, Im X `(1, 3, F, N)` to its real and imaginary parts
`(1, 2, F, N)`, see `mask_from_onnx`) with N dynamic (any number of frames) for every model, DPT included. Batch is fixed at one: that is how
files and streams are enhanced. The exporter is `templates.export.export_masker_onnx` (the
notebook's export section renders it, so notebook and local ONNX files are built the same way):
torch's legacy TorchScript exporter, with `nn.MultiheadAttention` traced through a reshape-free
equivalent, because torch's own attention code passes the sequence length to `view` as a Python
int and the legacy exporter froze the DPT graph at the export's frame count
(pytorch/pytorch#135691). The export checks the graph in onnxruntime at three frame counts.

ONNX Runtime reproduces torch's mask within `ONNX_MASK_TOLERANCE` (measured around 1e-6).
`OnnxEnhancer` runs torch STFT -> ONNX masker -> torch iSTFT, matching `model(wav)`.
"""

from __future__ import annotations

import torch
from torch import nn

from templates.export import (
    ONNX_MASK_TOLERANCE,
    OnnxMaskerGraph,
    export_masker_onnx,
    mask_from_onnx,
)

__all__ = ["ONNX_MASK_TOLERANCE", "MaskerGraph", "OnnxEnhancer", "export_masker_onnx",
           "onnx_session"]

MaskerGraph = OnnxMaskerGraph  # the name this module used before the exporter moved


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
        self.model = model
        self.front_end = model.front_end
        self.session = onnx_session(onnx_path, threads)

    def mask(self, mag: torch.Tensor) -> torch.Tensor:
        """(1, C_in, F, N) `masker_input` features -> (1, F, N) mask through ONNX Runtime."""
        out = self.session.run(None, {"magnitude": mag.detach().cpu().float().numpy()})[0]
        return mask_from_onnx(torch.from_numpy(out))

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        wav = wav.reshape(1, -1).float()
        spec = self.front_end.stft(wav)  # 1, F, N
        mask = self.mask(self.model.masker_input(spec))
        return self.front_end.istft(self.front_end.apply_mask(spec, mask), wav.shape[-1])[0]
