"""Pinned Kaggle-image environments for the rehearsal: ``smoke/envs/<name>.txt`` -> a cached venv.

A pins file is a pip requirements file (one requirement a line, ``#`` comments) with one special
comment, ``# python: 3.12``, the interpreter the image runs. ``ensure_env`` creates the venv once
under ``~/.cache/se-toolkit/envs/<name>-<hash>`` (the hash covers the pins and the interpreter's
version, so a changed pin or interpreter is a new venv, never a stale one), records its size and
``pip freeze``, and reuses it on every later run. The venv is built in a temporary folder and
renamed when complete: an interrupted build is never reused.

``kernel_overlay`` gives each rehearsal a thin venv layered on the cached one, so the notebook's
install cell pip-installs pesq, pystoi, py7zr, onnxruntime into the overlay exactly as it does on
a fresh Kaggle machine, and the cached venv stays as pinned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENVS_DIR = Path(__file__).resolve().parent / "envs"
_PYTHON_LINE = re.compile(r"^#\s*python:\s*(\d+)\.(\d+)\s*$")
# Marker written last: its presence means the venv finished installing.
_COMPLETE = "se-toolkit-env.json"


class EnvError(RuntimeError):
    """A pins file is missing or malformed, or its venv could not be built."""


@dataclass(frozen=True)
class EnvPins:
    name: str
    path: Path
    python: tuple[int, int] | None  # from "# python: X.Y"; None: any interpreter
    requirements: tuple[str, ...]


@dataclass
class KaggleEnv:
    pins: EnvPins
    root: Path  # the cached venv
    python: Path  # its interpreter
    python_version: tuple[int, int]
    interpreter_note: str  # "python 3.12 (as the image)" or why another one is used
    created: bool  # built by this call (False: reused)
    seconds: float  # time this call spent creating it
    size_bytes: int

    def describe(self) -> str:
        how = f"created in {self.seconds:.0f} s" if self.created else "reused"
        return (f"env {self.pins.name}: {self.root} ({how}, {self.size_bytes / 2**30:.2f} GiB); "
                f"{self.interpreter_note}")


def known_envs() -> list[str]:
    return sorted(p.stem for p in ENVS_DIR.glob("*.txt"))


def load_pins(name_or_file: str | os.PathLike) -> EnvPins:
    """The pins of a known image (``kaggle-2026-05``) or of a user's own file.

    Raises `EnvError` naming the file (and line) when it is missing or a line is not a pip
    requirement.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    text_name = str(name_or_file)
    path = ENVS_DIR / f"{text_name}.txt"
    if not path.is_file():
        path = Path(name_or_file)
        if not path.is_file():
            raise EnvError(f"--env {text_name}: neither a known image ({', '.join(known_envs())}) "
                           f"nor a pins file")
    python = None
    requirements = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _PYTHON_LINE.match(raw.strip())
        if m:
            python = (int(m.group(1)), int(m.group(2)))
            continue
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise EnvError(f"{path}:{number}: not a pip requirement: {line!r} ({exc})") from exc
        requirements.append(line)
    if not requirements:
        raise EnvError(f"{path}: no requirements (one pip requirement a line, e.g. torch==2.10.0)")
    return EnvPins(path.stem, path.resolve(), python, tuple(requirements))


