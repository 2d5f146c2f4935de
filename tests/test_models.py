"""CRN / DPT maskers on the shared front end: shapes, masks, configs, parameter counts."""

import json

import pytest
import torch

from templates.models import registry
from templates.models.base import MaskingModel, compress_magnitude
from templates.models.registry import (
    build_model,
    count_parameters,
    format_parameter_split,
    model_names,
    parameter_split,
    register_model,
)

TINY = {
    "crn": {"enc_channels": (4, 8, 8), "lstm_hidden": 8, "dec_channels": (8, 4, 4)},
    "dpt": {"enc_channels": (4,), "d_model": 16, "n_heads": 2, "d_ff": 32, "dec_channels": 4},
}
SEED_PARAMS = {"crn": 1_811_009, "dpt": 904_705}


def tiny(name, **kw):
    return build_model(name, **{**TINY[name], **kw})


def test_registry_names_and_unknown():
    assert {"crn", "dpt"} <= set(model_names())
    with pytest.raises(ValueError, match="known models: .*crn.*dpt"):
        build_model("unet")


@pytest.mark.parametrize("name", ["crn", "dpt"])
@pytest.mark.parametrize("length", [16000, 16000 + 123, 4000])
def test_forward_keeps_length(name, length):
    model = tiny(name)
    wav = torch.rand(2, length)
    out = model(wav)
    assert out.shape == wav.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["crn", "dpt"])
def test_enhance_spec_parts_and_mask_range(name):
    model = tiny(name).eval()
    wav = torch.randn(2, 48000) * 0.1
    with torch.no_grad():
        out = model.enhance_spec(wav)
    assert set(out) == {"spec", "mag", "mask", "enhanced_spec"}
    for key in out:
        assert out[key].shape == (2, 257, 188), key
    assert out["mask"].min() >= 0 and out["mask"].max() <= 1
    torch.testing.assert_close(out["enhanced_spec"], out["spec"] * out["mask"])
    torch.testing.assert_close(out["mag"], out["spec"].abs())
    # forward is exactly the inverse of the masked spectrum
    with torch.no_grad():
        wav_out = model(wav)
    torch.testing.assert_close(wav_out, model.front_end.istft(out["enhanced_spec"], 48000))


@pytest.mark.parametrize("name", ["crn", "dpt"])
def test_masker_contract(name):
    model = tiny(name).eval()
    mag = torch.rand(3, 1, 257, 20)
    assert model.masker(mag).shape == (3, 257, 20)
    with pytest.raises(ValueError, match=r"\(3, 257, 20\)"):
        model.masker(mag.squeeze(1))


@pytest.mark.parametrize("name", ["crn", "dpt"])
@pytest.mark.parametrize("shape", [(2, 1, 16000), (16000,)])
def test_wrong_input_shape_is_a_clear_error(name, shape):
    with pytest.raises(ValueError, match=r"\(B, T\).*" + str(shape[0])):
        tiny(name)(torch.rand(*shape))


@pytest.mark.parametrize("name", ["crn", "dpt"])
def test_rebuild_from_config_gives_identical_outputs(name):
    model = tiny(name).eval()
    config = json.loads(json.dumps(model.get_config()))  # survives a checkpoint's JSON config
    clone = build_model(name, **config).eval()
    clone.load_state_dict(model.state_dict())
    wav = torch.rand(2, 8000)
    with torch.no_grad():
        torch.testing.assert_close(clone(wav), model(wav), rtol=0, atol=0)
    assert clone.get_config() == model.get_config()


@pytest.mark.parametrize("name", ["crn", "dpt"])
def test_eval_mode_is_deterministic(name):
    model = tiny(name).eval()
    wav = torch.rand(2, 8000)
    with torch.no_grad():
        torch.testing.assert_close(model(wav), model(wav), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["crn", "dpt"])
def test_gradients_reach_every_parameter(name):
    model = tiny(name).train()
    wav = torch.rand(2, 8000)
    model(wav).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.parametrize("name", ["crn", "dpt"])
def test_full_size_parameter_count_within_two_percent_of_seed(name):
    model = build_model(name)
    n = count_parameters(model)
    assert abs(n - SEED_PARAMS[name]) / SEED_PARAMS[name] < 0.02
    split = parameter_split(model)
    assert sum(split.values()) == n
    assert "other" not in split


def test_crn_split_matches_seed():
    split = parameter_split(build_model("crn"))
    total = sum(split.values())
    assert total == 1_811_009
    shares = {k: round(100 * v / total, 1) for k, v in split.items()}
    assert shares == {"encoder": 20.5, "lstm": 58.1, "decoder": 21.4}


