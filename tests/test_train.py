"""The training loop: files it writes, resume exactness, warmup, early stopping, step caps."""

import csv
import math

import pytest
import torch
from torch.utils.data import DataLoader

from templates.checkpoint import read_checkpoint
from templates.train import (
    HISTORY_FIELDS,
    TrainingDivergedError,
    resolve_warmup_epochs,
    train_model,
)
from tests.helpers.training import CPU, NoisyPairs, TinyMasker, l1
from tests.helpers.training import tiny_config as _cfg
from tests.helpers.training import tiny_loaders as _loaders


class WarmModel(TinyMasker):
    default_warmup_epochs = 3


def test_writes_history_and_checkpoints(tmp_path, capsys):
    train, val = _loaders()
    cfg = _cfg(tmp_path, epochs=4, checkpoint_every=2)
    res = train_model(TinyMasker(), train, val, l1, cfg, CPU)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ckpt_ep2.pth", "ckpt_ep4.pth", "history.csv", "last.pth", "tiny_best.pth"]
    with open(tmp_path / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == HISTORY_FIELDS
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert res.epochs_run == 4 and len(res.history) == 4
    assert isinstance(res.history[0]["val_loss"], float)
    assert res.best_val == min(r["val_loss"] for r in res.history)
    assert res.history[res.best_epoch - 1]["saved"] is True
    best = read_checkpoint(tmp_path / "tiny_best.pth")
    assert best["epoch"] == res.best_epoch and best["config"]["model"] == "tiny"
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]  # it learns
    out = capsys.readouterr().out
    assert "Ep01 tr=" in out and " va=" in out and "SAVED" in out


def test_not_main_writes_nothing(tmp_path):
    train, val = _loaders()
    train_model(TinyMasker(), train, val, l1, _cfg(tmp_path / "w"), CPU, is_main=False)
    assert not (tmp_path / "w").exists()


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_reproduces_uninterrupted_run_exactly(tmp_path):
    torch.manual_seed(0)
    straight_model = TinyMasker()
    init = _weights(straight_model)
    train, val = _loaders()
    cfg = _cfg(tmp_path / "a", epochs=3, warmup_epochs=1, plateau_patience=0)
    straight = train_model(straight_model, train, val, l1, cfg, CPU)

    # Interrupted: 1 epoch, then a "new process": fresh objects, a disturbed global RNG.
    first = TinyMasker()
    first.load_state_dict(init)
    train, val = _loaders()
    train_model(first, train, val, l1, cfg.replace(work_dir=str(tmp_path / "b"), epochs=1), CPU)
    torch.manual_seed(999)
    resumed_model = TinyMasker()  # different random init: must be overwritten by last.pth
    train, val = _loaders()
    resumed = train_model(resumed_model, train, val, l1,
                          cfg.replace(work_dir=str(tmp_path / "b")), CPU)
    for k, v in straight_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]
    assert resumed.best_epoch == straight.best_epoch and resumed.epochs_run == 3


def test_resume_refuses_checkpoint_of_another_model(tmp_path):
    train, val = _loaders()
    train_model(TinyMasker(), train, val, l1, _cfg(tmp_path, epochs=1), CPU)
    with pytest.raises(ValueError, match="is from a 'tiny' run, this run trains 'crn'"):
        train_model(TinyMasker(), train, val, l1, _cfg(tmp_path, model="crn"), CPU)


def test_max_steps_caps_train_and_val_batches_and_set_epoch_is_called(tmp_path):
    train, val = _loaders(batch=2)  # 6 train batches, 3 val batches
    calls = {"n": 0}

    def counting(est, clean):
        calls["n"] += 1
        return l1(est, clean)

    train_model(TinyMasker(), train, val, counting, _cfg(tmp_path, epochs=2, max_steps=2), CPU)
    assert calls["n"] == 2 * (2 + 2)
    assert train.dataset.epochs_seen == [1, 2]


def test_warmup_from_config_or_model_default(tmp_path):
    assert resolve_warmup_epochs(_cfg(tmp_path), WarmModel()) == 3
    assert resolve_warmup_epochs(_cfg(tmp_path, warmup_epochs=1), WarmModel()) == 1
    assert resolve_warmup_epochs(_cfg(tmp_path), TinyMasker()) == 0
    train, val = _loaders()
    res = train_model(WarmModel(), train, val, l1, _cfg(tmp_path, epochs=4, lr=1e-2), CPU)
    lrs = [r["lr"] for r in res.history]
    # 3 steps per epoch, 9 warmup steps: lr after epoch e's last step is lr * 3e / 9
    assert lrs[:3] == pytest.approx([1e-2 / 3, 2e-2 / 3, 1e-2])
    assert lrs[3] == pytest.approx(1e-2)


def test_early_stopping_and_plateau(tmp_path):
    train, val = _loaders()

    def flat(est, clean):  # never improves after epoch 1
        return (est * 0).sum() + 1.0

    cfg = _cfg(tmp_path, epochs=10, patience=3, plateau_patience=0, plateau_factor=0.5)
    res = train_model(TinyMasker(), train, val, flat, cfg, CPU)
    assert res.stopped_early and res.epochs_run == 4 and res.best_epoch == 1
    assert [r["lr"] for r in res.history] == pytest.approx([1e-2, 5e-3, 2.5e-3, 1.25e-3])
    # a resumed stopped run does not train further
    again = train_model(TinyMasker(), train, val, flat, cfg, CPU)
    assert again.epochs_run == 4 and again.stopped_early


