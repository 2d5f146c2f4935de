"""Model registry: names -> MaskingModel classes, building from config, parameter accounting.

A model module registers itself (`@register_model("crn")`). `build_model` imports the built-in
model modules lazily the first time a name is missing; this module never imports them at load
time (that would pull every model into every notebook). A notebook's package holds base.py,
registry.py and its one model module, so exactly that model can be built there.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from templates.models.base import MaskingModel

_MODEL_REGISTRY: dict[str, type[MaskingModel]] = {}
_BUILTIN_MODEL_MODULES = {
    "crn": "templates.models.crn",
    "dpt": "templates.models.dpt",
    "crn_causal": "templates.models.crn_causal",
    "compact_crn": "templates.models.compact_crn",
}


def register_model(name: str) -> Callable[[type[MaskingModel]], type[MaskingModel]]:
    """Class decorator: `@register_model("crn") class CRN(MaskingModel): ...`."""

    def _register(cls: type[MaskingModel]) -> type[MaskingModel]:
        if not (isinstance(cls, type) and issubclass(cls, MaskingModel)):
            raise TypeError(f"register_model({name!r}): {cls!r} is not a MaskingModel subclass")
        known = _MODEL_REGISTRY.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"model name {name!r} is already registered to {known.__qualname__}")
        cls.model_name = name
        _MODEL_REGISTRY[name] = cls
        return cls

    return _register


def _load_builtin_models() -> None:
    """Import the built-in model modules whose names are not registered yet.

    In a notebook the package holds only its own model module: the others are missing there and
    skipped.
    """
    for name, module in _BUILTIN_MODEL_MODULES.items():
        if name in _MODEL_REGISTRY:
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            continue


def model_names() -> list[str]:
    """Sorted names of the models that can be built here."""
    _load_builtin_models()
    return sorted(_MODEL_REGISTRY)


def build_model(name: str, **kwargs: Any) -> MaskingModel:
    """Instantiate a registered model: `build_model("dpt", d_model=16)`.

    `build_model(name, **model.get_config())` rebuilds the same architecture.
    """
    if name not in _MODEL_REGISTRY:
        _load_builtin_models()
    if name not in _MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    return _MODEL_REGISTRY[name](**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_split(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per named part (`model.parts()`), plus `other` for the rest.

    For CRN: encoder / lstm / decoder; for DPT: encoder / dual_path / decoder. `other` appears
    only when some parameters belong to no listed part.
    """
    parts = model.parts() if hasattr(model, "parts") else {}
    split: dict[str, int] = {}
    seen: set[int] = set()
    for part_name, part in parts.items():
        params = [p for p in part.parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        split[part_name] = sum(p.numel() for p in params)
    rest = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in seen)
    if rest:
        split["other"] = rest
    return split


def format_parameter_split(model: nn.Module) -> str:
    """`params: N` then one line per part with its share, for the model modules' CLIs."""
    total = count_parameters(model)
    lines = [f"params: {total}"]
    for part_name, n in parameter_split(model).items():
        share = 100.0 * n / total if total else 0.0
        lines.append(f"  {part_name:<10} {n:>10,}  {share:5.1f}%")
    return "\n".join(lines)
