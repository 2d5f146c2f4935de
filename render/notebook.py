"""Render a model's notebook from the percent-format layout and the package it carries.

The layout (``templates/notebook.pct.py``) is a jupytext percent file; a cell's options are
jupytext cell metadata on its marker line, ``key=value`` with a JSON value:

- ``# %% [markdown] section="intro"``: markdown; ``{title}``-style fields are filled from the spec
  (``str.format`` runs on markdown only, never on code); ``{modules}`` lists the modules the
  notebook writes. ``section`` starts a new section, which names the cell ids (``data-0``,
  ``data-1``, ...) so that ids are stable across builds.
- ``# %%``: a glue code cell, verbatim.
- ``# %% tags=["parameters"]``: the parameters cell (papermill's tag), written by
  :func:`translate_parameters`, the one place where values become code.
- ``# %% generated="package"``: makes the package folder ``PACKAGE_DIR`` (a fresh temporary
  folder, outside the ``WORK_DIR`` that Kaggle saves) with its ``__init__.py`` files and puts it
  first on ``sys.path`` and in ``PYTHONPATH``.
- ``# %% module="templates.config"`` (``"@model"``: the spec's model module): writes the module's
  file into ``PACKAGE_DIR`` with IPython's ``%%writefile "{PACKAGE_DIR}/templates/config.py"``,
  its source verbatim; the cell is folded on Kaggle and in Jupyter. Later cells import the
  package as usual.
- ``# %% generated="config"``: ``cfg = RunConfig(model=MODEL, ...)``, one keyword per parameter
  (the parameter's name lower-cased is the ``RunConfig`` field).

Every own module that a written module or a code cell imports (inside functions too) must be
written by a module cell: a missing one is a :class:`RenderError` here, not an ImportError on
Kaggle. Every notebook is an nbformat ``NotebookNode`` and is validated before it is written.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from render.spec import ModelSpec, mounted_dataset_slug
from templates.config import RunConfig
from templates.outputs import export_files, run_files

REPO_ROOT = Path(__file__).resolve().parents[1]
LAYOUT = REPO_ROOT / "templates" / "notebook.pct.py"
OWN_PACKAGES = ("templates", "compat")
PARAMETERS_TAG = "parameters"
#: the section of the package setup and module cells; the run section is what follows it
LIBRARY_SECTION = "library"
MODULE_KEY = "module"
#: a module cell's first line, then the file and a closing quote; IPython expands
#: ``{PACKAGE_DIR}`` in a cell magic's line, and the quotes keep a temp path with a space in it
#: (``C:\\Users\\First Last\\...``) one argument
WRITEFILE = '%%writefile "{PACKAGE_DIR}/'

PACKAGE_DIR_PREFIX = "se_toolkit_package-"
#: folds a module cell: Kaggle's hide-input/hide-output keys and Jupyter's (nbformat 4.5 schema)
FOLDED: dict[str, Any] = {"_kg_hide-input": True, "_kg_hide-output": True,
                          "jupyter": {"source_hidden": True, "outputs_hidden": True}}

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


def config_cell_source(params: dict[str, Any]) -> str:
    """The glue cell that turns the parameters into ``cfg``: ``RunConfig(model=MODEL, ...)``."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    keywords = []
    for name in params:
        if name.lower() not in fields or name != name.lower().upper():
            raise RenderError(f"parameter {name!r} names no RunConfig field (a parameter is a "
                              f"field's name upper-cased)")
        keywords.append(f"{name.lower()}={name}")
    body = textwrap.fill(", ".join(keywords) + ",", width=96, initial_indent="    ",
                         subsequent_indent="    ", break_on_hyphens=False, break_long_words=False)
    return f"from templates.config import RunConfig\n\ncfg = RunConfig(\n{body}\n)\nprint(cfg)"


# --------------------------------------------------------------------------------------------
# Modules -> files of the notebook's package
# --------------------------------------------------------------------------------------------
def module_file(module: str) -> str:
    """``templates.models.dpt`` -> ``templates/models/dpt.py`` (relative to the package folder)."""
    return "/".join(module.split(".")) + ".py"


def module_path(module: str, root: Path = REPO_ROOT) -> Path:
    path = root / module_file(module)
    if not path.is_file():
        raise RenderError(f"module={module}: {path} does not exist")
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


