"""``ModelSpec``: one row of the model table as the notebook's renderer, the metadata writer, the
smoke harness and the builders read it, and the notebook's parameters.

The facts live in ``templates/models/catalog.py`` (the model table) and ``templates/config.py``
(``RunConfig``): every ``RunConfig`` field is a notebook parameter named by the field in upper
case (``batch_size`` -> ``BATCH_SIZE``), with ``RunConfig``'s default unless the model's row
overrides it. Nothing here is a second copy of either.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from templates.config import RunConfig
from templates.datasets import dataset_source
from templates.models.catalog import MODELS, ModelRow, model_row

_SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class SpecError(ValueError):
    """A model row that cannot produce a pushable notebook."""


def parameter_name(field_name: str) -> str:
    """The notebook parameter that sets ``RunConfig`` field ``field_name``: ``EPOCHS``."""
    return field_name.upper()


def field_name(parameter: str) -> str:
    """The ``RunConfig`` field a notebook parameter sets: ``EPOCHS`` -> ``epochs``."""
    return parameter.lower()


def run_config_parameters() -> dict[str, Any]:
    """``RunConfig``'s defaults as notebook parameters, in field order (``MODEL`` first)."""
    values = {}
    for f in dataclasses.fields(RunConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        values[parameter_name(f.name)] = default
    return values


def parameter_help() -> dict[str, str]:
    """Each parameter's help text (the ``RunConfig`` field's ``help`` metadata)."""
    return {parameter_name(f.name): f.metadata.get("help", "") for f in dataclasses.fields(RunConfig)}


def mounted_dataset_slug(params: dict[str, Any]) -> str:
    """The Kaggle dataset a notebook with parameters ``params`` mounts: the slug of the
    ``templates.datasets`` row its ``DATASET`` names (``ValueError`` for an unknown row). The
    notebook's intro and ``kernel-metadata.json``'s ``dataset_sources`` both say this."""
    return dataset_source(params["DATASET"]).slug


def slugify_title(title: str) -> str:
    """Kaggle's slug for a title: lower case, runs of other characters become one hyphen.

    The kaggle client warns when ``id``'s slug differs from the slug of ``title`` (and Kaggle
    then derives the URL from the title), so the slug is always derived from the title.
    """
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@dataclass(frozen=True)
class ModelSpec:
    """One model's notebook.

    ``name`` is the registry name (``build_model(name)``) and the notebook's folder and file name;
    ``model_module`` is the module the layout's ``module="@model"`` cell writes; ``slug`` is
    derived from ``title``. ``parameters``: this model's parameter values that differ from
    ``RunConfig``'s defaults (``{"BATCH_SIZE": 16}``). ``smoke_model_kwargs``: constructor
    kwargs of a shrunken model for the smoke harness's learning check (seconds on a CPU); empty
    means the full-size model.
    """

    name: str
    title: str
    model_module: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    smoke_model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = spec_problems(self)
        if problems:
            raise SpecError("; ".join(problems))

    @classmethod
    def from_row(cls, row: ModelRow) -> ModelSpec:
        """The spec of a model-table row (its defaults renamed to parameters)."""
        return cls(
            name=row.name,
            title=row.title,
            model_module=row.module,
            description=row.description,
            parameters={parameter_name(k): v for k, v in row.defaults.items()},
            smoke_model_kwargs=dict(row.smoke_kwargs),
        )

    @property
    def slug(self) -> str:
        """The Kaggle kernel slug: the title's (Kaggle names the notebook after the title)."""
        return slugify_title(self.title)

    def default_parameters(self) -> dict[str, Any]:
        """The parameters cell's values: ``RunConfig``'s defaults, then this model's; ``MODEL``
        first. Keys are upper-cased ``RunConfig`` fields, so ``RunConfig(**{k.lower(): v})``
        is the run they describe."""
        return {**run_config_parameters(), **self.parameters, "MODEL": self.name}

    @property
    def notebook_file(self) -> str:
        return f"{self.name}.ipynb"


def spec_problems(spec: ModelSpec) -> list[str]:
    """One line per reason ``spec`` cannot become a pushable notebook (empty: fine)."""
    problems = []
    if not re.fullmatch(r"[a-z][a-z0-9_]*", spec.name):
        problems.append(f"model name {spec.name!r}: use lower-case letters, digits, underscores")
    if len(spec.title) < 5:
        problems.append(f"{spec.name}: Kaggle needs a title of at least 5 characters")
    if not _SLUG_RE.fullmatch(spec.slug):
        problems.append(f"{spec.name}: title {spec.title!r} resolves to slug {spec.slug!r}, not a "
                        f"Kaggle slug (a-z, 0-9, -)")
    known = run_config_parameters()
    unknown = sorted(set(spec.parameters) - set(known))
    if unknown:
        problems.append(f"{spec.name}: unknown parameter(s) {unknown}; known (RunConfig's "
                        f"fields, upper-cased): {sorted(known)}")
    if "MODEL" in spec.parameters:
        problems.append(f"{spec.name}: the model's row cannot set MODEL (it is the row's name)")
    return problems


def model_spec(name: str) -> ModelSpec:
    """The spec of model ``name`` in the model table (``ValueError`` listing the names)."""
    return ModelSpec.from_row(model_row(name))


def model_specs() -> list[ModelSpec]:
    """Every model's spec, in table order."""
    return [ModelSpec.from_row(row) for row in MODELS]

