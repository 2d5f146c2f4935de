"""Metric change from INT8, and the VAD detector choice, measured on the local test set.

    python benchmarks/int8_quality.py [--steps 150] [--model crn_causal] [--out /tmp/int8q]

Builds the local dataset (smoke.dataset.build_local_dataset), trains a reduced model for
`--steps` Adam steps on aligned 1 s crops (CPU), then scores fp32 and INT8 (dynamic, LSTM +
Linear) on the test pairs with PESQ-wb, STOI and SI-SDR side by side, plus one-thread time per
file. Then compares the VAD detectors on the noisy test inputs against the clean reference's
activity (deploy.vad.compare_detectors).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import templates.models.crn_causal  # noqa: E402,F401
from compat.audio import load_audio  # noqa: E402
from deploy.quantize import quantize_int8  # noqa: E402
from deploy.vad import compare_detectors  # noqa: E402
from smoke.dataset import build_local_dataset  # noqa: E402
from templates.data import AlignedCropDataset, pair_files  # noqa: E402
from templates.losses import build_loss  # noqa: E402
from templates.metrics import pesq_wb, si_sdr, stoi_score  # noqa: E402
from templates.models.registry import build_model  # noqa: E402

SMALL = {"crn_causal": {"channels": [16, 32, 64], "hidden": 64},
         "crn": {"enc_channels": [16, 32, 64], "lstm_hidden": 64, "dec_channels": [32, 16, 8]},
         "dpt": {"d_model": 32, "n_heads": 4, "d_ff": 64}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--model", default="crn_causal", choices=sorted(SMALL))
    p.add_argument("--out", default="/tmp/int8_quality")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    root = build_local_dataset(Path(args.out) / "data", n_train=24, n_test=6, seed=0)
    train = pair_files(root / "train", root / "y_train").pairs
    test = pair_files(root / "test", root / "y_test").pairs
    ds = AlignedCropDataset(train, 16000, train=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True)
    model = build_model(args.model, **SMALL[args.model])
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    loss_fn = build_loss("mag_l1")
    step, t0 = 0, time.perf_counter()
    while step < args.steps:
        ds.set_epoch(step)
        for noisy, clean in loader:
            opt.zero_grad()
            loss = loss_fn(model(noisy), clean)
            loss.backward()
            opt.step()
            step += 1
            if step % 50 == 0 or step == args.steps:
                print(f"step {step}: loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)")
            if step >= args.steps:
                break
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_int8(model)
    torch.set_num_threads(1)
    sums = {k: {"pesq": 0.0, "stoi": 0.0, "si_sdr": 0.0, "sec": 0.0} for k in ("noisy", "fp32", "int8")}
    pairs = []
    for noisy_p, clean_p in test:
        x, c = load_audio(noisy_p), load_audio(clean_p)
        pairs.append((x.numpy(), c.numpy()))
        for name, net in (("noisy", None), ("fp32", model), ("int8", q)):
            t = time.perf_counter()
            with torch.no_grad():
                y = x if net is None else net(x[None])[0]
            s = sums[name]
            s["sec"] += time.perf_counter() - t
            s["pesq"] += pesq_wb(c.numpy(), y.numpy(), 16000) or 0.0
            s["stoi"] += stoi_score(c.numpy(), y.numpy(), 16000)
            s["si_sdr"] += float(si_sdr(y[None], c[None])[0])
    n = len(test)
    print(f"\n{args.model} {SMALL[args.model]}, {args.steps} steps; {n} local test files")
    print(f"{'':<7}{'PESQ':>8}{'STOI':>8}{'SI-SDR':>9}{'s/file':>9}")
    for name, s in sums.items():
        print(f"{name:<7}{s['pesq'] / n:>8.3f}{s['stoi'] / n:>8.3f}{s['si_sdr'] / n:>9.2f}"
              f"{s['sec'] / n:>9.3f}")
    print(f"INT8 speed-up (1 thread, whole files): {sums['fp32']['sec'] / sums['int8']['sec']:.2f}x")
    print("\nVAD on noisy test inputs vs clean-reference activity (30 ms frames):")
    print(f"{'detector':<10}{'acc':>7}{'prec':>7}{'rec':>7}{'F1':>7}")
    for r in compare_detectors(pairs):
        print(f"{r.detector:<10}{r.accuracy:>7.3f}{r.precision:>7.3f}{r.recall:>7.3f}{r.f1:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
