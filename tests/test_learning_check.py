"""The smoke harness's learning check: models that learn pass, faults that run but cannot learn
fail (a mask applied to the wrong tensor, a misaligned inverse STFT, a wrong-sign loss, a
diverging learning rate)."""

from __future__ import annotations

import pytest
import torch

from render.notebook import build_notebook
from render.spec import model_spec
from smoke import checks
from templates.losses import build_loss
from templates.metrics import si_sdr
from templates.models.registry import build_model


def _tiny_crn():
    torch.manual_seed(0)
    return build_model("crn", **model_spec("crn").smoke_model_kwargs)


@pytest.fixture(scope="module")
def batch():
    return checks.learning_batch()


def test_a_model_that_learns_passes(batch):
    result = checks.learning_trial(_tiny_crn(), build_loss("mag_l1"), si_sdr, batch)
    assert result.learned, result.describe()
    assert result.loss_drop >= checks.LEARNING_MIN_LOSS_DROP
    assert result.sisdr_gain >= checks.LEARNING_MIN_SISDR_GAIN_DB


def test_mask_applied_to_the_wrong_tensor_fails(batch):
    """The mask scales the magnitude, and the phase is lost (a real tensor made complex)."""
    model = _tiny_crn()
    model.front_end.apply_mask = lambda spec, mask: torch.complex(spec.abs() * mask,
                                                                  torch.zeros_like(mask))
    result = checks.learning_trial(model, build_loss("mag_l1"), si_sdr, batch)
    assert not result.learned, result.describe()


def test_misaligned_inverse_stft_fails(batch):
    """The waveform comes out one hop late: magnitudes barely change, SI-SDR cannot rise."""
    model = _tiny_crn()
    istft = model.front_end.istft
    hop = model.front_end.hop
    model.front_end.istft = lambda spec, length: torch.roll(istft(spec, length), hop, dims=-1)
    result = checks.learning_trial(model, build_loss("mag_l1"), si_sdr, batch)
    assert not result.learned, result.describe()
    assert result.sisdr_gain < checks.LEARNING_MIN_SISDR_GAIN_DB


def test_wrong_sign_loss_fails(batch):
    """Minimising minus the loss makes the objective fall while the output gets worse."""
    base = build_loss("mag_l1")
    result = checks.learning_trial(_tiny_crn(), lambda est, clean: -base(est, clean), si_sdr,
                                   batch)
    assert not result.learned, result.describe()
    assert result.sisdr_gain < 0


def test_diverging_learning_rate_fails(batch):
    result = checks.learning_trial(_tiny_crn(), build_loss("mag_l1"), si_sdr, batch, lr=50.0)
    assert not result.learned, result.describe()


def test_check_learning_runs_the_notebook_code_and_names_the_failure(tmp_path):
    """Through the harness: the notebook's own build_loss with its sign flipped is caught."""
    with checks.SmokeContext(model_spec("crn"), build_notebook(model_spec("crn")), None, tmp_path) as ctx:
        checks.check_imports_config(ctx)
        message = checks.check_learning(ctx)
        assert "SI-SDR" in message and ctx.learning.learned
        good = ctx.ns["build_loss"]

        def wrong_sign(name):
            loss = good(name)
            return lambda est, clean: -loss(est, clean)

        ctx.ns["build_loss"] = wrong_sign
        with pytest.raises(checks.SmokeCheckError, match="crn .* does not learn: .*SI-SDR"):
            checks.check_learning(ctx)
