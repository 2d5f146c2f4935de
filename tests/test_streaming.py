"""Causal CRN and frame-by-frame streaming: causality, stream == whole file, state carried."""

import pytest
import torch

from deploy.streaming import (
    ALGORITHMIC_LATENCY_MS,
    StreamingEnhancer,
    algorithmic_latency_ms,
    stream_enhance,
)
from templates.models.crn_causal import CausalCRN
from templates.models.registry import build_model


def _warmed(m):
    # Non-trivial BatchNorm statistics, so eval-mode normalisation is exercised.
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(2, 4000))
    return m.eval()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return _warmed(CausalCRN(channels=(4, 8, 8), hidden=16, time_kernel=2))


# Every causal model must keep these promises; small widths keep the tests fast.
CAUSAL_MODELS = {
    "crn_causal": {"channels": (4, 8, 8), "hidden": 16, "time_kernel": 2},
    "compact_crn": {"channels": 8, "dilations": (1, 2), "n_dual_path": 1},
}


@pytest.fixture(scope="module", params=sorted(CAUSAL_MODELS))
def causal_model(request):
    torch.manual_seed(0)
    return _warmed(build_model(request.param, **CAUSAL_MODELS[request.param]))


def test_registered_and_rebuilds_from_config(model):
    m2 = build_model("crn_causal", **model.get_config())
    m2.load_state_dict(model.state_dict())
    x = torch.randn(1, 3000)
    with torch.no_grad():
        torch.testing.assert_close(m2.eval()(x), model(x))


def test_masker_is_causal(causal_model):
    mag = torch.rand(1, 1, 257, 30)
    changed = mag.clone()
    changed[..., 17:] = torch.rand(1, 1, 257, 13) * 5
    with torch.no_grad():
        a, b = causal_model.masker(mag), causal_model.masker(changed)
    torch.testing.assert_close(a[..., :17], b[..., :17], rtol=0, atol=0)
    assert not torch.allclose(a[..., 17:], b[..., 17:])


def test_changing_future_input_keeps_past_output(causal_model):
    x = torch.randn(1, 8000)
    y = x.clone()
    y[:, 5000:] = torch.randn(1, 3000)
    with torch.no_grad():
        a, b = causal_model(x), causal_model(y)
    # Output sample t depends on input up to t + 512 (window); earlier output is untouched.
    torch.testing.assert_close(a[:, : 5000 - 512], b[:, : 5000 - 512], rtol=0, atol=1e-6)
    assert (a[:, 5000:] - b[:, 5000:]).abs().max() > 1e-3


@pytest.mark.parametrize("length", [257, 385, 4096, 5000, 16123])
@pytest.mark.parametrize("chunk", [256, 1, 100, 777])
def test_stream_equals_whole_file(causal_model, length, chunk):
    torch.manual_seed(length)
    x = 0.3 * torch.randn(length)
    with torch.no_grad():
        whole = causal_model(x[None])[0]
    streamed = stream_enhance(causal_model, x, chunk)
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max() < 1e-4


def test_output_arrives_one_window_late(model):
    s = StreamingEnhancer(model)
    sizes = [s.process(torch.randn(256)).numel() for _ in range(6)]
    # Block k is final once block k+1 has arrived: 512 samples of algorithmic latency.
    assert sizes == [0, 256, 256, 256, 256, 256]
    assert s.flush().numel() == 6 * 256 - 5 * 256
    assert algorithmic_latency_ms(model) == ALGORITHMIC_LATENCY_MS == 32.0


def test_reset_starts_a_fresh_stream(model):
    x = torch.randn(3000)
    s = StreamingEnhancer(model)
    first = torch.cat([s.process(x), s.flush()])
    with pytest.raises(RuntimeError, match="flushed"):
        s.process(x)
    s.reset()
    torch.testing.assert_close(torch.cat([s.process(x), s.flush()]), first)


def test_errors_are_clear(model):
    s = StreamingEnhancer(model)
    s.process(torch.randn(100))
    with pytest.raises(ValueError, match="too short: 100 samples"):
        s.flush()
    with pytest.raises(TypeError, match="not streamable"):
        StreamingEnhancer(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="masker_step expects"):
        model.masker_step(torch.rand(1, 257), model.init_state())


def test_equivalence_test_detects_dropped_lstm_state(model, monkeypatch):
    """The stream == whole-file check has the power to catch a stream that loses its state."""
    x = 0.3 * torch.randn(5000)
    with torch.no_grad():
        whole = model(x[None])[0]
    step = CausalCRN.masker_step

    def step_with_fresh_lstm(self, mag, state):
        fresh = self.init_state(mag.shape[0], device=mag.device)
        return step(self, mag, {"conv": state["conv"], "lstm": fresh["lstm"]})

    monkeypatch.setattr(CausalCRN, "masker_step", step_with_fresh_lstm)
    for chunk in (1, 256, 777):
        assert (stream_enhance(model, x, chunk) - whole).abs().max() > 5e-4  # > 5x tolerance


def test_stream_equals_whole_file_with_a_complex_ratio_mask():
    torch.manual_seed(1)
    m = CausalCRN(channels=(4, 8, 8), hidden=16, time_kernel=2, output="crm")
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(2, 4000))
    m.eval()
    x = torch.randn(5000) * 0.1
    with torch.no_grad():
        whole = m(x.unsqueeze(0))[0]
    torch.testing.assert_close(stream_enhance(m, x, chunk=256), whole, rtol=0, atol=1e-5)
