"""Streaming through ONNX Runtime: a causal model's `masker_step`, state in and state out.

Eager PyTorch pays its per-operator dispatch on every 16 ms hop: a causal model of ~150 small
operators spends milliseconds per frame in the framework, not in arithmetic (the compact CRN's
~1.2 M multiply-accumulates per frame take microseconds). Exporting ONE step as a graph whose
inputs are the frame's magnitude plus every state tensor, and whose outputs are the mask plus
the new state tensors, lets onnxruntime run the whole frame in one call.

    step = OnnxStepModel(model, export_step_onnx(model, "compact_crn_step.onnx"))
    out = stream_enhance(step, wav)  # deploy.streaming, as with the torch model

The state's structure (dicts, lists, tuples of tensors) is flattened with torch's pytree
helpers, so any model with `init_state(batch)` and `masker_step(frame, state)` exports
(`crn_causal`: conv buffers and LSTM (h, c); `compact_crn`: conv buffers and GRU states).
`export_step_onnx` checks, frame by frame in onnxruntime, that the stepped masks equal
`model.masker` on the whole sequence within `ONNX_MASK_TOLERANCE`.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils import _pytree as pytree

from deploy.onnx_export import onnx_session
from templates.export import ONNX_MASK_TOLERANCE


class StepGraph(nn.Module):
    """`(mag (1, 1, F), *state leaves) -> (mask (1, F), *new state leaves)` for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not hasattr(model, "masker_step"):
            raise TypeError(f"{type(model).__name__} has no masker_step: only causal models "
                            f"('crn_causal', 'compact_crn') stream")
        self.model = model
        state = model.init_state(1, device=torch.device("cpu"))
        self.leaves, self.spec = pytree.tree_flatten(state)

    def forward(self, mag: torch.Tensor, *leaves: torch.Tensor):
        mask, state = self.model.masker_step(mag, pytree.tree_unflatten(list(leaves), self.spec))
        return (mask, *pytree.tree_flatten(state)[0])


def export_step_onnx(model: nn.Module, path, check_frames: int = 24, opset: int = 17) -> Path:
    """Write one streaming step of `model` (a CPU eval copy) to `path`; check it in onnxruntime.

    Raises `RuntimeError` naming the file when the stepped masks differ from `model.masker`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = StepGraph(copy.deepcopy(model).cpu().eval()).eval()
    n = len(graph.leaves)
    inputs = (torch.rand(1, 1, graph.model.n_freq), *graph.leaves)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, inputs, str(path), opset_version=opset, dynamo=False,
                          input_names=["magnitude", *(f"state_in_{i}" for i in range(n))],
                          output_names=["mask", *(f"state_out_{i}" for i in range(n))])
    step = OnnxStepModel(graph.model, path)
    mags = torch.rand(1, 1, graph.model.n_freq, check_frames) * 3
    with torch.no_grad():
        ref = graph.model.masker(mags)  # 1, F, N
    state = step.init_state(1)
    got = []
    for k in range(check_frames):
        mask, state = step.masker_step(mags[..., k], state)
        got.append(mask)
    err = float((torch.stack(got, dim=-1) - ref).abs().max())
    if not err <= ONNX_MASK_TOLERANCE:
        raise RuntimeError(f"{path.name}: the exported step drifts from the whole-sequence mask "
                           f"by {err:.2e} over {check_frames} frames (tolerance "
                           f"{ONNX_MASK_TOLERANCE:g})")
    return path


class OnnxStepModel:
    """A causal model's stepping through onnxruntime, usable by `StreamingEnhancer`.

    Holds the torch model's `front_end` (window, FFT sizes) and an onnxruntime session of the
    graph `export_step_onnx` wrote; the state is the list of numpy state arrays.
    """

    def __init__(self, model: nn.Module, step_path, threads: int = 1) -> None:
        self.front_end = model.front_end
        self.n_freq = model.n_freq
        self.masker_input = model.masker_input  # (B, F, N) spectrum -> the step's features
        self._init_leaves = [t.numpy() for t in StepGraph(model).leaves]
        self.session = onnx_session(step_path, threads)
        self._state_names = [f"state_in_{i}" for i in range(len(self._init_leaves))]

    def eval(self) -> "OnnxStepModel":
        return self

    def init_state(self, batch: int = 1, device=None) -> list:
        if batch != 1:
            raise ValueError(f"the exported step runs one stream (batch 1), got batch {batch}")
        return [a.copy() for a in self._init_leaves]

    def masker_step(self, mag_frame: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """(1, 1, F) magnitude -> ((1, F) mask, new state), one onnxruntime call."""
        feed = {"magnitude": np.ascontiguousarray(mag_frame.detach().cpu().float().numpy())}
        feed.update(zip(self._state_names, state, strict=True))
        mask, *new_state = self.session.run(None, feed)
        return torch.from_numpy(mask), new_state
