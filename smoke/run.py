"""Smoke harness: ``python smoke/run.py [--model NAME] [--rehearse] [--data DIR] [--dataset vbdemand]``.

Runs every check in smoke/checks.py for each model (seconds on a CPU), optionally the rehearsal
(smoke/rehearse.py), prints a table of check, result and seconds, and exits 0 only when all pass.
``run_smoke`` is the library function the builders' ``--push`` gate calls.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render.spec import ModelSpec, model_spec  # noqa: E402
from templates.datasets import DATASETS  # noqa: E402
from templates.models.catalog import catalog_names  # noqa: E402


def discover_models() -> tuple[str, ...]:
    """The model table's names (templates/models/catalog.py): a new model is one module plus
    one row, and the harness picks it up without a list to edit."""
    return tuple(catalog_names())


MODELS = discover_models()


@dataclass
class CheckResult:
    model: str
    check: str
    ok: bool
    seconds: float
    message: str


@dataclass
class SmokeReport:
    results: list[CheckResult] = field(default_factory=list)
    rehearsals: dict = field(default_factory=dict)  # model -> RehearsalResult
    env: object = None  # the KaggleEnv the rehearsals ran in (None: the toolkit's venv)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    def table(self) -> str:
        rows = [("model", "check", "result", "seconds", "detail")]
        for r in self.results:
            detail = r.message.splitlines()[0] if r.message else ""
            rows.append((r.model, r.check, "PASS" if r.ok else "FAIL", f"{r.seconds:.2f}", detail))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
                 for row in rows]
        total = sum(r.seconds for r in self.results)
        lines.append(f"{sum(r.ok for r in self.results)}/{len(self.results)} passed in {total:.1f} s")
        return "\n".join(lines)


def load_spec(name: str) -> ModelSpec:
    """The spec of model ``name``'s row; ``ValueError`` naming the table's models otherwise."""
    return model_spec(name)


def _timed(model: str, check: str, fn) -> CheckResult:
    start = time.perf_counter()
    try:
        message = fn() or ""
        ok = True
    except Exception as exc:  # a check's failure is a result, never a crash of the harness
        message = f"{type(exc).__name__}: {exc}"
        ok = False
    return CheckResult(model, check, ok, time.perf_counter() - start, message)


def _echo_result(echo, r: CheckResult) -> None:
    first = r.message.splitlines()[0] if r.message else ""
    echo(f"{r.model:5s} {r.check:15s} {'PASS' if r.ok else 'FAIL'} {r.seconds:6.2f} s  {first}")


def _check_model(spec: ModelSpec, tmp: Path, notebook: Path | None, report: SmokeReport, echo):
    from smoke.checks import CHECKS, make_context

    tmp.mkdir(parents=True, exist_ok=True)
    failed = False
    with make_context(spec, tmp, notebook) as ctx:  # the notebook's package, for these checks
        for check, fn in CHECKS:
            if failed and check not in ("lint", "committed"):
                # later checks need what the failed one built; say so instead of cascading errors
                report.results.append(CheckResult(spec.name, check, False, 0.0,
                                                  "not run: an earlier check failed"))
                continue
            result = _timed(spec.name, check, lambda fn=fn: fn(ctx))
            failed |= not result.ok and check not in ("lint", "committed")
            report.results.append(result)
            _echo_result(echo, result)
    return ctx


def _rehearse_model(spec: ModelSpec, notebook: Path, data_dir: Path, tmp: Path,
                    report: SmokeReport, echo, env=None) -> None:
    from smoke.rehearse import rehearse

    def _go() -> str:
        res = rehearse(spec, notebook, data_dir, tmp, env=env)
        report.rehearsals[spec.name] = res
        m = res.summary["metrics"]
        return (f"{res.seconds:.0f} s, {res.summary['dataset']['name']} layout; noisy PESQ "
                f"{m['noisy']['pesq']:.3f} -> enhanced "
                f"{m['enhanced']['pesq']:.3f}, STOI {m['enhanced']['stoi']:.3f}, "
                f"SI-SDR {m['enhanced']['si_sdr']:.2f} dB")

    result = _timed(spec.name, "rehearsal", _go)
    report.results.append(result)
    _echo_result(echo, result)
    if not result.ok:
        echo(result.message)


def run_smoke(models=MODELS, rehearse: bool = False, data: Path | None = None,
              notebooks: dict[str, Path] | None = None, echo=print, env=None,
              dataset: str | None = None) -> SmokeReport:
    """Run the checks (and the rehearsal) for ``models``; ``notebooks`` maps a model to the
    notebook file to check instead of a fresh default render (the push gate passes its folder's).
    ``env``: rehearse in that Kaggle-image environment (a name in smoke/envs/ or a pins file;
    see smoke/kaggle_env.py) instead of the toolkit's own venv.
    ``dataset`` (a ``templates.datasets`` row such as ``"vbdemand"``): check and rehearse
    notebooks rendered with ``DATASET`` set to it, on generated data in that layout.
    """
    from render.notebook import build_notebook, write_notebook

    report = SmokeReport()
    if rehearse and env is not None:
        from smoke.kaggle_env import ensure_env, load_pins

        env = ensure_env(load_pins(env), echo=echo)
        report.env = env
        echo(env.describe())
    notebooks = notebooks or {}
    # tmpfs when there is one: checkpoints are fsynced, which a busy disk makes slow
    shm = Path("/dev/shm")
    tmp_root = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="smoke-", dir=tmp_root) as tmp_name:
        tmp = Path(tmp_name)
        data_dir = Path(data) if data is not None else None
        for name in models:
            spec = load_spec(name)
            if dataset is not None and name not in notebooks:
                params = {**spec.default_parameters(), "DATASET": dataset}
                notebooks[name] = write_notebook(build_notebook(spec, params),
                                                 tmp / f"{name}-{dataset}" / spec.notebook_file)
            ctx = _check_model(spec, tmp / name, notebooks.get(name), report, echo)
            if not rehearse:
                continue
            if any(not r.ok and r.model == name and r.check != "committed" for r in report.results):
                # minutes of kernel time for a notebook already known to be broken: say so instead
                result = CheckResult(name, "rehearsal", False, 0.0, "not run: an earlier check failed")
                report.results.append(result)
                _echo_result(echo, result)
                continue
            if data_dir is None:
                from smoke.rehearse import default_dataset

                layout = dataset or "libri"
                echo(f"building the local rehearsal dataset ({layout} Kaggle layout) ...")
                data_dir = default_dataset(tmp / "data", layout=layout)
            # rehearse exactly the notebook the checks looked at
            notebook = notebooks.get(name) or write_notebook(ctx.notebook, tmp / name / spec.notebook_file)
            _rehearse_model(spec, notebook, data_dir, tmp / name, report, echo, env=env)
    return report


def push_summary(models) -> str:
    """Where the push folders are and what ``--push`` would send (from the committed folders)."""
    import json

    from render.notebook import REPO_ROOT

    lines = []
    for name in models:
        folder = REPO_ROOT / "notebooks" / name
        meta_file = folder / "kernel-metadata.json"
        if not meta_file.is_file():
            lines.append(f"{name}: no push folder yet: run python -m builders {name}")
            continue
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        lines.append(f"{name}: push folder {folder.relative_to(REPO_ROOT)}/ "
                     f"({meta['code_file']}, kernel-metadata.json); "
                     f"python -m builders {name} --push --user YOU would send kernel "
                     f"YOU/{meta['id'].split('/', 1)[1]} on {meta['machine_shape']} with "
                     f"{', '.join(meta['dataset_sources'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smoke/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=MODELS,
                        help="check only this model (repeatable; default all)")
    parser.add_argument("--rehearse", action="store_true",
                        help="also execute each rendered notebook end to end on local data")
    parser.add_argument("--data", type=Path, help="local dataset in the Kaggle layout for the "
                        "rehearsal (default: generated with .7z archives)")
    parser.add_argument("--env", metavar="NAME|FILE",
                        help="rehearse in a Kaggle-image venv (created once, cached): "
                        "kaggle-2026-05 (today's image), kaggle-next, or your own pins file")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default=None,
                        help="render the notebooks with DATASET set to this row of "
                             "templates/datasets.py and rehearse on generated data in its layout "
                             "(vbdemand: 48 kHz VoiceBank+DEMAND folders)")
    args = parser.parse_args(argv)
    if args.data is not None:  # up front: not after minutes of checks
        if not args.rehearse:
            parser.error(f"--data {args.data}: only the rehearsal reads it; add --rehearse")
        if not args.data.is_dir():
            parser.error(f"--data {args.data}: no such folder (a dataset in the Kaggle layout: "
                         f"train/, y_train/, test/, y_test/ or their .7z archives)")
        from templates.data import _scan_dataset_tree

        # the notebook's own search, names only (no wav count, no extraction): a folder missing
        # a part would otherwise fail in the rehearsal, minutes later. Names: --dataset's row.
        names = DATASETS[args.dataset or "libri"].folders.values()
        folders, nested, archives, _n = _scan_dataset_tree(args.data, folder_names=names)
        absent = [name for name in names
                  if not (folders[name] or nested[name] or archives[name])]
        if absent:
            parser.error(f"--data {args.data}: no {', '.join(absent)} below it (neither a folder "
                         f"of that name nor its .7z archive; the Kaggle layout)")
    if args.env and not args.rehearse:
        parser.error("--env needs --rehearse")
    models = args.model or list(MODELS)
    from smoke.kaggle_env import EnvError, load_pins

    if args.env:
        try:
            load_pins(args.env)
        except EnvError as exc:
            parser.error(str(exc))
    try:
        report = run_smoke(models, rehearse=args.rehearse, data=args.data, env=args.env,
                           dataset=args.dataset)
    except EnvError as exc:  # the env could not be built: nothing was rehearsed
        print(f"smoke/run.py: env {args.env}: {exc}", file=sys.stderr)
        return 2
    print()
    print(report.table())
    if report.env is not None:
        print(report.env.describe())
    print()
    print(push_summary(models))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
