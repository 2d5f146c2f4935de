"""The notebook's stages; each glue cell is one line: data, training, evaluation, outputs.

    data = prepare_data(cfg)
    model, train_result = run_training(cfg, data)
    eval_result = run_evaluation(cfg, model, data)
    summary = write_outputs(cfg, model, train_result, eval_result)

Everything lands in ``cfg.work_dir``: ``<model>_best.pth``, ``ckpt_ep{5,10,...}.pth``,
``last.pth``, ``history.csv``, ``eval_per_file.csv``, ``training_curves.png``,
``spectrogram_comparison.png`` and ``<model>_summary.json``.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Subset
from torch.utils.data.distributed import DistributedSampler

from templates.checkpoint import load_checkpoint
from templates.data import (
    AlignedCropDataset,
    find_dataset,
    make_loader,
    pair_files,
    split_pairs,
)
from templates.datacheck import check_pairs
from templates.datasets import format_published_comparison, published_comparison
from templates.distributed import launch_training, rank_device, visible_gpu_count
from templates.evaluate import evaluate_model
from templates.losses import build_loss
from templates.models.registry import build_model, count_parameters
from templates.plots import plot_spectrograms, plot_training_curves
from templates.summary import build_summary, write_summary
from templates.train import best_checkpoint_name, train_model


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


def prepare_data(cfg) -> DataBundle:
    """Find, pair, check (printing the report; refusing bad data), split, build the datasets."""
    layout = find_dataset(cfg.data_dir, cfg.extract_dir, cfg.dataset)
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


def _pipeline_rank_loaders(cfg, data: DataBundle, rank: int, world_size: int):
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


def _pipeline_train_rank(rank: int, world_size: int, cfg, data: DataBundle, model):
    """One rank's training (forked DDP worker, or the notebook process itself)."""
    device = rank_device(rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    train_loader, val_loader = _pipeline_rank_loaders(cfg, data, rank, world_size)
    return train_model(model, train_loader, val_loader, build_loss(cfg.loss), cfg, device,
                       work_dir=cfg.work_dir, is_main=rank == 0)


def run_training(cfg, data: DataBundle):
    """Build ``cfg.model``, train it on every visible GPU, load the best weights back.

    Returns ``(model, TrainResult)``; ``model`` holds the best epoch's weights, on the first
    GPU (or the CPU).
    """
    model = build_model(cfg.model, **cfg.model_kwargs)
    n_gpu = visible_gpu_count()
    print(f"{cfg.model}: {count_parameters(model):,} parameters; "
          f"{n_gpu or 'no'} GPU(s), batch {cfg.batch_size} in total per step")
    result = launch_training(_pipeline_train_rank, cfg, args=(cfg, data, model))
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
    plot_training_curves(train_result.history, work / "training_curves.png")
    plot_spectrograms(eval_result.examples, work / "spectrogram_comparison.png",
                      sample_rate=cfg.sample_rate)
    eval_result.table.to_csv(work / "eval_per_file.csv")
    summary = build_summary(cfg=cfg, model=model, train_result=train_result,
                            eval_result=eval_result)
    path = write_summary(summary, work / f"{cfg.model}_summary.json")
    print(f"wrote {', '.join(sorted(p.name for p in work.iterdir() if p.is_file()))}")
    print(f"summary: {path}")
    return summary
