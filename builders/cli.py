"""The command line every ``builders/<model>.py`` shares: render, push (behind the smoke gate),
status and fetch. Thin: it parses arguments and calls library functions.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.metadata import (
    DEFAULT_ACCELERATOR,
    PLACEHOLDER_USER,
    accelerator_warning,
    kaggle_username,
    kernel_metadata,
    write_metadata,
)
from builders.render import REPO_ROOT, build_notebook, write_notebook
from builders.spec import ModelSpec

RUNS_DIR = REPO_ROOT / "runs"

# option -> parameters-cell name; argparse types do the parsing, the translator writes the code
_OVERRIDES: list[tuple[str, str, Any, str]] = [
    ("--epochs", "EPOCHS", int, "training epochs"),
    ("--batch-size", "BATCH_SIZE", int, "batch size per optimiser step (split across GPUs)"),
    ("--lr", "LR", float, "learning rate"),
    ("--crop-seconds", "CROP_SECONDS", float, "training crop length in seconds"),
    ("--seed", "SEED", int, "random seed"),
    ("--max-steps", "MAX_STEPS", int, "cap on optimiser steps per epoch"),
    ("--num-workers", "NUM_WORKERS", int, "DataLoader workers"),
    ("--eval-mode", "EVAL_MODE", str, "'full' files or 'first3' seconds"),
    ("--max-test-files", "MAX_TEST_FILES", int, "evaluate only this many test files"),
    ("--warmup-epochs", "WARMUP_EPOCHS", int, "learning-rate warmup epochs"),
    ("--patience", "PATIENCE", int, "early-stopping patience in epochs"),
    ("--loss", "LOSS", str, "loss name (mag_l1, si_sdr, mrstft)"),
]


class PushRefused(RuntimeError):
    """The push gate said no; the message says why, ``exit_code`` is the CLI's (2: usage or
    setup, such as no Kaggle user; 1: a smoke check failed)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _no_user_message(ref: str, action: str = "push") -> str:
    return (f"refusing to {action} {ref}: no Kaggle user; pass --user NAME or set KAGGLE_USERNAME "
            f"(with KAGGLE_KEY), or put your token in ~/.kaggle/kaggle.json")


@dataclass
class BuildResult:
    folder: Path
    notebook: Path
    metadata_file: Path
    metadata: dict[str, Any]
    params: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def build(
    spec: ModelSpec,
    *,
    out: Path | None = None,
    overrides: dict[str, Any] | None = None,
    user: str = PLACEHOLDER_USER,
    accelerator: str = DEFAULT_ACCELERATOR,
    private: bool = True,
) -> BuildResult:
    """Render the notebook and its kernel-metadata.json into ``out`` (``notebooks/<name>``)."""
    folder = Path(out) if out is not None else REPO_ROOT / "notebooks" / spec.name
    params = {**spec.default_parameters(), **(overrides or {})}
    nb = build_notebook(spec, params)
    notebook = write_notebook(nb, folder / spec.notebook_file)
    meta = kernel_metadata(spec, user=user, accelerator=accelerator, private=private)
    meta_file = write_metadata(meta, folder)
    warnings = [w for w in [accelerator_warning(accelerator)] if w]
    return BuildResult(folder, notebook, meta_file, meta, params, warnings)


def describe_push(result: BuildResult) -> str:
    """What ``--push`` sends, in words: the folder, the kernel id and the run's settings."""
    meta = result.metadata
    p = result.params
    return (
        f"push folder: {result.folder} ({result.notebook.name}, {result.metadata_file.name})\n"
        f"--push would send {result.notebook.name} as kernel {meta['id']} "
        f"({'private' if meta['is_private'] else 'public'}) on {meta['machine_shape']}, "
        f"data {', '.join(meta['dataset_sources'])}, internet {'on' if meta['enable_internet'] else 'off'}; "
        f"epochs {p['EPOCHS']}, batch size {p['BATCH_SIZE']}, lr {p['LR']}, "
        f"crop {p['CROP_SECONDS']} s, seed {p['SEED']}"
    )


def push_gate(spec: ModelSpec, result: BuildResult, *, rehearse: bool, data: Path | None,
              echo=print) -> None:
    """Refuse a push that cannot work: placeholder owner, or a failing smoke check.

    Raises :class:`PushRefused` before anything is sent.
    """
    owner = result.metadata["id"].split("/")[0]
    if owner == PLACEHOLDER_USER:
        raise PushRefused(_no_user_message(result.metadata["id"]), exit_code=2)
    from smoke.run import run_smoke  # lazy: the harness imports torch and every module

    report = run_smoke([spec.name], rehearse=rehearse, data=data,
                       notebooks={spec.name: result.notebook}, echo=echo)
    if not report.ok:
        failed = report.failures()
        lines = [f"  {r.model}/{r.check}: {r.message}" for r in failed]
        raise PushRefused("smoke checks failed, nothing was pushed:\n" + "\n".join(lines), exit_code=1)


