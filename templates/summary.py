"""The run's summary JSON: model, training, metrics (noisy / enhanced / delta), versions, config.

JSON has no NaN: ``build_summary`` turns every non-finite number into ``null`` and lists why in
``null_reasons``; ``write_summary`` refuses (``ValueError`` naming the key) anything that
would still write ``NaN``/``Infinity``, and writes atomically.
"""

import json
import math
from pathlib import Path

import torch

from compat.torch_compat import cuda_device_count, library_versions
from templates.checkpoint import atomic_write
from templates.datasets import DEFAULT_DATASET, published_comparison
from templates.models.registry import count_parameters

SUMMARY_METRICS = ("pesq", "stoi", "si_sdr")


def summary_versions() -> dict:
    """``library_versions()`` (compat.torch_compat) and the names of the visible GPUs."""
    versions = library_versions()
    if cuda_device_count() > 0:
        versions["gpus"] = [torch.cuda.get_device_name(i) for i in range(cuda_device_count())]
    return versions


def _summary_finite(value, key: str, reasons: list):
    """Copy ``value`` with non-finite floats replaced by None, recording ``key: why``."""
    if isinstance(value, dict):
        return {k: _summary_finite(v, f"{key}.{k}" if key else str(k), reasons)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_summary_finite(v, f"{key}[{i}]", reasons) for i, v in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float) or hasattr(value, "item"):
        number = float(value)
        if not math.isfinite(number):
            why = "no file could be scored" if key.startswith("metrics.") else "not finite"
            reasons.append(f"{key}: {number} ({why})")
            return None
        return number
    return value


def build_summary(*, cfg, model, train_result, eval_result, extra=None) -> dict:
    """The summary dict (see docs/interfaces.md); non-finite numbers become None with a reason."""
    table = eval_result.table
    means = table.means()
    metrics = {part: {m: means[part][m] for m in SUMMARY_METRICS}
               for part in ("noisy", "enhanced", "delta")}
    raw = {
        "model": cfg.model,
        "params": int(count_parameters(model)),
        "epochs_run": int(train_result.epochs_run),
        "best_epoch": int(train_result.best_epoch),
        "best_val_loss": train_result.best_val,
        "train_seconds": round(float(train_result.train_seconds), 1),
        "stopped_early": bool(train_result.stopped_early),
        # why training ended: "epochs", "early_stop" or "time_budget" (last.pth kept to resume)
        "stopped_by": getattr(train_result, "stopped_by", "epochs"),
        "epochs_this_session": int(getattr(train_result, "epochs_this_session",
                                           train_result.epochs_run)),
        "resumed_from_epoch": int(getattr(train_result, "resumed_from_epoch", 0)),
        "time_budget_hours": getattr(cfg, "time_budget_hours", None),
        "n_test": len(table.rows),
        "n_skipped": len(table.skipped),
        "skipped": [{"name": n, "reason": r} for n, r in table.skipped],
        "eval_mode": eval_result.mode,
        "metrics": metrics,
        # the dataset row and, for VoiceBank+DEMAND, the published PESQ figures next to ours
        "dataset": published_comparison(getattr(cfg, "dataset", DEFAULT_DATASET), metrics,
                                         len(table.rows), eval_result.mode),
        "versions": summary_versions(),
        "config": cfg.to_dict(),
    }
    if extra:
        raw.update(extra)
    reasons: list = []
    summary = _summary_finite(raw, "", reasons)
    summary["null_reasons"] = reasons
    return summary


def _summary_find_nonfinite(value, key=""):
    if isinstance(value, dict):
        for k, v in value.items():
            found = _summary_find_nonfinite(v, f"{key}.{k}" if key else str(k))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _summary_find_nonfinite(v, f"{key}[{i}]")
            if found:
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return f"{key} = {value}"
    return None


def write_summary(summary: dict, path) -> Path:
    """Write ``summary`` as indented JSON, atomically; non-finite numbers are a ValueError."""
    path = Path(path)
    bad = _summary_find_nonfinite(summary)
    if bad:
        raise ValueError(
            f"{path.name}: {bad} cannot be written as JSON (no NaN/Infinity in JSON); "
            f"build the summary with build_summary, which turns it into null with a reason"
        )
    text = json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n"
    return atomic_write(path, lambda fh: fh.write(text), binary=False)
