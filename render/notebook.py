"""Render a model's notebook from the percent-format layout and the real modules it includes.

The layout (``templates/notebook.pct.py``) is jupytext's percent format:

- ``# %% [markdown] section=NAME``: markdown; ``{title}``-style fields are filled from the spec
  (``str.format`` runs on markdown only, never on code). ``section=`` starts a new section,
  which names the cell ids (``data-0``, ``data-1``, ...) so that ids are stable across builds.
- ``# %%``: a glue code cell, verbatim.
- ``# %% parameters``: replaced by the parameters cell (tag ``parameters``), written by
  :func:`translate_parameters`, the one place where values become code.
- ``# %% include=compat.audio`` / ``# %% include=@model``: the module's source, with our own
  cross-module imports, ``from __future__`` imports and ``if __name__ == "__main__":`` blocks
  removed (found with ``ast``, by exact line spans) and its docstring moved into a markdown line.

Every notebook is an nbformat ``NotebookNode`` and is validated before it is written.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from render.spec import ModelSpec
from templates.datasets import DEFAULT_DATASET, dataset_source

REPO_ROOT = Path(__file__).resolve().parents[1]
LAYOUT = REPO_ROOT / "templates" / "notebook.pct.py"
OWN_PACKAGES = ("templates", "compat")
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
# No version numbers: they would change the bytes whenever the local Python changes.
LANGUAGE_INFO = {"name": "python", "file_extension": ".py", "mimetype": "text/x-python"}


class RenderError(ValueError):
    """The layout or a rendered module breaks the rendering contract."""


# --------------------------------------------------------------------------------------------
# Values -> code (papermill's translators.py habit)
# --------------------------------------------------------------------------------------------
def translate_value(value: Any) -> str:
    """Python source for one parameter value. ``bool`` is checked before ``int`` (a subclass)."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        if math.isnan(value):
            return "float('nan')"
        return "float('inf')" if value > 0 else "float('-inf')"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(translate_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise RenderError(f"parameter dict keys must be strings, got {key!r}")
            items.append(f"{translate_value(key)}: {translate_value(item)}")
        return "{" + ", ".join(items) + "}"
    raise RenderError(f"cannot write a {type(value).__name__} parameter ({value!r}) as code")


def translate_parameters(params: dict[str, Any], comment: str = "Parameters") -> str:
    """The parameters cell: a ``# Parameters`` header, then ``NAME = value`` per line."""
    lines = [f"# {comment}"]
    for name, value in params.items():
        if not name.isidentifier():
            raise RenderError(f"parameter name {name!r} is not a Python identifier")
        lines.append(f"{name} = {translate_value(value)}")
    return "\n".join(lines)


def inject_parameters(nb: NotebookNode, params: dict[str, Any]) -> NotebookNode:
    """Insert (or replace) an ``injected-parameters`` cell after the ``parameters`` cell.

    Injecting twice replaces the first injected cell, so a re-run changes nothing.
    """
    cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    index = next(
        (i for i, c in enumerate(cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])),
        None,
    )
    if index is None:
        raise RenderError("notebook has no cell tagged 'parameters'")
    cell = new_code_cell(
        translate_parameters(params, comment="Injected parameters"),
        metadata={"tags": [INJECTED_TAG]},
        id="injected-parameters",
    )
    nb.cells = cells[: index + 1] + [cell] + cells[index + 1 :]
    return nb


# --------------------------------------------------------------------------------------------
# Modules -> cell source
# --------------------------------------------------------------------------------------------
@dataclass
class RenderedModule:
    name: str
    path: Path
    code: str
    docstring: str | None
    future_imports: list[str] = field(default_factory=list)


