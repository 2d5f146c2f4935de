"""Speech-enhancement metrics: SI-SDR (torch, batched), PESQ wide band, STOI, and a per-file table.

PESQ refuses some inputs (silence, no detected speech, clips under 0.25 s, a silent degraded
signal, where pesq 0.0.4 dies with "cannot convert float NaN to integer"); `pesq_wb` turns those
into `MetricSkipped` with the reason, so one odd file is reported instead of killing an
evaluation after hours of training. `score_pairs` scores files in parallel on every core.
"""

import csv
import math
import multiprocessing
import os
from dataclasses import astuple, dataclass, field, fields
from functools import partial

import numpy as np
import torch
from scipy.signal import resample_poly

from compat.sample_rate import SAMPLE_RATE
from templates.checkpoint import atomic_write

PESQ_SAMPLE_RATE = 16000
PESQ_MIN_SECONDS = 0.25


class MetricSkipped(ValueError):
    """A metric cannot be computed for this file; the message says why."""


def si_sdr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB, one value per signal.

    est, ref: (T,) or (B, T); a (T,) input counts as B=1. Returns (B,) float32 (differentiable,
    so `-si_sdr(est, clean).mean()` is a loss). Both are made zero-mean first.
    """
    if est.shape != ref.shape or est.dim() not in (1, 2):
        raise ValueError(
            f"si_sdr expects est and ref of the same shape (T,) or (B, T), got "
            f"est {tuple(est.shape)} and ref {tuple(ref.shape)}"
        )
    est = est.reshape(-1, est.shape[-1]).float()  # B, T
    ref = ref.reshape(-1, ref.shape[-1]).float()  # B, T
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / ((ref * ref).sum(-1, keepdim=True) + eps)
    target = alpha * ref  # B, T: the part of est explained by ref
    residual = est - target  # B, T
    return 10 * torch.log10(
        ((target * target).sum(-1) + eps) / ((residual * residual).sum(-1) + eps)
    )


def _metrics_1d(x, what: str) -> np.ndarray:
    """A float64 numpy copy of a 1-D waveform (numpy or torch)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D waveform (T,), got shape {arr.shape}")
    return arr


def _pair(ref, deg, caller: str):
    ref, deg = _metrics_1d(ref, f"{caller} ref"), _metrics_1d(deg, f"{caller} deg")
    if ref.shape != deg.shape:
        raise ValueError(f"{caller}: ref has {len(ref)} samples but deg has {len(deg)}")
    for what, x in (("reference", ref), ("degraded signal", deg)):
        if not np.isfinite(x).all():
            raise MetricSkipped(f"{what} has non-finite samples (NaN/inf)")
    return ref, deg


