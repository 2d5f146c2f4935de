"""Quality of our models against the peers a user would otherwise run, in one table.

    python benchmarks/quality.py --minutes M [--model SPEC ...] [--peer NAME ...] [--data DIR]
                                 [--threads 2] [--batch-size 4] [--crop-seconds 2] [--lr 1e-3]
                                 [--seed 0] [--out FILE.md]

Each model SPEC (`NAME` or `NAME:key=value,...`, e.g. `crn:output=crm,loss=hybrid`; `loss` and
`lr` are training options, every other key a constructor argument) is trained from scratch on
the CPU for the same wall-clock budget of M minutes on the training pairs, then enhances every
held-out test pair at full length (`templates.evaluate.enhance_waveform`). The peers
(`templates.peers.PEERS`: the noisy input, a Wiener filter, noisereduce, RNNoise) enhance the
same files. One `templates.metrics.score_pairs` call per row scores PESQ-wb, STOI and SI-SDR;
RTF is processing time / audio duration on this machine's CPU (`--threads`).

Without `--model` every registered model (`templates.models.registry.model_names()`) is a row at
its defaults, so a new model module is benchmarked without editing this file. Without `--data`
the real-speech dataset is built once (`smoke/dataset.py --real --held-out`: test speaker and
test noises never seen in training) under ~/.cache/se-toolkit/quality-data. Figures depend on
the machine and its load: compare rows of one run, never runs on different machines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compat.audio import load_audio  # noqa: E402
from compat.sample_rate import SAMPLE_RATE  # noqa: E402
from templates.config import RunConfig  # noqa: E402
from templates.data import AlignedCropDataset, make_loader, pair_files  # noqa: E402
from templates.evaluate import enhance_waveform  # noqa: E402
from templates.losses import build_loss  # noqa: E402
from templates.metrics import score_pairs  # noqa: E402
from templates.models.registry import build_model, count_parameters, model_names  # noqa: E402
from templates.peers import PEERS, PeerUnavailable  # noqa: E402

DEFAULT_DATA = Path.home() / ".cache" / "se-toolkit" / "quality-data"
DATA_ARGS = {"n_train": 64, "n_test": 10, "seconds": (4.0, 8.0), "seed": 0}
TRAIN_KEYS = ("loss", "lr")
#: Fraction of the budget over which models with `default_warmup_epochs > 0` warm the lr up.
WARMUP_FRACTION = 0.1


@dataclass
class ModelSpec:
    """One model row: registry name, constructor kwargs, training loss and learning rate."""

    label: str
    name: str
    kwargs: dict
    loss: str = RunConfig.loss  # the notebooks' default loss
    lr: float | None = None


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_model_spec(text: str) -> ModelSpec:
    """`crn` or `crn:output=crm,loss=hybrid` -> ModelSpec (ValueError naming the bad part)."""
    name, _, rest = text.partition(":")
    known = model_names()
    if name not in known:
        raise ValueError(f"--model {text!r}: unknown model {name!r}; known: {', '.join(known)}")
    kwargs, train = {}, {}
    # split at commas that start a new key (a JSON list value may hold commas)
    for part in filter(None, re.split(r",(?=[A-Za-z_]\w*=)", rest)):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f"--model {text!r}: {part!r} is not key=value")
        (train if key in TRAIN_KEYS else kwargs)[key] = _value(value)
    build_model(name, **kwargs)  # fail now, not after other rows trained for minutes
    loss = str(train.get("loss", RunConfig.loss))
    build_loss(loss)
    lr = float(train["lr"]) if "lr" in train else None
    return ModelSpec(text, name, kwargs, loss, lr)


def ensure_data(data: Path | None) -> Path:
    """The dataset folder: `data` as given, else the held-out real-speech set (built once)."""
    if data is not None:
        return Path(data)
    if not (DEFAULT_DATA / "manifest.json").is_file():
        from smoke.dataset import build_local_dataset

        print(f"building the real-speech dataset (held-out test voice and noises) in "
              f"{DEFAULT_DATA} ...", flush=True)
        build_local_dataset(DEFAULT_DATA, real=True, held_out=True, **DATA_ARGS)
    return DEFAULT_DATA


def load_split(root: Path, noisy: str, clean: str):
    """Pairs of (noisy, clean) paths of one split; FileNotFoundError naming the folder."""
    nd, cd = root / noisy, root / clean
    for folder in (nd, cd):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing; --data needs train/, y_train/, test/, "
                                    f"y_test/ (python smoke/dataset.py --out DIR --real)")
    pairs = pair_files(nd, cd).pairs
    if not pairs:
        raise FileNotFoundError(f"{nd}: no noisy/clean pairs with matching names in {cd}")
    return pairs


def train_for(spec: ModelSpec, train_pairs, seconds: float, *, batch_size: int,
              crop_seconds: float, lr: float, seed: int):
    """Train a fresh model for `seconds` of wall clock; returns (model, steps, last loss)."""
    torch.manual_seed(seed)
    model = build_model(spec.name, **spec.kwargs).train()
    loss_fn = build_loss(spec.loss)
    lr = spec.lr if spec.lr is not None else lr
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ds = AlignedCropDataset(train_pairs, int(crop_seconds * SAMPLE_RATE), train=True,
                            sample_rate=SAMPLE_RATE, seed=seed)
    loader = make_loader(ds, batch_size, shuffle=True, num_workers=0, seed=seed, drop_last=True)
    warmup = WARMUP_FRACTION * seconds if getattr(model, "default_warmup_epochs", 0) else 0.0
    steps, losses, epoch = 0, [], 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        epoch += 1
        ds.set_epoch(epoch)
        for noisy, clean in loader:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (elapsed + 1e-3) / warmup) if warmup else lr
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(noisy), clean)
            if not torch.isfinite(loss):
                raise RuntimeError(f"{spec.label}: loss became {loss.item()} at step {steps}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            steps += 1
            losses.append(float(loss.detach()))
    return model.eval(), steps, float(np.mean(losses[-20:])) if losses else math.nan


def _row(label, table, rtf, params="", steps="", note=""):
    m = table.means()["enhanced"]
    return {"row": label, "params": params, "steps": steps, "pesq": m["pesq"], "stoi": m["stoi"],
            "si_sdr": m["si_sdr"], "rtf": rtf, "files": table.n_scored, "note": note}


def format_table(rows: list[dict]) -> str:
    """Markdown table of the rows (NaN shown as n/a)."""
    def f(v, fmt):
        return "n/a" if isinstance(v, float) and not math.isfinite(v) else format(v, fmt)

    lines = ["| row | params | train steps | PESQ | STOI | SI-SDR dB | RTF | files |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        params = f"{r['params']:,}" if isinstance(r["params"], int) else r["params"]
        lines.append(f"| {r['row']}{' (' + r['note'] + ')' if r['note'] else ''} | {params} | "
                     f"{r['steps']} | {f(r['pesq'], '.3f')} | {f(r['stoi'], '.3f')} | "
                     f"{f(r['si_sdr'], '.2f')} | {f(r['rtf'], '.3f')} | {r['files']} |")
    return "\n".join(lines)


def run_benchmark(minutes: float, specs: list[ModelSpec], peers: list[str], data: Path, *,
                  threads: int = 2, batch_size: int = 4, crop_seconds: float = 2.0,
                  lr: float = 1e-3, seed: int = 0, echo=print) -> list[dict]:
    """Train each spec for `minutes`, enhance the test pairs, score every row; returns rows."""
    torch.set_num_threads(threads)
    train_pairs = load_split(data, "train", "y_train")
    test_pairs = load_split(data, "test", "y_test")
    tests = [(n.name, load_audio(n).numpy(), load_audio(c).numpy()) for n, c in test_pairs]
    audio_s = sum(len(x) for _, x, _ in tests) / SAMPLE_RATE
    echo(f"data {data}: {len(train_pairs)} training pairs, {len(tests)} test pairs "
         f"({audio_s:.0f} s); {minutes:g} min per model, {threads} threads, batch {batch_size} "
         f"x {crop_seconds:g} s crops, lr {lr:g}")
    rows = []
    workers = max(1, min(threads, len(tests)))
    for peer in peers:
        fn = PEERS[peer]
        try:
            t0 = time.perf_counter()
            outs = [fn(x, SAMPLE_RATE) for _, x, _ in tests]
            rtf = 0.0 if peer == "noisy" else (time.perf_counter() - t0) / audio_s
        except PeerUnavailable as exc:
            echo(f"{peer}: skipped: {exc}")
            continue
        table = score_pairs([(n, c, x, y) for (n, x, c), y in zip(tests, outs, strict=True)],
                            SAMPLE_RATE, workers=workers)
        rows.append(_row(peer, table, rtf, note="input" if peer == "noisy" else ""))
        echo(f"{peer}: PESQ {rows[-1]['pesq']:.3f}, STOI {rows[-1]['stoi']:.3f}, "
             f"SI-SDR {rows[-1]['si_sdr']:.2f} dB")
    for spec in specs:
        echo(f"{spec.label}: training {minutes:g} min (loss {spec.loss}) ...")
        model, steps, last = train_for(spec, train_pairs, minutes * 60.0, batch_size=batch_size,
                                       crop_seconds=crop_seconds, lr=lr, seed=seed)
        t0 = time.perf_counter()
        outs = [enhance_waveform(model, torch.from_numpy(x).float(), "cpu").numpy()
                for _, x, _ in tests]
        rtf = (time.perf_counter() - t0) / audio_s
        table = score_pairs([(n, c, x, y) for (n, x, c), y in zip(tests, outs, strict=True)],
                            SAMPLE_RATE, workers=workers)
        rows.append(_row(spec.label, table, rtf, count_parameters(model), steps))
        echo(f"{spec.label}: {steps} steps (last loss {last:.4f}), PESQ {rows[-1]['pesq']:.3f}, "
             f"STOI {rows[-1]['stoi']:.3f}, SI-SDR {rows[-1]['si_sdr']:.2f} dB, RTF {rtf:.3f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/quality.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True,
                        help="wall-clock training budget per model")
    parser.add_argument("--model", action="append", metavar="SPEC",
                        help="NAME or NAME:key=value,... (repeatable; default every registered "
                             "model at its defaults)")
    parser.add_argument("--peer", action="append", choices=sorted(PEERS),
                        help="peer rows (repeatable; default all)")
    parser.add_argument("--data", type=Path, help="dataset in the Kaggle layout (default: the "
                        "held-out real-speech set, built once)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop-seconds", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=RunConfig.lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    try:
        specs = [parse_model_spec(s) for s in (args.model or model_names())]
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    peers = args.peer or list(PEERS)
    data = ensure_data(args.data)
    start = time.perf_counter()
    rows = run_benchmark(args.minutes, specs, peers, data, threads=args.threads,
                         batch_size=args.batch_size, crop_seconds=args.crop_seconds,
                         lr=args.lr, seed=args.seed)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    header = (f"quality benchmark: {args.minutes:g} min of CPU training per model, "
              f"{args.threads} threads, load average {load:.2f}, "
              f"total {(time.perf_counter() - start) / 60:.1f} min; data {data}")
    text = header + "\n\n" + format_table(rows)
    print()
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
