"""Import the package a rendered notebook writes, the same bytes, instead of the repo's copy.

The notebook's module cells write ``templates/...`` and ``compat/...`` into a folder of their own
and the run section imports them from there. :func:`notebook_package` does the same here: it
writes the files from the module cells into ``folder`` and, while the ``with`` block lasts, makes
``templates`` and ``compat`` resolve there. The repo's modules that were already imported are
taken out of ``sys.modules`` for the block and put back after it, so the checks run the code that
ships and the rest of the process keeps its own.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from render.notebook import OWN_PACKAGES, module_cells, module_source, write_package


def _own(name: str) -> bool:
    return name.split(".")[0] in OWN_PACKAGES


@contextlib.contextmanager
def imported_from(folder: Path) -> Iterator[Path]:
    """While the block lasts, ``templates``/``compat`` are imported from ``folder`` only."""
    folder = str(Path(folder).resolve())
    saved = {name: mod for name, mod in sys.modules.items() if _own(name)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        yield Path(folder)
    finally:
        for name in [n for n in sys.modules if _own(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        importlib.invalidate_caches()


def notebook_modules(nb) -> list[str]:
    """The dotted names of the modules the notebook writes, in its order."""
    return [module_source(c)[0][: -len(".py")].replace("/", ".") for c in module_cells(nb)]


@contextlib.contextmanager
def notebook_package(nb, folder: Path) -> Iterator[dict[str, ModuleType]]:
    """Write ``nb``'s package into ``folder`` and import every module of it from there.

    Yields ``{module name: module}`` in the notebook's order. A module that fails to import
    raises :class:`NotebookImportError` naming it (and the cell that writes it).
    """
    write_package(nb, folder)
    with imported_from(folder) as where:
        modules: dict[str, ModuleType] = {}
        for cell, name in zip(module_cells(nb), notebook_modules(nb), strict=True):
            try:
                modules[name] = importlib.import_module(name)
            except Exception as exc:
                raise NotebookImportError(f"cell {cell.get('id')} ({name}): import raised "
                                          f"{type(exc).__name__}: {exc}") from exc
            if not str(Path(modules[name].__file__).resolve()).startswith(str(where)):
                raise NotebookImportError(f"{name} was imported from {modules[name].__file__}, "
                                          f"not from the notebook's package in {where}")
        yield modules


class NotebookImportError(ImportError):
    """A module of the notebook's package does not import; the message names its cell."""
