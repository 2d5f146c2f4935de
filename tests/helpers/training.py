"""A tiny waveform masker, epoch-dependent noisy/clean pairs and a RunConfig for train_model.

Shared by tests/test_train.py and tests/test_session_limits.py.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from templates.config import RunConfig

CPU = torch.device("cpu")


class TinyMasker(nn.Module):
    """A 1-layer waveform masker with dropout, so RNG state matters for exact resume."""

    default_warmup_epochs = 0

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size=5, padding=2)
        self.drop = nn.Dropout(0.2)

    def forward(self, wav):  # (B, T) -> (B, T)
        mask = torch.sigmoid(self.drop(self.conv(wav.unsqueeze(1)))).squeeze(1)
        return wav * mask


class NoisyPairs(Dataset):
    """Items (noisy, clean) whose crop depends on the epoch, like AlignedCropDataset."""

    def __init__(self, n=12, length=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.clean = torch.randn(n, length * 2, generator=g)
        self.noise = 0.5 * torch.randn(n, length * 2, generator=g)
        self.length = length
        self.epoch = 0
        self.epochs_seen = []

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __len__(self):
        return len(self.clean)

    def __getitem__(self, i):
        off = (i * 7 + self.epoch * 13) % self.length
        c = self.clean[i, off: off + self.length]
        return c + self.noise[i, off: off + self.length], c


def tiny_loaders(seed=0, batch=4):
    """(train, val) loaders over NoisyPairs; the train order is fixed by ``seed``."""
    train = DataLoader(NoisyPairs(seed=seed), batch_size=batch, shuffle=True, num_workers=0,
                       generator=torch.Generator().manual_seed(seed))
    val = DataLoader(NoisyPairs(n=6, seed=seed + 1), batch_size=batch, shuffle=False)
    return train, val


def l1(est, clean):
    """Mean absolute waveform error: the loss train_model is given."""
    return (est - clean).abs().mean()


def tiny_config(tmp_path, **kw):
    """A RunConfig for model "tiny" writing into ``tmp_path``; ``kw`` overrides fields."""
    base = dict(model="tiny", work_dir=str(tmp_path), epochs=2, lr=1e-2, seed=3, patience=5,
                checkpoint_every=1, num_workers=0)
    base.update(kw)
    return RunConfig(**base)
