"""The command line every ``builders/<model>.py`` shares: render, push (behind the smoke gate),
status, logs and fetch. Thin: it parses arguments and calls library functions.

A push renders into ``.push/<model>/`` (ignored by git) unless ``--out`` says otherwise, so the
committed ``notebooks/<model>/`` never carries a user name and ``git status`` stays clean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders import kaggle_credentials, kaggle_fetch, kaggle_logs, kaggle_push, kaggle_status
from builders.kaggle_credentials import PLACEHOLDER_USER, KaggleCredentialsError, kaggle_username
from builders.kaggle_transport import KaggleRequestError
from builders.metadata import (
    DEFAULT_ACCELERATOR,
    GPU_SHAPES,
    PIN_TYPES,
    docker_image_fields,
    kernel_metadata,
    resolve_accelerator,
    resume_source,
    write_metadata,
)
from builders.validate import option_problems, out_problems, parameter_problems, user_problem
from render.notebook import REPO_ROOT, build_notebook, write_notebook
from render.spec import ModelSpec, model_spec, parameter_name
from templates.config import RunConfig

RUNS_DIR = REPO_ROOT / "runs"
#: Where a push renders its folder by default: ignored by git (.gitignore), never committed.
STAGING_DIR = REPO_ROOT / ".push"



def _json_object(text: str) -> dict:
    """``--model-kwargs`` as a dict: a JSON object, or an argparse error saying so."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc}); give an object, e.g. '{{\"d_model\": 64}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


def _or_none(kind: type):
    """``kind`` parsed from the command line, or None for ``none``: how a field that may be None
    (``--time-budget-hours none``: no budget) is set to None."""

    def parse(text: str):
        return None if text.strip().lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names it: "invalid float value: 'x'"
    return parse


@dataclass(frozen=True)
class ParameterOption:
    """A builder option that sets one notebook parameter (one ``RunConfig`` field)."""

    flag: str  # --batch-size
    parameter: str  # BATCH_SIZE
    kwargs: dict  # argparse: type (or action) and help

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


def parameter_options() -> list[ParameterOption]:
    """One option per ``RunConfig`` field whose ``option`` metadata allows it (``--epochs`` sets
    ``EPOCHS``), typed by the field's annotation, with the field's ``help``: a new field is a
    new option with no change here. Fields marked ``option=False`` have none: ``model`` (the
    builder's), ``resume_from`` (set by ``--push --resume-from``), ``smoke``, ``sample_rate``."""
    hints = typing.get_type_hints(RunConfig)
    options = []
    for f in dataclasses.fields(RunConfig):
        if not f.metadata.get("option", True):
            continue
        kinds = [t for t in typing.get_args(hints[f.name]) if t is not type(None)]
        kind = kinds[0] if kinds else hints[f.name]
        if kind is bool:
            kwargs = {"action": argparse.BooleanOptionalAction}
        elif kind is dict:
            kwargs = {"type": _json_object, "metavar": "JSON"}
        elif type(None) in typing.get_args(hints[f.name]):
            kwargs = {"type": _or_none(kind)}
        else:
            kwargs = {"type": kind}
        options.append(ParameterOption("--" + f.name.replace("_", "-"), parameter_name(f.name),
                                       {**kwargs, "help": f.metadata.get("help", "")}))
    return options


PARAMETER_OPTIONS = parameter_options()


class PushRefused(RuntimeError):
    """The push gate said no; the message says why, ``exit_code`` is the CLI's (2: usage or
    setup, such as no Kaggle user; 1: a smoke check failed)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class BuildRefused(ValueError):
    """Inputs a notebook cannot be built from; ``problems`` has one line per broken input."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def build_problems(spec: ModelSpec, folder: Path, params: dict[str, Any], user: str,
                   user_source: str = "--user") -> list[str]:
    """One line per input a build would refuse: parameters (``RunConfig``'s rules, reported
    under their options), the push folder and the Kaggle user."""
    flags = {o.parameter: o.flag for o in PARAMETER_OPTIONS}
    problems = parameter_problems(params, flags) + out_problems(folder, spec)
    return problems + [p for p in [user_problem(user, user_source)] if p]


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


def build(
    spec: ModelSpec,
    *,
    out: Path | None = None,
    overrides: dict[str, Any] | None = None,
    user: str = PLACEHOLDER_USER,
    accelerator: str = DEFAULT_ACCELERATOR,
    private: bool = True,
    image: dict[str, str] | None = None,
    kernel_sources: list[str] | None = None,
) -> BuildResult:
    """Render the notebook and its kernel-metadata.json into ``out`` (``notebooks/<name>``).

    ``accelerator`` is a machine shape already checked by ``resolve_accelerator``; ``image`` the
    ``docker_image_fields`` for a pinned environment. Raises :class:`BuildRefused` before
    anything is rendered or written when a parameter breaks ``RunConfig``'s rules, ``user`` is
    not a Kaggle user name or ``out`` cannot take the files.
    """
    folder = Path(out) if out is not None else REPO_ROOT / "notebooks" / spec.name
    params = {**spec.default_parameters(), **(overrides or {})}
    problems = build_problems(spec, folder, params, user)  # an unknown --dataset too
    if problems:
        raise BuildRefused(problems)
    nb = build_notebook(spec, params)
    meta = kernel_metadata(spec, user=user, accelerator=accelerator, private=private, image=image,
                           params=params,
                           kernel_sources=kernel_sources)
    notebook = write_notebook(nb, folder / spec.notebook_file)
    meta_file = write_metadata(meta, folder)
    return BuildResult(folder, notebook, meta_file, meta, params)


