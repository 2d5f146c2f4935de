"""Rehearsal: execute a rendered notebook end to end in a real Jupyter kernel on local data.

papermill injects small values after the ``parameters`` cell (one epoch, a step cap, the local
dataset in the Kaggle layout with ``.7z`` archives, a temporary working directory, CPU), runs the
notebook top to bottom, and the outputs docs/architecture.md lists are then checked: files exist
and the summary's metrics are finite. A failing cell is reported by index and section with its
traceback and the innermost frame in a module of the notebook's package.

With ``env`` (a Kaggle-image venv from smoke/kaggle_env.py) the kernel runs that venv's python
through a kernelspec of its own, papermill still drives it from the toolkit's venv (as Kaggle's
own runner drives the image's kernel), and every DeprecationWarning, FutureWarning or UserWarning
the notebook's code triggers (smoke/kernel_warnings.py records them) fails the rehearsal with the
cell and the line: a deprecation in today's image is the breakage of the next one.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from render.notebook import OWN_PACKAGES, PACKAGE_DIR_PREFIX, cell_section
from render.spec import ModelSpec
from templates.outputs import CHECKPOINT_PATTERN, int8_name, output_files, summary_name

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
# a frame in a module of the notebook's package, as a traceback prints it
_PACKAGE_FRAME = re.compile(re.escape(PACKAGE_DIR_PREFIX) + r"[^/\\]+[/\\](?P<file>[\w/\\]+\.py)[:\", line]+(?P<line>\d+)")


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
    """Files every run writes (``ckpt_ep*.pth`` needs ``checkpoint_every`` epochs: not listed)."""
    return [f for f in output_files(name) if f != CHECKPOINT_PATTERN]


def rehearsal_parameters(data_dir: Path, work_dir: Path) -> dict[str, Any]:
    # Extraction goes next to the run, not into the shared system temp folder.
    return {"DATA_DIR": str(data_dir), "WORK_DIR": str(work_dir),
            "SCRATCH_DIR": str(work_dir.parent / f"{work_dir.name}-scratch"), **REHEARSAL_PARAMETERS}


def default_dataset(folder: Path, layout: str = "libri") -> Path:
    """A small local dataset in the Kaggle layout of ``layout`` (a ``templates.datasets`` row):
    ``.7z`` archives only for the default one, 48 kHz nested loose folders for ``vbdemand``
    (like the real mounts)."""
    from smoke.dataset import build_local_dataset

    return build_local_dataset(folder, n_train=12, n_test=3, seconds=(3.5, 4.5), seed=0,
                               archives=layout == "libri", layout=layout)


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
                frames = list(_PACKAGE_FRAME.finditer(tb))
                inner = (f" in {frames[-1]['file']} line {frames[-1]['line']}" if frames else "")
                return (f"cell {where} ({cell_section(cell)}) raised {out.get('ename')}{inner}: "
                        f"{out.get('evalue')}\n{tb}")
    return "no cell recorded an error"


def check_outputs(name: str, work_dir: Path) -> dict[str, Any]:
    """The files exist and the summary's metrics are finite numbers; returns the summary."""
    path = work_dir / summary_name(name)
    summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    # INT8 is skipped, with its reason recorded, where torch no longer has torch.ao.quantization
    int8_skipped = (summary.get("export") or {}).get("int8_skipped")
    expected = [f for f in expected_outputs(name) if not (int8_skipped and f == int8_name(name))]
    missing = [f for f in expected if not (work_dir / f).is_file()]
    if missing:
        raise RehearsalError(f"{work_dir}: missing outputs {missing}")
    bad = []
    for group in ("noisy", "enhanced", "delta"):
        for metric in ("pesq", "stoi", "si_sdr"):
            value = summary.get("metrics", {}).get(group, {}).get(metric)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                bad.append(f"{group}.{metric}={value!r}")
    if bad:
        raise RehearsalError(f"{path.name}: metrics not finite: {', '.join(bad)}")
    latency = summary.get("export", {}).get("latency") or []
    if {row.get("variant") for row in latency} != {"fp32", "onnx"} | (set() if int8_skipped else {"int8"}):
        raise RehearsalError(f"{path.name}: export latency table incomplete: {latency!r}")
    return summary


