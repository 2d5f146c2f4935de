"""Metric change from INT8, and the VAD detector choice, measured on the local test set.

    python benchmarks/int8_quality.py [--steps 150] [--model crn_causal] [--out /tmp/int8q]
                                      [--speech-vad webrtc|energy|reference]

Builds the local dataset (smoke.dataset.build_local_dataset), trains a reduced model for
`--steps` Adam steps on aligned 1 s crops (CPU), then scores the noisy input, fp32 and INT8
(dynamic, LSTM + Linear) on the test pairs side by side with templates.metrics.score_pairs
(PESQ-wb, STOI, SI-SDR; a file a metric cannot score is left out of that metric's means, for all
three rows, and counted), plus speech-only SI-SDR and STOI (deploy.vad.speech_only_scores) over
the frames that `--speech-vad` marks as speech in the CLEAN reference, and one-thread time per
file. Then compares the VAD detectors on the noisy test inputs against the clean reference's
activity (deploy.vad.compare_detectors).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compat.audio import load_audio  # noqa: E402
from deploy.quantize import quantize_int8  # noqa: E402
from deploy.vad import (  # noqa: E402
    DEFAULT_DETECTOR,
    VADError,
    compare_detectors,
    make_detector,
    reference_activity,
    speech_only_scores,
)
from smoke.dataset import build_local_dataset  # noqa: E402
from templates.data import AlignedCropDataset, pair_files  # noqa: E402
from templates.losses import build_loss  # noqa: E402
from templates.metrics import score_pairs  # noqa: E402
from templates.models.registry import build_model  # noqa: E402

SMALL = {"crn_causal": {"channels": [16, 32, 64], "hidden": 64},
         "crn": {"enc_channels": [16, 32, 64], "lstm_hidden": 64, "dec_channels": [32, 16, 8]},
         "dpt": {"d_model": 32, "n_heads": 4, "d_ff": 64}}
SYSTEMS = ("noisy", "fp32", "int8")
# (key, column title); sp_* are over the speech frames of the clean reference only
METRICS = (("pesq", "PESQ"), ("stoi", "STOI"), ("si_sdr", "SI-SDR"),
           ("sp_si_sdr", "sp SI-SDR"), ("sp_stoi", "sp STOI"))
SPEECH_VADS = ("webrtc", "energy", "reference")


def speech_vad_label(speech_vad: str) -> str:
    return {"webrtc": "WebRTC VAD (aggressiveness 3)", "energy": "energy VAD",
            "reference": "clean-reference activity (frames within 40 dB of the loudest)"}[
        speech_vad]


def score_side_by_side(files, outputs, speech_vad: str = DEFAULT_DETECTOR, workers=None,
                       sample_rate: int = 16000) -> dict:
    """Noisy, fp32 and INT8 scores over the same files, per metric.

    files: [(name, clean (T,), noisy (T,))]; outputs: {"fp32": [(T,) ...], "int8": [...]} in
    the same order. Returns {"means": {system: {metric: float}}, "used": {metric: n files},
    "left_out": {metric: [(name, reason)]}, "speech_fraction": float}. A metric's means are over
    the files where it scored all three signals (NaN if none); the others are in left_out.
    """
    if speech_vad == "reference":
        detector = None
    elif speech_vad in SPEECH_VADS:
        detector = make_detector(speech_vad)  # fails here, once, if webrtcvad is missing
    else:
        raise VADError(f"unknown --speech-vad {speech_vad!r}; choose one of {list(SPEECH_VADS)}")
    n = len(files)
    items = [(f"{i}\t{system}", clean, noisy, outputs[system][i])
             for system in SYSTEMS[1:] for i, (_, clean, noisy) in enumerate(files)]
    table = score_pairs(items, sample_rate, workers)  # rows in input order
    values = {key: np.full((n, len(SYSTEMS)), np.nan) for key, _ in METRICS}
    why = {key: [[] for _ in range(n)] for key, _ in METRICS}
    cols = (("pesq", "pesq"), ("stoi", "stoi"), ("si_sdr", "sisdr"))
    for k, row in enumerate(table.rows):
        i, j = k % n, 1 + k // n
        for key, col in cols:
            values[key][i, 0] = getattr(row, f"{col}_noisy")
            values[key][i, j] = getattr(row, f"{col}_enh")
    for item, reasons in table.skipped:  # "pesq noisy: why; si_sdr enhanced: why; ..."
        i, system = item.split("\t")
        for reason in reasons.split("; "):
            metric, rest = reason.split(" ", 1)
            metric, rest = metric.rstrip(":"), rest.replace("enhanced:", f"{system}:", 1)
            for key, _ in cols:
                hit = metric == key or (metric == "pesq/stoi" and key != "si_sdr")
                if hit and rest not in why[key][int(i)]:
                    why[key][int(i)].append(rest)
    fractions = []
    for i, (_, clean, noisy) in enumerate(files):
        active = (reference_activity(clean, sample_rate) if detector is None
                  else detector(clean, sample_rate))
        for j, y in enumerate((noisy, outputs["fp32"][i], outputs["int8"][i])):
            sp = speech_only_scores(clean, y, active, sample_rate)
            values["sp_si_sdr"][i, j] = sp["si_sdr"]
            values["sp_stoi"][i, j] = math.nan if sp["stoi"] is None else sp["stoi"]
        fractions.append(sp["speech_fraction"])
        for key, title in METRICS[3:]:
            if not np.isfinite(values[key][i]).all():
                why[key][i].append(f"{fractions[-1]:.0%} of the file marked as speech, too "
                                   f"little for {title}")
    out = {"means": {system: {} for system in SYSTEMS}, "used": {}, "left_out": {},
           "speech_fraction": float(np.mean(fractions)) if fractions else math.nan}
    for key, _ in METRICS:
        ok = np.isfinite(values[key]).all(axis=1)
        out["used"][key] = int(ok.sum())
        out["left_out"][key] = [(files[i][0], "; ".join(why[key][i]) or "not scored")
                                for i in range(n) if not ok[i]]
        for j, system in enumerate(SYSTEMS):
            out["means"][system][key] = float(values[key][ok, j].mean()) if ok.any() else math.nan
    return out


def format_report(scores: dict, seconds: dict, n_files: int, speech_vad: str) -> str:
    """The side-by-side table, what was left out, and the INT8 speed-up."""
    fmt = {"pesq": ".3f", "stoi": ".3f", "si_sdr": ".2f", "sp_si_sdr": ".2f", "sp_stoi": ".3f"}
    lines = [f"{'':<7}" + "".join(f"{title:>11}" for _, title in METRICS) + f"{'s/file':>9}"]
    for system in SYSTEMS:
        cells = "".join(f"{scores['means'][system][key]:>11{fmt[key]}}" for key, _ in METRICS)
        sec = "-" if system == "noisy" else f"{seconds[system] / n_files:.3f}"
        lines.append(f"{system:<7}{cells}{sec:>9}")
    lines.append(f"sp = speech frames only: those the {speech_vad_label(speech_vad)} marks as "
                 f"speech in the CLEAN reference (30 ms frames, "
                 f"{scores['speech_fraction']:.0%} of the samples on average)")
    for key, title in METRICS:
        left = scores["left_out"][key]
        if left:
            lines.append(f"{title}: {len(left)} of {n_files} files skipped (left out of all three "
                         f"rows): " + "; ".join(f"{name} ({why})" for name, why in left))
    if not any(scores["left_out"].values()):
        lines.append(f"skipped: none (every metric scored all {n_files} files)")
    lines.append(f"INT8 speed-up (1 thread, whole files): "
                 f"{seconds['fp32'] / seconds['int8']:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--model", default="crn_causal", choices=sorted(SMALL))
    p.add_argument("--out", default="/tmp/int8_quality")
    p.add_argument("--n-test", type=int, default=6, help="local test files")
    p.add_argument("--speech-vad", default=DEFAULT_DETECTOR, choices=SPEECH_VADS,
                   help="what marks the speech frames of the clean reference for the sp columns")
    args = p.parse_args(argv)
    if args.speech_vad != "reference":
        try:
            make_detector(args.speech_vad)  # before minutes of training, not after
        except VADError as e:
            p.error(str(e))
    torch.manual_seed(0)
    root = build_local_dataset(Path(args.out) / "data", n_train=24, n_test=args.n_test, seed=0)
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
    files, outputs, seconds = [], {"fp32": [], "int8": []}, {"fp32": 0.0, "int8": 0.0}
    for noisy_p, clean_p in test:
        x, c = load_audio(noisy_p), load_audio(clean_p)
        files.append((Path(noisy_p).name, c.numpy(), x.numpy()))
        for name, net in (("fp32", model), ("int8", q)):
            t = time.perf_counter()
            with torch.no_grad():
                y = net(x[None])[0]
            seconds[name] += time.perf_counter() - t
            outputs[name].append(y.numpy())
    scores = score_side_by_side(files, outputs, args.speech_vad)
    pairs = [(noisy, clean) for _, clean, noisy in files]
    print(f"\n{args.model} {SMALL[args.model]}, {args.steps} steps; {len(test)} local test files")
    print(format_report(scores, seconds, len(test), args.speech_vad))
    print("\nVAD on noisy test inputs vs clean-reference activity (30 ms frames):")
    print(f"{'detector':<10}{'acc':>7}{'prec':>7}{'rec':>7}{'F1':>7}")
    for r in compare_detectors(pairs):
        print(f"{r.detector:<10}{r.accuracy:>7.3f}{r.precision:>7.3f}{r.recall:>7.3f}{r.f1:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