def _interpreter_version(exe: str) -> tuple[int, int] | None:
    """(major, minor) of a working interpreter, or None (pyenv shims exit non-zero when the
    version is not selected, so existence on PATH is not enough)."""
    try:
        out = subprocess.run([exe, "-c", "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2:
        return None
    return int(parts[0]), int(parts[1])


def find_interpreter(want: tuple[int, int] | None) -> tuple[str, tuple[int, int], str]:
    """(path, version, note): a ``pythonX.Y`` matching the image when this machine has one
    (PATH, pyenv, uv), else the interpreter running the toolkit, with a note saying so."""
    here = sys.version_info[:2]
    if want is None or tuple(want) == here:
        return sys.executable, here, f"python {here[0]}.{here[1]} (the toolkit's own)"
    tag = f"{want[0]}.{want[1]}"
    candidates = [shutil.which(f"python{tag}")]
    home = Path.home()
    for pattern in (f".pyenv/versions/{tag}*/bin/python{tag}",
                    f".local/share/uv/python/cpython-{tag}*/bin/python{tag}"):
        candidates += [str(p) for p in sorted(home.glob(pattern), reverse=True)]
    candidates += [f"/usr/bin/python{tag}", f"/usr/local/bin/python{tag}"]
    for exe in candidates:
        if exe and Path(exe).exists() and _interpreter_version(exe) == tuple(want):
            return exe, tuple(want), f"python {tag} (as the image)"
    return (sys.executable, here,
            f"python {here[0]}.{here[1]}: no python{tag} on this machine (the image runs {tag}; "
            f"install it, e.g. `pyenv install {tag}` or `uv python install {tag}`, to match)")


def cache_root() -> Path:
    """``$SE_TOOLKIT_CACHE`` or ``$XDG_CACHE_HOME/se-toolkit`` or ``~/.cache/se-toolkit``."""
    if os.environ.get("SE_TOOLKIT_CACHE"):
        return Path(os.environ["SE_TOOLKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "se-toolkit"


def env_key(pins: EnvPins, version: tuple[int, int]) -> str:
    text = "\n".join([f"python {version[0]}.{version[1]}", sys.platform, *pins.requirements])
    return f"{pins.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _dir_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _tail(text: str, lines: int = 25) -> str:
    kept = [ln for ln in text.splitlines() if "is ignored: it is neither a file nor" not in ln]
    return "\n".join(kept[-lines:])


def _venv_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(pins: EnvPins, echo=print) -> KaggleEnv:
    """The cached venv for ``pins`` (created on first use: minutes, a few GB of CUDA wheels)."""
    exe, version, note = find_interpreter(pins.python)
    root = cache_root() / "envs" / env_key(pins, version)
    marker = root / _COMPLETE
    if marker.is_file():
        info = json.loads(marker.read_text(encoding="utf-8"))
        return KaggleEnv(pins, root, _venv_python(root), version, note, False, 0.0,
                         int(info.get("size_bytes", 0)))
    root.parent.mkdir(parents=True, exist_ok=True)
    building = root.parent / f".{root.name}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    echo(f"creating env {pins.name} with {note} in {root} (once; a few GB of wheels) ...")
    start = time.perf_counter()
    try:
        _run([exe, "-m", "venv", str(building)], "create the venv")
        py = str(_venv_python(building))
        _run([py, "-m", "pip", "install", "-r", str(pins.path)], f"pip install -r {pins.path}")
        freeze = _run([py, "-m", "pip", "freeze", "--all"], "pip freeze")
        (building / "pip-freeze.txt").write_text(freeze, encoding="utf-8")
        size = _dir_size(building)
        seconds = time.perf_counter() - start
        (building / _COMPLETE).write_text(json.dumps({
            "pins": str(pins.path), "requirements": list(pins.requirements),
            "python": f"{version[0]}.{version[1]}", "interpreter": exe, "note": note,
            "size_bytes": size, "seconds": round(seconds, 1)}, indent=1), encoding="utf-8")
        try:
            building.rename(root)
        except OSError:  # another run finished the same env first: use theirs
            if not (root / _COMPLETE).is_file():
                raise
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return KaggleEnv(pins, root, _venv_python(root), version, note, True, seconds, size)


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EnvError(f"could not {what} (exit {proc.returncode}):\n"
                       f"{_tail(proc.stdout + proc.stderr)}")
    return proc.stdout


def site_packages(python: Path) -> str:
    return _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                "locate site-packages").strip()


def kernel_overlay(env: KaggleEnv, folder: Path) -> Path:
    """A thin venv in ``folder`` that sees the cached env's packages; returns its python.

    What the notebook pip-installs lands in the overlay (first on sys.path), so every rehearsal
    starts from the image's package set, as every Kaggle session does.
    """
    if folder.exists():
        shutil.rmtree(folder)
    _run([str(env.python), "-m", "venv", "--without-pip", str(folder)], "create the kernel overlay")
    py = _venv_python(folder)
    base = site_packages(env.python)
    # a .pth line starting with "import" runs at startup: addsitedir also processes the cached
    # env's own .pth files, which a plain path line would not
    Path(site_packages(py), "_kaggle_image_env.pth").write_text(
        f"import site; site.addsitedir({base!r})\n", encoding="utf-8")
    return py
