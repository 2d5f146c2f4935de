"""Figures of a run: training curves and noisy | enhanced | clean spectrograms.

matplotlib is imported inside the functions with the Agg backend, so the figures render on a
headless machine and a missing matplotlib fails only when a figure is asked for.
"""

import math
from pathlib import Path

import numpy as np
import torch

from compat.sample_rate import SAMPLE_RATE


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib is on Kaggle and in our venv
        raise ImportError("plots need matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(history, path) -> Path:
    """Train and val loss per epoch (two panels), best epoch and LR drops marked.

    ``history``: dicts with ``epoch``, ``train_loss``, ``val_loss``, ``lr`` (``TrainResult``).
    """
    if not history:
        raise ValueError("plot_training_curves: the history is empty (no epoch was run)")
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in history]
    train = [float(r["train_loss"]) for r in history]
    val = [float(r["val_loss"]) for r in history]
    lrs = [float(r["lr"]) for r in history]
    finite_val = [(v, e) for v, e in zip(val, epochs, strict=True) if math.isfinite(v)]
    best_val, best_epoch = min(finite_val) if finite_val else (None, None)
    drops = [e for e, prev, cur in zip(epochs[1:], lrs, lrs[1:], strict=False) if cur < prev * 0.999]

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharex=True)
    for ax, values, colour, title in (
        (axes[0], train, "tab:blue", "train loss"),
        (axes[1], val, "tab:orange", "validation loss"),
    ):
        ax.plot(epochs, values, marker="o", markersize=3, color=colour, label=title)
        for k, e in enumerate(drops):
            ax.axvline(e, color="grey", linestyle=":", linewidth=1,
                       label="LR drop" if k == 0 else None)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    if best_epoch is not None:
        axes[1].scatter([best_epoch], [best_val], s=80, facecolors="none", edgecolors="red",
                        zorder=3, label=f"best: ep {best_epoch}, {best_val:.4f}")
    for ax in axes:
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{len(epochs)} epochs, final lr {lrs[-1]:.1e}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=125)
    plt.close(fig)
    return path


def log_magnitude_db(wav, n_fft: int = 512, hop: int = 256) -> np.ndarray:
    """(F, N) log-magnitude spectrogram in dB of a waveform (T,), Hann window."""
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, window=torch.hann_window(n_fft),
                      return_complex=True)
    return (20 * torch.log10(spec.abs() + 1e-8)).numpy()


def plot_spectrograms(examples, path, sample_rate: int = SAMPLE_RATE, max_seconds: float = 6.0) -> Path:
    """One row per example, columns noisy | enhanced | clean, one colour scale for all panels.

    ``examples``: dicts with ``noisy``, ``enhanced``, ``clean`` waveforms (T,) and ``name``
    (``EvalResult.examples``). Each waveform is cut to its first ``max_seconds``.
    """
    if not examples:
        raise ValueError("plot_spectrograms: no examples to plot")
    plt = _pyplot()
    keep = int(max_seconds * sample_rate)
    cols = ("noisy", "enhanced", "clean")
    specs = [[log_magnitude_db(np.asarray(ex[c])[:keep]) for c in cols] for ex in examples]
    vmax = max(float(s.max()) for row in specs for s in row)
    vmin = vmax - 80.0  # 80 dB of dynamic range, shared so the panels compare
    fig, axes = plt.subplots(len(examples), 3, figsize=(14, 3.2 * len(examples)), squeeze=False,
                             constrained_layout=True)
    image = None
    for r, (ex, row) in enumerate(zip(examples, specs, strict=True)):
        for c, (col, spec) in enumerate(zip(cols, row, strict=True)):
            ax = axes[r][c]
            seconds = spec.shape[1] * 256 / sample_rate
            image = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=vmin,
                              vmax=vmax, extent=(0, seconds, 0, sample_rate / 2000))
            ax.set_title(f"{ex.get('name', r)}: {col}", fontsize=9)
            ax.set_xlabel("s")
            if c == 0:
                ax.set_ylabel("kHz")
    fig.colorbar(image, ax=axes, shrink=0.8, label="dB")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
