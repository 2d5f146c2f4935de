"""Install the notebook's missing pip packages before anything imports them.

Kaggle images ship torch, numpy and scipy but not always pesq, pystoi or py7zr; a notebook cell
calls `ensure_packages(NOTEBOOK_REQUIREMENTS)` first so that a missing one is installed (pinned to
the versions this toolkit is tested with) instead of failing hours later at evaluation.
"""

import importlib
import importlib.util
import subprocess
import sys
import time

# The notebook's clock: this is the first module a notebook runs, so the time budget
# (RunConfig.time_budget_hours) counts from here.
NOTEBOOK_STARTED_AT = time.time()

# import name -> pip requirement, pinned to the versions the tests ran with
NOTEBOOK_REQUIREMENTS = {
    "pesq": "pesq==0.0.4",
    "pystoi": "pystoi==0.4.1",
    "py7zr": "py7zr==1.1.4",
    "soundfile": "soundfile==0.14.0",
    # The export section writes an ONNX masker and times it with onnxruntime.
    "onnx": "onnx==1.23.2",
    "onnxruntime": "onnxruntime==1.32.0",
}


class PackageInstallError(RuntimeError):
    """pip could not install a requirement, or the module is still missing after it did."""


def _is_installed(import_name: str) -> bool:
    try:
        return importlib.util.find_spec(import_name) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is missing
        return False


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join((text or "").strip().splitlines()[-lines:])


def ensure_packages(spec: dict, runner=subprocess.run) -> list:
    """For each `import name -> requirement` in `spec` whose module is missing, pip-install it.

    Runs `sys.executable -m pip install -q <requirement>` (the kernel's own interpreter, so the
    package lands where the notebook imports from). Returns the requirements installed, in
    `spec` order. Raises `PackageInstallError` (a `RuntimeError`) naming the package and the tail
    of pip's output when pip fails or the module still cannot be found afterwards.
    """
    installed = []
    for import_name, requirement in spec.items():
        if _is_installed(import_name):
            continue
        cmd = [sys.executable, "-m", "pip", "install", "-q", requirement]
        proc = runner(cmd, capture_output=True, text=True)
        output = _tail(f"{proc.stdout or ''}\n{proc.stderr or ''}")
        if proc.returncode != 0:
            raise PackageInstallError(
                f"pip install {requirement} (for import {import_name!r}) failed with exit code "
                f"{proc.returncode}:\n{output}"
            )
        importlib.invalidate_caches()
        if not _is_installed(import_name):
            raise PackageInstallError(
                f"pip installed {requirement} but module {import_name!r} still cannot be "
                f"imported:\n{output}"
            )
        installed.append(requirement)
    return installed
