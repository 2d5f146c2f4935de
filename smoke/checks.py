"""The smoke checks for one model, run against the RENDERED notebook's own code.

The notebook's package (the files its module cells write, the same bytes) is written into a
temporary folder and imported from there (smoke/package.py), then its parameters and config cells
run; every check uses the classes and functions found there, so a check passes only if the
notebook's code works, not merely the repo's modules. Imports and config, aligned-crop dataset,
model class, forward pass, loss, SI-SDR, a checkpoint round trip, the learning check (a shrunken
model overfits one fixed batch: the loss must fall and SI-SDR must rise), the notebook lint and
the committed-notebook freshness check.
"""

from __future__ import annotations

import ast
import contextlib
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import soundfile as sf
import torch

from compat.sample_rate import SAMPLE_RATE
from render.notebook import (
    OWN_PACKAGES,
    PARAMETERS_TAG,
    REPO_ROOT,
    build_notebook,
    notebook_text,
    read_notebook,
)
from render.spec import ModelSpec
from smoke.dataset import make_noise, mix_at_snr, speech_like  # not lazily: see learning_batch
from smoke.lint import lint_notebook, raise_for_issues
from smoke.package import notebook_package


class SmokeCheckError(AssertionError):
    """A smoke check found the notebook's code wrong; the message says what and where."""


@dataclass
class SmokeContext:
    """State shared by one model's checks, filled as they run; ``close()`` (or leaving a ``with``
    block) gives ``templates``/``compat`` back to the repo's modules."""

    spec: ModelSpec
    notebook: Any  # NotebookNode under test
    committed: Path | None  # committed notebook to compare with a fresh render, or None
    tmp: Path
    #: the public names of the notebook's modules (names two modules bind differently left
    #: out), then its parameters and ``cfg``
    ns: dict[str, Any] = field(default_factory=dict)
    package: dict[str, ModuleType] = field(default_factory=dict)  # module name -> module
    cfg: Any = None
    model: Any = None
    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    learning: Any = None  # LearningResult of check_learning
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def close(self) -> None:
        self.stack.close()

    def __enter__(self) -> SmokeContext:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def package_names(modules: dict[str, ModuleType]) -> dict[str, Any]:
    """Public names of ``modules``; a name bound to different objects in two modules is left out."""
    names: dict[str, Any] = {}
    clashes: set[str] = set()
    for module in modules.values():
        for name, value in vars(module).items():
            if name.startswith("_") or isinstance(value, ModuleType):
                continue
            if name in names and names[name] is not value:
                clashes.add(name)
            names.setdefault(name, value)
    return {k: v for k, v in names.items() if k not in clashes}


def _exec_cells(ctx: SmokeContext) -> None:
    code = [c for c in ctx.notebook.cells if c.cell_type == "code"]
    params = [c for c in code if PARAMETERS_TAG in c.metadata.get("tags", [])]
    config = [c for c in code if "\ncfg = RunConfig(" in "\n" + c.source]
    if len(params) != 1 or len(config) != 1:
        raise SmokeCheckError(f"expected one parameters cell and one 'cfg = RunConfig(' glue cell, "
                              f"found {len(params)} and {len(config)}")
    ctx.package = ctx.stack.enter_context(notebook_package(ctx.notebook, ctx.tmp / "package"))
    ctx.ns.update(package_names(ctx.package))
    for cell in code:  # the run section's own imports name what the package defines
        if "module" in cell.metadata:
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in OWN_PACKAGES:
                try:
                    exec(compile(ast.Module([node], []), f"<cell {cell.id}>", "exec"), {})
                except ImportError as exc:
                    raise SmokeCheckError(f"cell {cell.id} line {node.lineno}: {exc}") from exc
    for cell in params + config:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the glue cell prints cfg
                exec(compile(cell.source, f"<cell {cell.id}>", "exec"), ctx.ns)
        except Exception as exc:
            raise SmokeCheckError(f"cell {cell.id} raised {type(exc).__name__}: {exc}") from exc


def check_imports_config(ctx: SmokeContext) -> str:
    try:
        _exec_cells(ctx)
    except ImportError as exc:  # smoke.package.NotebookImportError names the cell and module
        raise SmokeCheckError(str(exc)) from exc
    cfg = ctx.ns["cfg"]
    if cfg.model != ctx.spec.name:
        raise SmokeCheckError(f"cfg.model is {cfg.model!r}, expected {ctx.spec.name!r}")
    # small values so the remaining checks take milliseconds, like the rehearsal's overrides
    ctx.cfg = cfg.replace(crop_seconds=0.25, batch_size=2, num_workers=0, smoke=True)
    return f"{len(ctx.package)} modules from the notebook's cells, crop {ctx.cfg.crop_samples}"