def test_divergence_is_reported(tmp_path):
    train, val = _loaders()

    def nan_loss(est, clean):
        return (est * 0).sum() + math.nan

    with pytest.raises(TrainingDivergedError, match="epoch 1: loss is not finite"):
        train_model(TinyMasker(), train, val, nan_loss, _cfg(tmp_path), CPU)


def test_every_checkpoint_holds_the_full_training_state(tmp_path):
    # best, every-N and last checkpoints are dicts with model, optimizer, scheduler,
    # scaler, epoch, best_val, config and the format version
    train, val = _loaders()
    train_model(TinyMasker(), train, val, l1, _cfg(tmp_path, epochs=2, checkpoint_every=2), CPU)
    for name in ("tiny_best.pth", "ckpt_ep2.pth", "last.pth"):
        ckpt = read_checkpoint(tmp_path / name)
        for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "best_val", "config",
                    "format"):
            assert key in ckpt, (name, key)
        assert ckpt["optimizer"]["state"], name  # Adam moments, not an empty shell
        assert ckpt["config"]["model"] == "tiny" and ckpt["format"] >= 1


def test_a_periodic_checkpoint_resumes_exactly_scheduler_state_included(tmp_path):
    # The model learns from l1 but validation reads a constant, so with plateau_patience=0 the
    # scheduler's state after epoch 2 (its best value) decides the lr of epochs 3-4: a lost
    # scheduler or optimizer state changes the lrs and the weights.
    def train_only(est, clean):
        return l1(est, clean) if torch.is_grad_enabled() else (est * 0).sum() + 1.0

    cfg = _cfg(tmp_path / "a", epochs=4, checkpoint_every=2, plateau_patience=0, warmup_epochs=1)
    torch.manual_seed(0)
    straight_model = TinyMasker()
    init = _weights(straight_model)
    train, val = _loaders()
    straight = train_model(straight_model, train, val, train_only, cfg, CPU)
    assert [r["lr"] for r in straight.history] == pytest.approx([1e-2, 1e-2, 5e-3, 2.5e-3])

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "last.pth").write_bytes((tmp_path / "a" / "ckpt_ep2.pth").read_bytes())
    resumed_model = TinyMasker()
    resumed_model.load_state_dict(init)
    train, val = _loaders()
    resumed = train_model(resumed_model, train, val, train_only,
                          cfg.replace(work_dir=str(tmp_path / "b")), CPU)
    for k, v in straight_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in straight.history]
    assert resumed.epochs_run == 4 and resumed.best_epoch == straight.best_epoch


@pytest.mark.parametrize("change", [
    {"model_kwargs": {"width": 2}}, {"loss": "si_sdr"}, {"seed": 4}, {"crop_seconds": 2.0},
    {"val_fraction": 0.2}, {"smoke": True}, {"dataset": "vbdemand"},
])
def test_resume_refuses_last_pth_of_another_configuration_before_loading(tmp_path, change):
    train, val = _loaders()
    train_model(TinyMasker(), train, val, l1, _cfg(tmp_path, epochs=1), CPU)
    model = TinyMasker()
    before = _weights(model)
    key = next(iter(change))
    with pytest.raises(ValueError, match=rf"last\.pth: was written by a run with another "
                                         rf"configuration \({key}="):
        train_model(model, train, val, l1, _cfg(tmp_path, **change), CPU)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # what may change between the runs: epochs, patience, batch size, lr, ...
    res = train_model(TinyMasker(), train, val, l1, _cfg(tmp_path, epochs=2, patience=7, lr=5e-3),
                      CPU)
    assert res.epochs_run == 2


def test_resume_from_weights_only_last_pth_is_a_clear_error(tmp_path):
    torch.save(TinyMasker().state_dict(), tmp_path / "last.pth")  # what old runs wrote
    train, val = _loaders()
    with pytest.raises(ValueError, match=r"last\.pth: holds model weights only"):
        train_model(TinyMasker(), train, val, l1, _cfg(tmp_path), CPU)


def test_resume_of_a_finished_run_trains_nothing_and_says_so(tmp_path, capsys):
    train, val = _loaders()
    done = TinyMasker()
    first = train_model(done, train, val, l1, _cfg(tmp_path, epochs=2), CPU)
    again_model = TinyMasker()
    again = train_model(again_model, train, val, l1, _cfg(tmp_path, epochs=2), CPU)
    assert again.epochs_run == 2 and again.history == first.history
    assert again.best_epoch == first.best_epoch and again.best_val == first.best_val
    assert all(torch.equal(v, again_model.state_dict()[k]) for k, v in done.state_dict().items())
    assert "already reached epoch 2 of 2; nothing to train" in capsys.readouterr().out


def test_validation_loss_is_a_per_item_mean_whatever_the_batch_split(tmp_path):
    from templates.train import evaluate_loss

    data = NoisyPairs(n=6, seed=1)
    model = TinyMasker()
    one_batch = evaluate_loss(model, DataLoader(data, batch_size=6), l1, CPU)
    uneven = evaluate_loss(model, DataLoader(data, batch_size=4), l1, CPU)  # batches of 4 and 2
    assert uneven == pytest.approx(one_batch, rel=1e-6)
