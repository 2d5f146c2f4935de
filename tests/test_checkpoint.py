"""Checkpoints: atomic writes, our dicts and bare state_dicts, wrapper prefixes, clear errors."""

import os

import pytest
import torch
from torch import nn

from templates import checkpoint as ckpt_mod
from templates.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)


def _net():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_roundtrip_restores_model_optimizer_scheduler_and_metadata(tmp_path):
    model = _net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    sched.step(1.0)
    sched.step(2.0)  # no improvement -> lr halves
    path = save_checkpoint(
        tmp_path / "last.pth", model=model, optimizer=opt, scheduler=sched, epoch=7,
        best_val=0.25, config={"model": "tiny"},
    )
    fresh = _net()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    fresh_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(fresh_opt, patience=0, factor=0.5)
    out = load_checkpoint(path, fresh, fresh_opt, fresh_sched)
    assert _same_weights(model, fresh)
    assert out["epoch"] == 7 and out["best_val"] == 0.25 and out["config"] == {"model": "tiny"}
    assert out["format"] == CHECKPOINT_FORMAT
    assert fresh_opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert fresh_sched.state_dict()["num_bad_epochs"] == sched.state_dict()["num_bad_epochs"]


def test_bare_state_dict_from_old_runs_loads(tmp_path):
    model = _net()
    torch.save(model.state_dict(), tmp_path / "ckpt_ep5.pth")  # what the user's original runs wrote
    fresh = _net()
    out = load_checkpoint(tmp_path / "ckpt_ep5.pth", fresh)
    assert _same_weights(model, fresh)
    assert out["format"] == 0 and set(out) == {"model", "format"}


def test_ddp_prefix_is_stripped_and_wrapped_target_loads(tmp_path):
    model = _net()
    wrapped = nn.DataParallel(model)  # keys start with "module."
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    save_checkpoint(tmp_path / "a.pth", model=wrapped.state_dict(), epoch=1)
    fresh = _net()
    load_checkpoint(tmp_path / "a.pth", fresh)
    assert _same_weights(model, fresh)
    # and the other way round: a bare checkpoint into a wrapped model
    save_checkpoint(tmp_path / "b.pth", model=model)
    fresh2 = _net()
    load_checkpoint(tmp_path / "b.pth", nn.DataParallel(fresh2))
    assert _same_weights(model, fresh2)


def test_saving_a_wrapped_module_stores_bare_names(tmp_path):
    model = _net()
    save_checkpoint(tmp_path / "c.pth", model=nn.DataParallel(model))
    assert not any(k.startswith("module.") for k in read_checkpoint(tmp_path / "c.pth")["model"])


