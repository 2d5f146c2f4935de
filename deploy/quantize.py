"""INT8 dynamic quantization of a masking model's recurrent and linear layers.

`torch.ao.quantization.quantize_dynamic` on `nn.LSTM`, `nn.GRU` and `nn.Linear`: weights are stored as
int8, activations are quantized on the fly per batch; convolutions (and BatchNorm) stay fp32
because dynamic quantization has no conv kernels. Effect per model:

- CRN / causal CRN: the LSTM (58-69% of the parameters) and its projection become int8.
- compact CRN: the time GRUs and the linear layers of the dual-path blocks become int8; its
  convolutions (about 40% of its 48k parameters) stay fp32.
- DPT: the feed-forward `nn.Linear` layers of each `TransformerEncoderLayer` become int8, but
  `nn.MultiheadAttention` stays fp32 entirely: its input projection is a bare parameter used by
  `F.multi_head_attention_forward`, and its `out_proj` is a `NonDynamicallyQuantizableLinear`,
  which `quantize_dynamic` skips on purpose. So DPT gains less from INT8 than CRN. The
  layers' fused eval "fast path" cannot run with quantized Linear weights, so `quantize_int8`
  routes them through the regular path. `quantize_int8` lives in `templates/export.py`, which
  the notebook's export section renders, so notebook and local INT8 files are the same.

The INT8 file holds `{"model": int8 state_dict, "config": {"model": name, "model_kwargs": ...},
"quantized": "dynamic_int8"}`; `load_int8` rebuilds the fp32 architecture, quantizes it and
loads the int8 weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from compat.torch_compat import torch_load
from templates.checkpoint import atomic_write
from templates.export import INT8_FORMAT, quantize_int8
from templates.models.registry import build_model


def model_config(model: nn.Module) -> dict:
    """`{"model": registry name, "model_kwargs": constructor kwargs}` of a MaskingModel."""
    return {"model": model.model_name, "model_kwargs": model.get_config()}


def save_int8(qmodel: nn.Module, path, config: dict) -> Path:
    """Write the quantized state_dict with the fp32 model's config (see `model_config`)."""
    state = {"model": qmodel.state_dict(), "config": config, "quantized": INT8_FORMAT}
    # atomic: an interrupted save leaves the previous file, never a truncated one to load
    return atomic_write(path, lambda fh: torch.save(state, fh))


# The dynamically quantized LSTM's packed weights are TorchBind objects (torch.ScriptObject):
# rebuilding one calls a C++ class that torch itself registered, never Python code from the file.
_INT8_SAFE_GLOBALS = (torch.ScriptObject,)


def _read_int8(path, trusted: bool):
    return torch_load(Path(path), map_location="cpu", trusted=trusted,
                      safe_globals=_INT8_SAFE_GLOBALS)


def is_int8_file(path, *, trusted: bool = False) -> bool:
    """True when `path` is a readable INT8 model file (its `quantized` tag is INT8_FORMAT).

    Read weights-only unless `trusted` (see `compat.torch_compat.torch_load`)."""
    try:
        obj = _read_int8(path, trusted)
    except Exception:  # missing, truncated, not a torch file, refused by the weights-only load
        return False
    return isinstance(obj, dict) and obj.get("quantized") == INT8_FORMAT


def load_int8(path, *, trusted: bool = False) -> nn.Module:
    """Rebuild an INT8 model written by `save_int8` (read weights-only unless `trusted`)."""
    path = Path(path)
    obj = _read_int8(path, trusted)
    if not isinstance(obj, dict) or obj.get("quantized") != INT8_FORMAT:
        raise ValueError(f"{path.name}: not an INT8 model file written by save_int8")
    cfg = obj["config"]
    qmodel = quantize_int8(build_model(cfg["model"], **cfg.get("model_kwargs", {})))
    qmodel.load_state_dict(obj["model"])
    return qmodel.eval()