def parse_source(source: str, name: str) -> ast.Module:
    try:
        return ast.parse(source, filename=name)
    except SyntaxError as exc:
        raise RenderError(f"{name}: line {exc.lineno}: {exc.msg}") from exc


def own_imports(tree: ast.Module, name: str, root: Path = REPO_ROOT) -> list[tuple[int, str]]:
    """(line, module) of every import of our own packages, lazy ones inside functions included.

    ``if __name__ == "__main__":`` blocks are skipped: they never run in the notebook.
    ``from templates.models import dpt`` needs ``templates.models.dpt`` when that is a module
    under ``root``; a package (a folder) needs nothing, the package cell makes it.
    """
    found: list[tuple[int, str]] = []
    for top in tree.body:
        if _is_main_guard(top):
            continue
        for node in ast.walk(top):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                raise RenderError(f"{name}: line {node.lineno}: relative import; use "
                                  f"'from templates.x import ...' so the renderer sees it")
            needed: list[str] = []
            if isinstance(node, ast.Import):
                needed = [a.name for a in node.names if _is_own(a.name)]
            elif isinstance(node, ast.ImportFrom) and _is_own(node.module):
                needed = [node.module] + [f"{node.module}.{a.name}" for a in node.names
                                          if (root / module_file(f"{node.module}.{a.name}")).is_file()]
            found += [(node.lineno, m) for m in needed if not (root / m.replace(".", "/")).is_dir()]
    return found


def package_dirs(modules: list[str]) -> list[str]:
    """The package folders the modules live in, parents first: ``["templates", "templates/models"]``."""
    dirs = {"/".join(m.split(".")[:i]) for m in modules for i in range(1, len(m.split(".")))}
    return sorted(dirs)


def package_cell_source(modules: list[str]) -> str:
    """The library section's first cell: the package folder, outside ``WORK_DIR``."""
    own_modules = rf"({'|'.join(OWN_PACKAGES)})(\.|$)"  # a regex on module names
    return textwrap.dedent(f"""\
        # The package this notebook carries: the folded cells below write its modules into
        # PACKAGE_DIR, a new folder outside WORK_DIR (which Kaggle saves as the output); the run
        # section imports them like any installed package.
        import importlib
        import os
        import sys
        import tempfile
        import warnings

        # Run again in the same kernel ("Run all" twice, an edited module cell): forget the modules
        # and the folder of the run before, so that imports read the files written below.
        for name in [name for name in sys.modules if name.split(".")[0] in {OWN_PACKAGES!r}]:
            del sys.modules[name]


        def _earlier_package(path):
            return os.path.basename(path).startswith({PACKAGE_DIR_PREFIX!r})


        PACKAGE_DIR = tempfile.mkdtemp(prefix={PACKAGE_DIR_PREFIX!r})
        for package in {package_dirs(modules)!r}:
            os.makedirs(os.path.join(PACKAGE_DIR, package))
            open(os.path.join(PACKAGE_DIR, package, "__init__.py"), "w").close()
        sys.path[:] = [PACKAGE_DIR] + [path for path in sys.path if not _earlier_package(path)]
        importlib.invalidate_caches()
        # worker processes started with "spawn" find the package too
        os.environ["PYTHONPATH"] = os.pathsep.join([PACKAGE_DIR] + [
            path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if path and not _earlier_package(path)])
        # a deprecation in our own modules is shown, as Python shows it for a cell's code
        warnings.filterwarnings("default", category=DeprecationWarning, module={own_modules!r})""")


def module_cell_source(module: str, root: Path = REPO_ROOT) -> str:
    """``%%writefile "{PACKAGE_DIR}/templates/x.py"`` and the module's source, verbatim."""
    text = module_path(module, root).read_text(encoding="utf-8")
    if not text.endswith("\n"):
        raise RenderError(f"{module}: the file must end with a newline (IPython adds one)")
    return f'{WRITEFILE}{module_file(module)}"\n{text}'


def _summary(source: str, name: str) -> str:
    doc = ast.get_docstring(parse_source(source, name)) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


