"""Compact CRN: size, band matrices, causality, stream == whole file, INT8, ONNX, enhance."""

import numpy as np
import pytest
import soundfile as sf
import torch

from deploy.streaming import StreamingEnhancer, stream_enhance
from templates.models.compact_crn import (
    CompactCRN,
    band_merge_matrix,
    band_spread_matrix,
    multiply_accumulates_per_frame,
)
from templates.models.registry import build_model, count_parameters, model_names, parameter_split


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = CompactCRN(channels=8, dilations=(1, 2), n_dual_path=1)
    # Non-trivial BatchNorm statistics, so eval-mode normalisation is exercised.
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(2, 4000))
    return m.eval()


def test_default_size_is_about_50k_parameters_and_rebuilds_from_config():
    m = build_model("compact_crn")
    assert "compact_crn" in model_names()
    assert 40_000 <= count_parameters(m) <= 60_000
    assert set(parameter_split(m)) == {"encoder", "dual_path", "decoder"}
    # About RNNoise's order of compute: well under 0.1 GMAC/s at 62.5 frames per second.
    assert 20e6 < multiply_accumulates_per_frame(m) * 62.5 < 100e6
    m2 = build_model("compact_crn", **m.get_config())
    m2.load_state_dict(m.state_dict())
    x = torch.randn(1, 3000)
    with torch.no_grad():
        torch.testing.assert_close(m2.eval()(x), m.eval()(x))


def test_band_matrices_keep_low_bins_and_are_convex():
    spread = band_spread_matrix(257, 65, 64)
    assert spread.shape == (257, 129)
    torch.testing.assert_close(spread.sum(dim=1), torch.ones(257))
    assert (spread >= 0).all()
    torch.testing.assert_close(spread[:65, :65], torch.eye(65))
    merge = band_merge_matrix(spread)
    torch.testing.assert_close(merge.sum(dim=1), torch.ones(129))
    assert (merge.sum(dim=0) > 0).all()  # every bin reaches some band
    # ERB spacing: the first high band is narrower (in bins) than the last one.
    width = (spread[65:] > 0).sum(dim=0)[65:]
    assert width[0] < width[-1]
    with pytest.raises(ValueError, match="band layout"):
        band_spread_matrix(257, 0, 64)


def test_mask_is_in_unit_range_with_input_shape(model):
    mag = torch.rand(2, 1, 257, 11) * 10
    with torch.no_grad():
        mask = model.masker(mag)
    assert mask.shape == (2, 257, 11)
    assert mask.min() >= 0 and mask.max() <= 1
    with pytest.raises(ValueError, match=r"expects a magnitude of shape \(B, 1, 257, N\)"):
        model.masker(torch.rand(1, 257, 11))


def test_masker_step_matches_masker_frame_by_frame(model):
    mag = torch.rand(1, 1, 257, 12) * 3
    state = model.init_state(1)
    with torch.no_grad():
        whole = model.masker(mag)
        steps = []
        for n in range(12):
            m, state = model.masker_step(mag[..., n], state)
            steps.append(m)
    torch.testing.assert_close(torch.stack(steps, dim=-1), whole, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="masker_step expects"):
        model.masker_step(torch.rand(1, 257), model.init_state())


@pytest.mark.parametrize("drop", ["gru", "enc"])
def test_equivalence_test_detects_dropped_state(model, monkeypatch, drop):
    """The stream == whole-file check fails when the GRU or conv state is not carried."""
    x = 0.3 * torch.randn(5000)
    with torch.no_grad():
        whole = model(x[None])[0]
    step = CompactCRN.masker_step

    def step_with_fresh_part(self, mag, state):
        fresh = self.init_state(mag.shape[0], device=mag.device)
        return step(self, mag, {**state, drop: fresh[drop]})

    monkeypatch.setattr(CompactCRN, "masker_step", step_with_fresh_part)
    assert (stream_enhance(model, x, 256) - whole).abs().max() > 5e-4


def test_int8_streams_round_trips_and_stays_close(model, tmp_path):
    from torch.ao.nn.quantized.dynamic import GRU as DynamicQuantizedGRU

    from deploy.quantize import load_int8, model_config, quantize_int8, save_int8

    q = quantize_int8(model)
    assert any(isinstance(m, DynamicQuantizedGRU) for m in q.modules())
    x = 0.3 * torch.randn(4000)
    with torch.no_grad():
        ref, out = model(x[None])[0], q(x[None])[0]
    assert (ref - out).abs().max() < 0.05
    s = StreamingEnhancer(q)
    streamed = torch.cat([s.process(x[:2000]), s.process(x[2000:]), s.flush()])
    assert streamed.shape == x.shape and torch.isfinite(streamed).all()
    reloaded = load_int8(save_int8(q, tmp_path / "compact_crn_int8.pth", model_config(model)))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x[None])[0], out)


def test_onnx_masker_matches_torch(model, tmp_path):
    pytest.importorskip("onnxruntime")
    from templates.export import export_masker_onnx

    # export_masker_onnx runs onnxruntime at three frame counts and raises on a mismatch
    path = export_masker_onnx(model, tmp_path / "compact_crn_masker.onnx", n_frames=20)
    assert path.stat().st_size > 0


def test_enhance_cli_runs_a_compact_checkpoint(model, tmp_path):
    from deploy.enhance import main
    from templates.checkpoint import save_checkpoint

    kw = model.get_config()
    ckpt = save_checkpoint(tmp_path / "compact_crn_best.pth", model=model,
                           optimizer=torch.optim.Adam(model.parameters()), epoch=1, best_val=0.1,
                           config={"model": "compact_crn", "model_kwargs": kw})
    src = tmp_path / "in.wav"
    sf.write(src, (0.2 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32),
             16000)
    out = tmp_path / "out"
    assert main([str(ckpt), str(src), "--out", str(out), "--no-progress"]) == 0
    enhanced, rate = sf.read(out / "in.wav")
    assert rate == 16000 and enhanced.shape == (8000,)


def test_onnx_step_streams_like_the_whole_file(model, tmp_path):
    pytest.importorskip("onnxruntime")
    from deploy.onnx_streaming import OnnxStepModel, export_step_onnx

    path = export_step_onnx(model, tmp_path / "compact_crn_step.onnx", check_frames=8)
    step = OnnxStepModel(model, path)
    x = 0.3 * torch.randn(5000)
    with torch.no_grad():
        whole = model(x[None])[0]
    for chunk in (256, 777):
        assert (stream_enhance(step, x, chunk) - whole).abs().max() < 1e-4
    with pytest.raises(ValueError, match="batch 1"):
        step.init_state(2)


def test_onnx_step_export_refuses_offline_models_and_detects_drift(model, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from deploy import onnx_streaming

    with pytest.raises(TypeError, match="no masker_step"):
        onnx_streaming.export_step_onnx(build_model("crn"), tmp_path / "crn.onnx")
    # A step that forgets its state between frames cannot match the whole-sequence mask.
    forgetful = onnx_streaming.OnnxStepModel.masker_step

    def no_memory(self, mag, state):
        return forgetful(self, mag, self.init_state(1))

    monkeypatch.setattr(onnx_streaming.OnnxStepModel, "masker_step", no_memory)
    with pytest.raises(RuntimeError, match="drifts from the whole-sequence mask"):
        onnx_streaming.export_step_onnx(model, tmp_path / "bad.onnx", check_frames=8)
