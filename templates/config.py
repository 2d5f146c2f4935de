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

from compat.sample_rate import SAMPLE_RATE  # the one source; re-exported here for the run's code
from templates.datasets import DATASETS, DEFAULT_DATASET

N_FFT = 512
HOP = 256

EVAL_MODES = ("full", "first3")
LOSS_NAMES = ("mag_l1", "si_sdr", "mrstft", "hybrid")  # templates.losses.build_loss builds each


def _config_field(default: Any = dataclasses.MISSING, help: str = "", *, option: bool = True,
                  default_factory: Any = dataclasses.MISSING) -> Any:
    """A ``RunConfig`` field with its help text, written once: the builders' ``--flag`` help
    (``option=False``: no command-line option, the builder sets it) and the docs read it."""
    return field(default=default, default_factory=default_factory,
                 metadata={"help": help, "option": option})


@dataclass
class RunConfig:
    """Everything that varies between runs; defaults are the Kaggle run's values.

    Every field is a notebook parameter named by the field in upper case (``epochs`` ->
    ``EPOCHS``) and, unless its ``option`` metadata says no, a builder option (``--epochs``).
    """

    model: str = _config_field("dpt", "registry name of the model (the builder sets it)",
                               option=False)
    data_dir: str = _config_field("/kaggle/input", "where the dataset is mounted (searched at "
                                  "any depth)")
    work_dir: str = _config_field("/kaggle/working", "where every output is written (Kaggle "
                                  "saves it as the notebook's output)")
    epochs: int = _config_field(30, "training epochs")
    batch_size: int = _config_field(8, "batch size per optimiser step (split across GPUs)")
    lr: float = _config_field(1e-3, "learning rate")
    crop_seconds: float = _config_field(3.0, "training crop length in seconds")
    seed: int = _config_field(42, "random seed")
    max_steps: int | None = _config_field(None, "cap on optimiser steps per epoch (None: no cap)")
    smoke: bool = _config_field(False, "a smoke run: small, and allowed on a CPU", option=False)
    val_fraction: float = _config_field(0.1, "fraction of the training pairs held out for "
                                        "validation")
    warmup_epochs: int = _config_field(0, "learning-rate warmup epochs (0: the model's default)")
    patience: int = _config_field(10, "early-stopping patience in epochs")
    plateau_patience: int = _config_field(3, "epochs without improvement before the learning "
                                          "rate drops")
    plateau_factor: float = _config_field(0.5, "factor of each learning-rate drop")
    grad_clip: float = _config_field(5.0, "gradient-norm clipping threshold")
    loss: str = _config_field("mag_l1", "loss name: " + ", ".join(LOSS_NAMES))
    num_workers: int = _config_field(2, "DataLoader workers")
    eval_mode: str = _config_field("full", "'full' files or 'first3' seconds")
    max_test_files: int | None = _config_field(None, "evaluate only this many test files")
    checkpoint_every: int = _config_field(5, "write ckpt_epN.pth every this many epochs")
    sample_rate: int = _config_field(SAMPLE_RATE, "the models' sample rate in Hz (16000 only)", option=False)
    model_kwargs: dict = _config_field(
        help="model constructor kwargs as a JSON object, e.g. '{\"d_model\": 64}'",
        default_factory=dict)
    # Never inside work_dir: Kaggle saves /kaggle/working as the notebook's output, and the
    # extracted training set is several GB that `--fetch` would then download.
    scratch_dir: str | None = _config_field(None, "where .7z archives are extracted (None: "
                                            "<system temp>/se_toolkit)")
    # The row gives folder names, native rate and the published figures the summary sets the
    # run against.
    dataset: str = _config_field(DEFAULT_DATASET, "dataset row of templates/datasets.py: libri or "
                                 "vbdemand (VoiceBank+DEMAND, 824-file test set); also sets the "
                                 "mounted Kaggle dataset")
    # Kaggle ends a GPU session at 12 h; 11.5 h leaves 30 min for what the clock does not see or
    # the estimate misses (image start before the first cell, a slower evaluation): two to
    # three of the user's epochs (4-6 h for 30).
    time_budget_hours: float | None = _config_field(
        11.5, "stop training in time to evaluate and export within this many hours (None: no "
        "budget)")
    allow_cpu: bool = _config_field(False, "a full (non-smoke) run may train without a GPU "
                                    "(otherwise it stops at the environment check)")
    gpus: int | None = _config_field(None, "training processes (default: every visible GPU; 1: "
                                     "in-process)")
    resume_from: str | None = _config_field(
        None, "'owner/slug/N' whose last.pth must be found under data_dir (set by --push "
        "--resume-from N): no fresh start", option=False)

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
        # The models' STFT sizes, the deploy side (enhance, streaming, ONNX) and the published
        # figures all assume 16 kHz; another rate would train a model nothing else can use.
        if self.sample_rate != SAMPLE_RATE or isinstance(self.sample_rate, bool):
            errors.append(f"sample_rate must be {SAMPLE_RATE} (files at other rates are resampled "
                          f"to it on load), got {self.sample_rate!r}")
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
