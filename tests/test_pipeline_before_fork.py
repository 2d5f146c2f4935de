"""What the notebook does before training forks its GPU workers: no CUDA driver init, no GBs of
extracted data in the saved output folder."""

import pytest
import torch

from compat.torch_compat import check_gpu_supported, environment_report, run_without_cuda_init
from smoke.dataset import build_local_dataset
from templates.config import RunConfig
from templates.distributed import visible_gpu_count
from templates.models.registry import build_model, format_parameter_split
from templates.pipeline import prepare_data


def _poisons_fork():
    raise AssertionError("torch.cuda.is_available() runs cuInit: forked DDP workers lose CUDA")


@pytest.fixture
def archived_dataset(tmp_path):
    build_local_dataset(tmp_path / "input" / "datasets" / "earth16" / "ds", n_train=6, n_test=2,
                        seconds=(1.5, 2.0), archives=True)
    return tmp_path


def _cfg(root, **kw):
    return RunConfig(model="crn", data_dir=str(root / "input"), work_dir=str(root / "working"),
                     crop_seconds=1.0, batch_size=2, smoke=True, val_fraction=0.34,
                     num_workers=0, **kw)


def test_cells_before_training_never_ask_cuda_is_available(archived_dataset, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", _poisons_fork)
    cfg = _cfg(archived_dataset, scratch_dir=str(archived_dataset / "scratch"))
    run_without_cuda_init(environment_report, cfg.work_dir)
    run_without_cuda_init(check_gpu_supported)
    data = prepare_data(cfg)
    format_parameter_split(build_model(cfg.model))
    assert visible_gpu_count() == torch.cuda.device_count()
    assert len(data.test_pairs) == 2


def test_archives_are_extracted_outside_the_saved_work_dir(archived_dataset):
    cfg = _cfg(archived_dataset, scratch_dir=str(archived_dataset / "scratch"))
    data = prepare_data(cfg)
    work = archived_dataset / "working"
    assert not work.exists() or not any(work.rglob("*.wav"))
    assert all(str(noisy).startswith(cfg.scratch_dir) for noisy, _ in data.train_pairs)


def test_default_extraction_folder_is_the_system_temp(tmp_path):
    import tempfile
    from pathlib import Path

    cfg = RunConfig(work_dir=str(tmp_path))
    assert cfg.extract_dir == Path(tempfile.gettempdir()) / "se_toolkit"
    assert RunConfig(scratch_dir=str(tmp_path / "s")).extract_dir == tmp_path / "s"