def describe_push(result: BuildResult) -> str:
    """What ``--push`` sends, in words: the folder, the kernel id and the run's settings."""
    meta = result.metadata
    p = result.params
    return (
        f"push folder: {result.folder} ({result.notebook.name}, {result.metadata_file.name})\n"
        f"--push would send {result.notebook.name} as kernel {meta['id']} "
        f"({'private' if meta['is_private'] else 'public'}) on {meta['machine_shape']}, "
        f"data {', '.join(meta['dataset_sources'] + meta.get('kernel_sources', []))}, "
        f"internet {'on' if meta['enable_internet'] else 'off'}; "
        f"epochs {p['EPOCHS']}, batch size {p['BATCH_SIZE']}, lr {p['LR']}, "
        f"crop {p['CROP_SECONDS']} s, seed {p['SEED']}"
        + (f"; image pinned: {meta.get('docker_image') or meta.get('docker_image_pinning_type')}"
           if meta.get("docker_image") or meta.get("docker_image_pinning_type") else "")
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


def parse_args(spec: ModelSpec, argv: list[str] | None,
               prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog or f"builders/{spec.name}.py",
        description=f"Render {spec.title} (notebooks/{spec.name}/) and push, watch or fetch it.",
    )
    parser.add_argument("--out", type=Path, help=f"push folder (default notebooks/{spec.name}; with --push "
                                                       f".push/{spec.name}, ignored by git)")
    parser.add_argument("--user", help="Kaggle owner (default KAGGLE_USERNAME or kaggle.json's; a render "
                                       f"into notebooks/{spec.name} without --user keeps the placeholder)")
    parser.add_argument("--accelerator", default=DEFAULT_ACCELERATOR,
                        help=f"Kaggle GPU machine shape: {', '.join(GPU_SHAPES)} (default "
                             "NvidiaTeslaT4: two T4s). NvidiaTeslaP100 is retired (runs on T4 x2): "
                             "refused unless --force; TPU shapes are refused")
    parser.add_argument("--pin-image", choices=PIN_TYPES,
                        help="docker_image_pinning_type: 'original' keeps the image of the "
                             "kernel's first version, 'latest' takes Kaggle's newest")
    parser.add_argument("--docker-image", metavar="IMAGE@sha256:DIGEST",
                        help="run on this Kaggle image, named by digest")
    vis = parser.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="private", action="store_true", default=True)
    vis.add_argument("--public", dest="private", action="store_false")
    defaults = spec.default_parameters()
    for option in PARAMETER_OPTIONS:
        text = f"{option.kwargs['help']}; default {defaults[option.parameter]!r}"
        # SUPPRESS: an option not given leaves no attribute, so a given "none" is an override.
        parser.add_argument(option.flag, default=argparse.SUPPRESS,
                            **{**option.kwargs, "help": text.replace("%", "%%")})
    act = parser.add_mutually_exclusive_group()
    act.add_argument("--push", action="store_true",
                     help="run the smoke checks and the rehearsal, then push if all pass")
    act.add_argument("--status", action="store_true", help="print the pushed kernel's status")
    act.add_argument("--fetch", action="store_true", help="download the run's outputs into runs/")
    act.add_argument("--logs", action="store_true", help="print the kernel's log (latest session)")
    parser.add_argument("--follow", action="store_true",
                        help="with --logs: stream the running session's log until it ends")
    parser.add_argument("--force", action="store_true",
                        help="with --push: push even when the latest version is queued or running; "
                             "with --accelerator NvidiaTeslaP100: render for NvidiaTeslaT4")
    parser.add_argument("--skip-rehearsal", action="store_true",
                        help="with --push: smoke checks only, no end-to-end rehearsal")
    parser.add_argument("--data", type=Path, help="with --push: local Kaggle-layout dataset for "
                        "the rehearsal (default: a generated one)")
    parser.add_argument("--resume-from", metavar="N|latest",
                        help="with --push: mount version N's outputs (latest: the last push in "
                             "runs/ledger.jsonl) and continue its last.pth")
    parser.add_argument("--wait", action="store_true", help="with --status: poll until the run ends")
    parser.add_argument("--interval", type=float, default=30.0,
                        help="with --status --wait: seconds between polls (default 30)")
    parser.add_argument("--timeout", type=float, default=12 * 3600.0,
                        help="with --status --wait: give up after this many seconds "
                             "(default 43200, Kaggle's 12 h session limit)")
    parser.add_argument("--version", type=int,
                        help="with --fetch, --status or --logs: kernel version (default latest)")
    return parser.parse_args(argv)


