"""Checkpoints: atomic writes, and a loader for our dicts and for the bare state_dicts of old runs.

A checkpoint is a dict ``{model, optimizer, scheduler, scaler, epoch, best_val, config, format,
...}`` where each component is a ``state_dict``. Old Kaggle runs saved a bare model state_dict
(read as one of ours it raises ``KeyError: 'model'``); ``load_checkpoint`` accepts those too.

Loading never runs code from the file unless the caller says it is trusted: it goes through
``compat.torch_compat.torch_load``, a weights-only load that also allows numpy arrays and scalars
(older checkpoints of ours hold a numpy RNG state and numpy scalars). ``save_checkpoint`` writes
only plain types (numpy values become Python numbers and lists), so its files load weights-only
on every torch, including the 2.1-2.3 generations without ``add_safe_globals``.
"""

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compat.torch_compat import UnsafeCheckpointError, torch_load

CHECKPOINT_FORMAT = 1

# Prefixes that wrappers add to parameter names: DDP/DataParallel ("module.") and torch.compile
# ("_orig_mod."). A checkpoint saved from a wrapped model must load into the bare model.
_CKPT_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A file that is not a checkpoint we can load; the message names the file."""


def _state_of(value: Any) -> Any:
    """Turn a module/optimizer/scheduler/scaler into its state_dict; leave plain values alone."""
    if isinstance(value, nn.Module):
        return unwrap_model(value).state_dict()
    if hasattr(value, "state_dict") and callable(value.state_dict):
        return value.state_dict()
    return value


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and lists (recursively
    through dicts, lists and tuples), so that a weights-only load needs no allowlist. Containers
    without numpy inside are returned as they are (a state_dict keeps its ``_metadata``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if type(value) in (dict, list, tuple):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        changed = {k: _plain(v) for k, v in items}
        if all(changed[k] is v for k, v in (value.items() if isinstance(value, dict)
                                             else enumerate(value))):
            return value
        return changed if isinstance(value, dict) else type(value)(changed.values())
    return value


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DDP/DataParallel/torch.compile wrappers."""
    while True:
        # Explicit checks: `or` would call __len__ on a Sequential and skip an empty one.
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def atomic_write(path, write, binary: bool = True) -> Path:
    """Write a file through ``write(fh)`` atomically; return the path.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then
    ``os.replace``d over ``path``: a crash mid-write (a Kaggle session killed at its time limit)
    leaves the previous file, or none, never a truncated one under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(path, **state) -> Path:
    """Write ``state`` (plus ``format``) to ``path`` atomically (`atomic_write`); return the path.

    Modules, optimizers, schedulers and grad scalers may be passed as objects: their
    ``state_dict()`` is stored. numpy values are stored as Python numbers and lists.
    """
    payload = {key: _plain(_state_of(value)) for key, value in state.items()}
    payload["format"] = CHECKPOINT_FORMAT
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; best effort (not every OS/filesystem allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = list(obj)[:5]
        return f"a dict with keys {keys}" if keys else "an empty dict"
    name = type(obj).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name}"


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def strip_wrapper_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop a ``module.``/``_orig_mod.`` prefix shared by every key (DDP, DataParallel, compile)."""
    out = dict(state_dict)
    changed = True
    while changed and out:
        changed = False
        for prefix in _CKPT_WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def _not_torch_file(path: Path) -> str | None:
    """Why ``path`` cannot be a torch file at all, or None. Checked before loading: torch
    answers an empty file with a bare ``EOFError``, and a text file with a weights-only
    refusal that would wrongly suggest trusting it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError as err:
        return f"cannot read it: {err.strerror or err}"
    if not head:
        return "the file is empty"
    if head != b"PK" and head[:1] != b"\x80":  # torch files: a zip archive, or (pre-1.6) a pickle
        return "not a torch file: it is neither a zip archive nor a pickle"
    return None


def read_checkpoint(path, map_location="cpu", *, trusted: bool = False) -> dict:
    """Read a checkpoint file into our dict form without loading it into anything.

    A bare state_dict comes back as ``{"model": state_dict, "format": 0}``. Nothing in the file
    runs unless ``trusted`` (full unpickling: only for files you made); a file holding other
    Python objects raises :class:`CheckpointError` naming the object.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give the checkpoint file (.pth) in it")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    problem = _not_torch_file(path)
    if problem:
        raise CheckpointError(f"{path.name}: not a readable checkpoint ({problem})")
    try:
        obj = torch_load(path, map_location=map_location, trusted=trusted)
    except UnsafeCheckpointError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise CheckpointError(
            f"{path.name}: not loaded: {reason}. Load it as trusted (enhance/demo: "
            f"--trust-checkpoint) only if you made it or trust its source"
        ) from exc
    except Exception as exc:  # truncated/corrupt files raise many different types
        raise CheckpointError(
            f"{path.name}: not a readable checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(obj, Mapping) and "model" in obj:
        if not _is_state_dict(obj["model"]):
            raise CheckpointError(
                f"{path.name}: not a checkpoint: its 'model' entry is {_describe(obj['model'])}"
            )
        ckpt = dict(obj)
        ckpt.setdefault("format", 0)
        if not isinstance(ckpt["format"], int) or ckpt["format"] > CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{path.name}: checkpoint format {ckpt['format']!r} is newer than this code "
                f"reads ({CHECKPOINT_FORMAT}); update the toolkit"
            )
        return ckpt
    if _is_state_dict(obj):
        return {"model": dict(obj), "format": 0}
    raise CheckpointError(f"{path.name}: not a checkpoint: {_describe(obj)}")


def load_checkpoint(
    path, model, optimizer=None, scheduler=None, scaler=None, map_location="cpu", *,
    trusted: bool = False,
) -> dict:
    """Load ``path`` into ``model`` (and the optional training objects); return the checkpoint dict.

    Accepts our checkpoint dicts and bare model state_dicts; strips DDP/compile prefixes from the
    saved names and loads into the bare model even when ``model`` is wrapped. The optimizer,
    scheduler and scaler are restored only when given AND present in the file; an empty saved
    state (a disabled GradScaler's, i.e. a CPU run's) leaves the target's fresh state alone, so
    a CPU run's checkpoint resumes on a GPU with AMP.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, map_location=map_location, trusted=trusted)
    state = strip_wrapper_prefix(ckpt["model"])
    try:
        unwrap_model(model).load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path.name}: weights do not fit {type(unwrap_model(model)).__name__}: {exc}"
        ) from exc
    for key, target in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if target is not None and ckpt.get(key):
            try:
                target.load_state_dict(ckpt[key])
            except (KeyError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"{path.name}: cannot restore {key}: {exc}") from exc
    return ckpt
