"""The notebook's stages; each glue cell is one line: data, training, evaluation, outputs.

    data = prepare_data(cfg)
    model, train_result = run_training(cfg, data)
    eval_result = run_evaluation(cfg, model, data)
    summary = write_outputs(cfg, model, train_result, eval_result)

Everything lands in ``cfg.work_dir``: ``<model>_best.pth``, ``ckpt_ep{5,10,...}.pth``,
``last.pth``, ``history.csv``, ``eval_per_file.csv``, ``training_curves.png``,
``spectrogram_comparison.png`` and ``<model>_summary.json``.
"""

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Subset
from torch.utils.data.distributed import DistributedSampler

from compat.audio import load_audio
from templates.checkpoint import atomic_write, load_checkpoint, read_checkpoint
from templates.data import (
    AlignedCropDataset,
    DatasetNotFoundError,
    find_dataset,
    make_loader,
    pair_files,
    split_pairs,
)
from templates.datacheck import check_pairs
from templates.datasets import (
    dataset_source,
    format_published_comparison,
    published_comparison,
)
from templates.distributed import launch_training, rank_device, visible_gpu_count
from templates.evaluate import FIRST3_SECONDS, evaluate_model
from templates.losses import build_loss
from templates.metrics import _score_perceptual
from templates.models.registry import build_model, count_parameters
from templates.outputs import (
    CURVES_FILE,
    LAST_CHECKPOINT,
    PER_FILE_SCORES,
    SPECTROGRAMS_FILE,
    best_checkpoint_name,
    summary_name,
)
from templates.plots import plot_spectrograms, plot_training_curves
from templates.setup import NOTEBOOK_STARTED_AT
from templates.summary import build_summary, write_summary
from templates.train import (
    TimeBudget,
    check_resumable,
    seed_everything,
    train_model,
)


@dataclass
class DataBundle:
    """What ``prepare_data`` found and built; the datasets serve every rank."""

    layout: object
    report: object
    test_report: object
    train_pairs: list
    val_pairs: list
    test_pairs: list
    train_set: object
    val_set: object
    num_workers: int


def _download_dataset(cfg, not_found: DatasetNotFoundError) -> Path:
    """``kagglehub.dataset_download`` of ``cfg.dataset``'s Kaggle slug into the scratch folder;
    its folder.

    Without kagglehub or without internet: one ``DatasetNotFoundError`` naming the dataset and
    how to attach it.
    """
    slug = dataset_source(cfg.dataset).slug
    how = (f"attach it: Add Input > Datasets > {slug} in the notebook editor, or "
           f"dataset_sources [\"{slug}\"] in kernel-metadata.json (the toolkit's push "
           f"writes it)")
    try:
        import kagglehub
    except ImportError:
        raise DatasetNotFoundError(
            f"{not_found}. kagglehub is not installed, so {slug} cannot be downloaded: "
            f"{how}") from not_found
    cache = cfg.extract_dir / "kagglehub"
    cache.mkdir(parents=True, exist_ok=True)
    # kagglehub's cache goes to the scratch folder, never into WORK_DIR (the saved output).
    os.environ["KAGGLEHUB_CACHE"] = str(cache)
    print(f"dataset not mounted under {cfg.data_dir}; downloading {slug} with kagglehub "
          f"into {cache}", flush=True)
    try:
        path = kagglehub.dataset_download(slug)
    except Exception as exc:  # no internet, DNS, HTTP errors: many types, one message
        raise DatasetNotFoundError(
            f"dataset {slug} is not mounted under {cfg.data_dir} and could not be "
            f"downloaded ({type(exc).__name__}: {exc}); is internet on in the notebook settings? "
            f"Otherwise {how}") from exc
    print(f"downloaded {slug} to {path}")
    return Path(path)


