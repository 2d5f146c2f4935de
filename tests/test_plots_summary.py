"""Training-curve and spectrogram figures; the summary JSON and its NaN handling."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from torch import nn

from templates.config import RunConfig
from templates.metrics import ScoreRow, ScoreTable
from templates.plots import plot_spectrograms, plot_training_curves
from templates.summary import build_summary, write_summary
from templates.train import TrainResult

PNG = b"\x89PNG\r\n\x1a\n"


def _history(n=6):
    lrs = [1e-3] * 4 + [5e-4] * (n - 4)
    return [{"epoch": e, "train_loss": 0.08 - 0.004 * e, "val_loss": 0.07 - 0.003 * e + 0.002 * (e == 5),
             "lr": lrs[e - 1], "seconds": 1.0, "saved": True} for e in range(1, n + 1)]


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_training_curves_png(tmp_path):
    out = plot_training_curves(_history(), tmp_path / "sub" / "training_curves.png")
    w, h = _png_size(out)
    assert w > 1000 and h > 500
    with pytest.raises(ValueError, match="history is empty"):
        plot_training_curves([], tmp_path / "x.png")


def test_spectrogram_png_rows_per_example(tmp_path):
    rng = np.random.default_rng(0)
    examples = [{"name": f"{i:04d}.wav", "noisy": rng.standard_normal(16000 * 2),
                 "enhanced": 0.5 * rng.standard_normal(16000 * 2),
                 "clean": np.sin(np.arange(32000) * 0.1)} for i in range(3)]
    one = plot_spectrograms(examples[:1], tmp_path / "one.png")
    three = plot_spectrograms(examples, tmp_path / "spectrogram_comparison.png")
    assert _png_size(three)[1] > 2 * _png_size(one)[1]
    with pytest.raises(ValueError, match="no examples"):
        plot_spectrograms([], tmp_path / "y.png")


def _table(pesq_enh=1.5):
    rows = [ScoreRow("0001.wav", 1.1, pesq_enh, 0.7, 0.8, 0.0, 5.0),
            ScoreRow("0002.wav", 1.3, pesq_enh, 0.74, 0.86, 1.0, 7.0)]
    return ScoreTable(rows=rows, skipped=[("0003.wav", "unreadable: bad header")])


def _summary(table):
    cfg = RunConfig(model="tiny", work_dir="/tmp/w", epochs=3)
    train = TrainResult(history=_history(3), best_epoch=3, best_val=0.061, epochs_run=3,
                        train_seconds=12.34, stopped_early=False)
    return build_summary(cfg=cfg, model=nn.Linear(3, 2), train_result=train,
                         eval_result=SimpleNamespace(table=table, examples=[], mode="first3"))


def test_summary_fields_and_roundtrip(tmp_path):
    s = _summary(_table())
    for key in ("model", "params", "epochs_run", "best_epoch", "best_val_loss", "train_seconds",
                "n_test", "n_skipped", "eval_mode", "metrics", "versions", "config"):
        assert key in s, key
    assert s["params"] == 8 and s["n_test"] == 2 and s["n_skipped"] == 1
    assert s["metrics"]["noisy"]["pesq"] == pytest.approx(1.2)
    assert s["metrics"]["delta"]["si_sdr"] == pytest.approx(5.5)
    assert s["versions"]["python"] and s["versions"]["torch"] and "pesq" in s["versions"]
    assert s["config"]["epochs"] == 3 and s["null_reasons"] == []
    path = write_summary(s, tmp_path / "tiny_summary.json")
    assert json.loads(path.read_text()) == s


def test_nan_becomes_null_with_reason_and_raw_nan_is_refused(tmp_path):
    s = _summary(_table(pesq_enh=math.nan))
    assert s["metrics"]["enhanced"]["pesq"] is None and s["metrics"]["delta"]["pesq"] is None
    assert any(r.startswith("metrics.enhanced.pesq: nan") for r in s["null_reasons"])
    write_summary(s, tmp_path / "ok.json")
    with pytest.raises(ValueError, match=r"bad\.json: metrics\.x = nan cannot be written"):
        write_summary({"metrics": {"x": math.nan}}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def test_null_reason_of_a_training_number_does_not_blame_the_test_files():
    cfg = RunConfig(model="tiny", work_dir="/tmp/w", epochs=1)
    train = TrainResult(history=_history(1), best_epoch=0, best_val=math.inf, epochs_run=1)
    s = build_summary(cfg=cfg, model=nn.Linear(3, 2), train_result=train,
                      eval_result=SimpleNamespace(table=_table(pesq_enh=math.nan), examples=[],
                                                  mode="full"))
    assert s["best_val_loss"] is None
    reasons = dict(r.split(": ", 1) for r in s["null_reasons"])
    assert reasons["best_val_loss"] == "inf (not finite)"
    assert reasons["metrics.enhanced.pesq"] == "nan (no file could be scored)"
