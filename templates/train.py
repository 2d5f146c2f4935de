"""The training loop: Adam, warmup, plateau scheduling, early stopping, AMP on CUDA, checkpoints.

One call trains one model and leaves in ``work_dir``: ``history.csv`` (rewritten every epoch),
``last.pth`` (every epoch: everything needed to resume), ``<model>_best.pth`` (on improvement)
and ``ckpt_ep{5,10,...}.pth``. When ``work_dir/last.pth`` exists the run resumes from it, so an
interrupted Kaggle session continues where it stopped; resuming reproduces the uninterrupted
run's weights exactly on CPU (RNG states, sampler seeds and the early-stopping counter are
restored). Every checkpoint holds the full training state, so ``ckpt_ep10.pth`` copied to
``last.pth`` resumes from epoch 10. A ``last.pth`` written with another architecture, loss, crop,
split, dataset or smoke flag (``RESUME_MUST_MATCH``) is refused before anything is loaded; one
from a finished run trains nothing and says so (raise ``epochs`` to continue it).

Warmup: ``cfg.warmup_epochs`` when it is > 0, otherwise the model's ``default_warmup_epochs``
(DPT: 3, CRN: 0). The learning rate rises linearly per optimiser step from ``lr/steps`` to
``cfg.lr`` over the warmup epochs; the plateau scheduler starts after warmup.

Time budget: with a ``TimeBudget`` (``cfg.time_budget_hours``; Kaggle ends a GPU session at
12 h), before each epoch the run checks that the longest epoch so far (this session's, else the
last one of the run it resumed) plus the reserve for evaluation and export (estimated from this
run's validation speed and a timed scoring of one test file) still fits before the deadline; if
not, it stops with ``stopped_by="time_budget"``, keeping ``last.pth`` for the next version. The
first epoch of a run that has none always trains (there would be nothing to evaluate).

Distributed: when ``torch.distributed`` is initialised (``templates.distributed``), the model is
wrapped in DDP, the train and validation losses are averaged over all ranks (validation per
item, on rank 0's weights and buffers, so the shards may be uneven), and only the main process
(``is_main``) writes files and prints.
"""

import csv
import io
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from compat.torch_compat import make_plateau_scheduler
from templates.checkpoint import (
    atomic_write,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    unwrap_model,
)
from templates.outputs import HISTORY_FILE, LAST_CHECKPOINT, best_checkpoint_name, checkpoint_name

HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "lr", "seconds", "saved")
# Config fields a resumed run must share with the run that wrote last.pth: they decide the
# architecture (model, model_kwargs), what the loss values mean (loss, crop_seconds,
# sample_rate) and which pairs are train vs validation (seed, val_fraction: another split would
# train on former validation files). epochs, patience, batch size, lr, ... may change.
RESUME_MUST_MATCH = ("model", "model_kwargs", "loss", "seed", "val_fraction", "crop_seconds",
                     "sample_rate", "smoke", "dataset")


class TrainingDivergedError(FloatingPointError):
    """The training or validation loss became NaN/inf."""


STOPPED_BY = ("epochs", "early_stop", "time_budget")
# ONNX export, INT8 quantisation and the CPU latency table after evaluation: about a minute on a
# 2-core CPU for these models; five minutes of headroom (they cannot be timed before they run).
EXPORT_RESERVE_SECONDS = 300.0
# Evaluation estimate = this many times the timed per-file cost: the timings are from a few
# items, and running past Kaggle's 12 h loses the evaluation, the export and the summary.
EVAL_RESERVE_FACTOR = 1.5