def pesq_wb(ref, deg, sample_rate: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO 1.04-4.64) of `deg` against `ref`, both (T,).

    Resamples to 16 kHz when `sample_rate` differs. Raises `MetricSkipped` (a ValueError) with
    the reason when PESQ cannot score the pair: shorter than 0.25 s, a silent reference or
    degraded signal, no utterances detected, non-finite samples. Mismatched lengths are a
    plain ValueError (a caller bug, not a property of the file).
    """
    try:
        from pesq import BufferTooShortError, NoUtterancesError, PesqError, pesq
    except ImportError as exc:
        raise ImportError("pesq_wb needs the pesq package: pip install pesq") from exc
    ref, deg = _pair(ref, deg, "pesq_wb")
    if sample_rate != PESQ_SAMPLE_RATE:
        g = math.gcd(int(sample_rate), PESQ_SAMPLE_RATE)
        up, down = PESQ_SAMPLE_RATE // g, int(sample_rate) // g
        ref, deg = resample_poly(ref, up, down), resample_poly(deg, up, down)
    seconds = len(ref) / PESQ_SAMPLE_RATE
    if seconds < PESQ_MIN_SECONDS:
        raise MetricSkipped(f"{seconds:.2f} s long; PESQ needs at least {PESQ_MIN_SECONDS} s")
    if not np.any(ref):
        raise MetricSkipped("reference is silent")
    if not np.any(deg):
        raise MetricSkipped("degraded signal is silent")
    try:
        return float(pesq(PESQ_SAMPLE_RATE, ref, deg, "wb"))
    except NoUtterancesError as exc:
        raise MetricSkipped("no utterances detected (silence or no speech)") from exc
    except BufferTooShortError as exc:
        raise MetricSkipped(f"too short for PESQ ({seconds:.2f} s)") from exc
    except PesqError as exc:
        raise MetricSkipped(f"pesq failed: {exc}") from exc
    except ValueError as exc:
        # pesq 0.0.4 turns a (nearly) silent degraded signal into NaN, then fails converting it
        if "NaN" in str(exc):
            raise MetricSkipped("degraded signal is (nearly) silent: pesq produced NaN") from exc
        raise


def stoi_score(ref, deg, sample_rate: int = SAMPLE_RATE) -> float:
    """Short-time objective intelligibility (pystoi, classic STOI, extended=False), both (T,).

    Raises `MetricSkipped` when pystoi cannot find enough speech frames (it would otherwise
    return 1e-5 with a warning, which would drag a mean down silently).
    """
    try:
        from pystoi import stoi
    except ImportError as exc:
        raise ImportError("stoi_score needs the pystoi package: pip install pystoi") from exc
    import warnings

    ref, deg = _pair(ref, deg, "stoi_score")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(stoi(ref, deg, int(sample_rate), extended=False))
        except (ValueError, IndexError) as exc:  # e.g. numpy's AxisError under one STFT frame
            raise MetricSkipped(
                f"pystoi failed on {len(ref) / sample_rate:.3f} s of audio "
                f"({type(exc).__name__}: {exc})"
            ) from exc
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            raise MetricSkipped("too little speech for STOI (not enough non-silent frames)")
    return value


@dataclass
class ScoreRow:
    """Scores of one file; NaN where a metric was skipped."""

    name: str
    pesq_noisy: float
    pesq_enh: float
    stoi_noisy: float
    stoi_enh: float
    sisdr_noisy: float
    sisdr_enh: float


_SCORE_METRICS = (("pesq", "pesq"), ("stoi", "stoi"), ("si_sdr", "sisdr"))


@dataclass
class ScoreTable:
    """Per-file scores and which files a metric skipped.

    Means use, for each metric, the files where that metric scored BOTH the noisy and the
    enhanced signal, so noisy, enhanced and delta are averages over the same files. A file whose
    PESQ failed still counts for STOI and SI-SDR; it is listed in `skipped` with the reason.
    """

    rows: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (name, "metric signal: reason; ...") per file

    @property
    def n_files(self) -> int:
        return len(self.rows)

    @property
    def n_scored(self) -> int:
        """Files that contributed to every mean (no metric skipped)."""
        return sum(all(math.isfinite(v) for v in astuple(r)[1:]) for r in self.rows)

    def means(self) -> dict:
        """{"noisy"|"enhanced"|"delta": {"pesq"|"stoi"|"si_sdr": float}}; NaN without files."""
        out = {"noisy": {}, "enhanced": {}, "delta": {}}
        for key, col in _SCORE_METRICS:
            pairs = [
                (getattr(r, f"{col}_noisy"), getattr(r, f"{col}_enh"))
                for r in self.rows
                if math.isfinite(getattr(r, f"{col}_noisy"))
                and math.isfinite(getattr(r, f"{col}_enh"))
            ]
            noisy = float(np.mean([p[0] for p in pairs])) if pairs else float("nan")
            enh = float(np.mean([p[1] for p in pairs])) if pairs else float("nan")
            out["noisy"][key], out["enhanced"][key], out["delta"][key] = noisy, enh, enh - noisy
        return out

    def to_csv(self, path) -> None:
        """One line per file; empty cells for skipped metrics, reasons in `skipped_reason`."""
        reasons = dict(self.skipped)
        names = [f.name for f in fields(ScoreRow)]

        def _write(fh):
            writer = csv.writer(fh)
            writer.writerow([*names, "skipped_reason"])
            for r in self.rows:
                values = [
                    r.name,
                    *("" if not math.isfinite(v) else f"{v:.6f}" for v in astuple(r)[1:]),
                ]
                writer.writerow([*values, reasons.get(r.name, "")])

        atomic_write(path, _write, binary=False)


def _score_perceptual(item, sample_rate: int):
    """PESQ and STOI of one (name, clean, noisy, enhanced); runs in a worker process.

    Returns ((pesq_noisy, pesq_enh, stoi_noisy, stoi_enh), [reason, ...]).
    """
    name, clean, noisy, enhanced = item
    values, reasons = [], []
    for metric, fn in (("pesq", pesq_wb), ("stoi", stoi_score)):
        for label, deg in (("noisy", noisy), ("enhanced", enhanced)):
            try:
                values.append(fn(clean, deg, sample_rate))
            except MetricSkipped as exc:
                values.append(float("nan"))
                reasons.append(f"{metric} {label}: {exc}")
    return tuple(values), reasons


def _fork_context():
    try:
        return multiprocessing.get_context("fork")
    except ValueError:  # Windows, or a platform without fork
        return None


def _pool_map(score, prepared, workers: int, ctx) -> list:
    """``[score(item) for item in prepared]`` on ``workers`` forked processes, in input order.

    A worker that dies (a crash in pesq's C code, the out-of-memory killer) would leave
    ``multiprocessing.Pool`` waiting forever; here the pool breaks instead, and the items it did
    not finish are scored again one process each, so only the file that kills its process is
    lost: its four values are NaN with the reason.
    """
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    results: list = [None] * len(prepared)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(score, item) for item in prepared]
        for k, fut in enumerate(futures):
            try:
                results[k] = fut.result()
            except BrokenProcessPool:
                pass
    for k, item in enumerate(prepared):
        if results[k] is not None:
            continue
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as alone:
                results[k] = alone.submit(score, item).result()
        except BrokenProcessPool:
            results[k] = ((float("nan"),) * 4,
                          ["pesq/stoi: the scoring process died on this file"])
    return results


def score_pairs(items, sample_rate: int = SAMPLE_RATE, workers=None) -> ScoreTable:
    """Score `(name, clean, noisy, enhanced)` items, each waveform 1-D (T,) numpy or torch.

    PESQ and STOI run in a pool of `workers` processes (default: every core) started with
    "fork": a forked worker starts at once, its libraries already imported ("spawn" would start
    a fresh interpreter per worker and import them again).
    `workers=1`, a single item or no fork falls back to one process. Rows keep input order.
    Files a metric cannot score are listed in `.skipped` (see `ScoreTable`).
    """
    prepared = []
    for item in items:
        if len(item) != 4:
            raise ValueError(f"score_pairs items are (name, clean, noisy, enhanced), got {item!r}")
        name, *waves = item
        clean, noisy, enhanced = (_metrics_1d(w, f"{name} {k}") for w, k in
                                  zip(waves, ("clean", "noisy", "enhanced"), strict=True))
        if not len(clean) == len(noisy) == len(enhanced):
            raise ValueError(
                f"{name}: clean, noisy and enhanced lengths differ "
                f"({len(clean)}, {len(noisy)}, {len(enhanced)} samples)"
            )
        prepared.append((str(name), clean, noisy, enhanced))

    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    workers = max(1, min(int(workers), len(prepared)))
    score = partial(_score_perceptual, sample_rate=sample_rate)
    ctx = _fork_context() if workers > 1 else None
    if ctx is None:
        perceptual = [score(item) for item in prepared]
    else:
        perceptual = _pool_map(score, prepared, workers, ctx)  # keeps input order

    table = ScoreTable()
    for (name, clean, noisy, enhanced), (values, reasons) in zip(
        prepared, perceptual, strict=True
    ):
        # SI-SDR here in the parent with torch (cheap); forked workers stay torch-free
        sdr = []
        for label, deg in (("noisy", noisy), ("enhanced", enhanced)):
            if not (np.isfinite(deg).all() and np.isfinite(clean).all()):
                sdr.append(float("nan"))
                reasons.append(f"si_sdr {label}: non-finite samples (NaN/inf)")
            elif not np.any(clean):
                sdr.append(float("nan"))
                reasons.append(f"si_sdr {label}: reference is silent")
            else:
                sdr.append(float(si_sdr(torch.from_numpy(deg), torch.from_numpy(clean))[0]))
        table.rows.append(ScoreRow(name, *values, *sdr))
        if reasons:
            table.skipped.append((name, "; ".join(reasons)))
    return table
