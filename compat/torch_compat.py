"""Shims for the torch APIs that changed under the notebooks on Kaggle.

Four changes that broke notebooks on Kaggle: `get_device_properties(i).total_mem` (now `total_memory`),
`ReduceLROnPlateau(verbose=...)` (removed), `torch.load` defaulting to `weights_only=True`
(older checkpoints of ours hold numpy scalars and RNG states: `torch_load` allows exactly those
and never unpickles fully unless told the file is trusted), and a GPU older than the installed
torch supports (the P100, sm_60, before Kaggle retired it). Each function here inspects the
installed torch instead of assuming a version.
"""

import concurrent.futures
import importlib.metadata
import inspect
import math
import multiprocessing
import os
import pickle
import platform
import re
import shutil
import sys
from pathlib import Path

import torch

# Arguments that an older or newer torch dropped; passing them to a torch that lacks them is a
# TypeError, so they are removed. Any other unknown argument still reaches torch (typos fail).
_COMPAT_DROPPABLE_PLATEAU_ARGS = ("verbose",)


def _parameters(fn) -> dict:
    """Named parameters of `fn` ({} when its signature cannot be read)."""
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A file a weights-only load refuses: it holds Python objects whose unpickling could run
    code. The message names the first such object."""


class _CompatNumpyDtype:
    """Stands in for ``numpy.dtype`` while a weights-only load rebuilds one: a plain bool or
    number dtype, of which the pickled state may set only the byte order.

    numpy's own ``dtype.__setstate__`` takes fields, subarrays and flags from the file: a float
    dtype given an object field and no object flag makes an array whose bytes numpy then reads as
    object pointers (a crash, or worse, on first use). So numpy's dtype is never handed the
    file's state."""

    dtype = None

    def __init__(self, spec=None, align=False, copy=False):
        import numpy as np

        try:
            dtype = np.dtype(spec) if isinstance(spec, str) else None
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in "biufc" or dtype.fields is not None \
                or dtype.subdtype is not None:
            raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not a plain number type")
        self.dtype = dtype

    def __setstate__(self, state):
        order = state[1] if isinstance(state, tuple) and len(state) == 8 else None
        if self.dtype is None or not isinstance(order, str) or len(order) != 1 \
                or order not in "<>|=" or state[2:5] != (None, None, None):
            raise pickle.UnpicklingError("a numpy dtype with fields or subarrays")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