@dataclass
class TimeBudget:
    """The wall-clock deadline of a whole notebook run and what must still fit after training.

    ``deadline``: ``time.time()`` by which everything must be written. ``eval_items``: test files
    evaluated after training; ``eval_length_ratio``: their length over the training crop's (an
    item costs that many validation items); ``score_seconds_per_item``: PESQ+STOI time of one
    test file, timed by the pipeline; ``export_seconds``: the reserve for the export section.
    """

    deadline: float
    hours: float = 0.0
    eval_items: int = 0
    eval_length_ratio: float = 1.0
    score_seconds_per_item: float = 0.0
    export_seconds: float = EXPORT_RESERVE_SECONDS

    @classmethod
    def from_hours(cls, hours: float, started_at: float, **kw) -> "TimeBudget":
        return cls(deadline=started_at + hours * 3600.0, hours=hours, **kw)

    def reserve_seconds(self, val_seconds_per_item: float) -> float:
        """Seconds that evaluation and export need after the last epoch."""
        per_item = val_seconds_per_item * self.eval_length_ratio + self.score_seconds_per_item
        return EVAL_RESERVE_FACTOR * self.eval_items * per_item + self.export_seconds

    def remaining(self, now: float | None = None) -> float:
        return self.deadline - (time.time() if now is None else now)


@dataclass
class TrainResult:
    """What a training run produced. ``history``: one dict per epoch (``HISTORY_FIELDS``)."""

    history: list = field(default_factory=list)
    best_epoch: int = 0
    best_val: float = math.inf
    epochs_run: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False
    best_path: str | None = None  # <model>_best.pth, None when no epoch improved
    stopped_by: str = "epochs"  # one of STOPPED_BY
    epochs_this_session: int = 0  # epochs trained by this call (history counts every version)
    resumed_from_epoch: int = 0  # epoch of the last.pth this run continued (0: a fresh run)


def resolve_warmup_epochs(cfg, model: nn.Module) -> int:
    """``cfg.warmup_epochs`` if set (> 0), else the model's ``default_warmup_epochs`` (or 0)."""
    if cfg.warmup_epochs > 0:
        return int(cfg.warmup_epochs)
    return int(getattr(unwrap_model(model), "default_warmup_epochs", 0) or 0)


def _distributed_world() -> tuple[bool, int]:
    """(is distributed, world size)."""
    if dist.is_available() and dist.is_initialized():
        return True, dist.get_world_size()
    return False, 1


def _mean_over_ranks(total: float, count: int, device: torch.device) -> float:
    """``sum(total) / sum(count)`` over every rank (count: batches for train, items for val)."""
    is_dist, world = _distributed_world()
    if not is_dist or world == 1:
        return total / max(count, 1)
    # gloo reduces CPU tensors, nccl CUDA ones: put the pair on the model's device.
    pair = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(pair, op=dist.ReduceOp.SUM)
    return float(pair[0] / pair[1].clamp_min(1.0))


def _sync_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers to every rank (no-op outside multi-process runs)."""
    is_dist, world = _distributed_world()
    if is_dist and world > 1:
        for buf in module.buffers():
            dist.broadcast(buf.data, src=0)


def _rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):
            pass  # a different GPU count than the saved run: CUDA streams start fresh


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _start_epoch_data(loader, epoch: int, seed: int) -> None:
    """Make epoch ``epoch``'s shuffle and crops a function of (seed, epoch) alone.

    A DataLoader's generator advances with every epoch it shuffles; reseeding it per epoch
    means a resumed run (fresh loader) draws the same order as the uninterrupted run.
    """
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)  # DistributedSampler
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    epoch_seed = (seed * 1_000_003 + epoch) % (2**63)
    for gen in (getattr(loader, "generator", None), getattr(sampler, "generator", None)):
        if isinstance(gen, torch.Generator):
            gen.manual_seed(epoch_seed)


def _write_history(path: Path, history: list) -> None:
    """Rewrite ``history.csv`` atomically (a reader never sees half a file)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in HISTORY_FIELDS})
    atomic_write(path, lambda fh: fh.write(buf.getvalue()), binary=False)