def _write_pairs(folder: Path, n: int, seconds: float, rate: int) -> None:
    rng = np.random.default_rng(0)
    for split in ("noisy", "clean"):
        (folder / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clean = 0.3 * rng.standard_normal(int(seconds * rate)).astype(np.float32)
        noisy = clean + 0.1 * rng.standard_normal(clean.shape).astype(np.float32)
        sf.write(folder / "clean" / f"{i:04d}.wav", clean, rate, subtype="PCM_16")
        sf.write(folder / "noisy" / f"{i:04d}.wav", noisy, rate, subtype="PCM_16")


def check_dataset(ctx: SmokeContext) -> str:
    ns, cfg = ctx.ns, ctx.cfg
    folder = ctx.tmp / "pairs"
    _write_pairs(folder, n=3, seconds=2.0, rate=cfg.sample_rate)
    pairing = ns["pair_files"](folder / "noisy", folder / "clean")
    if len(pairing.pairs) != 3:
        raise SmokeCheckError(f"pair_files found {len(pairing.pairs)} pairs in {folder}, expected 3")
    ds = ns["AlignedCropDataset"](pairing.pairs, cfg.crop_samples, train=True,
                                  sample_rate=cfg.sample_rate, seed=cfg.seed)
    corrs = []
    for i in range(len(ds)):
        noisy, clean = ds[i]
        if tuple(noisy.shape) != (cfg.crop_samples,) or tuple(clean.shape) != (cfg.crop_samples,):
            raise SmokeCheckError(f"item {i}: shapes {tuple(noisy.shape)}, {tuple(clean.shape)}; "
                                  f"expected ({cfg.crop_samples},) each")
        corrs.append(float(np.corrcoef(noisy.numpy(), clean.numpy())[0, 1]))
    # white-noise "speech": a crop from another offset would correlate ~0
    if min(corrs) < 0.9:
        raise SmokeCheckError(f"noisy/clean crops are not aligned: correlations {corrs}")
    ctx.batch = (torch.stack([ds[0][0], ds[1][0]]), torch.stack([ds[0][1], ds[1][1]]))
    return f"{len(ds)} pairs, min crop correlation {min(corrs):.3f}"


def check_model(ctx: SmokeContext) -> str:
    ns = ctx.ns
    if ctx.spec.name not in ns["model_names"]():
        raise SmokeCheckError(f"model {ctx.spec.name!r} is not registered by the notebook's cells "
                              f"(registered: {ns['model_names']()})")
    ctx.model = ns["build_model"](ctx.spec.name, **ctx.cfg.model_kwargs)
    if not isinstance(ctx.model, ns["MaskingModel"]):
        raise SmokeCheckError(f"{type(ctx.model).__name__} is not a MaskingModel")
    return f"{type(ctx.model).__name__}: {ns['count_parameters'](ctx.model):,} parameters"


def check_forward(ctx: SmokeContext) -> str:
    noisy, _clean = ctx.batch
    ctx.model.eval()
    with torch.no_grad():
        out = ctx.model(noisy)
        parts = ctx.model.enhance_spec(noisy)
    if tuple(out.shape) != tuple(noisy.shape):
        raise SmokeCheckError(f"forward: input {tuple(noisy.shape)} -> output {tuple(out.shape)}")
    mask = parts["mask"]
    b, n_freq = noisy.shape[0], ctx.ns["N_FFT"] // 2 + 1
    if mask.dim() != 3 or tuple(mask.shape[:2]) != (b, n_freq):
        raise SmokeCheckError(f"mask shape {tuple(mask.shape)}, expected ({b}, {n_freq}, N)")
    if torch.is_complex(mask):  # a complex ratio mask: tanh-bounded real and imaginary parts
        parts = torch.stack([mask.real, mask.imag])
        if not torch.isfinite(out).all() or parts.abs().max() > 1:
            raise SmokeCheckError(f"non-finite output or complex mask part outside [-1, 1] "
                                  f"(max |part| {float(parts.abs().max()):.3f})")
        return f"{tuple(noisy.shape)} -> {tuple(out.shape)}, complex mask {tuple(mask.shape)}"
    if not torch.isfinite(out).all() or mask.min() < 0 or mask.max() > 1:
        raise SmokeCheckError(f"non-finite output or mask outside [0, 1] "
                              f"({float(mask.min()):.3f}..{float(mask.max()):.3f})")
    return f"{tuple(noisy.shape)} -> {tuple(out.shape)}, mask {tuple(mask.shape)}"


def check_loss(ctx: SmokeContext) -> str:
    noisy, clean = ctx.batch
    loss_fn = ctx.ns["build_loss"](ctx.cfg.loss)
    ctx.model.train()
    ctx.model.zero_grad()
    loss = loss_fn(ctx.model(noisy), clean)
    if loss.dim() != 0 or not torch.isfinite(loss):
        raise SmokeCheckError(f"loss {ctx.cfg.loss!r} gave {loss!r}, expected a finite scalar")
    loss.backward()
    grads = [p.grad for p in ctx.model.parameters() if p.requires_grad]
    if not grads or any(g is None for g in grads):
        raise SmokeCheckError("loss.backward() left parameters without gradients")
    return f"{ctx.cfg.loss} = {loss.item():.4f}, gradients on {len(grads)} tensors"


def check_si_sdr(ctx: SmokeContext) -> str:
    noisy, clean = ctx.batch
    si_sdr = ctx.ns["si_sdr"]
    same = si_sdr(clean, clean)
    mixed = si_sdr(noisy, clean)
    if tuple(same.shape) != (clean.shape[0],):
        raise SmokeCheckError(f"si_sdr shape {tuple(same.shape)}, expected ({clean.shape[0]},)")
    if not (same.min() > 40 and torch.isfinite(mixed).all() and mixed.max() < same.min()):
        raise SmokeCheckError(f"si_sdr(clean, clean)={same.tolist()} should be > 40 dB and above "
                              f"si_sdr(noisy, clean)={mixed.tolist()}")
    return f"identity {float(same.mean()):.1f} dB, noisy {float(mixed.mean()):.2f} dB"


def check_checkpoint(ctx: SmokeContext) -> str:
    ns = ctx.ns
    model = ctx.model.eval()
    opt = torch.optim.Adam(model.parameters(), lr=ctx.cfg.lr)
    path = ns["save_checkpoint"](ctx.tmp / "ckpt" / "last.pth", model=model, optimizer=opt, epoch=1,
                                 best_val=0.5, config=ctx.cfg.to_dict())
    fresh = ns["build_model"](ctx.spec.name, **ctx.cfg.model_kwargs).eval()
    info = ns["load_checkpoint"](path, fresh, optimizer=torch.optim.Adam(fresh.parameters()))
    noisy = ctx.batch[0]
    with torch.no_grad():
        same = torch.equal(model(noisy), fresh(noisy))
    if not same or info.get("epoch") != 1:
        raise SmokeCheckError(f"{path.name}: reloaded model differs or epoch {info.get('epoch')!r} != 1")
    return f"{path.stat().st_size / 1e6:.1f} MB, identical outputs after reload"


# The learning check: a shrunken model (the spec's `smoke_model_kwargs`) trains on ONE fixed batch
# of synthetic speech in noise for LEARNING_STEPS Adam steps. A model that can learn overfits it:
# the loss under test falls by LEARNING_MIN_LOSS_DROP of its first value and SI-SDR on the batch
# rises by LEARNING_MIN_SISDR_GAIN_DB. What runs but cannot learn fails one of the two: a mask
# applied to the wrong tensor or an inverse STFT out of step (SI-SDR cannot rise), a loss with
# the wrong sign (the objective falls, SI-SDR drops), a diverging learning rate (neither).
LEARNING_STEPS = 30
LEARNING_LR = 5e-3
LEARNING_MIN_LOSS_DROP = 0.1
LEARNING_MIN_SISDR_GAIN_DB = 2.0
LEARNING_SECONDS = 0.5  # per item; two items


@dataclass
class LearningResult:
    """Loss and SI-SDR (mean over the batch, dB) on the fixed batch before and after training."""

    loss_before: float
    loss_after: float
    sisdr_before: float
    sisdr_after: float
    steps: int
    seconds: float

    @property
    def loss_drop(self) -> float:
        """Fall of the loss as a fraction of its first value's magnitude (NaN if not finite)."""
        if not (math.isfinite(self.loss_before) and math.isfinite(self.loss_after)):
            return math.nan
        return (self.loss_before - self.loss_after) / max(abs(self.loss_before), 1e-8)

    @property
    def sisdr_gain(self) -> float:
        return self.sisdr_after - self.sisdr_before

    @property
    def learned(self) -> bool:
        return (math.isfinite(self.loss_drop) and self.loss_drop >= LEARNING_MIN_LOSS_DROP
                and math.isfinite(self.sisdr_gain) and self.sisdr_gain >= LEARNING_MIN_SISDR_GAIN_DB)

    def describe(self) -> str:
        return (f"loss {self.loss_before:.4f} -> {self.loss_after:.4f} "
                f"({100 * self.loss_drop:+.0f}% fall, need {100 * LEARNING_MIN_LOSS_DROP:.0f}%), "
                f"SI-SDR {self.sisdr_before:.2f} -> {self.sisdr_after:.2f} dB "
                f"({self.sisdr_gain:+.2f}, need +{LEARNING_MIN_SISDR_GAIN_DB:.1f}); "
                f"{self.steps} steps on one fixed batch in {self.seconds:.1f} s")


def learning_batch(sample_rate: int = SAMPLE_RATE, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy (2, T), clean (2, T)): synthetic speech in white and pink noise at 0 dB, 1 s each."""
    # smoke.dataset is imported with this module, not here: imported during the checks, while
    # templates/compat are the notebook's package, it would keep that package's tables
    # (templates.datasets) after smoke.package gives the repo's modules back
    rng = np.random.default_rng(seed)
    n = int(LEARNING_SECONDS * sample_rate)
    noisy, clean = [], []
    for kind in ("white", "pink"):
        x, y = mix_at_snr(speech_like(rng, n, sample_rate), make_noise(kind, rng, n, sample_rate),
                          0.0)
        noisy.append(torch.from_numpy(x).float())
        clean.append(torch.from_numpy(y).float())
    return torch.stack(noisy), torch.stack(clean)


def learning_trial(model, loss_fn, si_sdr, batch, *, lr: float = LEARNING_LR,
                   steps: int = LEARNING_STEPS, seed: int = 0) -> LearningResult:
    """Overfit `model` on `batch` = (noisy (B, T), clean (B, T)) with Adam; measure before/after.

    Both measurements are in train mode (batch statistics, as during the steps) on the same batch;
    a non-finite loss stops the trial early and leaves NaN in the result.
    """
    torch.manual_seed(seed)
    noisy, clean = batch
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def _measure():
        with torch.no_grad():
            est = model(noisy)
            return float(loss_fn(est, clean)), float(si_sdr(est, clean).mean())

    start = time.perf_counter()
    loss_before, sisdr_before = _measure()
    done = 0
    for done in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(noisy), clean)
        if not torch.isfinite(loss):
            return LearningResult(loss_before, math.nan, sisdr_before, math.nan, done,
                                  time.perf_counter() - start)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    loss_after, sisdr_after = _measure()
    return LearningResult(loss_before, loss_after, sisdr_before, sisdr_after, done,
                          time.perf_counter() - start)


def check_learning(ctx: SmokeContext) -> str:
    ns = ctx.ns
    torch.manual_seed(0)  # the same initial weights every run: the figures are reproducible
    model = ns["build_model"](ctx.spec.name, **ctx.spec.smoke_model_kwargs)
    loss_fn = ns["build_loss"](ctx.cfg.loss)
    result = learning_trial(model, loss_fn, ns["si_sdr"], learning_batch(ctx.cfg.sample_rate))
    ctx.learning = result
    if not result.learned:
        raise SmokeCheckError(f"{ctx.spec.name} ({ctx.cfg.loss} loss) does not learn: "
                              f"{result.describe()}")
    return result.describe()


def check_lint(ctx: SmokeContext) -> str:
    raise_for_issues(lint_notebook(ctx.notebook), what=f"{ctx.spec.name} notebook")
    n = sum(1 for c in ctx.notebook.cells if c.cell_type == "code")
    return f"{n} code cells ({len(ctx.package) or 'all'} modules) clean"


def check_committed(ctx: SmokeContext) -> str:
    if ctx.committed is None:
        return "skipped: checking a given notebook"
    fresh = notebook_text(build_notebook(ctx.spec))
    if not ctx.committed.is_file():
        raise SmokeCheckError(f"{ctx.committed} is missing: run python -m builders {ctx.spec.name}")
    if ctx.committed.read_text(encoding="utf-8") != fresh:
        shown = ctx.committed.relative_to(REPO_ROOT) if ctx.committed.is_relative_to(REPO_ROOT) \
            else ctx.committed
        raise SmokeCheckError(f"{shown} is out of date with the "
                              f"modules: run python -m builders {ctx.spec.name} and commit it")
    return "matches a fresh render"


CHECKS: list[tuple[str, Callable[[SmokeContext], str]]] = [
    ("imports+config", check_imports_config),
    ("dataset", check_dataset),
    ("model", check_model),
    ("forward", check_forward),
    ("loss", check_loss),
    ("si_sdr", check_si_sdr),
    ("checkpoint", check_checkpoint),
    ("learning", check_learning),
    ("lint", check_lint),
    ("committed", check_committed),
]


def make_context(spec: ModelSpec, tmp: Path, notebook_path: Path | None = None) -> SmokeContext:
    """The notebook under test: the given file (a push folder's), else a fresh default render."""
    if notebook_path is not None:
        return SmokeContext(spec, read_notebook(notebook_path), None, tmp)
    committed = REPO_ROOT / "notebooks" / spec.name / spec.notebook_file
    return SmokeContext(spec, build_notebook(spec), committed, tmp)