def test_warmup_attribute_for_the_trainer():
    assert build_model("dpt").default_warmup_epochs == 3
    assert build_model("crn").default_warmup_epochs == 0


def test_crn_lstm_projection_when_hidden_differs():
    model = tiny("crn", lstm_hidden=6)
    assert model(torch.rand(1, 4000)).shape == (1, 4000)


def test_dpt_rejects_bad_heads():
    with pytest.raises(ValueError, match="divisible"):
        tiny("dpt", n_heads=3)


@pytest.mark.parametrize("mode", ["power", "log1p", "none"])
def test_compression_modes(mode):
    mag = torch.tensor([0.0, 1.0, 100.0])
    out = compress_magnitude(mag, mode)
    assert out[1] == pytest.approx(1.0 if mode != "log1p" else 0.6931, abs=1e-4)
    assert (out.diff() > 0).all()  # monotonic: the masker sees the same ordering of bins
    tiny("crn", compress=mode)(torch.rand(1, 4000))
    with pytest.raises(ValueError, match="compression"):
        tiny("crn", compress="cube")


def test_register_model_for_a_new_masker(monkeypatch):
    # A private copy, so other tests (and smoke checks over model_names()) never see the dummy.
    monkeypatch.setattr(registry, "_MODEL_REGISTRY", dict(registry._MODEL_REGISTRY))

    @register_model("test_allpass")
    class AllPass(MaskingModel):
        def masker(self, mag):
            self._check_masker_input(mag)
            return torch.ones_like(mag[:, 0])

    model = build_model("test_allpass")
    assert model.model_name == "test_allpass" and "test_allpass" in model_names()
    wav = torch.randn(1, 8000)
    torch.testing.assert_close(model(wav), wav, atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="not a MaskingModel subclass"):
        register_model("not_a_model")(int)


@pytest.mark.parametrize("name", ["crn", "dpt"])
def test_module_cli_prints_count_and_split(name):
    text = format_parameter_split(build_model(name))
    lines = text.splitlines()
    assert lines[0] == f"params: {count_parameters(build_model(name))}"
    assert len(lines) == 4 and all("%" in line for line in lines[1:])


# ---- complex ratio mask (output="crm") ---------------------------------------------------

TINY_CAUSAL = {"channels": (4, 8, 8), "hidden": 8}


def tiny_any(name, **kw):
    return build_model(name, **{**(TINY_CAUSAL if name == "crn_causal" else TINY[name]), **kw})


@pytest.mark.parametrize("name", ["crn", "dpt", "crn_causal"])
def test_crm_output_is_a_bounded_complex_mask_that_rotates_phase(name):
    model = tiny_any(name, output="crm").eval()
    assert model.get_config()["output"] == "crm" and model.in_channels == 3
    wav = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        out = model.enhance_spec(wav)
        wav_out = model(wav)
    mask = out["mask"]
    assert mask.shape == (2, 257, 63) and torch.is_complex(mask)
    assert mask.real.abs().max() < 1 and mask.imag.abs().max() < 1
    assert mask.imag.abs().max() > 0  # not a real mask in disguise
    torch.testing.assert_close(out["enhanced_spec"], out["spec"] * mask)
    assert wav_out.shape == wav.shape and torch.isfinite(wav_out).all()
    # the masker sees |X|, Re X, Im X
    with pytest.raises(ValueError, match=r"\(B, 3, 257, N\)"):
        model.masker(torch.rand(1, 1, 257, 10))


@pytest.mark.parametrize("name", ["crn", "dpt", "crn_causal"])
def test_crm_rebuilds_from_config_and_trains_every_parameter(name):
    model = tiny_any(name, output="crm")
    clone = build_model(name, **json.loads(json.dumps(model.get_config())))
    clone.load_state_dict(model.state_dict())
    model.train()(torch.rand(2, 8000)).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_old_configs_without_output_are_real_mask_models():
    """Checkpoints written before the option have no "output" key: they build a mask model."""
    config = build_model("crn").get_config()
    assert config["output"] == "mask"
    del config["output"]
    assert build_model("crn", **config).output == "mask"
    with pytest.raises(ValueError, match="masker output"):
        build_model("crn", output="phase")


def test_crm_parameter_counts():
    """Default (mask) counts are the documented ones; crm adds two input and one output channel."""
    counts = {n: (count_parameters(build_model(n)), count_parameters(build_model(n, output="crm")))
              for n in ("crn", "dpt", "crn_causal")}
    assert counts == {"crn": (1_811_009, 1_812_194), "dpt": (913_281, 914_466),
                      "crn_causal": (1_612_673, 1_613_826)}