def format_epoch_line(row: dict, warmup: bool = False, lr_dropped: bool = False) -> str:
    """``Ep04 tr=0.0564 va=0.0549 lr=1.0e-03 41s SAVED`` (losses, learning rate, seconds; SAVED on improvement)."""
    notes = []
    if row["saved"]:
        notes.append("SAVED")
    if warmup:
        notes.append("(warmup)")
    if lr_dropped:
        notes.append(f"lr->{row['lr']:.1e}")
    return (
        f"Ep{row['epoch']:02d} tr={row['train_loss']:.4f} va={row['val_loss']:.4f} "
        f"lr={row['lr']:.1e} {row['seconds']:.0f}s" + ("  " + " ".join(notes) if notes else "")
    )


def _config_dict(cfg) -> dict:
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))


def check_resumable(path: Path, ckpt: dict, config: dict) -> None:
    """Refuse a ``last.pth`` that cannot continue this run, naming the file and the reason."""
    if "epoch" not in ckpt or ckpt.get("optimizer") is None:
        raise ValueError(
            f"{path}: holds model weights only (no epoch/optimizer state), so it cannot resume "
            f"a run; delete it or use another work_dir"
        )
    saved = ckpt.get("config") or {}
    saved_model = saved.get("model")
    if saved_model not in (None, config.get("model")):
        raise ValueError(
            f"{path}: is from a '{saved_model}' run, this run trains '{config.get('model')}'; "
            f"delete it or use another work_dir"
        )
    diffs = [
        f"{key}={saved[key]!r} there, {config[key]!r} here"
        for key in RESUME_MUST_MATCH
        if key in saved and key in config and saved[key] != config[key]
    ]
    if diffs:
        raise ValueError(
            f"{path}: was written by a run with another configuration ({'; '.join(diffs)}); "
            f"resuming would mix the two. Delete it or use another work_dir"
        )