# --------------------------------------------------------------------------------------------
# Layout -> cells
# --------------------------------------------------------------------------------------------
@dataclass
class LayoutCell:
    kind: str  # "markdown" | "code" | "parameters" | "module" | "generated"
    source: str
    options: dict[str, Any]
    line: int


_MARKER = re.compile(r"^# %%(?P<rest>.*)$")
# key=value with a JSON value: a string, a list of strings, a number or a bare word
_OPTION = re.compile(r'\s*(?P<key>[A-Za-z_][\w-]*)=(?P<value>"(?:[^"\\]|\\.)*"|\[[^\]]*\]|[^\s"\[]+)')
_OPTIONS = {"markdown": {"section"}, "code": {"tags", MODULE_KEY, "generated"}}
GENERATED = ("package", "config")


def _parse_options(rest: str, where: str) -> tuple[str, dict[str, Any]]:
    rest = rest.strip()
    kind = "code"
    if rest.startswith("[markdown]"):
        kind, rest = "markdown", rest[len("[markdown]"):]
    options: dict[str, Any] = {}
    pos = 0
    while pos < len(rest.rstrip()):
        m = _OPTION.match(rest, pos)
        if not m:
            raise RenderError(f"{where}: unknown cell option {rest[pos:].strip()!r} (use key=value, "
                              f"the value in JSON, as jupytext writes cell metadata)")
        try:
            options[m.group("key")] = json.loads(m.group("value"))
        except json.JSONDecodeError as exc:
            raise RenderError(f"{where}: option {m.group(0).strip()!r}: the value is not JSON") from exc
        pos = m.end()
    unknown = set(options) - _OPTIONS[kind]
    if unknown:
        raise RenderError(f"{where}: unknown cell option(s) {sorted(unknown)} for a {kind} cell")
    if PARAMETERS_TAG in options.get("tags", []):
        kind = "parameters"
    elif MODULE_KEY in options:
        kind = "module"
    elif "generated" in options:
        if options["generated"] not in GENERATED:
            raise RenderError(f"{where}: generated={options['generated']!r}: one of {GENERATED}")
        kind = "generated"
    return kind, options


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
        kind, options = _parse_options(m.group("rest"), f"{name}: line {lineno}")
        current = LayoutCell(kind, "", options, lineno)
    close()
    for cell in cells:
        if cell.kind in ("parameters", "module", "generated") and cell.source.strip():
            raise RenderError(f"{name}: line {cell.line}: a {cell.kind} cell must be empty in the layout")
    return cells


def _outputs_sentence(name: str) -> str:
    """The intro's list of what a run writes, from ``templates.outputs`` (never a second copy)."""
    def ticks(files: list[str]) -> str:
        return ", ".join(f"`{f}`" for f in files)
    return f"{ticks(run_files(name))}, and the exports {ticks(export_files(name))}"


