"""Cross-run comparison table from the fetched outputs in ``runs/``.

    python builders/compare.py [--runs RUNS] [--out RUNS/comparison.md]   (RUNS: the repo's runs/)

Reads every ``runs/<slug>/v<N>/`` folder (written by ``kaggle_fetch.fetch_outputs``), finds its
``<model>_summary.json`` (format: docs/interfaces.md "Summary JSON") and prints, and writes as
markdown, one row per summary: model, kernel and version, enhanced PESQ/STOI/SI-SDR, their deltas
against the noisy input, the noisy baseline, parameters, best epoch and training time. A run
folder without a usable summary is listed below the table with the reason, never dropped.
With no fetched run at all it writes nothing and exits 2; when no run has a usable summary it
lists why on stderr, writes nothing and exits 1.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from templates.outputs import summary_name  # noqa: E402

METRICS = ("pesq", "stoi", "si_sdr")
#: Where ``builders/<model>.py --fetch`` writes, whatever the current directory.
DEFAULT_RUNS = Path(__file__).resolve().parents[1] / "runs"
_VERSION_DIR = re.compile(r"^v(\d+)$")


class SummaryError(ValueError):
    """A summary JSON that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class RunRow:
    model: str
    ref: str
    version: int
    summary: Path
    enhanced: dict
    noisy: dict
    delta: dict
    params: int | None
    best_epoch: int | None
    train_seconds: float | None

    def sort_key(self):
        return (self.model, self.ref, self.version, str(self.summary))


@dataclass(frozen=True)
class RunProblem:
    ref: str
    version: int
    path: Path
    reason: str

    def sort_key(self):
        return (self.ref, self.version, str(self.path))


