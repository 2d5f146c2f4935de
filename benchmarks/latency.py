"""Per-hop compute time, real-time factor and size on disk: CRN, DPT, causal CRN, compact CRN x
fp32/INT8/ONNX.

    python benchmarks/latency.py [--repeats 20] [--hops 300] [--work DIR] [--models compact_crn ...]

One CPU thread (torch.set_num_threads(1), onnxruntime intra-op 1), all rows in one run.
Two definitions, named in the `def` column:
- `crop`: time to enhance one 3 s crop (STFT + masker + iSTFT; 188 hops) / 188. Throughput per
  hop of an offline model; NOT the latency of a stream.
- `stream`: time of one `StreamingEnhancer.process(256 samples)` call of a causal model
  (`crn_causal`, `compact_crn`; one frame: FFT, masker_step with carried state, inverse FFT,
  overlap-add). This is the per-frame compute a real-time stream pays; p99 over `--hops` calls.
  Its `onnx` row runs each step in onnxruntime (`deploy/onnx_streaming.py`: the step exported
  with its state as inputs and outputs), which removes eager PyTorch's per-operator overhead.
RTF = median ms per hop / 16 ms (hop duration). Budget from the seed: < 15 ms per frame; the
compact model's target is RNNoise's compute, RTF < 0.05 at one thread.
Two clocks per row: wall time (`ms/hop med`, `p99`, `RTF`, and `min`, the least-disturbed
call), what a stream on THIS machine gets,
and this thread's CPU time (`cpu ms`, `RTF cpu`: `time.thread_time`), the compute itself. With
one compute thread (torch and onnxruntime run in the calling thread) the CPU time leaves out
the time other processes hold the cores, so it stays comparable on a shared machine, where
wall time can grow several-fold (the load average is printed).
Algorithmic latency (window + lookahead) of the causal models is printed: 32 ms + 0 ms.
Weights are random (timing does not depend on them); sizes are files written here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.onnx_export import OnnxEnhancer, export_masker_onnx  # noqa: E402
from deploy.onnx_streaming import OnnxStepModel, export_step_onnx  # noqa: E402
from deploy.quantize import model_config, quantize_int8, save_int8  # noqa: E402
from deploy.streaming import ALGORITHMIC_LATENCY_MS, StreamingEnhancer  # noqa: E402
from templates.models.catalog import catalog_names  # noqa: E402
from templates.models.registry import build_model, count_parameters  # noqa: E402

MODELS = tuple(catalog_names())  # every row of the model table

SR, HOP = 16000, 256
HOP_MS = 1000.0 * HOP / SR


def _row(model, variant, definition, per_hop, cpu_per_hop, size_mb):
    return {"model": model, "variant": variant, "def": definition,
            "median": statistics.median(per_hop), "p99": float(np.percentile(per_hop, 99)),
            "rtf": statistics.median(per_hop) / HOP_MS,
            "min": min(per_hop), "cpu_median": statistics.median(cpu_per_hop),
            "rtf_cpu": statistics.median(cpu_per_hop) / HOP_MS, "size_mb": size_mb}


def _timed_calls(fn, calls) -> tuple[list, list]:
    """(wall ms, this thread's CPU ms) of `fn(c)` for each c in `calls`."""
    wall, cpu = [], []
    for c in calls:
        t0, c0 = time.perf_counter(), time.thread_time()
        fn(c)
        cpu.append(1000.0 * (time.thread_time() - c0))
        wall.append(1000.0 * (time.perf_counter() - t0))
    return wall, cpu


def run(repeats: int = 20, hops: int = 300, work: Path | None = None,
        models=MODELS) -> list[dict]:
    torch.set_num_threads(1)
    work = Path(work or tempfile.mkdtemp(prefix="latency_"))
    torch.manual_seed(0)
    crop = 0.1 * torch.randn(1, 3 * SR)
    n_hops = 1 + crop.shape[-1] // HOP
    rows = []
    for name in models:
        m = build_model(name).eval()
        print(f"{name}: {count_parameters(m):,} parameters", flush=True)
        sd = work / f"{name}.pth"
        torch.save(m.state_dict(), sd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = quantize_int8(m)
            qp = save_int8(q, work / f"{name}_int8.pth", model_config(m))
        onnx_path = export_masker_onnx(m, work / f"{name}_masker.onnx", n_frames=n_hops)
        ox = OnnxEnhancer(m, onnx_path, threads=1)
        with torch.no_grad():
            for variant, fn, path in (("fp32", lambda m=m: m(crop), sd),
                                      ("int8", lambda q=q: q(crop), qp),
                                      ("onnx", lambda ox=ox: ox(crop), onnx_path)):
                fn()  # warm-up (allocations, lazy init)
                wall, cpu = _timed_calls(lambda _c, fn=fn: fn(), range(repeats))
                rows.append(_row(name, variant, "crop", [t / n_hops for t in wall],
                                 [t / n_hops for t in cpu], path.stat().st_size / 2**20))
            if not hasattr(m, "masker_step"):  # offline models do not stream
                continue
            step_path = export_step_onnx(m, work / f"{name}_step.onnx")
            for variant, mod, path in (("fp32", m, sd), ("int8", q, qp),
                                       ("onnx", OnnxStepModel(m, step_path), step_path)):
                s = StreamingEnhancer(mod)
                chunks = 0.1 * torch.randn(hops + 5, HOP)
                for c in chunks[:5]:
                    s.process(c)  # past the start-up (first output block)
                wall, cpu = _timed_calls(s.process, chunks[5:])
                rows.append(_row(name, variant, "stream", wall, cpu,
                                 path.stat().st_size / 2**20))
    return rows


def format_table(rows) -> str:
    head = (f"{'model':<13}{'variant':<8}{'def':<8}{'ms/hop med':>11}{'p99':>8}{'min':>7}{'RTF':>8}"
            f"{'cpu ms':>8}{'RTF cpu':>8}{'size MB':>9}{'vs fp32':>9}")
    lines = [head, "-" * len(head)]
    base = {(r["model"], r["def"]): r["median"] for r in rows if r["variant"] == "fp32"}
    for r in rows:
        speed = base[(r["model"], r["def"])] / r["median"]
        lines.append(f"{r['model']:<13}{r['variant']:<8}{r['def']:<8}{r['median']:>11.3f}"
                     f"{r['p99']:>8.3f}{r['min']:>7.3f}{r['rtf']:>8.4f}{r['cpu_median']:>8.3f}"
                     f"{r['rtf_cpu']:>8.4f}"
                     f"{r['size_mb']:>9.2f}{speed:>8.2f}x")
    lines.append(f"hop = {HOP_MS:.0f} ms; budget < 15 ms per frame (RNNoise-class: RTF < 0.05); "
                 f"causal models' algorithmic latency = {ALGORITHMIC_LATENCY_MS:.0f} ms window + "
                 f"0 ms lookahead; 1 CPU thread")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--hops", type=int, default=300)
    p.add_argument("--work", default=None, help="folder for the model files (default: temp)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                   help="models to time (default all)")
    args = p.parse_args(argv)
    rows = run(args.repeats, args.hops, args.work, models=args.models)
    print(format_table(rows))
    # Other processes on the machine inflate every row; the load says how much to trust them.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} CPUs during this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
