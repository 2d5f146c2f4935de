"""templates.export: INT8 + ONNX artefacts and the latency table; ONNX skipped when missing."""

import sys

import pytest
import torch

from deploy.onnx_export import onnx_session
from deploy.quantize import load_int8
from templates.export import export_artifacts
from templates.models.registry import build_model
from templates.outputs import export_files

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return build_model("crn_causal", channels=[4, 8, 8], hidden=16).eval()


def test_export_writes_artifacts_and_latency(model, tmp_path, capsys):
    out = export_artifacts(model, tmp_path, repeats=1)
    assert out["onnx_skipped"] is None
    assert [r["variant"] for r in out["latency"]] == ["fp32", "int8", "onnx"]
    assert all(r["ms_per_hop_median"] > 0 and r["size_mb"] > 0 for r in out["latency"])
    assert "ms/hop" in capsys.readouterr().out
    # exactly the listed exports: no fp32 scratch copy, no temp file of the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(export_files("crn_causal"))
    x = 0.3 * torch.randn(1, 4000)
    with torch.no_grad():
        ref = model(x)
        q = load_int8(out["int8_path"])(x)
    assert (q - ref).abs().max() < 0.05
    mag = torch.rand(1, 1, 257, 9)
    mask = onnx_session(out["onnx_path"]).run(None, {"magnitude": mag.numpy()})[0]
    with torch.no_grad():
        assert abs(mask - model.masker(mag).numpy()).max() < 1e-4
    assert model.training is False


def test_export_skips_onnx_with_reason_when_missing(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails like on a bare image
    out = export_artifacts(model, tmp_path, repeats=1)
    assert out["onnx_path"] is None and "pip install onnx onnxruntime" in out["onnx_skipped"]
    assert [r["variant"] for r in out["latency"]] == ["fp32", "int8"]
    assert "ONNX export skipped" in capsys.readouterr().out


def test_export_dpt_onnx_runs_at_any_frame_count(tmp_path, capsys):
    """The notebook's DPT artefact is exported at 188 frames and must run at other lengths."""
    torch.manual_seed(0)
    dpt = build_model("dpt", enc_channels=[8], d_model=16, n_heads=2, d_ff=32).eval()
    out = export_artifacts(dpt, tmp_path, repeats=1)
    assert out["onnx_skipped"] is None, out["onnx_skipped"]
    sess = onnx_session(out["onnx_path"])
    for n in (5, 188, 250):
        mag = torch.rand(1, 1, 257, n)
        mask = sess.run(None, {"magnitude": mag.numpy()})[0]
        with torch.no_grad():
            assert abs(mask - dpt.masker(mag).numpy()).max() < 1e-4