def module_path(module: str, root: Path = REPO_ROOT) -> Path:
    path = root.joinpath(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        raise RenderError(f"include={module}: {path} does not exist")
    return path


def _is_own(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in OWN_PACKAGES


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def render_module_source(source: str, name: str = "<module>") -> RenderedModule:
    """Strip what the notebook namespace already provides; keep everything else verbatim."""
    try:
        tree = ast.parse(source, filename=name)
    except SyntaxError as exc:
        raise RenderError(f"{name}: line {exc.lineno}: {exc.msg}") from exc
    drop: list[tuple[int, int]] = []  # 1-based inclusive line spans
    docstring = None
    futures: list[str] = []
    for i, node in enumerate(tree.body):
        span = (node.lineno, node.end_lineno or node.lineno)
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            docstring = ast.get_docstring(tree)
            drop.append(span)
        elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
            futures.extend(a.name for a in node.names)
            drop.append(span)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_own(node.module):
            drop.append(span)
        elif _is_main_guard(node):
            drop.append(span)
    kept_nodes = [n for n in tree.body if not _is_main_guard(n)]  # the guard is dropped whole
    for node in (sub for top in kept_nodes for sub in ast.walk(top)):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            raise RenderError(f"{name}: line {node.lineno}: relative import; use "
                              f"'from templates.x import ...' (docs/interfaces.md)")
        if isinstance(node, ast.Import) and any(_is_own(a.name) for a in node.names):
            raise RenderError(f"{name}: line {node.lineno}: 'import {node.names[0].name}' cannot be "
                              f"rendered; use 'from templates.x import name'")
        if isinstance(node, ast.ImportFrom) and _is_own(node.module) and node not in kept_nodes:
            raise RenderError(f"{name}: line {node.lineno}: own-code import inside a block; "
                              f"own imports belong at the top level")
    lines = source.splitlines()
    keep = [True] * len(lines)
    for start, end in drop:
        for ln in range(start - 1, end):
            keep[ln] = False
    kept = [line for line, k in zip(lines, keep, strict=True) if k]
    code = re.sub(r"\n{3,}", "\n\n\n", "\n".join(kept)).strip("\n")
    try:
        ast.parse(code, filename=name)
    except SyntaxError as exc:  # a dropped span inside an expression would land here
        raise RenderError(f"{name}: rendered code does not parse: line {exc.lineno}: {exc.msg}") from exc
    return RenderedModule(name, Path(name), code, docstring, futures)


def render_module(module: str, root: Path = REPO_ROOT) -> RenderedModule:
    path = module_path(module, root)
    rendered = render_module_source(path.read_text(encoding="utf-8"), name=module)
    rendered.path = path
    return rendered


# --------------------------------------------------------------------------------------------
# Layout -> cells
# --------------------------------------------------------------------------------------------
@dataclass
class LayoutCell:
    kind: str  # "markdown" | "code" | "parameters" | "include"
    source: str
    options: dict[str, str]
    line: int


_MARKER = re.compile(r"^# %%(?P<rest>.*)$")


def parse_layout(text: str, name: str = "notebook.pct.py") -> list[LayoutCell]:
    """Split a percent-format file into cells; anything before the first marker is a header."""
    cells: list[LayoutCell] = []
    current: LayoutCell | None = None
    body: list[str] = []

    def close() -> None:
        if current is None:
            return
        src = "\n".join(body).strip("\n")
        if current.kind == "markdown":
            md = []
            for ln in src.splitlines():
                if ln.startswith("# "):
                    md.append(ln[2:])
                elif ln.rstrip() == "#":
                    md.append("")
                else:
                    raise RenderError(f"{name}: markdown cell at line {current.line}: line {ln!r} "
                                      f"is not a '# ' comment")
            src = "\n".join(md)
        current.source = src
        cells.append(current)

    for lineno, line in enumerate(text.splitlines(), 1):
        m = _MARKER.match(line)
        if not m:
            body.append(line)
            continue
        close()
        body = []
        words = m.group("rest").split()
        kind = "code"
        options: dict[str, str] = {}
        for word in words:
            if word == "[markdown]":
                kind = "markdown"
            elif word == PARAMETERS_TAG:
                kind = "parameters"
            elif "=" in word:
                key, value = word.split("=", 1)
                options[key] = value
            else:
                raise RenderError(f"{name}: line {lineno}: unknown cell option {word!r}")
        if "include" in options:
            kind = "include"
        current = LayoutCell(kind, "", options, lineno)
    close()
    for cell in cells:
        if cell.kind in ("parameters", "include") and cell.source.strip():
            raise RenderError(f"{name}: line {cell.line}: a {cell.kind} cell must be empty in the layout")
    return cells


def _module_markdown(rendered: RenderedModule, root: Path) -> str:
    rel = rendered.path.relative_to(root).as_posix() if rendered.path.is_absolute() else rendered.name
    summary = (rendered.docstring or "").strip().split("\n\n")[0].replace("\n", " ")
    return f"`{rel}`: {summary}" if summary else f"`{rel}`"


def build_notebook(
    spec: ModelSpec,
    params: dict[str, Any] | None = None,
    *,
    layout: Path = LAYOUT,
    root: Path = REPO_ROOT,
) -> NotebookNode:
    """The model's notebook, validated. ``params`` default to ``spec.default_parameters()``."""
    params = spec.default_parameters() if params is None else params
    fields = {
        "title": spec.title,
        "name": spec.name,
        "slug": spec.slug,
        "description": spec.description,
        # the mounted dataset's slug, from the row the parameters name
        "dataset": dataset_source(params.get("DATASET", DEFAULT_DATASET)).slug,
    }
    layout_cells = parse_layout(layout.read_text(encoding="utf-8"), name=layout.name)
    cells: list[NotebookNode] = []
    section = "intro"
    counters: dict[str, int] = {}
    futures: list[str] = []

    def add(cell: NotebookNode) -> None:
        n = counters.get(section, 0)
        counters[section] = n + 1
        cell.id = f"{section}-{n}"[:64]
        cells.append(cell)

    for lc in layout_cells:
        if "section" in lc.options:
            section = lc.options["section"]
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", section) or section in counters:
                raise RenderError(f"{layout.name}: line {lc.line}: section {section!r} is not a "
                                  f"new lower-case name")
        if lc.kind == "markdown":
            try:
                add(new_markdown_cell(lc.source.format(**fields)))
            except (KeyError, IndexError) as exc:
                raise RenderError(f"{layout.name}: line {lc.line}: unknown field {exc}") from exc
        elif lc.kind == "code":
            add(new_code_cell(lc.source))
        elif lc.kind == "parameters":
            add(new_code_cell(translate_parameters(params), metadata={"tags": [PARAMETERS_TAG]}))
        else:
            module = lc.options["include"]
            if module == "@model":
                module = spec.model_module
            rendered = render_module(module, root)
            futures += [f for f in rendered.future_imports if f not in futures]
            add(new_markdown_cell(_module_markdown(rendered, root)))
            add(new_code_cell(rendered.code, metadata={"module": module}))
    if futures:
        # A future import must start the first cell; IPython keeps its flag for later cells.
        index = next(i for i, c in enumerate(cells) if c.cell_type == "code")
        cell = new_code_cell(f"from __future__ import {', '.join(futures)}")
        cell.id = f"{cell_section(cells[index])}-future"
        cells.insert(index, cell)
    nb = new_notebook(
        cells=cells,
        metadata={"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)},
    )
    for cell in nb.cells:
        if cell.cell_type == "code":
            try:
                ast.parse(cell.source)
            except SyntaxError as exc:
                raise RenderError(f"cell {cell.id}: line {exc.lineno}: {exc.msg}") from exc
    nbformat.validate(nb)
    return nb


def notebook_text(nb: NotebookNode) -> str:
    """Deterministic JSON: validated, sorted keys, indent 1, one trailing newline."""
    nbformat.validate(nb)
    text = nbformat.writes(nb, version=4)  # sort_keys=True, indent=1 (nbformat's defaults)
    return text if text.endswith("\n") else text + "\n"


def write_notebook(nb: NotebookNode, path: Path) -> Path:
    """Write ``nb`` atomically: a failed write leaves the previous notebook, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(notebook_text(nb), encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_notebook(path: Path) -> NotebookNode:
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    return nb


def code_cells(nb: NotebookNode) -> list[tuple[int, NotebookNode]]:
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def module_cells(nb: NotebookNode) -> list[NotebookNode]:
    """The code cells pasted from modules (definitions only, no side effects), in order."""
    return [c for c in nb.cells if c.cell_type == "code" and "module" in c.get("metadata", {})]


def cell_section(cell: NotebookNode) -> str:
    """The section name encoded in a rendered cell id (``data-2`` -> ``data``)."""
    return str(cell.get("id", "")).rsplit("-", 1)[0] or "?"
