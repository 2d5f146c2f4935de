"""launch_training: two forked gloo processes train one model in lockstep; rank 0 alone writes."""

import json
import os
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import templates.train as train_mod
from templates.config import RunConfig
from templates.distributed import TrainingWorkerError, is_main_process, launch_training
from templates.train import train_model

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork start method")


class _Masker(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size=5, padding=2)

    def forward(self, wav):  # (B, T) -> (B, T)
        return wav * torch.sigmoid(self.conv(wav.unsqueeze(1))).squeeze(1)


class _Pairs(Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.clean = torch.randn(n, 64, generator=g)
        self.noisy = self.clean + 0.5 * torch.randn(n, 64, generator=g)

    def __len__(self):
        return len(self.clean)

    def __getitem__(self, i):
        return self.noisy[i], self.clean[i]


def _l1(est, clean):
    return (est - clean).abs().mean()


def _rank_fn(rank, world_size, cfg, out_dir):
    """What the pipeline's worker does: sharded loaders, train, report."""
    torch.manual_seed(100 + rank)  # different inits per rank: DDP must broadcast rank 0's
    train_set, val_set = _Pairs(16, 0), _Pairs(8, 1)
    train = DataLoader(train_set, batch_size=2,
                       sampler=DistributedSampler(train_set, world_size, rank, seed=cfg.seed))
    val = DataLoader(val_set, batch_size=2,
                     sampler=DistributedSampler(val_set, world_size, rank, shuffle=False))
    model = _Masker()
    res = train_model(model, train, val, _l1, cfg, torch.device("cpu"), is_main=rank == 0)
    torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    with open(os.path.join(out_dir, f"history{rank}.json"), "w") as fh:
        json.dump(res.history, fh)
    return {"rank": rank, "world": world_size, "main": is_main_process(), "result": res}


def test_two_gloo_processes_train_in_lockstep_and_rank0_writes_once(tmp_path, monkeypatch):
    log = tmp_path / "saves.log"
    real_save = train_mod.save_checkpoint

    def logged_save(path, **state):  # inherited by the forked workers
        with open(log, "a") as fh:
            fh.write(f"{os.environ.get('RANK')} {os.path.basename(path)}\n")
        return real_save(path, **state)

    monkeypatch.setattr(train_mod, "save_checkpoint", logged_save)
    work = tmp_path / "work"
    cfg = RunConfig(model="tiny", work_dir=str(work), epochs=2, lr=1e-2, checkpoint_every=2,
                    num_workers=0, seed=5)
    out = launch_training(_rank_fn, cfg, num_processes=2, backend="gloo", args=(cfg, str(tmp_path)))

    assert out["rank"] == 0 and out["world"] == 2 and out["main"] is True
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    init0 = (torch.manual_seed(100), _Masker())[1].state_dict()
    assert not torch.equal(w0["conv.weight"], init0["conv.weight"])  # it trained
    # losses are all-reduced: both ranks saw the same (global) numbers despite different shards
    h0 = json.loads((tmp_path / "history0.json").read_text())
    h1 = json.loads((tmp_path / "history1.json").read_text())
    assert [r["val_loss"] for r in h0] == [r["val_loss"] for r in h1]
    assert [r["train_loss"] for r in h0] == [r["train_loss"] for r in h1]
    saves = log.read_text().split("\n")[:-1]
    assert {line.split()[0] for line in saves} == {"0"}
    names = [line.split()[1] for line in saves]
    assert names.count("last.pth") == 2 and names.count("ckpt_ep2.pth") == 1
    assert sorted(p.name for p in work.iterdir()) == sorted(
        {"history.csv", "last.pth", "ckpt_ep2.pth", "tiny_best.pth"}
    )
    assert out["result"].epochs_run == 2


def test_single_process_runs_in_process():
    calls = []
    out = launch_training(lambda r, w, x: calls.append((r, w, x)) or "done", None,
                          num_processes=1, args=("a",))
    assert out == "done" and calls == [(0, 1, "a")]
    assert is_main_process()


def test_worker_error_reaches_the_caller(tmp_path):
    def boom(rank, world):
        if rank == 1:
            raise ValueError("rank 1 exploded")
        return "ok"

    with pytest.raises(TrainingWorkerError, match="rank 1 exploded"):
        launch_training(boom, None, num_processes=2, backend="gloo")


class _BNMasker(_Masker):
    """With BatchNorm: ranks' running statistics drift apart within an epoch."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(1)

    def forward(self, wav):  # (B, T) -> (B, T)
        return wav * torch.sigmoid(self.norm(self.conv(wav.unsqueeze(1)))).squeeze(1)


def _uneven_val_rank_fn(rank, world_size, cfg, out_dir):
    """Validation sharded like the pipeline: every item once, 4 items on rank 0, 3 on rank 1."""
    from torch.utils.data import Subset

    torch.manual_seed(0)
    train_set, val_set = _Pairs(16, 0), _Pairs(7, 1)
    train = DataLoader(train_set, batch_size=3,
                       sampler=DistributedSampler(train_set, world_size, rank, seed=cfg.seed))
    val = DataLoader(Subset(val_set, range(rank, len(val_set), world_size)), batch_size=2)
    model = _BNMasker()
    res = train_model(model, train, val, _l1, cfg, torch.device("cpu"), is_main=rank == 0)
    torch.save(model.state_dict(), os.path.join(out_dir, f"bn_rank{rank}.pt"))
    return res


def test_validation_over_uneven_shards_is_the_mean_over_every_item_of_rank0s_model(tmp_path):
    cfg = RunConfig(model="tiny", work_dir=str(tmp_path / "work"), epochs=1, lr=1e-2,
                    num_workers=0, seed=5)
    res = launch_training(_uneven_val_rank_fn, cfg, num_processes=2, backend="gloo",
                          args=(cfg, str(tmp_path)))
    model = _BNMasker()
    model.load_state_dict(torch.load(tmp_path / "bn_rank0.pt"))  # the weights rank 0 saved
    model.eval()
    val = _Pairs(7, 1)
    with torch.no_grad():
        expected = float(_l1(model(val.noisy), val.clean))  # all 7 items, each once
    assert res.history[0]["val_loss"] == pytest.approx(expected, rel=1e-5)


def _waits_for_a_dead_peer(rank, world, how):
    """Rank 1 fails while rank 0 waits for it in a collective (a barrier)."""
    import torch.distributed as dist_

    if rank == 1:
        if how == "raise":
            raise RuntimeError("CUDA out of memory in rank 1 (simulated)")
        os._exit(9)  # killed: the out-of-memory killer, a segfault in a kernel
    dist_.barrier()
    return "rank 0 should never get here"


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_dead_worker_ends_the_run_with_its_traceback_not_a_hang(how):
    import time

    t0 = time.monotonic()
    with pytest.raises(TrainingWorkerError) as info:
        launch_training(_waits_for_a_dead_peer, None, num_processes=2, backend="gloo",
                        args=(how,))
    message = str(info.value)
    # Rank 0, waiting in the barrier, may fail on the closed connection before the parent sees
    # rank 1's failure: either is reported, with its traceback or exit code, and the run ends.
    assert "training worker (rank " in message and "GPUS = 1" in message
    if "rank 1" in message.split("\n", 1)[0]:
        expected = ("CUDA out of memory in rank 1 (simulated)" if how == "raise"
                    else "terminated with exit code 9")
        assert expected in message
    else:
        assert "Traceback" in message
    assert time.monotonic() - t0 < 120  # ended, not hung in the barrier
