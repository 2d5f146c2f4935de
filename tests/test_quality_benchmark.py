"""benchmarks/quality.py: model specs from the registry, one table with peers and models."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from smoke.dataset import build_local_dataset

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
TINY_CRN = "crn:enc_channels=[4,8,8],lstm_hidden=8,dec_channels=[8,4,4]"


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality_under_test", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_model_specs(quality):
    spec = quality.parse_model_spec(TINY_CRN + ",output=crm,loss=hybrid,lr=0.002")
    assert (spec.name, spec.loss, spec.lr) == ("crn", "hybrid", 0.002)
    assert spec.kwargs == {"enc_channels": [4, 8, 8], "lstm_hidden": 8,
                           "dec_channels": [8, 4, 4], "output": "crm"}
    assert quality.parse_model_spec("dpt").loss == quality.RunConfig.loss
    with pytest.raises(ValueError, match="unknown model 'unet'; known: .*crn"):
        quality.parse_model_spec("unet")
    with pytest.raises(ValueError, match="is not key=value"):
        quality.parse_model_spec("crn:output")
    with pytest.raises(ValueError, match="masker output"):
        quality.parse_model_spec("crn:output=phase")
    with pytest.raises(ValueError, match="unknown loss"):
        quality.parse_model_spec("crn:loss=l7")


def test_default_rows_are_every_registered_model(quality, monkeypatch, tmp_path):
    seen = {}

    def fake_run(minutes, specs, peers, data, **kw):
        seen.update(specs=[s.name for s in specs], peers=peers)
        return []

    monkeypatch.setattr(quality, "run_benchmark", fake_run)
    assert quality.main(["--minutes", "1", "--data", str(tmp_path)]) == 0
    assert seen["specs"] == quality.model_names()
    assert seen["peers"] == list(quality.PEERS)


def test_one_run_prints_peers_and_models_in_one_table(quality, tmp_path, capsys):
    data = build_local_dataset(tmp_path / "d", n_train=2, n_test=1, seconds=2.0, seed=1)
    out = tmp_path / "table.md"
    code = quality.main(["--minutes", "0.02", "--data", str(data), "--model", TINY_CRN,
                         "--peer", "noisy", "--peer", "wiener", "--batch-size", "2",
                         "--crop-seconds", "0.5", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[2:]] == ["| noisy (input)", "| wiener",
                                                      f"| {TINY_CRN}"]
    assert "min of CPU training per model" in text and out.read_text().strip() in text
    crn_row = rows[-1].split(" | ")
    assert int(crn_row[2]) >= 1  # trained at least one step
    assert all(cell != "n/a" for cell in crn_row[3:6])
