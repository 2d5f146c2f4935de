"""Model registry: names -> MaskingModel classes, building from config, parameter accounting.

A model module registers its class when it is imported (`@register_model("crn")`).
`build_model` imports the module that the model table (`templates/models/catalog.py`) gives for a
name the first time that name is missing, so nothing has to be imported beforehand; this module
never imports the model modules at load time (that would pull every model into every notebook).
A notebook's package holds base.py, registry.py, the table and its one model module, so exactly
that model can be built there.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from templates.models.base import MaskingModel

_MODEL_REGISTRY: dict[str, type[MaskingModel]] = {}


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


def _catalog_rows() -> list:
    """The model table's rows; none where the table is absent (read through importlib, not a
    top-level import)."""
    try:
        return list(importlib.import_module("templates.models.catalog").MODELS)
    except ModuleNotFoundError:
        return []


def _load_catalog_models(only: str | None = None) -> None:
    """Import the model table's modules whose models are not registered yet (``only``: that
    row's alone, so building one model does not depend on every other row's module).

    A notebook's package carries the table but only its own model's module, so the other rows'
    modules are absent there and skipped. A row's module that is there but fails to import
    raises: a contributor's new model must not vanish into "unknown model".
    """
    for row in _catalog_rows():
        if row.name in _MODEL_REGISTRY or (only is not None and row.name != only):
            continue
        try:
            importlib.import_module(row.module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (row.module + ".").startswith(exc.name + "."):
                raise


def model_names() -> list[str]:
    """Sorted names of the models that can be built here."""
    _load_catalog_models()
    return sorted(_MODEL_REGISTRY)


def build_model(name: str, **kwargs: Any) -> MaskingModel:
    """Instantiate a registered model: `build_model("dpt", d_model=16)`.

    `build_model(name, **model.get_config())` rebuilds the same architecture.
    """
    if name not in _MODEL_REGISTRY:
        _load_catalog_models(only=name)
    if name not in _MODEL_REGISTRY:
        row = next((r for r in _catalog_rows() if r.name == name), None)
        if row is not None:
            raise ValueError(f"model {name!r} is a row of templates/models/catalog.py but its "
                             f"module {row.module!r} is not found here")
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