def prepare_data(cfg) -> DataBundle:
    """Find, pair, check (printing the report; refusing bad data), split, build the datasets.

    When nothing usable is under ``cfg.data_dir`` (the dataset failed to mount), the dataset
    ``cfg.dataset`` is downloaded with kagglehub into the scratch folder first.
    """
    try:
        layout = find_dataset(cfg.data_dir, cfg.extract_dir, cfg.dataset)
    except DatasetNotFoundError as exc:
        print(f"{exc}")
        layout = find_dataset(_download_dataset(cfg, exc), cfg.extract_dir, cfg.dataset)
    train_pairing = pair_files(layout.train_noisy, layout.train_clean)
    report = check_pairs(train_pairing, sample_rate=cfg.sample_rate,
                         crop_seconds=cfg.crop_seconds, seed=cfg.seed, label="train")
    print(report.format())
    report.raise_if_refused()
    test_pairing = pair_files(layout.test_noisy, layout.test_clean)
    test_report = check_pairs(test_pairing, sample_rate=cfg.sample_rate,
                              crop_seconds=cfg.crop_seconds, seed=cfg.seed, label="test")
    print(test_report.format())
    test_report.raise_if_refused()
    train_pairs, val_pairs = split_pairs(report.usable_pairs, cfg.val_fraction, cfg.seed)
    if not train_pairs or not val_pairs:
        raise ValueError(
            f"{len(report.usable_pairs)} usable training pairs cannot be split into train and "
            f"validation with val_fraction={cfg.val_fraction}"
        )
    train_set = AlignedCropDataset(train_pairs, cfg.crop_samples, train=True,
                                   sample_rate=cfg.sample_rate, seed=cfg.seed)
    val_set = AlignedCropDataset(val_pairs, cfg.crop_samples, train=False,
                                 sample_rate=cfg.sample_rate, seed=cfg.seed)
    # Smoke runs: no worker processes (start-up costs more than they save on a few batches).
    num_workers = 0 if cfg.smoke else cfg.num_workers
    print(f"pairs: train {len(train_pairs)}, val {len(val_pairs)}, "
          f"test {len(test_report.usable_pairs)}; loader workers {num_workers}")
    return DataBundle(layout=layout, report=report, test_report=test_report,
                      train_pairs=train_pairs, val_pairs=val_pairs,
                      test_pairs=list(test_report.usable_pairs), train_set=train_set,
                      val_set=val_set, num_workers=num_workers)