def build_notebook(
    spec: ModelSpec,
    params: dict[str, Any] | None = None,
    *,
    layout: Path = LAYOUT,
    root: Path = REPO_ROOT,
) -> NotebookNode:
    """The model's notebook, validated. ``params`` default to ``spec.default_parameters()``."""
    params = spec.default_parameters() if params is None else params
    layout_cells = parse_layout(layout.read_text(encoding="utf-8"), name=layout.name)
    for lc in layout_cells:
        if lc.kind == "module" and lc.options[MODULE_KEY] == "@model":
            lc.options[MODULE_KEY] = spec.model_module
    modules = [lc.options[MODULE_KEY] for lc in layout_cells if lc.kind == "module"]
    twice = sorted({m for m in modules if modules.count(m) > 1})
    if twice:
        raise RenderError(f"{layout.name}: module(s) written twice: {twice}")
    sources = {m: module_cell_source(m, root).split("\n", 1)[1] for m in modules}
    fields = {
        "title": spec.title,
        "name": spec.name,
        "slug": spec.slug,
        "description": spec.description,
        "dataset": mounted_dataset_slug(params),
        "outputs": _outputs_sentence(spec.name),
        "modules": "\n".join(f"- `{module_file(m)}`: {_summary(sources[m], m)}".rstrip(": ")
                             for m in modules),
    }
    cells: list[NotebookNode] = []
    section = "intro"
    counters: dict[str, int] = {}

    def add(cell: NotebookNode) -> None:
        n = counters.get(section, 0)
        counters[section] = n + 1
        cell.id = f"{section}-{n}"[:64]
        cells.append(cell)

    package_made = False
    for lc in layout_cells:
        if "section" in lc.options:
            section = lc.options["section"]
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", str(section)) or section in counters:
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
        elif lc.kind == "generated" and lc.options["generated"] == "package":
            package_made = True
            add(new_code_cell(package_cell_source(modules)))
        elif lc.kind == "generated":
            add(new_code_cell(config_cell_source(params)))
        else:
            module = lc.options[MODULE_KEY]
            if not package_made:
                raise RenderError(f"{layout.name}: line {lc.line}: module={module!r} before the "
                                  f"generated=\"package\" cell that makes PACKAGE_DIR")
            metadata = {MODULE_KEY: module, **copy.deepcopy(FOLDED)}
            add(new_code_cell(f'{WRITEFILE}{module_file(module)}"\n{sources[module]}', metadata=metadata))
    _check_complete(cells, sources, layout.name, root)
    nb = new_notebook(
        cells=cells,
        metadata={"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)},
    )
    nbformat.validate(nb)
    return nb


def _check_complete(cells: list[NotebookNode], sources: dict[str, str], layout: str,
                    root: Path) -> None:
    """Every code cell parses and every own module imported anywhere is written."""
    needed: list[tuple[str, int, str]] = []  # (where, line, module)
    for module, source in sources.items():
        tree = parse_source(source, module_file(module))
        needed += [(module_file(module), line, m) for line, m in own_imports(tree, module, root)]
    for cell in cells:
        if cell.cell_type == "code" and MODULE_KEY not in cell.metadata:
            tree = parse_source(cell.source, f"cell {cell.id}")
            needed += [(f"cell {cell.id}", line, m) for line, m in own_imports(tree, cell.id, root)]
    for where, line, module in needed:
        if module not in sources:
            raise RenderError(f"{where}: line {line}: imports {module}, which no module cell "
                              f"writes: add '# %% module=\"{module}\"' to {layout}")


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


# --------------------------------------------------------------------------------------------
# Reading a rendered notebook: its package and its run section
# --------------------------------------------------------------------------------------------
def module_cells(nb: NotebookNode) -> list[NotebookNode]:
    """The cells that write the package's modules, in order."""
    return [c for c in nb.cells if c.cell_type == "code" and MODULE_KEY in c.get("metadata", {})]


def module_source(cell: NotebookNode) -> tuple[str, str]:
    """(file relative to the package folder, text) that a module cell writes: the bytes after
    its ``%%writefile`` line, as IPython writes them."""
    first, _, text = cell.source.partition("\n")
    rest = first[len(WRITEFILE):].rstrip()
    if not first.startswith(WRITEFILE) or not rest.endswith('"'):
        raise RenderError(f"cell {cell.get('id')}: a module cell starts with "
                          f"{WRITEFILE + 'templates/x.py' + chr(34)!r}, not {first!r}")
    return rest[:-1], text


def package_files(nb: NotebookNode) -> dict[str, str]:
    """Every file of the notebook's package (relative path -> text), ``__init__.py`` included."""
    files = dict(module_source(c) for c in module_cells(nb))
    modules = [rel[:-len(".py")].replace("/", ".") for rel in files]
    for folder in package_dirs(modules):
        files.setdefault(f"{folder}/__init__.py", "")
    return files


def write_package(nb: NotebookNode, folder: Path) -> Path:
    """Write the notebook's package into ``folder`` (what the notebook's cells write on Kaggle)."""
    folder = Path(folder)
    for rel, text in package_files(nb).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def cell_section(cell: NotebookNode) -> str:
    """The section name encoded in a rendered cell id (``data-2`` -> ``data``)."""
    return str(cell.get("id", "")).rsplit("-", 1)[0] or "?"


def run_section(nb: NotebookNode) -> list[NotebookNode]:
    """The cells after the library section: what a reader scrolls through."""
    last = max((i for i, c in enumerate(nb.cells) if cell_section(c) == LIBRARY_SECTION), default=-1)
    if last < 0:
        raise RenderError(f"the notebook has no {LIBRARY_SECTION!r} section")
    return nb.cells[last + 1:]
