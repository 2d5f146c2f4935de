"""Export section: INT8 and ONNX artefacts of the trained model and a CPU latency table.

`export_artifacts(model, work_dir)` writes `<model>_int8.pth` (nn.LSTM, nn.GRU and nn.Linear
dynamically quantized to int8; convolutions and nn.MultiheadAttention stay fp32) and `<model>_masker.onnx`
(the masker only: magnitude (1, 1, F, N) -> mask (1, F, N); the STFT stays outside), then times
fp32, INT8 and ONNX Runtime on this machine's CPU with one thread. Per-hop time here is the time
to enhance one 3 s crop divided by its number of hops (188): the models are not streaming, so
this is throughput per hop, not the latency of a frame-by-frame stream. A hop is 16 ms of audio.
When onnx/onnxruntime are missing the ONNX part is skipped with a printed reason.

INT8 uses `torch.ao.quantization.quantize_dynamic`, deprecated since torch 2.10 (a
DeprecationWarning at each call: "will be removed"). Its named successor, torchao's `quantize_`,
has no LSTM kernel and is not in Kaggle's image, so the export keeps the torch API while torch has
it and silences exactly that known warning; where torch no longer has it, the INT8 file and
latency row are skipped and the reason is recorded in the summary (`int8_skipped`), never a crash.
"""

import copy
import io
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from compat.sample_rate import SAMPLE_RATE
from templates.checkpoint import atomic_write
from templates.outputs import int8_name, onnx_masker_name

# The `quantized` tag of an INT8 file; `deploy.quantize.load_int8` reads these files too.
INT8_FORMAT = "dynamic_int8"
# onnxruntime reproduces torch's mask within this (measured around 1e-6).
ONNX_MASK_TOLERANCE = 1e-4


# The deprecation torch 2.10+ prints for torch.ao.quantization (handled: see the module docstring).
_AO_DEPRECATION = r"(?s).*torch\.ao\.quantization is deprecated"


class Int8Unavailable(RuntimeError):
    """This torch has no eager dynamic INT8 quantization (torch.ao.quantization was removed)."""


def quantize_int8(model: nn.Module) -> nn.Module:
    """An eval-mode CPU copy of `model` with nn.LSTM, nn.GRU (compact_crn's recurrences) and
    nn.Linear dynamically quantized to int8.

    Raises `Int8Unavailable` naming the torch version when torch no longer has the API.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_AO_DEPRECATION, category=DeprecationWarning)
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as exc:
            raise Int8Unavailable(
                f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic "
                f"(removed after its deprecation in torch 2.10): {exc}") from exc
        q = quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.LSTM, nn.GRU, nn.Linear},
                             dtype=torch.qint8)
    for mod in q.modules():
        if isinstance(mod, nn.TransformerEncoderLayer):
            # The eval-mode "fast path" reads linear1.weight as a tensor, but a dynamically
            # quantized Linear's weight is a method (AttributeError in torch 2.13). Any hook
            # on the layer makes it take the regular path, which calls the quantized modules.
            mod.register_forward_pre_hook(_regular_path_hook)
    return q


def _regular_path_hook(module, args):
    """No-op pre-hook whose presence disables TransformerEncoderLayer's fused fast path."""
    return None


def time_calls_ms(fn, repeats: int) -> list:
    """Milliseconds of each of `repeats` calls of `fn`, after one warm-up call."""
    fn()  # warm-up (allocations, lazy init)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - t0))
    return times


def _row(name: str, times_ms: list, n_hops: int, hop_ms: float, size_mb) -> dict:
    per_hop = [t / n_hops for t in times_ms]
    return {
        "variant": name,
        "ms_per_hop_median": round(statistics.median(per_hop), 4),
        "ms_per_hop_max": round(max(per_hop), 4),
        "rtf": round(statistics.median(per_hop) / hop_ms, 5),
        "size_mb": None if size_mb is None else round(size_mb, 3),
    }