def _agree_on_any(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is True on any (a stop decision all ranks must share)."""
    is_dist, world = _distributed_world()
    if not is_dist or world == 1:
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def _budget_stop(budget, history, session_seconds, val_per_item, epoch, device, is_main):
    """Whether epoch ``epoch`` would end too late for evaluation and export; prints why."""
    if budget is None or not history:
        return False  # no epoch yet anywhere: train one, there is nothing to evaluate otherwise
    epoch_seconds = max(session_seconds) if session_seconds else float(history[-1]["seconds"])
    if val_per_item is None:
        val_per_item = float(history[-1].get("val_seconds_per_item") or 0.0)
    reserve = budget.reserve_seconds(val_per_item)
    remaining = budget.remaining()
    stop = _agree_on_any(epoch_seconds + reserve > remaining, device)
    if stop and is_main:
        print(f"time budget: stopping before Ep{epoch:02d}: it would take about "
              f"{epoch_seconds / 60:.1f} min and evaluation + export about {reserve / 60:.1f} min, "
              f"but {max(remaining, 0) / 60:.1f} min of the {budget.hours:g} h budget are left; "
              f"last.pth is kept (continue it with --resume-from)", flush=True)
    return stop


def _steps_per_epoch(loader, max_steps) -> int:
    try:
        n = len(loader)
    except TypeError:
        n = max_steps or 0
    return min(n, max_steps) if max_steps else n


@dataclass
class _Optimisation:
    """The model as trained (``net``: DDP-wrapped on several ranks; ``bare``: the module whose
    weights are saved) and what steps it."""

    net: nn.Module
    bare: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    use_amp: bool
    warmup_epochs: int
    steps_per_epoch: int

    @property
    def warmup_steps(self) -> int:
        return self.warmup_epochs * self.steps_per_epoch


@dataclass
class _Progress:
    """Where the run stands; restored from ``last.pth`` when resuming, saved in each checkpoint."""

    history: list = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    train_seconds: float = 0.0
    start_epoch: int = 1
    resumed_from_epoch: int = 0  # 0: a fresh run

    def record(self, epoch: int, train_loss: float, val_loss: float, lr: float, seconds: float,
               val_per_item: float) -> dict:
        """Append epoch ``epoch``'s history row (returned; ``saved``: it improved) and update
        the best epoch, the early-stopping counter and the training time."""
        improved = val_loss < self.best_val
        if improved:
            self.best_val, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
        else:
            self.bad_epochs += 1
        self.train_seconds += seconds
        row = {
            "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr,
            "seconds": round(seconds, 3), "saved": bool(improved),
            "val_seconds_per_item": val_per_item,  # checkpoint only (the time budget's estimate)
        }
        self.history.append(row)
        return row


def _set_up(model: nn.Module, train_loader, cfg, device: torch.device) -> _Optimisation:
    """Seed, move ``model`` to ``device`` (wrapped in DDP on several ranks) and build Adam, the
    plateau scheduler, the AMP scaler (CUDA only) and the warmup length."""
    seed_everything(cfg.seed)
    bare = unwrap_model(model).to(device)
    net = bare
    is_dist, world = _distributed_world()
    if is_dist and world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            bare, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = torch.optim.Adam(bare.parameters(), lr=cfg.lr)
    scheduler = make_plateau_scheduler(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    use_amp = device.type == "cuda"
    return _Optimisation(
        net=net, bare=bare, optimizer=optimizer, scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda", enabled=use_amp), use_amp=use_amp,
        warmup_epochs=resolve_warmup_epochs(cfg, bare),
        steps_per_epoch=_steps_per_epoch(train_loader, cfg.max_steps),
    )


def _resume(last_path: Path, opt: _Optimisation, config: dict, cfg, device, is_main: bool) -> _Progress:
    """The progress saved in ``last_path`` (weights, optimiser, scheduler, scaler and RNG states
    loaded into ``opt``), or a fresh run's when there is none."""
    if not last_path.exists():
        return _Progress()
    # Check before loading anything: a mismatched file must not touch the caller's model.
    check_resumable(last_path, read_checkpoint(last_path), config)
    ckpt = load_checkpoint(
        last_path, opt.bare, opt.optimizer, opt.scheduler, opt.scaler, map_location=device
    )
    progress = _Progress(
        history=list(ckpt.get("history", [])),
        best_val=float(ckpt.get("best_val", math.inf)),
        best_epoch=int(ckpt.get("best_epoch", 0)),
        bad_epochs=int(ckpt.get("bad_epochs", 0)),
        train_seconds=float(ckpt.get("train_seconds", 0.0)),
        start_epoch=int(ckpt["epoch"]) + 1,
        resumed_from_epoch=int(ckpt["epoch"]),
    )
    if "rng" in ckpt:
        _set_rng_state(ckpt["rng"])
    if is_main:
        print(f"resuming from {last_path} after epoch {ckpt['epoch']} (best va={progress.best_val:.4f})")
        if progress.start_epoch > cfg.epochs:
            print(f"{last_path.name}: the run already reached epoch {ckpt['epoch']} of "
                  f"{cfg.epochs}; nothing to train (raise epochs to continue it)")
    return progress


def _run_epoch(opt: _Optimisation, loader, loss_fn, cfg, device, epoch: int,
                     is_main: bool) -> float:
    """One pass over ``loader`` (at most ``cfg.max_steps`` batches), with the warmup's learning
    rate per step; returns the mean batch loss over all ranks."""
    _start_epoch_data(loader, epoch, cfg.seed)
    opt.net.train()
    total, count = 0.0, 0
    bar = tqdm(
        total=opt.steps_per_epoch, desc=f"Ep{epoch:02d}", disable=not is_main,
        leave=False, mininterval=5.0, dynamic_ncols=True,
    )
    for step, (noisy, clean) in enumerate(loader):
        if cfg.max_steps and step >= cfg.max_steps:
            break
        global_step = (epoch - 1) * opt.steps_per_epoch + step
        if global_step < opt.warmup_steps:
            for group in opt.optimizer.param_groups:
                group["lr"] = cfg.lr * (global_step + 1) / opt.warmup_steps
        elif opt.warmup_steps and global_step == opt.warmup_steps:
            for group in opt.optimizer.param_groups:
                group["lr"] = cfg.lr
        noisy = noisy.to(device, non_blocking=True)
        clean = clean.to(device, non_blocking=True)
        opt.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=opt.use_amp):
            est = opt.net(noisy)  # (B, T)
        loss = loss_fn(est.float(), clean.float())  # loss in fp32 even under AMP
        opt.scaler.scale(loss).backward()
        opt.scaler.unscale_(opt.optimizer)
        nn.utils.clip_grad_norm_(opt.bare.parameters(), cfg.grad_clip)
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        total += float(loss.detach())
        count += 1
        bar.update(1)
        if is_main and count % 50 == 0:
            bar.set_postfix(loss=f"{total / count:.4f}")
    bar.close()
    return _mean_over_ranks(total, count, device)


