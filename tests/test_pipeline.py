"""The notebook's four stages end to end on a tiny generated dataset with a tiny CRN."""

import csv
import json
import math

import pytest

from smoke.dataset import build_local_dataset
from templates.config import RunConfig
from templates.datacheck import DataError
from templates.pipeline import prepare_data, run_evaluation, run_training, write_outputs

TINY_CRN = {"enc_channels": [4, 8, 8], "lstm_hidden": 8, "lstm_layers": 1,
            "dec_channels": [8, 4, 4]}


def _cfg(tmp_path, **kw):
    base = dict(model="crn", data_dir=str(tmp_path / "input"), work_dir=str(tmp_path / "work"),
                epochs=1, batch_size=2, max_steps=2, crop_seconds=1.0, smoke=True,
                val_fraction=0.25, eval_mode="full", max_test_files=3, model_kwargs=TINY_CRN,
                scratch_dir=str(tmp_path / "scratch"))
    base.update(kw)
    return RunConfig(**base)


def test_pipeline_end_to_end(tmp_path, capsys):
    build_local_dataset(tmp_path / "input" / "libri-speech-noise", n_train=8, n_test=3,
                        seconds=(1.5, 2.0))
    cfg = _cfg(tmp_path)
    data = prepare_data(cfg)
    assert len(data.train_pairs) == 6 and len(data.val_pairs) == 2 and len(data.test_pairs) == 3
    assert data.num_workers == 0
    model, train_result = run_training(cfg, data)
    assert train_result.epochs_run == 1 and train_result.best_epoch == 1
    eval_result = run_evaluation(cfg, model, data)
    summary = write_outputs(cfg, model, train_result, eval_result)

    work = tmp_path / "work"
    for name in ("crn_best.pth", "last.pth", "history.csv", "eval_per_file.csv",
                 "training_curves.png", "spectrogram_comparison.png", "crn_summary.json"):
        assert (work / name).is_file() and (work / name).stat().st_size > 0, name
    on_disk = json.loads((work / "crn_summary.json").read_text())
    assert on_disk == summary
    assert summary["model"] == "crn" and summary["n_test"] == 3 and summary["epochs_run"] == 1
    for part in ("noisy", "enhanced", "delta"):
        for metric in ("pesq", "stoi", "si_sdr"):
            assert math.isfinite(summary["metrics"][part][metric]), (part, metric)
    with open(work / "history.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 1
    out = capsys.readouterr().out
    assert "Ep01 tr=" in out and "PESQ" in out


def test_refused_data_stops_before_training(tmp_path):
    root = tmp_path / "input" / "ds"
    build_local_dataset(root, n_train=4, n_test=2, seconds=1.0)
    for wav in (root / "y_train").iterdir():  # clean files that do not match their noisy ones
        wav.write_bytes((root / "y_train" / "0001.wav").read_bytes())
    with pytest.raises(DataError, match="correlation"):
        prepare_data(_cfg(tmp_path))


def test_rank_loaders_shard_validation_without_repeats():
    from types import SimpleNamespace

    from torch.utils.data import DistributedSampler

    from templates.pipeline import _rank_loaders

    data = SimpleNamespace(train_set=list(range(10)), val_set=list(range(7)), num_workers=0)
    cfg = RunConfig(batch_size=4, seed=1)
    seen = []
    for rank in (0, 1):
        train, val = _rank_loaders(cfg, data, rank, 2)
        assert isinstance(train.sampler, DistributedSampler) and train.batch_size == 2
        seen.append([int(x) for batch in val for x in batch])
    assert sorted(seen[0] + seen[1]) == list(range(7))  # every item once: 4 + 3, no padding
    single_train, single_val = _rank_loaders(cfg, data, 0, 1)
    assert single_train.batch_size == 4 and [int(x) for b in single_val for x in b] == list(range(7))