def _resume_source(value: str, ref: str, *, push: bool) -> str:
    """``--resume-from N|latest`` as the kernel source ``owner/slug/N``; ValueError if unusable."""
    if not push:
        raise ValueError("--resume-from goes with --push (it attaches an earlier version's "
                         "outputs to the new version)")
    if value == "latest":
        from builders.ledger import latest_version

        version = latest_version(RUNS_DIR, ref)
        if version is None:
            raise ValueError(f"--resume-from latest: {RUNS_DIR / 'ledger.jsonl'} has no push of "
                             f"{ref} with a version number; give the version: --resume-from N")
        return resume_source(ref, version)
    try:
        number = int(value.lstrip("v"))
    except ValueError:
        raise ValueError(f"--resume-from {value!r}: give a version number or 'latest'") from None
    return resume_source(ref, number)


def _kaggle_call(fn) -> int:
    """Run one Kaggle operation: exit 2 on a credentials problem, 1 on a failed request.

    The operations are looked up on their modules at call time (``kaggle_push.push_notebook``),
    so a test can replace one; none of them imports the kaggle client before it is called.
    """
    try:
        fn()
    except KaggleCredentialsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KaggleRequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main_for(name: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    """The CLI for model ``name`` of the model table (``builders/<name>.py``,
    ``python -m builders <name>``)."""
    return main(model_spec(name), argv, prog=prog)


def main(spec: ModelSpec, argv: list[str] | None = None, prog: str | None = None) -> int:
    args = parse_args(spec, argv, prog)
    # The committed notebooks/<model>/ keeps the placeholder owner, so a re-render matches it byte
    # for byte on a machine with credentials; they name the owner only to talk to Kaggle or --out.
    talks_to_kaggle = args.push or args.status or args.fetch or args.logs
    user = args.user or (kaggle_username() if talks_to_kaggle or args.out is not None else PLACEHOLDER_USER)
    ref = f"{user}/{spec.slug}"
    overrides = {o.parameter: getattr(args, o.dest) for o in PARAMETER_OPTIONS
                 if hasattr(args, o.dest)}
    out = args.out if args.out is not None or not args.push else STAGING_DIR / spec.name
    # Every bad input at once, one line each, before any render, request or write.
    user_source = "--user" if args.user else "KAGGLE_USERNAME / kaggle.json user"
    problems = option_problems(args)
    if args.status or args.fetch or args.logs:
        problems += [p for p in [user_problem(user, user_source)] if p]
    else:
        problems += build_problems(spec, out or REPO_ROOT / "notebooks" / spec.name,
                                   {**spec.default_parameters(), **overrides}, user, user_source)
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    if talks_to_kaggle:
        # The cheap refusals come first: before the render, the minutes-long smoke gate and
        # rehearsal, or any request; nothing is written when they refuse.
        if user == PLACEHOLDER_USER:
            action = ("push" if args.push else "check the status of" if args.status
                      else "read the log of" if args.logs else "fetch")
            print(f"error: {_no_user_message(ref, action)}", file=sys.stderr)
            return 2
        code = _kaggle_call(lambda: kaggle_credentials.check_credentials())  # no network, no kaggle import
        if code:
            return code
    if args.status:
        return _kaggle_call(lambda: kaggle_status.kernel_status(  # it echoes the states
            ref, wait=args.wait, interval=args.interval, timeout=args.timeout, version=args.version))
    if args.fetch:
        return _kaggle_call(lambda: print(
            f"outputs in {kaggle_fetch.fetch_outputs(ref, runs_dir=RUNS_DIR, version=args.version)}"))
    if args.logs:
        return _kaggle_call(lambda: kaggle_logs.kernel_logs(ref, version=args.version, follow=args.follow))
    try:
        accelerator, note = resolve_accelerator(args.accelerator, force=args.force)
        image = docker_image_fields(args.pin_image, args.docker_image)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if note:
        print(note, file=sys.stderr)

    kernel_sources = None
    if args.resume_from is not None:
        try:
            kernel_sources = [_resume_source(args.resume_from, ref, push=args.push)]
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if kernel_sources:
        overrides["RESUME_FROM"] = kernel_sources[0]  # the notebook refuses to start afresh
    try:
        result = build(spec, out=out, overrides=overrides, user=user,
                       accelerator=accelerator, private=args.private, image=image,
                       kernel_sources=kernel_sources)
    except BuildRefused as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    return _kaggle_call(lambda: print(kaggle_push.push_notebook(
        result.folder, runs_dir=RUNS_DIR, params=result.params, accelerator=accelerator,
        force=args.force)))