def parse_args(spec: ModelSpec, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"builders/{spec.name}.py",
        description=f"Render {spec.title} (notebooks/{spec.name}/) and push, watch or fetch it.",
    )
    parser.add_argument("--out", type=Path, help=f"push folder (default notebooks/{spec.name})")
    parser.add_argument("--user", help="Kaggle owner (default KAGGLE_USERNAME or ~/.kaggle/kaggle.json)")
    parser.add_argument("--accelerator", default=DEFAULT_ACCELERATOR,
                        help="Kaggle machine_shape (default NvidiaTeslaT4: two T4s)")
    vis = parser.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="private", action="store_true", default=True)
    vis.add_argument("--public", dest="private", action="store_false")
    for flag, _name, typ, text in _OVERRIDES:
        parser.add_argument(flag, type=typ, help=text)
    act = parser.add_mutually_exclusive_group()
    act.add_argument("--push", action="store_true",
                     help="run the smoke checks and the rehearsal, then push if all pass")
    act.add_argument("--status", action="store_true", help="print the pushed kernel's status")
    act.add_argument("--fetch", action="store_true", help="download the run's outputs into runs/")
    parser.add_argument("--skip-rehearsal", action="store_true",
                        help="with --push: smoke checks only, no end-to-end rehearsal")
    parser.add_argument("--data", type=Path, help="with --push: local Kaggle-layout dataset for "
                        "the rehearsal (default: a generated one)")
    parser.add_argument("--wait", action="store_true", help="with --status: poll until the run ends")
    parser.add_argument("--interval", type=float, default=30.0,
                        help="with --status --wait: seconds between polls (default 30)")
    parser.add_argument("--timeout", type=float, default=12 * 3600.0,
                        help="with --status --wait: give up after this many seconds "
                             "(default 43200, Kaggle's 12 h session limit)")
    parser.add_argument("--version", type=int,
                        help="with --fetch or --status: kernel version (default latest)")
    return parser.parse_args(argv)


def _kaggle_call(fn) -> int:
    from builders import kaggle_ops  # lazy: importing the kaggle client authenticates

    try:
        fn(kaggle_ops)
    except kaggle_ops.KaggleCredentialsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except kaggle_ops.KaggleRequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(spec: ModelSpec, argv: list[str] | None = None) -> int:
    args = parse_args(spec, argv)
    user = args.user or kaggle_username()
    ref = f"{user}/{spec.slug}"
    if args.push or args.status or args.fetch:
        # The cheap refusals come first: before the render, the minutes-long smoke gate and
        # rehearsal, or any request; nothing is written when they refuse.
        if user == PLACEHOLDER_USER:
            action = "push" if args.push else "check the status of" if args.status else "fetch"
            print(f"error: {_no_user_message(ref, action)}", file=sys.stderr)
            return 2
        code = _kaggle_call(lambda ops: ops.check_credentials())  # no network, no kaggle import
        if code:
            return code
    if args.status:
        return _kaggle_call(lambda ops: ops.kernel_status(  # it echoes the states
            ref, wait=args.wait, interval=args.interval, timeout=args.timeout, version=args.version))
    if args.fetch:
        return _kaggle_call(lambda ops: print(
            f"outputs in {ops.fetch_outputs(ref, runs_dir=RUNS_DIR, version=args.version)}"))

    overrides = {name: getattr(args, flag[2:].replace("-", "_"))
                 for flag, name, _t, _h in _OVERRIDES
                 if getattr(args, flag[2:].replace("-", "_")) is not None}
    try:
        result = build(spec, out=args.out, overrides=overrides, user=user,
                       accelerator=args.accelerator, private=args.private)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    print(f"wrote {result.notebook} and {result.metadata_file}")
    if not args.push:
        print(describe_push(result))
        return 0
    try:
        push_gate(spec, result, rehearse=not args.skip_rehearsal, data=args.data)
    except PushRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(describe_push(result))
    return _kaggle_call(lambda ops: print(ops.push_notebook(
        result.folder, runs_dir=RUNS_DIR, params=result.params, accelerator=args.accelerator)))