class _CompatNumpyArray:
    """Stands in for numpy's array reconstructor (and ``numpy.ndarray``, its argument): the
    array is made by ``np.frombuffer`` from the pickled bytes and a `_CompatNumpyDtype`;
    `_numpy_resolve` puts it in the proxy's place after the load."""

    array = None

    def __init__(self, *args):
        pass

    def __setstate__(self, state):
        import numpy as np

        ok = isinstance(state, tuple) and len(state) == 5
        if ok:
            _, shape, dtype, fortran, raw = state
            ok = (isinstance(dtype, _CompatNumpyDtype) and dtype.dtype is not None
                  and isinstance(raw, bytes) and isinstance(shape, tuple)
                  and all(type(n) is int and n >= 0 for n in shape))
        if not ok or math.prod(shape) * dtype.dtype.itemsize != len(raw):
            raise pickle.UnpicklingError("a numpy array that is not plain numbers")
        flat = np.frombuffer(raw, dtype.dtype, count=math.prod(shape))
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _numpy_scalar(dtype=None, data=None):
    """numpy's scalar reconstructor, for `_CompatNumpyDtype` and raw bytes only."""
    import numpy as np

    if not isinstance(dtype, _CompatNumpyDtype) or dtype.dtype is None \
            or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise pickle.UnpicklingError("a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype.dtype, count=1)[0]


def _numpy_safe_globals() -> list:
    """``(stand-in, "numpy name")`` pairs for what numpy RNG states and numpy scalars in older
    checkpoints of ours pickle: arrays, scalars and dtypes of plain numbers, rebuilt by the
    stand-ins above and never by numpy's own unpickling hooks. Listed under both numpy
    generations' module names (``numpy.core`` / ``numpy._core``)."""
    try:
        import numpy  # noqa: F401
    except ImportError:  # no numpy: no numpy objects to rebuild
        return []
    out: list = [(_CompatNumpyDtype, "numpy.dtype"), (_CompatNumpyArray, "numpy.ndarray")]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out += [(_CompatNumpyArray, f"{mod}._reconstruct"),
                (_numpy_scalar, f"{mod}.scalar")]
    return out


def _numpy_resolve(obj, seen=None):
    """``obj`` with every numpy stand-in in its dicts, lists and tuples replaced by the real
    array or dtype (dicts and lists in place: a state_dict keeps its ``_metadata``)."""
    if isinstance(obj, _CompatNumpyArray):
        return obj.array
    if isinstance(obj, _CompatNumpyDtype):
        return obj.dtype
    if not isinstance(obj, (dict, list, tuple)):
        return obj
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return obj
    seen.add(id(obj))
    if isinstance(obj, dict):
        for key, value in obj.items():
            new = _numpy_resolve(value, seen)
            if new is not value:
                obj[key] = new
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            obj[i] = _numpy_resolve(value, seen)
    elif type(obj) is tuple:  # not torch.Size: it holds ints only
        items = tuple(_numpy_resolve(value, seen) for value in obj)
        if any(a is not b for a, b in zip(items, obj, strict=True)):
            return items
    return obj


def _torch_version() -> tuple:
    m = re.match(r"(\d+)\.(\d+)", str(getattr(torch, "__version__", "0.0")))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _weights_only_reason(exc: BaseException) -> str:
    """The part of torch's weights-only refusal that names the object (its text varies)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.split(" Please use")[0].split(" was not an allowed")[0].rstrip(".")
    return type(exc).__name__


def torch_load(path, map_location="cpu", *, trusted: bool = False, safe_globals=()):
    """Load a torch file without running code from it, unless ``trusted``.

    By default ``weights_only=True``: tensors, plain containers, numbers and strings, plus numpy
    arrays, scalars and dtypes of plain numbers (the RNG state and numpy scalars older
    checkpoints of ours hold; rebuilt by our stand-ins, never by numpy's unpickling hooks, on
    torch >= 2.6) and ``safe_globals`` (types the caller vouches for). Anything else raises
    :class:`UnsafeCheckpointError` naming the object, and nothing in the file runs.

    ``trusted=True`` unpickles fully (``weights_only=False``): a crafted file runs any code it
    holds on this machine, so it is only for files you made or trust.

    The allowlist goes through ``torch.serialization.safe_globals`` (a context manager, torch >=
    2.5), else ``add_safe_globals`` (2.4); torch 2.1-2.3 have neither, and there, as for numpy
    objects before torch 2.6, only files of plain types load without ``trusted``.
    ``weights_only`` is passed only when torch.load names it (a ``**kwargs`` catch-all would
    hand it to pickle and fail); a torch without it cannot load safely, so only ``trusted``
    loads work there.
    """
    kwargs = {"map_location": map_location}
    params = _parameters(torch.load)
    named = "weights_only" in params and params["weights_only"].kind != inspect.Parameter.VAR_KEYWORD
    if trusted:
        if named:
            kwargs["weights_only"] = False
        return torch.load(path, **kwargs)
    if not named:
        raise UnsafeCheckpointError(
            f"{path}: torch {getattr(torch, '__version__', '?')} cannot load a file without "
            f"unpickling it fully (no weights_only); load it as trusted only if you made it"
        )
    kwargs["weights_only"] = True
    serialization = getattr(torch, "serialization", None)
    # numpy objects only through stand-ins, which need torch >= 2.6's (object, name) pairs
    numpy_pairs = _numpy_safe_globals() if _torch_version() >= (2, 6) else []
    allowed = numpy_pairs + list(safe_globals)
    context = getattr(serialization, "safe_globals", None)
    try:
        if context is not None:
            with context(allowed):
                obj = torch.load(path, **kwargs)
            return _numpy_resolve(obj) if numpy_pairs else obj
        add = getattr(serialization, "add_safe_globals", None)
        if add is not None and allowed:  # torch 2.4: process-wide, only the caller's types
            add(allowed)
        return torch.load(path, **kwargs)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "eights only" in text or "Unsupported global" in text or "allowlist" in text:
            raise UnsafeCheckpointError(
                f"{path}: a weights-only load refuses it ({_weights_only_reason(exc)}); "
                f"unpickling it fully would run any code it holds"
            ) from exc
        raise


def cuda_device_count() -> int:
    """GPUs visible to torch, counted without initialising the CUDA driver in this process.

    `torch.cuda.is_available()` calls `cudaGetDeviceCount`, i.e. `cuInit`, after which no forked
    child can use CUDA ("poison fork"; `torch.cuda.is_initialized()` still says False). Training
    forks its GPU workers from the notebook process, so this count goes through
    `torch.cuda.device_count()`, which asks NVML first while CUDA is uninitialised.
    """
    try:
        return max(0, int(torch.cuda.device_count()))
    except Exception:  # a CUDA build without a usable driver: no GPU to count
        return 0


def gpu_total_memory(index: int = 0) -> int:
    """Total memory in bytes of CUDA device `index`.

    Reads `total_memory`, falling back to `total_mem` (the attribute name differs across torch
    builds; code that reads only `total_mem` fails on current torch).
    """
    count = cuda_device_count()
    if count == 0:
        raise RuntimeError("gpu_total_memory: no CUDA GPU is visible to torch")
    if not 0 <= index < count:
        raise ValueError(f"gpu_total_memory: GPU index {index} out of range ({count} visible)")
    props = torch.cuda.get_device_properties(index)
    for attr in ("total_memory", "total_mem"):
        value = getattr(props, attr, None)
        if value is not None:
            return int(value)
    raise RuntimeError(
        f"gpu_total_memory: device properties of GPU {index} have neither 'total_memory' nor "
        f"'total_mem' (torch {torch.__version__})"
    )


def make_plateau_scheduler(optimizer, **kw):
    """`ReduceLROnPlateau(optimizer, mode="min", **kw)` with only the arguments this torch takes.

    `verbose` is dropped where the installed torch no longer has it (removed in 2.7) or only
    keeps it as a deprecated placeholder (2.2-2.6 warn when it is passed).
    """
    kw.setdefault("mode", "min")
    cls = torch.optim.lr_scheduler.ReduceLROnPlateau
    params = _parameters(cls.__init__)
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in _COMPAT_DROPPABLE_PLATEAU_ARGS:
        if name not in kw:
            continue
        param = params.get(name)
        deprecated = param is not None and param.default == "deprecated"
        if (param is None and not takes_any) or deprecated:
            kw.pop(name)
    return cls(optimizer, **kw)


_COMPAT_ARCH_RE = re.compile(r"^(sm|compute)_(\d+)(\d)([a-z]?)$")


def _parse_arch(entry: str):
    """'sm_86' -> ('sm', 8, 6, ''); 'compute_90' -> ('compute', 9, 0, ''); None if unknown."""
    m = _COMPAT_ARCH_RE.match(entry.strip())
    if m is None:
        return None
    return m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)


def _arch_supports(arch_list, capability) -> bool:
    """Whether a torch built for `arch_list` has kernels that run on `capability` (major, minor).

    A cubin for sm_XY runs on devices of the same major X with minor >= Y; PTX for compute_XY is
    JIT-compiled for any device >= XY. Arch-specific variants (sm_90a) run only on exactly XY.
    """
    major, minor = capability
    for entry in arch_list:
        parsed = _parse_arch(entry)
        if parsed is None:
            continue
        kind, a_major, a_minor, suffix = parsed
        if suffix:
            if (a_major, a_minor) == (major, minor):
                return True
        elif kind == "sm":
            if a_major == major and a_minor <= minor:
                return True
        elif (a_major, a_minor) <= (major, minor):
            return True
    return False


def _arch_span(arch_list) -> str:
    """'sm_70..sm_90 (+PTX compute_90)' for a human; the raw list when nothing parses."""
    sms = sorted(
        {(p[1], p[2]) for p in map(_parse_arch, arch_list) if p and p[0] == "sm"}
    )
    ptx = sorted(
        {(p[1], p[2]) for p in map(_parse_arch, arch_list) if p and p[0] == "compute"}
    )
    if not sms and not ptx:
        return ", ".join(arch_list) or "no CUDA architectures"
    parts = []
    if sms:
        lo, hi = sms[0], sms[-1]
        parts.append(f"sm_{lo[0]}{lo[1]}" + ("" if lo == hi else f"..sm_{hi[0]}{hi[1]}"))
    if ptx:
        parts.append("PTX " + ", ".join(f"compute_{a}{b}" for a, b in ptx))
    return " + ".join(parts)


def _gpu_name(index: int) -> str:
    try:
        return str(torch.cuda.get_device_name(index))
    except Exception:  # a name is cosmetic; never fail the check on it
        return f"GPU {index}"


def check_gpu_supported(probe: bool = True) -> str:
    """Fail fast when the installed torch has no kernels for a visible GPU.

    Returns a one-line description ("cpu (no GPU visible)" or the GPUs). Raises `RuntimeError`
    naming the GPU, its architecture, what torch was built for and the fix, e.g. a P100
    (sm_60) under a torch built for sm_70 and newer. With `probe`, also runs a tiny kernel on
    each GPU, which catches what the architecture list cannot tell.
    """
    count = cuda_device_count()
    if count == 0:
        return "cpu (no GPU visible)"
    arch_list = list(torch.cuda.get_arch_list() or [])
    described = []
    for i in range(count):
        name = _gpu_name(i)
        major, minor = torch.cuda.get_device_capability(i)
        sm = f"sm_{major}{minor}"
        if arch_list and not _arch_supports(arch_list, (major, minor)):
            raise RuntimeError(
                f"{name} is {sm} but this torch {torch.__version__} was built for "
                f"{_arch_span(arch_list)}: choose the T4 accelerator (NvidiaTeslaT4) in "
                f"the notebook settings"
            )
        if probe:
            try:
                value = (torch.ones(4, device=f"cuda:{i}") * 2).sum().item()
            except Exception as exc:  # re-raised with the fix attached
                raise RuntimeError(
                    f"{name} ({sm}) cannot run a torch {torch.__version__} kernel ({exc}): "
                    f"choose the T4 accelerator (NvidiaTeslaT4) in the notebook settings"
                ) from exc
            if value != 8:
                raise RuntimeError(f"{name} ({sm}) computed 4*2 summed as {value}, not 8")
        try:
            mem = f", {gpu_total_memory(i) / 2**30:.1f} GiB"
        except (RuntimeError, ValueError):
            mem = ""
        described.append(f"cuda:{i} {name} ({sm}{mem})")
    return "; ".join(described)


class NoGPUError(RuntimeError):
    """A full training run found no CUDA device (and ALLOW_CPU is off)."""


NO_GPU_CAUSES = (
    "the accelerator is off in the notebook settings (Settings > Accelerator: GPU T4 x2; "
    "from the toolkit: --accelerator NvidiaTeslaT4)",
    "this week's GPU quota (about 30 h) is used up: the run silently got a CPU machine",
    "the account is not phone-verified (Kaggle lends GPUs to verified accounts only)",
    "a retired accelerator was requested (NvidiaTeslaP100)",
)


def require_gpu(smoke: bool = False, allow_cpu: bool = False, count: int | None = None) -> str:
    """Refuse a full run without a CUDA device, in seconds rather than after hours on a CPU.

    Smoke runs (rehearsals) and ``allow_cpu`` pass. Raises `NoGPUError` with one message naming
    the usual causes. Counts devices without initialising CUDA (see `cuda_device_count`).
    """
    count = cuda_device_count() if count is None else count
    if count > 0:
        return f"GPU check: {count} CUDA device(s)"
    if smoke or allow_cpu:
        why = "a smoke run" if smoke else "ALLOW_CPU=True"
        return f"GPU check: no CUDA device; training on the CPU ({why})"
    raise NoGPUError(
        "no CUDA device is visible, and this full run would train for days on the CPU. "
        "Usual causes: " + "; ".join(f"({i}) {c}" for i, c in enumerate(NO_GPU_CAUSES, 1))
        + ". Fix the cause and run again, or set ALLOW_CPU = True to train on the CPU anyway."
    )


def run_without_cuda_init(fn, *args, **kwargs):
    """Call `fn(*args, **kwargs)` so that THIS process does not initialise CUDA.

    Training on both of Kaggle's T4s forks one DDP worker per GPU, and a forked child cannot use
    a CUDA context its parent created: one `get_device_capability` or probe kernel in an early
    notebook cell would silently leave training on one GPU. With a GPU visible and CUDA not yet
    initialised here, `fn` runs in a forked child (which may initialise CUDA and exit); its return
    value or its exception comes back. Otherwise (no GPU, CUDA already initialised, no fork on
    this platform) it runs in-process. `fn` and its result must pickle (module-level functions,
    including those defined in notebook cells, do under fork).
    """
    initialised = getattr(torch.cuda, "is_initialized", lambda: False)()
    if (cuda_device_count() == 0 or initialised
            or "fork" not in multiprocessing.get_all_start_methods()):
        return fn(*args, **kwargs)
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args, **kwargs).result()


#: The libraries besides torch whose versions a run reports (the environment check and the
#: summary JSON's "versions" both come from `library_versions`).
LIBRARY_PACKAGES = ("torchaudio", "numpy", "scipy", "soundfile", "pesq", "pystoi", "tqdm",
                    "matplotlib")


def _version(dist: str):
    """Installed version of distribution `dist`, or None (read from metadata: no import)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict:
    """python, torch, its CUDA build and the installed version (None: missing) of each of
    `LIBRARY_PACKAGES`."""
    versions = {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "cuda": getattr(getattr(torch, "version", None), "cuda", None),
    }
    versions.update({name: _version(name) for name in LIBRARY_PACKAGES})
    return versions


def environment_report(work_dir=None) -> dict:
    """Versions, GPUs, CPUs and free disk, as a JSON-ready dict (for the log and the summary)."""
    work = Path(work_dir) if work_dir is not None else Path.cwd()
    gpus = []
    for i in range(cuda_device_count()):
        try:
            mem = gpu_total_memory(i)
        except (RuntimeError, ValueError):
            mem = None
        major, minor = torch.cuda.get_device_capability(i)
        gpus.append(
            {
                "index": i,
                "name": _gpu_name(i),
                "capability": f"sm_{major}{minor}",
                "total_memory": mem,
            }
        )
    try:
        disk_free = shutil.disk_usage(work).free
    except OSError:
        disk_free = None
    return {
        **library_versions(),
        "executable": sys.executable,
        "gpus": gpus,
        "cpu_count": os.cpu_count(),
        "work_dir": str(work),
        "disk_free": disk_free,
    }


def format_environment(report: dict) -> str:
    """Human-readable lines for `environment_report()`."""
    libs = ", ".join(
        f"{k} {report.get(k) or 'missing'}"
        for k in ("torch", *LIBRARY_PACKAGES)
    )
    lines = [f"python {report.get('python')} | {libs}"]
    if report.get("cuda"):
        lines.append(f"CUDA build {report['cuda']}")
    gpus = report.get("gpus") or []
    if not gpus:
        lines.append("GPU: none visible (CPU run)")
    for gpu in gpus:
        mem = gpu.get("total_memory")
        mem_s = f"{mem / 2**30:.1f} GiB" if mem else "memory unknown"
        lines.append(f"GPU {gpu['index']}: {gpu['name']} ({gpu['capability']}, {mem_s})")
    free = report.get("disk_free")
    free_s = f"{free / 2**30:.1f} GiB free" if free is not None else "free space unknown"
    lines.append(f"CPUs: {report.get('cpu_count')} | disk {report.get('work_dir')}: {free_s}")
    return "\n".join(lines)
