"""Run configuration: the constants every section shares and the ``RunConfig`` of one run.

The notebook's ``parameters`` cell overrides fields of ``RunConfig``; a rehearsal overrides the
same fields with small values, so there is one notebook for both.
"""

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compat.audio import SAMPLE_RATE  # the one source; re-exported here for the run's code
from templates.datasets import DATASETS

N_FFT = 512
HOP = 256

EVAL_MODES = ("full", "first3")
LOSS_NAMES = ("mag_l1", "si_sdr", "mrstft", "hybrid")  # templates.losses.build_loss builds each


@dataclass
class RunConfig:
    """Everything that varies between runs; defaults are the Kaggle run's values."""

    model: str = "dpt"
    data_dir: str = "/kaggle/input"
    work_dir: str = "/kaggle/working"
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    crop_seconds: float = 3.0
    seed: int = 42
    max_steps: int | None = None  # None: no cap on optimiser steps per epoch
    smoke: bool = False
    val_fraction: float = 0.1
    warmup_epochs: int = 0
    patience: int = 10  # early stopping, in epochs without improvement
    plateau_patience: int = 3
    plateau_factor: float = 0.5
    grad_clip: float = 5.0
    loss: str = "mag_l1"
    num_workers: int = 2
    eval_mode: str = "full"
    max_test_files: int | None = None
    checkpoint_every: int = 5
    sample_rate: int = SAMPLE_RATE
    model_kwargs: dict = field(default_factory=dict)
    # Where .7z archives are extracted. None: <system temp>/se_toolkit. Never inside work_dir:
    # Kaggle saves /kaggle/working as the notebook's output, and the extracted training set is
    # several GB that `--fetch` would then download.
    scratch_dir: str | None = None
    # Which row of templates.datasets.DATASETS the data is: folder names, native rate, the
    # published figures the summary sets the run against. "libri" or "vbdemand".
    dataset: str = "libri"
    # Wall-clock budget of the whole notebook run. Kaggle ends a GPU session at 12 h; 11.5 h
    # leaves 30 min for what the clock does not see or the estimate misses (image start before
    # the first cell, a slower evaluation): two to three of the user's epochs (4-6 h for 30).
    # None: no budget.
    time_budget_hours: float | None = 11.5
    allow_cpu: bool = False  # a full (non-smoke) run without CUDA stops at the environment check
    gpus: int | None = None  # training processes: None one per visible GPU, 1 in-process
    # "owner/slug/N" when pushed with --resume-from N: that output must be mounted (no fresh start)
    resume_from: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` listing every bad value (all at once, not the first only)."""
        errors = self.problems()
        if errors:
            raise ValueError("invalid RunConfig: " + "; ".join(errors))

    @classmethod
    def problems_in(cls, values: dict[str, Any]) -> list[str]:
        """``problems()`` of the config ``values`` describe (defaults for the rest), without
        raising: what a builder checks before it renders a notebook. Unknown keys are problems."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        errors = [f"{k} is not a RunConfig field (known: {', '.join(sorted(known))})"
                  for k in sorted(set(values) - set(known))]
        cfg = object.__new__(cls)  # unvalidated: __post_init__ would raise on the first call
        for name, f in known.items():
            if name in values:
                value = values[name]
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            setattr(cfg, name, value)
        return errors + cfg.problems()

    def problems(self) -> list[str]:
        """One line per bad field, each starting with the field's name and saying its rule."""
        errors: list[str] = []

        def _int_at_least(name: str, low: int, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int):
                errors.append(f"{name} must be an integer, got {value!r}")
            elif value < low:
                errors.append(f"{name} must be >= {low}, got {value}")

        def _positive_number(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                errors.append(f"{name} must be a number, got {value!r}")
            elif not math.isfinite(value) or value <= 0:
                errors.append(f"{name} must be a finite number > 0, got {value}")

        _int_at_least("epochs", 1)
        _int_at_least("batch_size", 1)
        _int_at_least("max_steps", 1, optional=True)
        _int_at_least("warmup_epochs", 0)
        _int_at_least("patience", 1)
        _int_at_least("plateau_patience", 0)
        _int_at_least("num_workers", 0)
        _int_at_least("max_test_files", 1, optional=True)
        _int_at_least("checkpoint_every", 1)
        _int_at_least("sample_rate", 1)
        _int_at_least("seed", 0)
        _int_at_least("gpus", 1, optional=True)
        if self.time_budget_hours is not None:
            _positive_number("time_budget_hours")
        _positive_number("lr")
        _positive_number("crop_seconds")
        _positive_number("grad_clip")
        vf = self.val_fraction
        if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 < vf < 1:
            errors.append(f"val_fraction must be strictly between 0 and 1, got {vf!r}")
        pf = self.plateau_factor
        if isinstance(pf, bool) or not isinstance(pf, (int, float)) or not 0 < pf < 1:
            errors.append(f"plateau_factor must be strictly between 0 and 1, got {pf!r}")
        if self.eval_mode not in EVAL_MODES:
            errors.append(f"eval_mode must be one of {list(EVAL_MODES)}, got {self.eval_mode!r}")
        if isinstance(self.loss, str) and self.loss and self.loss not in LOSS_NAMES:
            errors.append(f"loss must be one of {list(LOSS_NAMES)}, got {self.loss!r}")
        if isinstance(self.dataset, str) and self.dataset and self.dataset not in DATASETS:
            errors.append(f"dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}")
        for name in ("model", "data_dir", "work_dir", "loss", "dataset"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                errors.append(f"{name} must be a non-empty string, got {value!r}")
        for name in ("smoke", "allow_cpu"):
            if not isinstance(getattr(self, name), bool):
                errors.append(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.model_kwargs, dict):
            errors.append(f"model_kwargs must be a dict, got {type(self.model_kwargs).__name__}")
        return errors

    @property
    def crop_samples(self) -> int:
        """Training crop length in samples at ``sample_rate``."""
        return int(round(self.crop_seconds * self.sample_rate))

    @property
    def extract_dir(self) -> Path:
        """Folder that receives extracted archives (``scratch_dir`` or the system temp)."""
        if self.scratch_dir is not None:
            return Path(self.scratch_dir)
        return Path(tempfile.gettempdir()) / "se_toolkit"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (model_kwargs copied, not shared)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build from a dict; unknown keys are an error, never silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown RunConfig key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def replace(self, **changes: Any) -> "RunConfig":
        """Copy with some fields changed (validated like a new config)."""
        return self.from_dict({**self.to_dict(), **changes})
