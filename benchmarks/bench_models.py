"""CPU throughput of the full-size models: training steps and real-time factor.

    python benchmarks/bench_models.py [--threads 2] [--steps 3] [--warmup 1] [--models crn dpt compact_crn]

Per model: forward + backward + Adam step at the seed's batch sizes (CRN 16, DPT 8) on 3 s
crops, a few warm-up steps and then timed ones (steps/s and seconds of audio per second), and
the real-time factor (processing time / audio duration) of enhancing one 17 s file in eval
mode without gradients. Figures depend on the machine and on other load; compare models
measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch

from templates.config import RunConfig
from templates.losses import build_loss
from templates.models.catalog import model_row
from templates.models.registry import build_model, count_parameters

SAMPLE_RATE = 16000


def notebook_batch_size(name: str) -> int:
    """The model's notebook ``BATCH_SIZE``: its table row's, else ``RunConfig``'s default."""
    return model_row(name).defaults.get("batch_size", RunConfig.batch_size)


def bench_training(name: str, batch: int, steps: int, warmup: int, crop_s: float = 3.0) -> dict:
    """Time `steps` optimiser steps after `warmup` untimed ones; returns steps/s, audio s/s."""
    model = build_model(name).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = build_loss("mag_l1")
    gen = torch.Generator().manual_seed(0)
    n = int(crop_s * SAMPLE_RATE)
    clean = torch.randn(batch, n, generator=gen) * 0.05
    noisy = clean + torch.randn(batch, n, generator=gen) * 0.05

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(noisy), clean).backward()
        opt.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    return {
        "steps_per_s": steps / elapsed,
        "audio_s_per_s": steps * batch * crop_s / elapsed,
        "s_per_step": elapsed / steps,
    }


def bench_rtf(name: str, seconds: float = 17.0, repeats: int = 2) -> float:
    """Real-time factor of enhancing one file of `seconds` in eval mode (best of `repeats`)."""
    model = build_model(name).eval()
    wav = torch.randn(1, int(seconds * SAMPLE_RATE)) * 0.05
    best = float("inf")
    with torch.no_grad():
        model(wav[:, :SAMPLE_RATE])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(wav)
            best = min(best, time.perf_counter() - start)
    return best / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["crn", "dpt"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU")
    for name in args.models:
        batch = notebook_batch_size(name)
        train = bench_training(name, batch, args.steps, args.warmup)
        rtf = bench_rtf(name)
        print(
            f"{name}: params {count_parameters(build_model(name))}, batch {batch} x 3 s: "
            f"{train['steps_per_s']:.3f} steps/s ({train['s_per_step']:.2f} s/step), "
            f"{train['audio_s_per_s']:.1f} s audio/s; 17 s file RTF {rtf:.3f}"
        )


if __name__ == "__main__":
    main()
