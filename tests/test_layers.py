"""The layer rule of docs/architecture.md: a lower layer never imports a higher one.

Every ``.py`` file of the repo's packages is parsed and every import in it counts, also one
inside a function (a lazy import is a dependency all the same) and one under
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

LAYER_1 = {"compat", "templates"}
TOP = {"deploy", "demo", "benchmarks"}

#: package -> the packages it may import (docs/architecture.md, "The layers"): its own layer and
#: the ones below; within layer 1 compat uses nothing of ours; the top layer uses layer 1 only
ALLOWED: dict[str, set[str]] = {
    "compat": {"compat"},
    "templates": LAYER_1,
    "render": LAYER_1 | {"render"},
    "smoke": LAYER_1 | {"render", "smoke"},
    "builders": LAYER_1 | {"render", "smoke", "builders"},
    **{package: LAYER_1 | TOP for package in TOP},
}

#: imports allowed across the rule: (importing package, imported module prefix)
EXCEPTIONS = {
    ("benchmarks", "smoke.dataset"),  # the local dataset generator, for the quality benchmark
}


def _literal_head(node: ast.expr) -> str | None:
    """The text a string argument starts with: ``"builders.cli"``, ``f"builders.{name}"``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import anywhere in ``tree``: statements, and
    ``importlib.import_module``/``__import__`` calls whose name starts with a literal."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))):
            head = _literal_head(node.args[0])
            if head:
                found.append((node.lineno, head))
    return found


def layer_violations(root: Path = REPO_ROOT) -> list[str]:
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, module in imported_modules(tree):
                target = module.split(".")[0]
                if target not in ALLOWED or target in allowed:
                    continue
                if any(package == p and (module + ".").startswith(m + ".") for p, m in EXCEPTIONS):
                    continue
                problems.append(f"{path.relative_to(root)}:{line}: {package} imports {module} "
                                f"(it may import {', '.join(sorted(allowed))})")
    return problems


def test_lower_layers_never_import_higher_ones():
    problems = layer_violations()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("package", "source", "caught"), [
    ("smoke", "def f():\n    from builders.cli import main\n", True),  # lazy
    ("smoke", "import importlib\nm = importlib.import_module(f'builders.{name}')\n", True),
    ("smoke", "import importlib\nm = importlib.import_module(row.module)\n", False),
    ("render", "import smoke.lint\n", True),
    ("templates", "if __name__ == '__main__':\n    import render.notebook\n", True),
    ("smoke", "from render.notebook import build_notebook\n", False),
    ("benchmarks", "from smoke.dataset import build_local_dataset\n", False),
    ("benchmarks", "from smoke.lint import main\n", True),
    ("demo", "from deploy.enhance import main\n", False),
    ("compat", "from templates.config import SAMPLE_RATE\n", True),
    ("templates", "from compat.audio import load_audio\n", False),
    ("deploy", "from builders.cli import main\n", True),
])
def test_the_scan_sees_every_kind_of_import(tmp_path, package, source, caught):
    (tmp_path / package).mkdir()
    (tmp_path / package / "m.py").write_text(source, encoding="utf-8")
    assert bool(layer_violations(tmp_path)) is caught
