"""Time budget, resume from an input folder, and the dataset download fallback, in-process.

The same behaviours through the rendered notebook are in tests/test_long_runs.py (slow).
"""

import sys
import time
import types

import pytest
import torch

from smoke.dataset import build_local_dataset
from templates.config import RunConfig
from templates.data import DatasetNotFoundError
from templates.pipeline import find_resume_checkpoint, prepare_data, resume_from_input
from templates.train import TimeBudget, train_model
from tests.helpers.training import CPU, TinyMasker, l1, tiny_config, tiny_loaders


def test_time_budget_stops_before_an_epoch_that_would_not_fit(tmp_path, capsys):
    train, val = tiny_loaders()
    cfg = tiny_config(tmp_path, epochs=5)
    # The export reserve alone takes all that is left: any second epoch would not fit.
    budget = TimeBudget(deadline=time.time() + 100.0, hours=1.0, export_seconds=100.0)
    res = train_model(TinyMasker(), train, val, l1, cfg, CPU, budget=budget)
    assert res.stopped_by == "time_budget" and res.epochs_run == 1
    assert res.epochs_this_session == 1 and (tmp_path / "last.pth").is_file()
    out = capsys.readouterr().out
    assert "time budget: stopping before Ep02" in out and "last.pth is kept" in out


def test_time_budget_that_fits_changes_nothing(tmp_path):
    train, val = tiny_loaders()
    budget = TimeBudget.from_hours(1.0, time.time(), export_seconds=1.0)
    res = train_model(TinyMasker(), train, val, l1, tiny_config(tmp_path, epochs=3), CPU, budget=budget)
    assert res.stopped_by == "epochs" and res.epochs_run == 3


def test_resumed_run_uses_the_earlier_versions_epoch_time(tmp_path, capsys):
    train, val = tiny_loaders()
    train_model(TinyMasker(), train, val, l1, tiny_config(tmp_path, epochs=1), CPU)
    # Already past the deadline: the resumed run knows an epoch's cost from last.pth's history.
    budget = TimeBudget.from_hours(1.0, time.time() - 3600.0, export_seconds=0.0)
    res = train_model(TinyMasker(), train, val, l1, tiny_config(tmp_path, epochs=3), CPU, budget=budget)
    assert res.stopped_by == "time_budget" and res.epochs_run == 1
    assert res.epochs_this_session == 0 and res.resumed_from_epoch == 1


def test_reserve_grows_with_test_files_and_their_length():
    b = TimeBudget(deadline=0.0, eval_items=100, eval_length_ratio=5.0,
                   score_seconds_per_item=0.5, export_seconds=60.0)
    assert b.reserve_seconds(0.01) == pytest.approx(1.5 * 100 * (0.05 + 0.5) + 60.0)


def _pipeline_cfg(tmp_path, **kw):
    base = dict(model="crn", data_dir=str(tmp_path / "input"), work_dir=str(tmp_path / "work"),
                epochs=2, smoke=True, crop_seconds=1.0, scratch_dir=str(tmp_path / "scratch"))
    base.update(kw)
    return RunConfig(**base)


def _write_last(folder, cfg, epoch=1):
    from templates.checkpoint import save_checkpoint
    from templates.models.registry import build_model

    model = build_model(cfg.model)
    opt = torch.optim.Adam(model.parameters())
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("last.pth", f"{cfg.model}_best.pth"):
        save_checkpoint(folder / name, model=model, optimizer=opt, epoch=epoch, best_val=0.1,
                        config=cfg.to_dict(), history=[])


def test_resume_from_input_copies_last_and_best_into_work(tmp_path, capsys):
    cfg = _pipeline_cfg(tmp_path)
    mounted = tmp_path / "input" / "notebooks" / "bob" / "crn-v3"
    _write_last(mounted, cfg)
    assert find_resume_checkpoint(cfg) == mounted / "last.pth"
    assert resume_from_input(cfg) == mounted / "last.pth"
    work = tmp_path / "work"
    assert (work / "last.pth").read_bytes() == (mounted / "last.pth").read_bytes()
    assert (work / "crn_best.pth").is_file()
    assert "resuming across versions:" in capsys.readouterr().out
    assert resume_from_input(cfg) is None  # WORK_DIR's own last.pth wins on a re-run


@pytest.mark.parametrize("change", [{"model": "dpt"}, {"loss": "si_sdr"}, {"seed": 7},
                                    {"crop_seconds": 2.0}])
