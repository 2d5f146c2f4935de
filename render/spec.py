"""``ModelSpec``: everything a builder script says about its model's notebook.

A builder (``builders/dpt.py``) is a spec plus ``main()``; the renderer, the metadata writer, the
smoke harness and the rehearsal read the same spec, so a model is described once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# The mounted Kaggle dataset is a row of templates.datasets.DATASETS (``DATASET`` below,
# ``--dataset`` on the command line); kernel_metadata writes its slug.
from templates.datasets import DEFAULT_DATASET

#: Parameters-cell values shared by every model. Names are the notebook's upper-case
#: variables; a glue cell maps them onto ``RunConfig`` fields.
BASE_PARAMETERS: dict[str, Any] = {
    "DATA_DIR": "/kaggle/input",
    "WORK_DIR": "/kaggle/working",
    "EPOCHS": 30,
    "BATCH_SIZE": 8,
    "LR": 1e-3,
    "CROP_SECONDS": 3.0,
    "SEED": 42,
    "MAX_STEPS": None,
    "SMOKE": False,
    "NUM_WORKERS": 2,
    "EVAL_MODE": "full",
    "MAX_TEST_FILES": None,
    "WARMUP_EPOCHS": 0,
    "PATIENCE": 10,
    "LOSS": "mag_l1",
    "SCRATCH_DIR": None,  # where .7z archives are extracted; None: the system temp folder
    "DATASET": DEFAULT_DATASET,  # a row of templates.datasets.DATASETS
    "TIME_BUDGET_HOURS": 11.5,  # Kaggle ends GPU sessions at 12 h (RunConfig.time_budget_hours)
    "ALLOW_CPU": False,  # True: a full run may train without a GPU
    "GPUS": None,  # None: every visible GPU; 1: in-process on one GPU
    "RESUME_FROM": None,  # set by --push --resume-from: the version whose last.pth must be found
}

_SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class SpecError(ValueError):
    """A model spec that cannot produce a pushable notebook."""


def slugify_title(title: str) -> str:
    """Kaggle's slug for a title: lower case, runs of other characters become one hyphen.

    The kaggle client warns when ``id``'s slug differs from the slug of ``title`` (and Kaggle
    then derives the URL from the title), so specs keep the two in step.
    """
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@dataclass(frozen=True)
class ModelSpec:
    """One model's notebook.

    ``name`` is the registry name (``build_model(name)``) and the notebook's folder and file name;
    ``model_module`` is the module the layout's ``module="@model"`` cell writes.
    ``smoke_model_kwargs``: constructor kwargs of a shrunken model for the smoke harness's
    learning check (seconds on a CPU); empty means the full-size model.
    """

    name: str
    title: str
    slug: str
    model_module: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    smoke_model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise SpecError(f"model name {self.name!r}: use lower-case letters, digits, underscores")
        if not _SLUG_RE.fullmatch(self.slug):
            raise SpecError(f"{self.name}: slug {self.slug!r} is not a Kaggle slug (a-z, 0-9, -)")
        if len(self.title) < 5:
            raise SpecError(f"{self.name}: Kaggle needs a title of at least 5 characters")
        if slugify_title(self.title) != self.slug:
            raise SpecError(
                f"{self.name}: title {self.title!r} resolves to slug {slugify_title(self.title)!r}, "
                f"not {self.slug!r}; Kaggle would name the notebook after the title"
            )
        unknown = sorted(set(self.parameters) - set(BASE_PARAMETERS) - {"MODEL"})
        if unknown:
            raise SpecError(f"{self.name}: unknown parameter(s) {unknown}; known: {sorted(BASE_PARAMETERS)}")

    def default_parameters(self) -> dict[str, Any]:
        """The parameters cell's values: shared defaults, then this model's, ``MODEL`` first."""
        return {"MODEL": self.name, **BASE_PARAMETERS, **self.parameters}

    @property
    def notebook_file(self) -> str:
        return f"{self.name}.ipynb"