def env_kernel(env, folder: Path) -> tuple[str, Path, Path]:
    """A kernelspec running ``env``'s python (in a fresh overlay, see kaggle_env.kernel_overlay)
    with the warning watch loaded at startup; returns (kernel name, JUPYTER_PATH entry, file the
    watch writes its JSON lines to)."""
    from smoke.kaggle_env import kernel_overlay

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    python = kernel_overlay(env, folder / "venv")
    watch = folder / "_rehearsal_warnings.py"
    shutil.copyfile(Path(__file__).with_name("kernel_warnings.py"), watch)
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    # runs in the user namespace: leave no names behind
    (startup / "00-rehearsal-warnings.py").write_text(
        "import importlib.util as _u, sys as _s\n"
        f"_m = _u.spec_from_file_location('_rehearsal_warnings', {str(watch)!r})\n"
        "_s.modules['_rehearsal_warnings'] = _x = _u.module_from_spec(_m)\n"
        "_m.loader.exec_module(_x)\n"
        "del _u, _s, _m, _x\n", encoding="utf-8")
    warnings_file = folder / "warnings.jsonl"
    name = f"se-{env.pins.name}"
    spec_dir = folder / "jupyter" / "kernels" / name
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({env.pins.name})", "language": "python",
        "env": {"IPYTHONDIR": str(folder / "ipython"), "SE_REHEARSAL_WARNINGS": str(warnings_file),
                "SE_REHEARSAL_PACKAGES": ",".join(OWN_PACKAGES), "PYTHONNOUSERSITE": "1"},
    }, indent=1), encoding="utf-8")
    return name, folder / "jupyter", warnings_file


def read_warnings(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def describe_warnings(rows: list[dict], executed: Path, original: Path) -> str:
    """One line per warning: the cell that ran, the cell and line of our code that called into
    the library, the warning, and the code that emitted it."""
    import nbformat

    cells = nbformat.read(str(original), as_version=4).cells
    index_of = {c.get("id"): i for i, c in enumerate(cells)}
    by_count = {}
    if executed.is_file():
        for cell in nbformat.read(str(executed), as_version=4).cells:
            if cell.get("execution_count") is not None:
                by_count[cell["execution_count"]] = cell
    by_source = {c.source.strip(): i for i, c in enumerate(cells) if c.cell_type == "code"}
    lines = []
    for row in rows:
        ran = by_count.get(row.get("execution_count"))
        ran_at = (f"cell {index_of.get(ran.get('id'), '(injected)')} ({cell_section(ran)})"
                  if ran is not None else "a cell")
        defined = by_source.get((row.get("cell_text") or "").strip())
        if row.get("module"):  # a module of the notebook's package, line in its file
            where = f"{ran_at} calling {row['module']}"
        elif ran is not None and defined == index_of.get(ran.get("id")):
            where = ran_at
        else:
            where = (f"{ran_at} calling cell {defined} ({cell_section(cells[defined])})"
                     if defined is not None else f"{ran_at} calling code defined elsewhere")
        lines.append(f"  {where} line {row['cell_line']}: `{row.get('code', '')}`\n"
                     f"    {row['category']}: {row['message'].strip().splitlines()[0]}\n"
                     f"    (emitted by {row['emitter']}, reported at {row['filename']}:{row['lineno']})")
    return "\n".join(lines)


def rehearse(spec: ModelSpec, notebook: Path, data_dir: Path, work_root: Path,
             timeout: int = 600, env=None, *, overrides: dict[str, Any] | None = None,
             label: str | None = None, environ: dict[str, str] | None = None) -> RehearsalResult:
    """Execute ``notebook`` with the rehearsal parameters; raise :class:`RehearsalError` on failure.

    ``env`` (a :class:`smoke.kaggle_env.KaggleEnv`): run the kernel in that Kaggle-image venv and
    fail on any warning the notebook's code triggers there. ``overrides``: parameters on top of
    the rehearsal's; ``label``: names the work folder and the executed notebook (default the
    model's name); ``environ``: variables the kernel sees.
    """
    import papermill as pm

    label = label or spec.name
    work_dir = work_root / f"{label}-work"
    work_dir.mkdir(parents=True, exist_ok=True)
    executed = work_root / f"{label}.executed.ipynb"
    params = {**rehearsal_parameters(data_dir, work_dir), **(overrides or {})}
    kernel_name, warnings_file = "python3", None
    # CPU: hide any GPU from the kernel (it inherits this environment)
    changes = {"CUDA_VISIBLE_DEVICES": "", **(environ or {})}
    if env is not None:
        kernel_name, jupyter_path, warnings_file = env_kernel(env, work_root / f"{label}-kernel")
        changes["JUPYTER_PATH"] = os.pathsep.join(
            [str(jupyter_path)] + [p for p in [os.environ.get("JUPYTER_PATH")] if p])
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook), str(executed), parameters=params, kernel_name=kernel_name,
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
    if warnings_file is not None:
        rows = read_warnings(warnings_file)
        if rows:
            raise RehearsalError(
                f"{spec.name}: {len(rows)} warning(s) from the notebook's code in env "
                f"{env.pins.name} (a deprecation today is the next image's breakage):\n"
                f"{describe_warnings(rows, executed, notebook)}")
    summary = check_outputs(spec.name, work_dir)
    return RehearsalResult(spec.name, seconds, work_dir, executed, summary)
