"""Import the package a rendered notebook writes, the same bytes, instead of the repo's copy.

The notebook's module cells write ``templates/...`` and ``compat/...`` into a folder of their own
and its code cells import them from there. :func:`notebook_package` does the same here: it writes
the files from the module cells into ``folder`` and, while the ``with`` block lasts, makes
``templates`` and ``compat`` resolve there and nowhere else (a module the notebook does not write
cannot be imported, as on Kaggle), then imports what the code cells import, as the
notebook does (a module nothing imports stays unimported, as in the notebook). The repo's
modules that were already imported are taken out of ``sys.modules`` for the block and put back
after it, so the checks run the code that ships and the rest of the process keeps its own.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from render.notebook import (
    OWN_PACKAGES,
    module_cells,
    module_file,
    module_source,
    own_imports,
    write_package,
)


def _own(name: str) -> bool:
    return name.split(".")[0] in OWN_PACKAGES


class _OnlyFrom(importlib.abc.MetaPathFinder):
    """Finds ``templates``/``compat`` modules in ``folder`` and nowhere else: a module the
    notebook does not write is a ModuleNotFoundError, as on Kaggle, not the repo's copy (which
    the editable install's finder, or the repo on ``sys.path``, would otherwise supply)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def find_spec(self, fullname, path=None, target=None):
        if not _own(fullname):
            return None
        where = str(Path(self.folder, *fullname.split(".")[:-1]))
        spec = importlib.machinery.PathFinder.find_spec(fullname, [where])
        if spec is None:
            raise ModuleNotFoundError(f"No module named {fullname!r} (the notebook's package has "
                                      f"no {module_file(fullname)})", name=fullname)
        return spec


@contextlib.contextmanager
def imported_from(folder: Path) -> Iterator[Path]:
    """While the block lasts, ``templates``/``compat`` are imported from ``folder`` only."""
    folder = str(Path(folder).resolve())
    saved = {name: mod for name, mod in sys.modules.items() if _own(name)}
    for name in saved:
        del sys.modules[name]
    finder = _OnlyFrom(folder)
    sys.meta_path.insert(0, finder)
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        yield Path(folder)
    finally:
        for name in [n for n in sys.modules if _own(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        importlib.invalidate_caches()


def notebook_modules(nb) -> list[str]:
    """The dotted names of the modules the notebook writes, in its order."""
    return [module_source(c)[0][: -len(".py")].replace("/", ".") for c in module_cells(nb)]


def _where_raised(exc: BaseException, folder: Path) -> str:
    """The innermost frame of ``exc`` in the package under ``folder``: ``templates.x line N``."""
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(exc.__traceback__)]
    if isinstance(exc, SyntaxError) and exc.filename:
        frames.append((exc.filename, exc.lineno))
    for filename, line in reversed(frames):
        path = Path(filename).resolve()
        if path.is_relative_to(folder):
            module = ".".join(path.relative_to(folder).with_suffix("").parts)
            return f"{module.removesuffix('.__init__')} line {line}"
    return "the import machinery"


@contextlib.contextmanager
def notebook_package(nb, folder: Path) -> Iterator[dict[str, ModuleType]]:
    """Write ``nb``'s package into ``folder`` and import from there what its code cells import.

    Yields ``{module name: module}`` for the package's modules that got imported, in the
    notebook's order. An import that fails raises :class:`NotebookImportError` naming the cell
    and the module (and line) that raised.
    """
    write_package(nb, folder)
    with imported_from(folder) as where:
        for cell in nb.cells:
            if cell.cell_type != "code" or "module" in cell.metadata:
                continue
            for line, name in own_imports(ast.parse(cell.source), f"cell {cell.get('id')}", where):
                try:
                    importlib.import_module(name)
                except Exception as exc:
                    raise NotebookImportError(
                        f"cell {cell.get('id')} line {line}: importing {name} raised in "
                        f"{_where_raised(exc, where)}: {type(exc).__name__}: {exc}") from exc
        modules = {name: sys.modules[name] for name in notebook_modules(nb) if name in sys.modules}
        for name, module in modules.items():
            if not Path(module.__file__).resolve().is_relative_to(where):
                raise NotebookImportError(f"{name} was imported from {module.__file__}, "
                                          f"not from the notebook's package in {where}")
        yield modules


class NotebookImportError(ImportError):
    """A module of the notebook's package does not import; the message names its cell."""