def _number(value, where: str, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None  # e.g. PESQ could not be computed for any file
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SummaryError(f"{where} is {value!r}, expected a number")
    return float(value)


def _metric_block(metrics: dict, name: str, path: Path) -> dict:
    block = metrics.get(name)
    if not isinstance(block, dict):
        raise SummaryError(f"{path}: metrics.{name} missing or not an object")
    missing = [m for m in METRICS if m not in block]
    if missing:
        raise SummaryError(f"{path}: metrics.{name} lacks {', '.join(missing)}")
    return {m: _number(block[m], f"{path}: metrics.{name}.{m}") for m in METRICS}


def read_summary(path: Path) -> dict:
    """The fields the table needs from one summary JSON; ``SummaryError`` when unusable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SummaryError(f"{path}: cannot read it ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise SummaryError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(data, dict):
        raise SummaryError(f"{path}: expected a JSON object, got {type(data).__name__}")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise SummaryError(f"{path}: 'model' missing")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        raise SummaryError(f"{path}: 'metrics' missing or not an object")
    noisy = _metric_block(metrics, "noisy", path)
    enhanced = _metric_block(metrics, "enhanced", path)
    if isinstance(metrics.get("delta"), dict):
        delta = _metric_block(metrics, "delta", path)
    else:  # older summaries: derive it
        delta = {m: None if enhanced[m] is None or noisy[m] is None else enhanced[m] - noisy[m]
                 for m in METRICS}
    params = data.get("params")
    best_epoch = data.get("best_epoch")
    seconds = data.get("train_seconds")
    return {
        "model": model,
        "noisy": noisy,
        "enhanced": enhanced,
        "delta": delta,
        "params": None if params is None else int(_number(params, f"{path}: params")),
        "best_epoch": None if best_epoch is None else int(_number(best_epoch, f"{path}: best_epoch")),
        "train_seconds": _number(seconds, f"{path}: train_seconds"),
    }


def _run_ref(version_dir: Path) -> str:
    """``user/slug`` from the fetch manifest, else the folder's slug."""
    try:
        ref = json.loads((version_dir / "manifest.json").read_text(encoding="utf-8")).get("ref")
        if isinstance(ref, str) and ref:
            return ref
    except (OSError, ValueError, AttributeError):
        pass
    return version_dir.parent.name


def collect_runs(runs_dir: Path) -> tuple[list[RunRow], list[RunProblem]]:
    """Rows for every summary under ``runs_dir/<slug>/v<N>/`` and problems for runs without one."""
    rows: list[RunRow] = []
    problems: list[RunProblem] = []
    for slug_dir in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        for version_dir in sorted(p for p in slug_dir.iterdir() if p.is_dir()):
            match = _VERSION_DIR.match(version_dir.name)
            if not match:
                continue  # e.g. a fetch's hidden .partial folder
            version = int(match.group(1))
            ref = _run_ref(version_dir)
            summaries = sorted(version_dir.rglob(summary_name("*")))
            if not summaries:
                problems.append(RunProblem(ref, version, version_dir,
                                           "missing: no *_summary.json among the outputs"))
            for path in summaries:
                try:
                    s = read_summary(path)
                except SummaryError as exc:
                    problems.append(RunProblem(ref, version, path, f"malformed: {exc}"))
                    continue
                rows.append(RunRow(s["model"], ref, version, path, s["enhanced"], s["noisy"],
                                   s["delta"], s["params"], s["best_epoch"], s["train_seconds"]))
    rows.sort(key=RunRow.sort_key)
    problems.sort(key=RunProblem.sort_key)
    return rows, problems


def _fmt(value: float | None, digits: int, signed: bool = False, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text + unit


def _fmt_params(params: int | None) -> str:
    return "—" if params is None else f"{params / 1e6:.2f}M"


def _fmt_seconds(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.0f} s ({seconds / 3600:.1f} h)"


def _cell(text: str) -> str:
    """Text from a summary or manifest, safe inside a markdown table row."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def format_table(rows: list[RunRow], problems: list[RunProblem], runs_dir: Path) -> str:
    """The comparison as markdown: the table, then the runs that could not be read."""
    lines = [
        f"# Run comparison ({runs_dir})",
        "",
        "| Model | Kernel / version | PESQ | STOI | SI-SDR | ΔPESQ | ΔSTOI | ΔSI-SDR "
        "| Noisy PESQ / STOI / SI-SDR | Params | Best epoch | Training time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e, d, n = r.enhanced, r.delta, r.noisy
        lines.append(
            f"| {_cell(r.model)} | {_cell(r.ref)} v{r.version} | {_fmt(e['pesq'], 3)} | {_fmt(e['stoi'], 3)} "
            f"| {_fmt(e['si_sdr'], 2, unit=' dB')} | {_fmt(d['pesq'], 3, True)} "
            f"| {_fmt(d['stoi'], 3, True)} | {_fmt(d['si_sdr'], 2, True, ' dB')} "
            f"| {_fmt(n['pesq'], 3)} / {_fmt(n['stoi'], 3)} / {_fmt(n['si_sdr'], 2, unit=' dB')} "
            f"| {_fmt_params(r.params)} | {'—' if r.best_epoch is None else r.best_epoch} "
            f"| {_fmt_seconds(r.train_seconds)} |"
        )
    if not rows:
        lines.append("")
        lines.append("No fetched run has a usable summary yet.")
    if problems:
        lines += ["", "## Runs without a usable summary", ""]
        for p in problems:
            lines.append(f"- {p.ref} v{p.version}: {p.reason.replace(chr(10), ' ')}")
    return "\n".join(lines) + "\n"


class NothingToCompare(ValueError):
    """No fetched run has a usable summary; ``exit_code`` 2 when there is no run at all, 1 when
    runs exist but none has a usable summary (the message lists why)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def write_comparison(runs_dir: Path, out: Path | None) -> str:
    """Build the table for ``runs_dir``, write it to ``out`` (when given) and return it.

    Raises :class:`NothingToCompare` (and writes nothing) when no run has a usable summary.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: no such runs folder (fetch a run first)")
    rows, problems = collect_runs(runs_dir)
    if not rows and not problems:
        raise NothingToCompare(
            f"{runs_dir}: no fetched run to compare; fetch one first with "
            f"python builders/<model>.py --fetch", exit_code=2)
    if not rows:
        raise NothingToCompare(
            f"{runs_dir}: none of the {len(problems)} fetched run(s) has a usable summary, "
            f"nothing written:\n" + "\n".join(f"  {p.ref} v{p.version}: {p.reason}"
                                               for p in problems), exit_code=1)
    text = format_table(rows, problems, runs_dir)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare fetched Kaggle runs from their summary JSONs.")
    parser.add_argument("--runs", type=Path, default=None,
                        help=f"runs folder (default {DEFAULT_RUNS}, where --fetch writes)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown file to write (default <runs>/comparison.md)")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = DEFAULT_RUNS
    out = args.out if args.out is not None else args.runs / "comparison.md"
    if not args.runs.is_dir():
        print(f"error: {args.runs}: no such runs folder (fetch a run first)", file=sys.stderr)
        return 2
    if out.is_dir():
        print(f"error: --out {out}: is a folder; give the markdown file to write", file=sys.stderr)
        return 2
    blocker = next((p for p in out.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        print(f"error: --out {out}: {blocker} is a file, not a folder", file=sys.stderr)
        return 2
    try:
        text = write_comparison(args.runs, out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NothingToCompare as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: --out {out}: cannot write it ({exc.strerror or exc})", file=sys.stderr)
        return 2
    print(text, end="")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