def test_not_a_checkpoint_names_file_and_what_was_found(tmp_path):
    torch.save([1, 2, 3], tmp_path / "ckpt.pth")
    with pytest.raises(CheckpointError, match=r"ckpt\.pth: not a checkpoint: a list"):
        load_checkpoint(tmp_path / "ckpt.pth", _net())
    torch.save({"epoch": 3, "best": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match=r"meta\.pth: not a checkpoint: a dict with keys"):
        load_checkpoint(tmp_path / "meta.pth", _net())
    assert issubclass(CheckpointError, ValueError)


def test_truncated_and_missing_files_are_clear(tmp_path):
    save_checkpoint(tmp_path / "t.pth", model=_net(), epoch=1)
    data = (tmp_path / "t.pth").read_bytes()
    (tmp_path / "t.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"t\.pth: not a readable checkpoint"):
        load_checkpoint(tmp_path / "t.pth", _net())
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(tmp_path / "nope.pth", _net())


def test_wrong_architecture_names_file(tmp_path):
    save_checkpoint(tmp_path / "crn_best.pth", model=_net())
    other = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(CheckpointError, match=r"crn_best\.pth: weights do not fit Sequential"):
        load_checkpoint(tmp_path / "crn_best.pth", other)


def test_newer_format_is_refused(tmp_path):
    torch.save({"model": _net().state_dict(), "format": CHECKPOINT_FORMAT + 1}, tmp_path / "f.pth")
    with pytest.raises(CheckpointError, match="newer than this code"):
        load_checkpoint(tmp_path / "f.pth", _net())


def test_crash_mid_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    first = _net()
    save_checkpoint(path, model=first, epoch=1)
    before = path.read_bytes()
    real_save = torch.save

    def dying_save(obj, fh, *a, **k):
        real_save(obj, fh, *a, **k)
        fh.seek(fh.tell() // 2)
        fh.truncate()  # half the bytes are on disk ...
        raise KeyboardInterrupt("kernel interrupted")  # ... when the process dies

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model=_net(), epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.pth"]
    fresh = _net()
    assert load_checkpoint(path, fresh)["epoch"] == 1
    assert _same_weights(first, fresh)


def test_cpu_run_checkpoint_resumes_with_an_enabled_grad_scaler(tmp_path):
    # A CPU run saves a disabled GradScaler, whose state_dict is {}; resuming it where AMP is on
    # (a GPU) must keep the fresh scaler rather than fail "cannot restore scaler".
    model = _net()
    opt = torch.optim.Adam(model.parameters())
    off = torch.amp.GradScaler("cpu", enabled=False)
    assert off.state_dict() == {}
    save_checkpoint(tmp_path / "last.pth", model=model, optimizer=opt, scaler=off, epoch=1)
    on = torch.amp.GradScaler("cpu", enabled=True)
    fresh = _net()
    load_checkpoint(tmp_path / "last.pth", fresh, torch.optim.Adam(fresh.parameters()), scaler=on)
    assert on.get_scale() == torch.amp.GradScaler("cpu", enabled=True).get_scale()
    assert _same_weights(model, fresh)


# ---------------------------------------------------------------- loading never runs file code


class _Marker:
    """Unpickling it writes a file: what a crafted .pth does to whoever loads it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('ran')",))


def test_crafted_checkpoint_does_not_run_and_says_how_to_trust(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"model": _net().state_dict(), "config": _Marker(marker)}, path)
    with pytest.raises(CheckpointError) as ei:
        read_checkpoint(path)
    assert not marker.exists()
    msg = str(ei.value)
    assert msg.startswith("evil.pth: not loaded:") and "--trust-checkpoint" in msg
    assert "GLOBAL exec" in msg  # names what the file would have run
    with pytest.raises(CheckpointError):
        load_checkpoint(path, _net())
    assert not marker.exists()
    read_checkpoint(path, trusted=True)  # the explicit opt-in unpickles fully
    assert marker.exists()


def test_old_checkpoints_with_numpy_rng_state_still_load(tmp_path):
    """What save_checkpoint wrote before it stored plain types: numpy RNG state and scalars."""
    import numpy as np

    model = _net()
    path = tmp_path / "old.pth"
    torch.save({"model": model.state_dict(), "epoch": 3, "best_val": np.float64(0.5),
                "rng": {"numpy": np.random.get_state(), "torch": torch.get_rng_state()},
                "history": [{"epoch": 1, "val_loss": np.float32(0.7)}], "format": 1}, path)
    fresh = _net()
    got = load_checkpoint(path, fresh)
    assert _same_weights(model, fresh) and got["best_val"] == 0.5
    np.random.set_state(got["rng"]["numpy"])


def test_save_checkpoint_writes_only_types_a_plain_weights_only_load_reads(tmp_path):
    """No allowlist needed: torch 2.1-2.3 (no add_safe_globals) read our files weights-only."""
    import numpy as np

    model = _net()
    opt = torch.optim.Adam(model.parameters())
    path = save_checkpoint(tmp_path / "new.pth", model=model, optimizer=opt, epoch=1,
                           best_val=np.float64(0.5), rng={"numpy": np.random.get_state()},
                           history=[{"val_loss": np.float32(0.25)}])
    raw = torch.load(path, weights_only=True)  # torch's own default allowlist only
    assert raw["best_val"] == 0.5 and type(raw["best_val"]) is float
    assert raw["history"][0]["val_loss"] == 0.25
    state = np.random.get_state()
    np.random.set_state(raw["rng"]["numpy"])  # a list of keys restores like the array did
    assert np.array_equal(np.random.get_state()[1], state[1])