def _validate(bare: nn.Module, loader, loss_fn, device, max_steps) -> tuple[float, float]:
    """(validation loss per item over all ranks, seconds per item on this rank).

    Validates the bare model, after giving every rank rank 0's buffers (BatchNorm statistics:
    the model that is saved). Through the DDP wrapper each forward would broadcast buffers, a
    collective that hangs when the shards have unequal batch counts; this way validation shards
    may be uneven (every item once, none repeated).
    """
    _sync_buffers(bare)
    t_val = time.perf_counter()
    val_loss = evaluate_loss(bare, loader, loss_fn, device, max_steps=max_steps)
    items = _loader_items(loader, max_steps)
    return val_loss, (time.perf_counter() - t_val) / max(items, 1)


def _save_epoch(work: Path, best_path: Path, opt: _Optimisation, progress: _Progress, cfg,
                config: dict, epoch: int, val_loss: float, improved: bool) -> None:
    """Write this epoch's checkpoints (best, every ``checkpoint_every``, last) and history.csv.

    Every checkpoint holds the full training state (model, optimizer, scheduler, scaler, epoch,
    best_val, config, history, RNG): any of them can resume a run.
    """
    state = dict(
        model=opt.bare, optimizer=opt.optimizer, scheduler=opt.scheduler, scaler=opt.scaler,
        epoch=epoch, val_loss=val_loss, best_val=progress.best_val, best_epoch=progress.best_epoch,
        config=config, history=progress.history, bad_epochs=progress.bad_epochs,
        train_seconds=progress.train_seconds, rng=_rng_state(),
        # the architecture as built (mask type included): loaders rebuild from it
        model_config=opt.bare.get_config() if hasattr(opt.bare, "get_config") else None,
    )
    if improved:
        save_checkpoint(best_path, **state)
    if epoch % cfg.checkpoint_every == 0:
        save_checkpoint(work / checkpoint_name(epoch), **state)
    save_checkpoint(work / LAST_CHECKPOINT, **state)
    _write_history(work / HISTORY_FILE, progress.history)


