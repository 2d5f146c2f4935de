"""INT8 dynamic quantization and the ONNX masker: structure, round trips, numerical agreement."""
import pytest
import torch
from torch import nn

from deploy.onnx_export import ONNX_MASK_TOLERANCE, OnnxEnhancer, export_masker_onnx, onnx_session
from deploy.quantize import load_int8, model_config, quantize_int8, save_int8
from templates.models.registry import build_model

# torch 2.13 deprecates the quantized tensor API that quantize_dynamic uses; it still works.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

TINY = {
    "crn": {"enc_channels": [4, 8, 16], "lstm_hidden": 16, "dec_channels": [8, 4, 4]},
    "crn_causal": {"channels": [4, 8, 8], "hidden": 16},
    "dpt": {"enc_channels": [8], "d_model": 16, "n_heads": 2, "d_ff": 32},
}


def _tiny(name, **kw):
    torch.manual_seed(0)
    m = build_model(name, **TINY[name], **kw)
    m.train()
    with torch.no_grad():  # non-default BatchNorm statistics
        m(torch.randn(2, 3000))
    return m.eval()


@pytest.mark.parametrize("name", ["crn_causal", "dpt"])
def test_int8_quantizes_lstm_and_linear_only(name, tmp_path):
    m = _tiny(name)
    q = quantize_int8(m)
    kinds = {type(mod).__module__ for mod in q.modules()}
    assert any("quantized" in k for k in kinds)
    assert any(isinstance(mod, nn.Conv2d) for mod in q.modules())  # convs stay fp32
    if name == "dpt":  # attention stays fp32 (see deploy/quantize.py)
        assert any(isinstance(mod, nn.MultiheadAttention) for mod in q.modules())
    assert m.training is False and not any("quantized" in type(x).__module__ for x in m.modules())
    x = 0.3 * torch.randn(1, 8000)
    with torch.no_grad():
        ref, out = m(x), q(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3  # close, not identical
    path = save_int8(q, tmp_path / "m_int8.pth", model_config(m))
    with torch.no_grad():
        torch.testing.assert_close(load_int8(path)(x), out)


def test_an_interrupted_int8_save_leaves_the_previous_file(tmp_path, monkeypatch):
    m = _tiny("crn_causal").eval()
    q = quantize_int8(m)
    path = save_int8(q, tmp_path / "m_int8.pth", model_config(m))
    before = path.read_bytes()

    def dies_midway(obj, f):  # a session killed (or a disk filled) half way through the write
        if isinstance(f, (str, bytes)) or hasattr(f, "__fspath__"):
            f = open(f, "wb")
        f.write(before[: len(before) // 2])
        f.flush()
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError, match="No space"):
        save_int8(q, path, model_config(m))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m_int8.pth"]  # no temp file left behind
    monkeypatch.undo()
    load_int8(path)


def test_load_int8_rejects_other_files(tmp_path):
    torch.save({"model": {}}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="x.pth: not an INT8 model file"):
        load_int8(tmp_path / "x.pth")


def test_onnx_dpt_masker_matches_torch_at_export_length(tmp_path):
    m = _tiny("dpt")
    sess = onnx_session(export_masker_onnx(m, tmp_path / "dpt.onnx", n_frames=20))
    mag = torch.rand(1, 1, 257, 20) * 3
    with torch.no_grad():
        ref = m.masker(mag).numpy()
    assert abs(sess.run(None, {"magnitude": mag.numpy()})[0] - ref).max() < ONNX_MASK_TOLERANCE


# DPT included: torch's nn.MultiheadAttention code would freeze the frame count in the legacy
# exporter's graph; export_masker_onnx traces attention through a reshape-free equivalent.
@pytest.mark.parametrize("name", ["crn", "crn_causal", "dpt"])
def test_onnx_masker_matches_torch(name, tmp_path):
    m = _tiny(name)
    path = export_masker_onnx(m, tmp_path / f"{name}.onnx", n_frames=20)
    assert m.training is False  # the exporter must not leave the model in training mode
    sess = onnx_session(path)
    for n in (7, 33):  # frame axis is dynamic
        mag = torch.rand(1, 1, 257, n) * 3
        out = sess.run(None, {"magnitude": mag.numpy()})[0]
        with torch.no_grad():
            ref = m.masker(mag).numpy()
        assert out.shape == ref.shape
        assert abs(out - ref).max() < ONNX_MASK_TOLERANCE
    wav = 0.3 * torch.randn(5000)
    with torch.no_grad():
        torch.testing.assert_close(OnnxEnhancer(m, path)(wav), m(wav[None])[0], atol=1e-4, rtol=0)


def test_onnx_export_refuses_a_graph_frozen_at_the_export_length(tmp_path, monkeypatch):
    """Without the attention replacement the DPT graph only runs at 20 frames: export says so."""
    import templates.export

    monkeypatch.setattr(templates.export, "_attention_forward", nn.MultiheadAttention.forward)
    with pytest.raises(RuntimeError, match=r"dpt.onnx: the exported masker fails at 10 frames"):
        export_masker_onnx(_tiny("dpt"), tmp_path / "dpt.onnx", n_frames=20)


def test_onnx_export_leaves_the_model_untouched(tmp_path):
    m = _tiny("dpt")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    export_masker_onnx(m, tmp_path / "dpt.onnx", n_frames=12)
    assert m.training is False
    assert not any("forward" in vars(mod) for mod in m.modules())  # no patched attention left
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("name", ["crn", "crn_causal", "dpt"])
def test_onnx_complex_ratio_mask_leaves_as_a_real_pair(name, tmp_path):
    """ONNX has no complex tensors: a crm masker exports (1, 3, F, N) -> (1, 2, F, N)."""
    from templates.export import mask_from_onnx

    m = _tiny(name, output="crm")
    path = export_masker_onnx(m, tmp_path / f"{name}.onnx", n_frames=20)
    assert m.output == "crm" and not getattr(m, "export_mask_pair", False)  # only the copy
    feats = torch.randn(1, 3, 257, 9)
    out = onnx_session(path).run(None, {"magnitude": feats.numpy()})[0]
    with torch.no_grad():
        ref = m.masker(feats)
    assert out.shape == (1, 2, 257, 9)
    torch.testing.assert_close(mask_from_onnx(torch.from_numpy(out)), ref, atol=4 * ONNX_MASK_TOLERANCE,
                               rtol=0)
    wav = 0.3 * torch.randn(5000)
    with torch.no_grad():
        torch.testing.assert_close(OnnxEnhancer(m, path)(wav), m(wav[None])[0], atol=1e-4, rtol=0)
