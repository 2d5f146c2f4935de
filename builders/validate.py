"""A builder's inputs checked before anything is rendered or written.

Each function returns one line per problem (empty: fine), each naming the option or value and
its rule, so a builder refuses with every problem at once and leaves every file as it was.

- parameters: through ``RunConfig.problems_in``, the same rules the notebook's configuration
  cell applies, so a field added to ``RunConfig`` (and its parameter) is checked here with no
  change to this module;
- ``--user``: Kaggle's owner-slug syntax, as the official client checks it
  (``KaggleApi._validate_slug_syntax(..., allow_underscore=True)``): lower-case letters and
  digits, single ``-`` or ``_`` between them;
- ``--out``: a folder (or a place where one can be made) that this user can write, holding no
  other kernel's ``kernel-metadata.json``.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from render.spec import ModelSpec, field_name

KAGGLE_USER_RE = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
KAGGLE_USER_RULE = ("lower-case letters and digits, with single '-' or '_' between them "
                    "(Kaggle's user-name rule)")


def parameter_problems(params: dict[str, Any], flags: dict[str, str] | None = None) -> list[str]:
    """Problems of the parameters cell ``params`` under ``RunConfig``'s rules.

    ``flags`` maps a parameter name to the command-line option that sets it (``EPOCHS`` ->
    ``--epochs``); a problem is reported under that option, else under the parameter's name.
    Parameters that are no ``RunConfig`` field are not checked here.
    """
    import dataclasses

    from templates.config import RunConfig

    fields = {f.name for f in dataclasses.fields(RunConfig)}
    by_field = {field_name(n): n for n in params if field_name(n) in fields}
    values = {f: params[n] for f, n in by_field.items()}
    lines = []
    for problem in RunConfig.problems_in(values):
        field = problem.split(" ", 1)[0]
        name = by_field.get(field, field)
        option = (flags or {}).get(name)
        where = f"{option} {params[name]!r}" if option else f"parameter {name}"
        lines.append(f"{where}: {problem}")
    return lines


def user_problem(user: str, source: str = "--user") -> str | None:
    """Why ``user`` cannot own a Kaggle kernel, or None."""
    if KAGGLE_USER_RE.fullmatch(user or ""):
        return None
    return f"{source} {user!r}: not a Kaggle user name; use {KAGGLE_USER_RULE}"


def _nearest_existing(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate
    return Path(".")


def out_problems(folder: Path, spec: ModelSpec, option: str = "--out") -> list[str]:
    """Why the push folder ``folder`` cannot receive ``spec``'s notebook and metadata."""
    folder = Path(folder)
    where = f"{option} {folder}"
    if folder.exists() and not folder.is_dir():
        return [f"{where}: is a file; give a folder (it receives {spec.notebook_file} and "
                f"kernel-metadata.json)"]
    base = _nearest_existing(folder)
    if not base.is_dir():
        return [f"{where}: {base} is a file, so no folder can be made there; choose another "
                f"--out"]
    if not os.access(base, os.W_OK | os.X_OK):
        return [f"{where}: {base} is not writable; choose a folder you can write"]
    if folder.is_dir():
        for name in (spec.notebook_file, "kernel-metadata.json"):
            target = folder / name
            if target.is_dir() or (target.exists() and not os.access(target, os.W_OK)):
                return [f"{where}: {target} cannot be replaced; remove it or choose another "
                        f"--out"]
    meta_file = folder / "kernel-metadata.json"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            kernel_id = meta["id"]
            slug = kernel_id.split("/", 1)[1]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            return [f"{where}: its kernel-metadata.json is not one this toolkit wrote "
                    f"({type(exc).__name__}); choose another --out or remove that file"]
        if slug != spec.slug:
            return [f"{where}: holds the push folder of another kernel ({kernel_id}); "
                    f"rendering {spec.slug} there would overwrite it: choose another --out"]
    return []


def option_problems(args) -> list[str]:
    """The watch/fetch/push options' values (``--interval``, ``--timeout``, ``--version``,
    ``--data``), checked whichever action runs."""
    lines = []
    for name in ("interval", "timeout"):
        value = getattr(args, name, None)
        if value is not None and (not math.isfinite(value) or value <= 0):
            lines.append(f"--{name} {value}: must be a finite number of seconds > 0")
    version = getattr(args, "version", None)
    if version is not None and version < 1:
        lines.append(f"--version {version}: kernel versions start at 1")
    data = getattr(args, "data", None)
    if data is not None and not Path(data).is_dir():
        lines.append(f"--data {data}: no such folder (a local dataset in the Kaggle layout)")
    return lines
