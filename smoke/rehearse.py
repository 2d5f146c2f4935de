"""Rehearsal: execute a rendered notebook end to end in a real Jupyter kernel on local data.

papermill injects small values after the ``parameters`` cell (one epoch, a step cap, the local
dataset in the Kaggle layout with ``.7z`` archives, a temporary working directory, CPU), runs the
notebook top to bottom, and the outputs DESIGN.md lists are then checked: files exist and the
summary's metrics are finite. A failing cell is reported by index and section with its traceback.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.render import cell_section
from builders.spec import ModelSpec

# small enough for a 2-core CPU in well under a minute per model
REHEARSAL_PARAMETERS: dict[str, Any] = {
    "EPOCHS": 1,
    "MAX_STEPS": 2,
    "SMOKE": True,
    "BATCH_SIZE": 2,
    "NUM_WORKERS": 1,  # exercise the worker path (persistent workers) without the cost of 2
    "MAX_TEST_FILES": 2,
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RehearsalError(RuntimeError):
    """The notebook failed in the rehearsal; the message names the cell and carries the traceback."""


@dataclass
class RehearsalResult:
    model: str
    seconds: float
    work_dir: Path
    executed: Path
    summary: dict[str, Any] = field(default_factory=dict)


def expected_outputs(name: str) -> list[str]:
    """Files every run writes (``ckpt_ep5.pth`` and later need five epochs, so not listed)."""
    return [f"{name}_best.pth", "last.pth", "history.csv", "training_curves.png",
            "spectrogram_comparison.png", "eval_per_file.csv", f"{name}_summary.json",
            f"{name}_int8.pth", f"{name}_masker.onnx"]


def rehearsal_parameters(data_dir: Path, work_dir: Path) -> dict[str, Any]:
    # Extraction goes next to the run, not into the shared system temp folder.
    return {"DATA_DIR": str(data_dir), "WORK_DIR": str(work_dir),
            "SCRATCH_DIR": str(work_dir.parent / f"{work_dir.name}-scratch"), **REHEARSAL_PARAMETERS}


def default_dataset(folder: Path) -> Path:
    """A small local dataset in the Kaggle layout, ``.7z`` archives only (like the real mount)."""
    from smoke.dataset import build_local_dataset

    return build_local_dataset(folder, n_train=12, n_test=3, seconds=(3.5, 4.5), seed=0,
                               archives=True)


def _failed_cell(executed: Path, original: Path) -> str:
    """The failing cell, numbered as in the rendered notebook (papermill inserts cells of its own)."""
    import nbformat

    if not executed.is_file():
        return "the kernel did not start or the notebook was not written"
    index_of = {c.get("id"): i for i, c in enumerate(nbformat.read(str(original), as_version=4).cells)}
    nb = nbformat.read(str(executed), as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                tb = _ANSI.sub("", "\n".join(out.get("traceback", [])))
                where = index_of.get(cell.get("id"), "(injected)")
                return (f"cell {where} ({cell_section(cell)}) raised {out.get('ename')}: "
                        f"{out.get('evalue')}\n{tb}")
    return "no cell recorded an error"


def check_outputs(name: str, work_dir: Path) -> dict[str, Any]:
    """The files exist and the summary's metrics are finite numbers; returns the summary."""
    missing = [f for f in expected_outputs(name) if not (work_dir / f).is_file()]
    if missing:
        raise RehearsalError(f"{work_dir}: missing outputs {missing}")
    path = work_dir / f"{name}_summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    bad = []
    for group in ("noisy", "enhanced", "delta"):
        for metric in ("pesq", "stoi", "si_sdr"):
            value = summary.get("metrics", {}).get(group, {}).get(metric)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                bad.append(f"{group}.{metric}={value!r}")
    if bad:
        raise RehearsalError(f"{path.name}: metrics not finite: {', '.join(bad)}")
    latency = summary.get("export", {}).get("latency") or []
    if {row.get("variant") for row in latency} != {"fp32", "int8", "onnx"}:
        raise RehearsalError(f"{path.name}: export latency table incomplete: {latency!r}")
    return summary


def rehearse(spec: ModelSpec, notebook: Path, data_dir: Path, work_root: Path,
             timeout: int = 600, *, overrides: dict[str, Any] | None = None,
             label: str | None = None, env: dict[str, str] | None = None) -> RehearsalResult:
    """Execute ``notebook`` with the rehearsal parameters; raise :class:`RehearsalError` on failure.

    ``overrides``: parameters on top of the rehearsal's; ``label``: names the work folder and the
    executed notebook (default the model's name); ``env``: variables the kernel sees.
    """
    import papermill as pm

    label = label or spec.name
    work_dir = work_root / f"{label}-work"
    work_dir.mkdir(parents=True, exist_ok=True)
    executed = work_root / f"{label}.executed.ipynb"
    params = {**rehearsal_parameters(data_dir, work_dir), **(overrides or {})}
    # CPU: hide any GPU from the kernel (it inherits this environment)
    changes = {"CUDA_VISIBLE_DEVICES": "", **(env or {})}
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook), str(executed), parameters=params, kernel_name="python3",
                            cwd=str(work_root), progress_bar=False, execution_timeout=timeout)
    except pm.PapermillExecutionError as exc:
        raise RehearsalError(f"{spec.name}: {_failed_cell(executed, notebook)}") from exc
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    seconds = time.perf_counter() - start
    summary = check_outputs(spec.name, work_dir)
    return RehearsalResult(spec.name, seconds, work_dir, executed, summary)