def test_resume_from_input_refuses_another_configuration_before_copying(tmp_path, change):
    _write_last(tmp_path / "input" / "old", _pipeline_cfg(tmp_path, **change))
    cfg = _pipeline_cfg(tmp_path)
    with pytest.raises(ValueError, match="earlier version's output attached as an input") as info:
        resume_from_input(cfg)
    assert "last.pth" in str(info.value)
    assert not (tmp_path / "work" / "last.pth").exists()


def test_two_mounted_versions_are_refused_by_name(tmp_path):
    cfg = _pipeline_cfg(tmp_path)
    _write_last(tmp_path / "input" / "v1", cfg)
    _write_last(tmp_path / "input" / "v2", cfg)
    with pytest.raises(ValueError, match="2 last.pth files under"):
        resume_from_input(cfg)


def _fake_kagglehub(monkeypatch, download):
    module = types.ModuleType("kagglehub")
    module.dataset_download = download
    monkeypatch.setitem(sys.modules, "kagglehub", module)


def test_unmounted_dataset_is_downloaded_into_scratch(tmp_path, monkeypatch, capsys):
    source = build_local_dataset(tmp_path / "remote", n_train=8, n_test=2, seconds=(1.5, 2.0))
    (tmp_path / "input").mkdir()
    calls = []

    def download(handle):
        import os
        import shutil

        calls.append((handle, os.environ["KAGGLEHUB_CACHE"]))
        dest = tmp_path / "scratch" / "kagglehub" / "datasets" / handle
        shutil.copytree(source, dest)
        return str(dest)

    _fake_kagglehub(monkeypatch, download)
    monkeypatch.setenv("KAGGLEHUB_CACHE", "unset")  # restored after the test
    data = prepare_data(_pipeline_cfg(tmp_path))
    assert calls == [("earth16/libri-speech-noise-dataset", str(tmp_path / "scratch" / "kagglehub"))]
    assert len(data.train_pairs) + len(data.val_pairs) == 8
    out = capsys.readouterr().out
    assert "downloading earth16/libri-speech-noise-dataset with kagglehub" in out


def test_unmounted_dataset_without_internet_is_one_message(tmp_path, monkeypatch):
    (tmp_path / "input").mkdir()

    def offline(handle):
        raise ConnectionError("Failed to resolve 'www.kaggle.com'")

    _fake_kagglehub(monkeypatch, offline)
    monkeypatch.setenv("KAGGLEHUB_CACHE", "unset")  # restored after the test
    with pytest.raises(DatasetNotFoundError) as info:
        prepare_data(_pipeline_cfg(tmp_path))
    message = str(info.value)
    assert "earth16/libri-speech-noise-dataset is not mounted" in message
    assert "Failed to resolve" in message and "internet" in message
    assert "Add Input > Datasets > earth16/libri-speech-noise-dataset" in message


def test_unmounted_dataset_without_kagglehub_names_how_to_attach(tmp_path, monkeypatch):
    (tmp_path / "input").mkdir()
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # import fails
    with pytest.raises(DatasetNotFoundError, match="kagglehub is not installed") as info:
        prepare_data(_pipeline_cfg(tmp_path))
    assert 'dataset_sources ["earth16/libri-speech-noise-dataset"]' in str(info.value)


def test_initial_weights_are_a_function_of_the_seed(tmp_path):
    """torch seeds every new process at random: without seeding before build_model, two runs of
    one notebook (and a resumed run's uninterrupted reference) started from different weights."""
    from templates.pipeline import run_training

    build_local_dataset(tmp_path / "input", n_train=6, n_test=1, seconds=(1.2, 1.5))
    tiny = {"enc_channels": [4, 8, 8], "lstm_hidden": 8, "lstm_layers": 1, "dec_channels": [8, 4, 4]}
    weights = []
    for k in range(2):
        cfg = _pipeline_cfg(tmp_path, work_dir=str(tmp_path / f"w{k}"), epochs=1, max_steps=1,
                            batch_size=2, model_kwargs=tiny, time_budget_hours=None)
        data = prepare_data(cfg)
        torch.manual_seed(1000 + k)  # whatever ran before in the kernel
        model, _ = run_training(cfg, data)
        weights.append({n: t.clone() for n, t in model.state_dict().items()})
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])


def test_a_run_pushed_to_resume_refuses_to_start_afresh(tmp_path):
    cfg = _pipeline_cfg(tmp_path, resume_from="bob/crn-v3/4")
    (tmp_path / "input").mkdir()
    with pytest.raises(FileNotFoundError, match="RESUME_FROM = 'bob/crn-v3/4' but no last.pth"):
        resume_from_input(cfg)
    _write_last(tmp_path / "input" / "notebooks" / "crn-v3", cfg)
    assert resume_from_input(cfg) is not None
