"""Runs inside the rehearsal's kernel (an IPython startup file loads it): records every warning the
notebook's own code triggers, so the harness can fail the rehearsal with the cell and the line.

Standard library only, Python 3.10+: it runs in the Kaggle-image venv, not the toolkit's.

Notebook code is a cell's code or a module of the package the notebook writes (the top-level
packages named, comma-separated, in ``SE_REHEARSAL_PACKAGES``). A warning is recorded when
notebook code is on the stack, the code that called ``warnings.warn`` is not the Jupyter kernel's
own machinery (ipykernel, IPython, ...), and Python addresses it to the notebook: a FutureWarning
or UserWarning (shown to everyone by default), or a DeprecationWarning / PendingDeprecationWarning
attributed to notebook code (Python shows those only in ``__main__``, and the notebook's package
cell shows them for its own modules: they are for the direct caller; a library's deprecation
inside another library, e.g. pyparsing's inside matplotlib on Kaggle's own image, is theirs).
Warning filters are left as the notebook sets them: the watch sees what its output shows. The
record names the innermost frame of notebook code (cell or module file and line: where our code
called into the library), the code that emitted it and the cell being executed.
"""

import json
import linecache
import os
import re
import sys
import warnings

DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning)
WATCHED = DEPRECATIONS + (FutureWarning, UserWarning)
MACHINERY = ("ipykernel", "IPython", "jupyter_client", "jupyter_core", "traitlets", "zmq",
             "tornado", "comm", "debugpy", "asyncio", "nest_asyncio", "_rehearsal_warnings")
_seen = set()


# the file names IPython gives cell code: ipykernel's /tmp/ipykernel_<pid>/<hash>.py, IPython's
# <ipython-input-...> (older) and <cell ...>
_CELL_FILE = re.compile(r"ipykernel_\d+[/\\]-?\d+\.py$|^<ipython-input-|^<cell")


PACKAGES = tuple(p for p in os.environ.get("SE_REHEARSAL_PACKAGES", "").split(",") if p)


def _is_cell_frame(frame) -> bool:
    return (frame.f_globals.get("__name__") == "__main__"
            and _CELL_FILE.search(frame.f_code.co_filename) is not None)


def _package_module(frame):
    """The dotted name of the notebook-package module ``frame`` runs in, or None."""
    name = str(frame.f_globals.get("__name__") or "")
    return name if name.split(".")[0] in PACKAGES else None


def _is_notebook_frame(frame) -> bool:
    return _is_cell_frame(frame) or _package_module(frame) is not None


def _execution_count():
    try:
        return get_ipython().execution_count  # noqa: F821 (a builtin inside IPython)
    except Exception:
        return None


def _attributed_to_notebook(frame, filename) -> bool:
    """Whether the frame the warning names (``filename``, on the stack from ``frame`` up) is
    notebook code."""
    while frame is not None:
        if frame.f_code.co_filename == str(filename):
            return _is_notebook_frame(frame)
        frame = frame.f_back
    return _CELL_FILE.search(str(filename)) is not None


def _record(path, message, category, filename, lineno):
    skip = (warnings.__file__, __file__)  # the warnings module and this watch
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in skip:
        frame = frame.f_back
    if frame is None:
        return
    if issubclass(category, DEPRECATIONS) and not _attributed_to_notebook(frame, filename):
        return
    emitter = str(frame.f_globals.get("__name__") or "")
    if emitter.split(".")[0] in MACHINERY:
        return
    cell = frame
    while cell is not None and not _is_notebook_frame(cell):
        cell = cell.f_back
    if cell is None:  # not under notebook code (a kernel thread): not ours
        return
    cell_file, cell_line = cell.f_code.co_filename, cell.f_lineno
    key = (category.__name__, str(message), emitter, cell_file, cell_line)
    if key in _seen:
        return
    _seen.add(key)
    row = {
        "category": category.__name__, "message": str(message), "filename": str(filename),
        "lineno": lineno, "emitter": f"{emitter}:{frame.f_lineno}",
        "cell_line": cell_line, "code": linecache.getline(cell_file, cell_line).strip(),
        "module": _package_module(cell),
        "cell_text": "".join(linecache.getlines(cell_file)), "execution_count": _execution_count(),
        "pid": os.getpid(),
    }
    with open(path, "a", encoding="utf-8") as f:  # one line per write: forked workers append too
        f.write(json.dumps(row) + "\n")


def install(path) -> None:
    """Record watched warnings into the JSON-lines file `path` (appended)."""
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, WATCHED):
            try:
                _record(path, message, category, filename, lineno)
            except Exception as exc:  # the watch must never break the notebook
                print(f"rehearsal warning watch failed: {exc!r}", file=sys.stderr)
        return shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


if os.environ.get("SE_REHEARSAL_WARNINGS"):
    install(os.environ["SE_REHEARSAL_WARNINGS"])