def _rank_loaders(cfg, data: DataBundle, rank: int, world_size: int):
    """Train/val loaders of one rank: each rank gets 1/world of the data and of the batch."""
    per_rank_batch = max(1, cfg.batch_size // world_size)  # global batch stays cfg.batch_size
    train_sampler, val_set = None, data.val_set
    if world_size > 1:
        train_sampler = DistributedSampler(data.train_set, world_size, rank, shuffle=True,
                                           seed=cfg.seed)
        # Every validation item exactly once over all ranks (a DistributedSampler would pad the
        # shards to equal length with repeated items); train_model validates the bare model
        # and averages per item over ranks, so uneven shards are fine.
        val_set = Subset(data.val_set, range(rank, len(data.val_set), world_size))
    train = make_loader(data.train_set, per_rank_batch, shuffle=True,
                        num_workers=data.num_workers, seed=cfg.seed, drop_last=False,
                        sampler=train_sampler)
    val = make_loader(val_set, per_rank_batch, shuffle=False,
                      num_workers=data.num_workers, seed=cfg.seed)
    return train, val


def _train_rank(rank: int, world_size: int, cfg, data: DataBundle, model, budget=None):
    """One rank's training (forked DDP worker, or the notebook process itself)."""
    device = rank_device(rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    train_loader, val_loader = _rank_loaders(cfg, data, rank, world_size)
    return train_model(model, train_loader, val_loader, build_loss(cfg.loss), cfg, device,
                       work_dir=cfg.work_dir, is_main=rank == 0, budget=budget)


def find_resume_checkpoint(cfg) -> Path | None:
    """The ``last.pth`` of an earlier version mounted under ``cfg.data_dir``, if any.

    ``--resume-from N`` attaches version N's output as an input (``kernel_sources``); it is
    found by walking the input folder (mount paths change). Several are refused by name.
    """
    root = Path(cfg.data_dir)
    if not root.is_dir():
        return None
    skip = os.path.realpath(cfg.extract_dir)
    found = []
    for cur, dirs, files in os.walk(root, followlinks=True):
        if os.path.realpath(cur).startswith(skip):
            dirs[:] = []
            continue
        dirs.sort()
        if LAST_CHECKPOINT in files:
            found.append(Path(cur) / LAST_CHECKPOINT)
    if len(found) > 1:
        raise ValueError(
            f"{len(found)} {LAST_CHECKPOINT} files under {root}: {', '.join(map(str, found))}; attach "
            f"the output of one version only (--resume-from N)")
    return found[0] if found else None


def _copy(src: Path, dest: Path) -> None:
    with open(src, "rb") as fh:
        atomic_write(dest, lambda out: shutil.copyfileobj(fh, out))


def resume_from_input(cfg) -> Path | None:
    """Copy an earlier version's ``last.pth`` (and best checkpoint) from the input into WORK_DIR.

    Nothing happens when WORK_DIR already has a ``last.pth`` (a re-run of this session) or the
    input holds none (``FileNotFoundError`` when ``cfg.resume_from`` says it must). A checkpoint of another model, loss, split, crop or smoke flag is refused
    (``ValueError`` naming the file) before anything is copied or loaded. Returns the source.
    """
    work = Path(cfg.work_dir)
    if (work / LAST_CHECKPOINT).exists():
        return None
    src = find_resume_checkpoint(cfg)
    if src is None:
        if cfg.resume_from:
            # Pushed to continue a run: training from scratch would spend the session on a
            # run nobody asked for.
            raise FileNotFoundError(
                f"RESUME_FROM = {cfg.resume_from!r} but no {LAST_CHECKPOINT} under {cfg.data_dir}: "
                f"that version's output is not mounted (did the push warn that Kaggle did not "
                f"attach the kernel source? did that version write last.pth?). Attach it "
                f"(Add Input > Your Work), or push without --resume-from to start afresh")
        return None
    ckpt = read_checkpoint(src)
    try:
        check_resumable(src, ckpt, cfg.to_dict())
    except ValueError as exc:
        raise ValueError(
            f"{exc}. It is an earlier version's output attached as an input: push without "
            f"--resume-from, or resume a version trained with this configuration") from exc
    work.mkdir(parents=True, exist_ok=True)
    best = src.parent / best_checkpoint_name(cfg.model)
    if best.is_file():
        _copy(best, work / best.name)
    _copy(src, work / LAST_CHECKPOINT)  # last: a half-done copy leaves no last.pth
    print(f"resuming across versions: {src} (after epoch {ckpt['epoch']} of a "
          f"'{ckpt.get('config', {}).get('model', cfg.model)}' run) copied into {work}"
          + (f" with {best.name}" if best.is_file() else ""))
    return src


def _score_seconds(cfg, data: DataBundle) -> float:
    """Seconds PESQ+STOI take for one test file (noisy scored twice, as evaluation does)."""
    if not data.test_pairs:
        return 0.0
    noisy_path, clean_path = data.test_pairs[0]
    frames = int(round(FIRST3_SECONDS * cfg.sample_rate)) if cfg.eval_mode == "first3" else None
    t0 = time.perf_counter()
    try:
        noisy = load_audio(noisy_path, cfg.sample_rate, frames=frames).numpy()
        clean = load_audio(clean_path, cfg.sample_rate, frames=frames).numpy()
        n = min(len(noisy), len(clean))
        _score_perceptual(("timing", clean[:n], noisy[:n], noisy[:n]), cfg.sample_rate)
    except Exception:  # a timing, not a check: evaluation reports an unreadable file itself
        pass
    return time.perf_counter() - t0


def make_time_budget(cfg, data: DataBundle, started_at: float | None = None):
    """The run's ``TimeBudget`` from ``cfg.time_budget_hours`` (None: no budget)."""
    if cfg.time_budget_hours is None:
        return None
    started_at = NOTEBOOK_STARTED_AT if started_at is None else started_at
    n_test = len(data.test_pairs)
    if cfg.max_test_files:
        n_test = min(n_test, cfg.max_test_files)
    durations = getattr(data.test_report, "durations", None) or {}
    seconds = FIRST3_SECONDS if cfg.eval_mode == "first3" else durations.get("mean", cfg.crop_seconds)
    budget = TimeBudget.from_hours(
        cfg.time_budget_hours, started_at, eval_items=n_test,
        eval_length_ratio=max(1.0, seconds / cfg.crop_seconds),
        score_seconds_per_item=_score_seconds(cfg, data))
    print(f"time budget: {cfg.time_budget_hours:g} h from the first cell, "
          f"{budget.remaining() / 3600:.2f} h left; scoring one test file took "
          f"{budget.score_seconds_per_item:.1f} s")
    return budget


def _processes(cfg, n_gpu: int):
    """Training processes: ``cfg.gpus`` capped at the visible GPUs; None: one per GPU."""
    if cfg.gpus is None or n_gpu == 0:
        return None
    if cfg.gpus > n_gpu:
        print(f"GPUS = {cfg.gpus} but {n_gpu} GPU(s) visible: training on {n_gpu}")
    return min(cfg.gpus, n_gpu)


def run_training(cfg, data: DataBundle, started_at: float | None = None):
    """Build ``cfg.model``, train it on every visible GPU, load the best weights back.

    An earlier version's ``last.pth`` under the input folder is continued (`resume_from_input`);
    training stops early when the time budget would not leave room for evaluation and export.
    Returns ``(model, TrainResult)``; ``model`` holds the best epoch's weights, on the first
    GPU (or the CPU).
    """
    # The initial weights are a function of SEED: torch seeds each new process at random, so
    # without this two runs of one notebook (or a resumed run's reference) start apart.
    seed_everything(cfg.seed)
    model = build_model(cfg.model, **cfg.model_kwargs)
    n_gpu = visible_gpu_count()
    processes = _processes(cfg, n_gpu)
    print(f"{cfg.model}: {count_parameters(model):,} parameters; "
          f"{n_gpu or 'no'} GPU(s), {processes or max(n_gpu, 1)} training process(es), "
          f"batch {cfg.batch_size} in total per step")
    resume_from_input(cfg)
    budget = make_time_budget(cfg, data, started_at)
    result = launch_training(_train_rank, cfg, num_processes=processes,
                             args=(cfg, data, model, budget))
    best = Path(cfg.work_dir) / best_checkpoint_name(cfg.model)
    # Forked workers trained copies: this process's model gets the weights from disk.
    load_checkpoint(best, model)
    device = rank_device(0)
    print(f"best epoch {result.best_epoch} (val {result.best_val:.4f}) loaded from {best.name}")
    return model.to(device), result


def run_evaluation(cfg, model, data: DataBundle):
    """Score the test pairs (``cfg.eval_mode``) with the trained model; print the means."""
    result = evaluate_model(model, data.test_pairs, cfg, next(model.parameters()).device)
    means = result.table.means()
    for part in ("noisy", "enhanced", "delta"):
        m = means[part]
        print(f"{part:9s} PESQ {m['pesq']:.3f}  STOI {m['stoi']:.3f}  SI-SDR {m['si_sdr']:.2f} dB")
    if result.table.skipped:
        print(f"{len(result.table.skipped)} file(s) skipped a metric: see eval_per_file.csv")
    print(format_published_comparison(
        published_comparison(cfg.dataset, means, len(result.table.rows), result.mode)))
    return result


def write_outputs(cfg, model, train_result, eval_result) -> dict:
    """Figures, per-file CSV and ``<model>_summary.json`` in ``cfg.work_dir``; the summary."""
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    plot_training_curves(train_result.history, work / CURVES_FILE)
    plot_spectrograms(eval_result.examples, work / SPECTROGRAMS_FILE,
                      sample_rate=cfg.sample_rate)
    eval_result.table.to_csv(work / PER_FILE_SCORES)
    summary = build_summary(cfg=cfg, model=model, train_result=train_result,
                            eval_result=eval_result,
                            extra={"minutes_used": minutes_used()})
    path = write_summary(summary, work / summary_name(cfg.model))
    print(f"wrote {', '.join(sorted(p.name for p in work.iterdir() if p.is_file()))}")
    print(f"summary: {path}")
    return summary


def minutes_used(started_at: float | None = None) -> float:
    """Minutes since the notebook's first cell (``NOTEBOOK_STARTED_AT``), one decimal."""
    started_at = NOTEBOOK_STARTED_AT if started_at is None else started_at
    return round((time.time() - started_at) / 60.0, 1)


def finish_summary(cfg, summary: dict, export: dict) -> dict:
    """Add the export's results and the final ``minutes_used``; rewrite the summary file."""
    summary["export"] = export
    summary["minutes_used"] = minutes_used()
    write_summary(summary, Path(cfg.work_dir) / summary_name(cfg.model))
    print(f"{summary.get('stopped_by', 'epochs')}: {summary.get('epochs_run')} epoch(s) over all "
          f"versions, {summary.get('epochs_this_session')} in this one; "
          f"{summary['minutes_used']} min used")
    return summary
