"""Lint a rendered notebook the way Kaggle runs it: its package's modules and its run cells.

Each module the notebook writes (the bytes after its ``%%writefile`` line) is one program, and
the code cells (parameters, package setup, run section) together are another, as the kernel
runs them. Messages name the cell and the module file or section, and the line (in the module
file for a module, in the cell otherwise).

1. Every module and code cell parses.
2. pyflakes over each program (for the cells, concatenated with a cell -> line map): undefined
   names, redefined or unused-then-redefined imports, and so on.
3. Rules for the breakages that cost GPU hours on Kaggle, ast-based:
   ``torchaudio.info``, the ``.total_mem`` attribute, ``ReduceLROnPlateau(verbose=...)``,
   ``torch.load`` without ``weights_only``, hard-coded ``/kaggle/input/<slug>`` paths,
   ``DataLoader(num_workers>0)`` without ``persistent_workers=True``, and any name bound
   inside a program that shadows one of its imports (the seed's ``F`` that hid
   ``torch.nn.functional``). Names are resolved through the program's imports, so aliases
   (``import torchaudio as ta``, ``from ... import ReduceLROnPlateau as R``, ``from torch import
   load``) and positional arguments (``DataLoader``'s 6th, ``ReduceLROnPlateau``'s 10th) count;
   compat code guarded by ``hasattr(x, "info")`` or ``getattr(p, "total_mem", default)`` does not.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from pyflakes import api as pyflakes_api
from pyflakes import reporter as pyflakes_reporter

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render.notebook import cell_section, module_source, read_notebook  # noqa: E402

# pyflakes messages that are style, not breakage, in a notebook (ruff checks the repo's modules)
_IGNORED_PYFLAKES = ("imported but unused", "unable to detect undefined names")


@dataclass(frozen=True)
class LintIssue:
    cell: int  # index in nb.cells
    section: str
    line: int  # line within the cell, 1-based
    code: str
    message: str

    def format(self) -> str:
        return f"cell {self.cell} ({self.section}) line {self.line}: {self.code} {self.message}"


class NotebookLintError(ValueError):
    """Raised by :func:`raise_for_issues` with every issue in the message."""


# --------------------------------------------------------------------------------------------
# Kaggle-breakage rules: each takes a parsed cell and yields (line, code, message)
# --------------------------------------------------------------------------------------------
def _kw(node: ast.Call, name: str) -> ast.keyword | None:
    return next((k for k in node.keywords if k.arg == name), None)


def _has_star_kwargs(node: ast.Call) -> bool:
    return any(k.arg is None for k in node.keywords)


# Import aliases of the whole program, so that ``import torchaudio as ta; ta.info(...)`` and
# ``from torch.optim.lr_scheduler import ReduceLROnPlateau as R`` resolve to what they bind.
# Imports anywhere count (rendered modules import optional libraries inside functions).
Aliases = dict[str, set[str]]


def program_aliases(trees) -> Aliases:
    """``local name -> {qualified names}`` over every import in ``trees``."""
    aliases: Aliases = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        aliases.setdefault(a.asname, set()).add(a.name)
                    else:
                        head = a.name.split(".")[0]
                        aliases.setdefault(head, set()).add(head)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    if a.name != "*":
                        aliases.setdefault(a.asname or a.name, set()).add(f"{node.module}.{a.name}")
    return aliases


def _qualnames(expr: ast.AST, aliases: Aliases) -> set[str]:
    """Dotted names ``expr`` may stand for: ``ta.info`` -> {"torchaudio.info"}; a name that no
    import binds stands for itself."""
    if isinstance(expr, ast.Name):
        return aliases.get(expr.id) or {expr.id}
    if isinstance(expr, ast.Attribute):
        return {f"{q}.{expr.attr}" for q in _qualnames(expr.value, aliases)}
    return set()


def _last(qualname: str) -> str:
    return qualname.rsplit(".", 1)[-1]


def _positional(node: ast.Call, index: int) -> ast.expr | None:
    """The ``index``-th positional argument (0-based), when no ``*args`` comes before it."""
    for i, arg in enumerate(node.args):
        if isinstance(arg, ast.Starred):
            return None
        if i == index:
            return arg
    return None


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _guarded_by_hasattr(node: ast.AST, parents: dict[int, ast.AST], attr: str) -> bool:
    """Inside ``if hasattr(x, attr):`` (or ``... if hasattr(x, attr) else ...``): compat code."""
    child, parent = node, parents.get(id(node))
    while parent is not None:
        if isinstance(parent, (ast.If, ast.IfExp)) and child is not parent.test:
            for sub in ast.walk(parent.test):
                if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and \
                        sub.func.id == "hasattr" and len(sub.args) == 2 and \
                        isinstance(sub.args[1], ast.Constant) and sub.args[1].value == attr:
                    return True
        child, parent = parent, parents.get(id(parent))
    return False


def rule_torchaudio_info(tree: ast.AST, aliases: Aliases):
    parents = _parents(tree)
    message = "torchaudio.info was removed in current torchaudio; use audio_info()"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torchaudio") and \
                any(a.name == "info" for a in node.names):
            yield node.lineno, "KG001", message
        elif isinstance(node, (ast.Attribute, ast.Name)) and isinstance(node.ctx, ast.Load) and \
                any(q.startswith("torchaudio.") and _last(q) == "info" for q in _qualnames(node, aliases)) \
                and not _guarded_by_hasattr(node, parents, "info"):
            yield node.lineno, "KG001", message


def rule_total_mem(tree: ast.AST, aliases: Aliases):
    message = (".total_mem is not a device-properties attribute on current torch; use "
               "gpu_total_memory() (total_memory fallback)")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "total_mem":
            yield node.lineno, "KG002", message
        # getattr(props, "total_mem") without a default raises just the same
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) == 2 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value == "total_mem":
            yield node.lineno, "KG002", message


def rule_plateau_verbose(tree: ast.AST, aliases: Aliases):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        names = {_last(q) for q in _qualnames(node.func, aliases)}
        # verbose is the 10th positional parameter where it still exists (torch <= 2.6)
        if "ReduceLROnPlateau" in names and (_kw(node, "verbose") or _positional(node, 9) is not None):
            yield node.lineno, "KG003", "ReduceLROnPlateau(verbose=...) was removed; drop verbose"


def rule_torch_load(tree: ast.AST, aliases: Aliases):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and \
                _qualnames(node.func, aliases) & {"torch.load", "torch.serialization.load"} and \
                not _kw(node, "weights_only") and not _has_star_kwargs(node):
            yield node.lineno, "KG004", ("torch.load without weights_only: its default changed to "
                                         "True in torch 2.6; pass it explicitly (or use torch_load())")


def _is_input_root(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and \
        node.value.strip().rstrip("/") == "/kaggle/input"


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, (ast.Constant, ast.JoinedStr)) and \
        (not isinstance(node, ast.Constant) or isinstance(node.value, str))


def rule_kaggle_input_path(tree: ast.AST, aliases: Aliases):
    def flag(node: ast.AST, shown: str):
        return (node.lineno, "KG005", f"hard-coded dataset path {shown}: mount paths change "
                f"(/kaggle/input/datasets/<owner>/<slug>/); walk DATA_DIR with find_dataset()")

    in_fstring = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in in_fstring:
            value = node.value.strip()
            if value.startswith("/kaggle/input/") and value.rstrip("/") != "/kaggle/input":
                yield flag(node, repr(value))
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            head = str(node.values[0].value).strip()
            if head.startswith("/kaggle/input/") and (len(node.values) > 1 or head.rstrip("/") != "/kaggle/input"):
                yield flag(node, ast.unparse(node))
        # Path("/kaggle/input") / "slug", "/kaggle/input" + "/slug"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Add)) and _is_str(node.right):
            left = node.left
            if isinstance(left, ast.Call) and left.args:
                left = left.args[0]
            if _is_input_root(left):
                yield flag(node, repr(ast.unparse(node)))
        # os.path.join("/kaggle/input", "slug")
        elif isinstance(node, ast.Call) and len(node.args) >= 2 and _is_input_root(node.args[0]) \
                and _is_str(node.args[1]) and \
                any(_last(q) in ("join", "joinpath", "Path") for q in _qualnames(node.func, aliases)):
            yield flag(node, repr(ast.unparse(node)))


def rule_dataloader_workers(tree: ast.AST, aliases: Aliases):
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and
                "DataLoader" in {_last(q) for q in _qualnames(node.func, aliases)}):
            continue
        workers = _kw(node, "num_workers")
        value = workers.value if workers is not None else _positional(node, 5)  # 6th positional
        if value is None or (isinstance(value, ast.Constant) and value.value == 0):
            continue
        persistent = _kw(node, "persistent_workers")  # keyword-only in DataLoader
        if persistent is None and not _has_star_kwargs(node) or (
            persistent is not None and isinstance(persistent.value, ast.Constant)
            and persistent.value.value is not True
        ):
            yield node.lineno, "KG006", ("DataLoader with num_workers > 0 needs persistent_workers=True "
                                         "(workers torn down every epoch flood the log and slow it)")


KAGGLE_RULES = (rule_torchaudio_info, rule_total_mem, rule_plateau_verbose, rule_torch_load,
                rule_kaggle_input_path, rule_dataloader_workers)


def _imported_names(tree: ast.Module) -> dict[str, tuple[str, int]]:
    """Top-level import bindings: name -> (what it is bound to, line)."""
    names: dict[str, tuple[str, int]] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                bound = a.asname or a.name.split(".")[0]
                names[bound] = (a.name if a.asname else a.name.split(".")[0], node.lineno)
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                names[a.asname or a.name] = (f"{node.module}.{a.name}", node.lineno)
    return names


def _resolve(target: str):
    """The object an import binds (``torch.nn.functional``), or None when it cannot be imported."""
    import importlib

    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001 - any import failure means "unknown"
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _equivalent(targets: set[str]) -> bool:
    """Imports that bind the same thing (``typing.Callable`` is ``collections.abc.Callable``)."""
    if len(targets) == 1:
        return True
    objs = [_resolve(t) for t in targets]
    if any(o is None for o in objs):
        return False
    first = getattr(objs[0], "__origin__", objs[0])
    return all(getattr(o, "__origin__", o) is first for o in objs[1:])


def _shadowing(tree: ast.Module, imports: dict[str, tuple[str, int, int, str]]):
    """Bindings that hide an import where it matters, as (line, message).

    At module level any rebinding hides the import from every later cell. Inside a function a
    local of the same name is flagged when the function also uses an attribute the import has
    (the seed's ``B, C, F, T = x.shape`` followed by ``F.interpolate``), or when the import
    cannot be resolved to tell.
    """
    for node in tree.body:
        for sub in ([node] if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    else []):
            for name_node in ast.walk(sub):
                if isinstance(name_node, ast.Name) and isinstance(name_node.ctx, ast.Store) \
                        and name_node.id in imports:
                    yield name_node.lineno, name_node.id, "rebinds it for every later cell"
                # ``except E as F`` at module level binds F, then deletes it after the handler
                elif isinstance(name_node, ast.ExceptHandler) and name_node.name in imports:
                    yield name_node.lineno, name_node.name, "rebinds (then deletes) it for every later cell"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in imports:
            yield node.lineno, node.name, "rebinds it for every later cell"
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        declared_global = {n for g in ast.walk(fn) if isinstance(g, ast.Global) for n in g.names}
        local: dict[str, int] = {}
        for sub in ast.walk(fn):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store) and \
                    sub.id in declared_global and sub.id in imports:
                yield sub.lineno, sub.id, "through 'global', which rebinds it for every later cell"
                continue
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                local.setdefault(sub.id, sub.lineno)
            elif isinstance(sub, ast.arg) and sub is not fn:
                local.setdefault(sub.arg, sub.lineno)
        for name, lineno in local.items():
            if name not in imports:
                continue
            attrs = {a.attr for a in ast.walk(fn) if isinstance(a, ast.Attribute)
                     and isinstance(a.value, ast.Name) and a.value.id == name}
            target = _resolve(imports[name][0])
            used = sorted(a for a in attrs if target is None or hasattr(target, a))
            if used:
                yield lineno, name, f"while this function uses {name}.{used[0]}"


# --------------------------------------------------------------------------------------------
class _Collect(pyflakes_reporter.Reporter):
    def __init__(self) -> None:
        self.messages: list[tuple[int, str]] = []
        self.errors: list[str] = []

    def unexpectedError(self, filename, msg):  # noqa: N802 (pyflakes API)
        self.errors.append(str(msg))

    def syntaxError(self, filename, msg, lineno, offset, text):  # noqa: N802
        self.messages.append((lineno or 0, f"syntax error: {msg}"))

    def flake(self, message):
        self.messages.append((message.lineno, message.message % message.message_args))


def lint_cells(cells: list[tuple[int, str, str]]) -> list[LintIssue]:
    """Lint ``(cell index, section, source)`` code cells as one program."""
    issues: list[LintIssue] = []
    parsed: list[tuple[int, str, str, ast.Module]] = []
    for index, section, source in cells:
        try:
            parsed.append((index, section, source, ast.parse(source)))
        except SyntaxError as exc:
            issues.append(LintIssue(index, section, exc.lineno or 0, "E999", f"syntax error: {exc.msg}"))
    if issues:
        return issues

    # 2. pyflakes over the whole program, messages mapped back to cells
    line_map: list[tuple[int, int, str]] = []  # (first global line, cell, section)
    chunks: list[str] = []
    line = 1
    for index, section, source, _tree in parsed:
        line_map.append((line, index, section))
        chunks.append(source.rstrip("\n") + "\n\n")
        line += source.rstrip("\n").count("\n") + 2
    collector = _Collect()
    pyflakes_api.check("".join(chunks), "notebook", collector)

    def locate(global_line: int) -> tuple[int, str, int]:
        start, cell, section = max((m for m in line_map if m[0] <= global_line), default=line_map[0])
        return cell, section, global_line - start + 1

    # Each module imports what it uses, so `import torch` recurs across cells; pyflakes calls that
    # "redefinition of unused" because function bodies are checked later. Same target: fine.
    targets: dict[str, set[str]] = {}
    for _index, _section, _source, tree in parsed:
        for name, (target, _line) in _imported_names(tree).items():
            targets.setdefault(name, set()).add(target)
    same_import = {name for name, t in targets.items() if _equivalent(t)}
    redefinition = re.compile(r"redefinition of unused '([^']+)'")
    for gline, msg in collector.messages:
        if any(skip in msg for skip in _IGNORED_PYFLAKES):
            continue
        m = redefinition.match(msg)
        if m and m.group(1) in same_import:
            continue
        cell, section, local = locate(gline)
        issues.append(LintIssue(cell, section, local, "F", msg))
    for err in collector.errors:
        issues.append(LintIssue(-1, "?", 0, "F", err))

    # 3. Kaggle rules per cell; shadowed imports across the whole program
    imports: dict[str, tuple[str, int, int, str]] = {}  # name -> (target, cell, line, section)
    aliases = program_aliases(tree for *_rest, tree in parsed)
    for index, section, _source, tree in parsed:
        for rule in KAGGLE_RULES:
            for lineno, code, message in rule(tree, aliases):
                issues.append(LintIssue(index, section, lineno, code, message))
        for name, (target, lineno) in _imported_names(tree).items():
            seen = imports.get(name)
            if seen is not None and not _equivalent({seen[0], target}):
                issues.append(LintIssue(index, section, lineno, "KG007",
                                        f"import of {name!r} as {target} redefines {seen[0]} "
                                        f"imported in cell {seen[1]} ({seen[3]})"))
            imports.setdefault(name, (target, index, lineno, section))
    for index, section, _source, tree in parsed:
        for lineno, name, why in _shadowing(tree, imports):
            target, icell, _iline, isection = imports[name]
            issues.append(LintIssue(index, section, lineno, "KG007",
                                    f"{name!r} shadows the import of {target} (cell {icell}, "
                                    f"{isection}) {why}; rename it"))
    return sorted(set(issues), key=lambda i: (i.cell, i.line, i.code, i.message))


def lint_notebook(nb) -> list[LintIssue]:
    """Each written module as a program of its own, then the other code cells as one program."""
    issues: list[LintIssue] = []
    cells = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        if "module" in c.metadata:
            path, text = module_source(c)
            issues += lint_cells([(i, path, text)])
        else:
            cells.append((i, cell_section(c), c.source))
    return issues + lint_cells(cells)


def lint_path(path: Path) -> list[LintIssue]:
    return lint_notebook(read_notebook(path))


def raise_for_issues(issues: list[LintIssue], what: str = "notebook") -> None:
    if issues:
        raise NotebookLintError(f"{what}: {len(issues)} lint issue(s):\n" +
                                "\n".join("  " + i.format() for i in issues))


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python smoke/lint.py NOTEBOOK.ipynb ...", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        issues = lint_path(path)
        for issue in issues:
            print(f"{path}: {issue.format()}")
        status |= bool(issues)
    return status


if __name__ == "__main__":
    sys.exit(main())