def export_artifacts(model: nn.Module, work_dir, sample_rate: int = SAMPLE_RATE, repeats: int = 5) -> dict:
    """Write `<model>_int8.pth` and `<model>_masker.onnx` under `work_dir`; time them on CPU.

    Returns `{"int8_path" (or None), "int8_skipped" (reason or None), "onnx_path" (or None),
    "onnx_skipped" (reason or None),
    "latency": [rows of variant, ms_per_hop_median, ms_per_hop_max, rtf, size_mb], "definition"}`
    for the summary JSON.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    name = getattr(model, "model_name", "") or type(model).__name__.lower()
    fp32 = copy.deepcopy(model).cpu().eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32_mb = _saved_mb(fp32.state_dict())  # in memory: the work folder gets only exports
        int8, int8_path, int8_skipped = None, None, None
        try:
            int8 = quantize_int8(fp32)
        except Int8Unavailable as exc:
            int8_skipped = str(exc)
        if int8 is not None:
            int8_path = work / int8_name(name)
            int8_state = {"model": int8.state_dict(), "config": {"model": name,
                          "model_kwargs": fp32.get_config()}, "quantized": INT8_FORMAT}
            atomic_write(int8_path, lambda fh: torch.save(int8_state, fh))

        crop = torch.randn(1, 3 * sample_rate) * 0.1
        hop = fp32.front_end.hop
        n_hops = fp32.front_end.num_frames(crop.shape[-1])
        hop_ms = 1000.0 * hop / sample_rate
        rows = []
        with torch.no_grad():
            rows.append(_row("fp32", time_calls_ms(lambda: fp32(crop), repeats), n_hops,
                                    hop_ms, fp32_mb))
            if int8 is not None:
                rows.append(_row("int8", time_calls_ms(lambda: int8(crop), repeats),
                                        n_hops, hop_ms, int8_path.stat().st_size / 2**20))
        onnx_path, skipped = _onnx_masker(fp32, work / onnx_masker_name(name), n_hops)
        if onnx_path is not None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            sess = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                        providers=["CPUExecutionProvider"])
            fe = fp32.front_end

            def _onnx_enhance():
                spec = fe.stft(crop)
                feats = fp32.masker_input(spec).numpy()
                mask = mask_from_onnx(sess.run(None, {"magnitude": feats})[0])
                return fe.istft(fe.apply_mask(spec, mask), crop.shape[-1])

            with torch.no_grad():
                rows.append(_row("onnx", time_calls_ms(_onnx_enhance, repeats), n_hops,
                                        hop_ms, onnx_path.stat().st_size / 2**20))
    finally:
        torch.set_num_threads(threads)
    print(f"{'variant':<8} {'ms/hop':>8} {'max':>8} {'RTF':>8} {'MB':>8}   (hop = {hop_ms:.0f} ms)")
    for r in rows:
        print(f"{r['variant']:<8} {r['ms_per_hop_median']:>8.3f} {r['ms_per_hop_max']:>8.3f} "
              f"{r['rtf']:>8.4f} {r['size_mb']:>8.2f}")
    if int8_skipped:
        print(f"INT8 export skipped: {int8_skipped}")
    if skipped:
        print(f"ONNX export skipped: {skipped}")
    return {
        "int8_path": None if int8_path is None else str(int8_path),
        "int8_skipped": int8_skipped,
        "onnx_path": None if onnx_path is None else str(onnx_path),
        "onnx_skipped": skipped,
        "latency": rows,
        "definition": "ms per hop = time to enhance one 3 s crop (1 CPU thread) / hops in it",
    }


def _saved_mb(state: dict) -> float:
    """Size in MB of ``state`` as ``torch.save`` writes it (the latency table's fp32 row)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes / 2**20


def _onnx_masker(model: nn.Module, path: Path, n_frames: int):
    """(path, None) after exporting the masker with a dynamic frame axis, or (None, reason)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return None, f"onnx/onnxruntime not installed ({exc}); pip install onnx onnxruntime"
    try:
        return export_masker_onnx(model, path, n_frames=n_frames), None
    except Exception as exc:  # exporter generations differ; the run must go on without ONNX
        return None, f"ONNX export failed: {type(exc).__name__}: {exc}"


def _in_channels(model: nn.Module) -> int:
    return int(getattr(model, "in_channels", 1))


def mask_from_onnx(out) -> torch.Tensor:
    """The ONNX masker's output as a mask: (1, F, N) real stays, (1, 2, F, N) -> complex (1, F, N)."""
    out = torch.as_tensor(out)
    return torch.complex(out[:, 0], out[:, 1]) if out.dim() == 4 else out


class OnnxMaskerGraph(nn.Module):
    """`model.masker` as a module for export: (B, C_in, F, N) `masker_input` features -> mask
    (B, F, N), or (B, 2, F, N) real and imaginary parts for a complex ratio mask."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        return self.model.masker(mag)


def _attention_forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                              attn_mask=None, average_attn_weights=True, is_causal=False):
    """`nn.MultiheadAttention.forward` for ONNX tracing: unmasked self-attention in eval mode.

    The same math as `F.multi_head_attention_forward` (packed in-projection, scaled dot-product
    attention, out-projection), but no reshape names a sequence or batch length: heads are split
    and merged on the feature axis only. torch's own code reshapes with the sequence length as a
    Python int, which the legacy exporter writes into the graph as a constant
    (pytorch/pytorch#135691, #122321), so a DPT graph ran only at the export's frame count.
    """
    if (key_padding_mask is not None or attn_mask is not None or need_weights or is_causal
            or self.training or not self._qkv_same_embed_dim or self.bias_k is not None
            or self.add_zero_attn or not (query is key is value)):
        raise NotImplementedError("ONNX export handles unmasked eval-mode self-attention only "
                                  "(need_weights=False, no bias_k/add_zero_attn)")
    x = query if self.batch_first else query.transpose(0, 1)  # B, L, E
    qkv = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)  # B, L, 3E
    heads = (self.num_heads, self.head_dim)
    q, k, v = (t.unflatten(-1, heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))  # B, H, L, D
    out = nn.functional.scaled_dot_product_attention(q, k, v)  # B, H, L, D
    out = nn.functional.linear(out.transpose(1, 2).flatten(2), self.out_proj.weight,
                               self.out_proj.bias)  # B, L, E
    return (out if self.batch_first else out.transpose(0, 1)), None


def export_masker_onnx(model: nn.Module, path, n_frames: int = 64, opset: int = 17,
                       check: bool = True) -> Path:
    """Write `model`'s masker to `path` (.onnx): magnitude (1, 1, F, N) -> mask (1, F, N), N dynamic.

    Exports a CPU eval copy (the model itself is untouched) whose `nn.MultiheadAttention` layers
    trace through `_attention_forward`, with torch's legacy exporter (seconds; the dynamo
    exporter, which needs onnxscript, is the fallback). With `check`, onnxruntime runs the graph
    at `n_frames` and at two other lengths and must match torch within `ONNX_MASK_TOLERANCE`;
    a `RuntimeError` naming the file says otherwise.
    """
    import types

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = OnnxMaskerGraph(copy.deepcopy(model).cpu().eval()).eval()
    graph.model.export_mask_pair = True  # a complex mask leaves the graph as (1, 2, F, N)
    for mod in graph.modules():
        if isinstance(mod, nn.MultiheadAttention):
            mod.forward = types.MethodType(_attention_forward, mod)
    mag = torch.rand(1, _in_channels(model), model.n_freq, n_frames)
    with warnings.catch_warnings():
        # Known and handled, so not shown: tracing notes, the legacy exporter's notes from inside
        # torch.onnx, and its deprecation (torch>=2.9; where it is gone the dynamo exporter below
        # takes over). Anything else still reaches the notebook's output.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r"(?s).*legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        try:
            torch.onnx.export(graph, (mag,), str(path), input_names=["magnitude"],
                              output_names=["mask"], opset_version=opset, dynamo=False,
                              dynamic_axes={"magnitude": {3: "frames"}, "mask": {2: "frames"}})
        except Exception as legacy_exc:  # the legacy exporter may be gone in a later torch
            try:
                frames = torch.export.Dim("frames", min=2, max=1_000_000)
                torch.onnx.export(graph, (mag,), str(path), input_names=["magnitude"],
                                  output_names=["mask"], dynamic_shapes=({3: frames},),
                                  dynamo=True)
            except Exception as exc:
                raise RuntimeError(f"{path.name}: ONNX export failed; legacy exporter: "
                                   f"{type(legacy_exc).__name__}: {legacy_exc}; dynamo exporter: "
                                   f"{type(exc).__name__}: {exc}") from exc
    if check:
        _check_onnx_masker(graph, path, (n_frames, max(2, n_frames // 2), n_frames + 7))
    return path


def _check_onnx_masker(graph: nn.Module, path: Path, frame_counts) -> None:
    """onnxruntime's mask equals torch's at each frame count, else RuntimeError naming `path`."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n_freq = graph.model.n_freq
    for n in frame_counts:
        mag = torch.rand(1, _in_channels(graph.model), n_freq, n) * 3
        try:
            out = sess.run(None, {"magnitude": mag.numpy()})[0]
        except Exception as exc:
            raise RuntimeError(f"{path.name}: the exported masker fails at {n} frames (exported "
                               f"at {frame_counts[0]}): {str(exc).splitlines()[0]}") from exc
        with torch.no_grad():
            ref = graph(mag)
        err = float((torch.from_numpy(out) - ref).abs().max()) if out.shape == ref.shape else None
        # tanh (a complex mask's parts) has slope up to 1, the real mask's sigmoid 0.25: the same
        # float error in the logits moves a complex mask up to four times as far
        tol = ONNX_MASK_TOLERANCE * (4 if getattr(graph.model, "output", "mask") == "crm" else 1)
        if err is None or err > tol:
            raise RuntimeError(f"{path.name}: ONNX mask differs from torch at {n} frames "
                               f"(shape {out.shape} vs {tuple(ref.shape)}, max error {err})")