def train_model(
    model: nn.Module,
    train_loader,
    val_loader,
    loss_fn,
    cfg,
    device: torch.device,
    *,
    work_dir=None,
    is_main: bool = True,
    budget: TimeBudget | None = None,
) -> TrainResult:
    """Train ``model`` on batches ``(noisy (B,T), clean (B,T))``; return a ``TrainResult``.

    ``loss_fn(est (B,T), clean (B,T)) -> scalar``. ``work_dir`` defaults to ``cfg.work_dir``;
    files are written only when ``is_main``. ``model`` is moved to ``device`` (and wrapped in DDP
    when torch.distributed is initialised); the caller's object holds the final weights.
    ``budget``: stop before an epoch that would leave no time for evaluation and export.
    """
    device = torch.device(device)
    work = Path(work_dir if work_dir is not None else cfg.work_dir)
    if is_main:
        work.mkdir(parents=True, exist_ok=True)
    opt = _set_up(model, train_loader, cfg, device)
    best_path = work / best_checkpoint_name(cfg.model)
    config = _config_dict(cfg)
    progress = _resume(work / LAST_CHECKPOINT, opt, config, cfg, device, is_main)

    stopped_early = progress.bad_epochs >= cfg.patience and progress.start_epoch > 1
    stopped_by = "early_stop" if stopped_early else "epochs"
    session_seconds: list = []  # epoch durations of this call
    val_per_item = None  # validation seconds per item, this call
    for epoch in range(progress.start_epoch, cfg.epochs + 1):
        if stopped_early:
            break
        if _budget_stop(budget, progress.history, session_seconds, val_per_item, epoch, device,
                        is_main):
            stopped_by = "time_budget"
            break
        t0 = time.perf_counter()
        lr_before = opt.optimizer.param_groups[0]["lr"]
        train_loss = _run_epoch(opt, train_loader, loss_fn, cfg, device, epoch, is_main)
        val_loss, val_per_item = _validate(opt.bare, val_loader, loss_fn, device, cfg.max_steps)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrainingDivergedError(
                f"epoch {epoch}: loss is not finite (train {train_loss}, val {val_loss}); "
                f"lower lr (now {cfg.lr}) or grad_clip (now {cfg.grad_clip})"
            )
        in_warmup = epoch <= opt.warmup_epochs
        if not in_warmup:
            opt.scheduler.step(val_loss)
        lr_now = opt.optimizer.param_groups[0]["lr"]
        seconds = time.perf_counter() - t0
        session_seconds.append(seconds)
        row = progress.record(epoch, train_loss, val_loss, lr_now, seconds, val_per_item)
        if is_main:
            _save_epoch(work, best_path, opt, progress, cfg, config, epoch, val_loss, row["saved"])
            print(format_epoch_line(row, warmup=in_warmup, lr_dropped=lr_now < lr_before and not in_warmup), flush=True)
        if progress.bad_epochs >= cfg.patience:
            stopped_early = True
            stopped_by = "early_stop"
            if is_main:
                print(f"early stop: no improvement in {cfg.patience} epochs (best Ep{progress.best_epoch:02d})")
            break
    is_dist, world = _distributed_world()
    if is_dist and world > 1:
        dist.barrier()  # rank 0's files are complete before any rank returns
    return TrainResult(
        history=progress.history, best_epoch=progress.best_epoch, best_val=progress.best_val,
        epochs_run=len(progress.history), train_seconds=progress.train_seconds,
        stopped_early=stopped_early,
        best_path=str(best_path) if progress.best_epoch else None, stopped_by=stopped_by,
        epochs_this_session=len(session_seconds), resumed_from_epoch=progress.resumed_from_epoch,
    )


def _loader_items(loader, max_steps=None) -> int:
    """Items one pass over ``loader`` yields (at most ``max_steps`` batches); 0 when unknown."""
    try:
        n_batches = len(loader)
        n_items = len(loader.dataset)
    except (TypeError, AttributeError):
        return 0
    batch = getattr(loader, "batch_size", None) or 1
    if max_steps:
        return min(n_items, max_steps * batch)
    return n_items if n_batches else 0


@torch.no_grad()
def evaluate_loss(net: nn.Module, loader, loss_fn, device, max_steps=None) -> float:
    """Mean ``loss_fn`` per item over ``loader`` (at most ``max_steps`` batches) and all ranks.

    Each batch's (mean-reduced) loss counts with its number of items, so the value does not
    depend on the batch size, the size of the last batch or how the items are sharded over
    ranks: runs with different batch sizes or GPU counts report comparable validation losses.
    """
    net.eval()
    use_amp = torch.device(device).type == "cuda"
    total, count = 0.0, 0
    for step, (noisy, clean) in enumerate(loader):
        if max_steps and step >= max_steps:
            break
        noisy, clean = noisy.to(device), clean.to(device)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.float16, enabled=use_amp):
            est = net(noisy)
        items = int(noisy.shape[0])
        total += float(loss_fn(est.float(), clean.float())) * items
        count += items
    return float(_mean_over_ranks(total, count, torch.device(device)))
