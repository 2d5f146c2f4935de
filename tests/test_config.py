"""templates.config: defaults, round trip, unknown keys, validation."""

import json

import pytest

from templates.config import HOP, N_FFT, SAMPLE_RATE, RunConfig


def test_constants():
    assert (SAMPLE_RATE, N_FFT, HOP) == (16000, 512, 256)


def test_defaults_match_the_contract():
    c = RunConfig()
    assert c.model == "dpt" and c.data_dir == "/kaggle/input" and c.work_dir == "/kaggle/working"
    assert (c.epochs, c.batch_size, c.lr, c.crop_seconds, c.seed) == (30, 8, 1e-3, 3.0, 42)
    assert c.max_steps is None and c.smoke is False and c.val_fraction == 0.1
    assert (c.warmup_epochs, c.patience, c.plateau_patience, c.plateau_factor) == (0, 10, 3, 0.5)
    assert (c.grad_clip, c.loss, c.num_workers, c.eval_mode) == (5.0, "mag_l1", 2, "full")
    assert c.max_test_files is None and c.checkpoint_every == 5 and c.sample_rate == 16000
    assert c.model_kwargs == {}
    assert c.crop_samples == 48000


def test_crop_samples_follows_rate_and_seconds():
    assert RunConfig(crop_seconds=0.5).crop_samples == 8000
    assert RunConfig(crop_seconds=1.0001).crop_samples == 16002


def test_sample_rate_parameter_is_the_models_rate():
    """SAMPLE_RATE is a notebook parameter like every field; a rate the models, enhance and the
    published figures do not use is refused with the reason rather than silently trained."""
    problems = RunConfig.problems_in({"sample_rate": 8000})
    assert problems == ["sample_rate must be 16000 (files at other rates are resampled to it on "
                        "load), got 8000"]
    assert RunConfig.problems_in({"sample_rate": 16000}) == []


def test_round_trip_through_json():
    c = RunConfig(model="crn", epochs=2, max_steps=3, smoke=True, model_kwargs={"hidden": 8})
    d = json.loads(json.dumps(c.to_dict()))
    assert RunConfig.from_dict(d) == c
    d["model_kwargs"]["hidden"] = 9  # to_dict copies: editing it leaves the config alone
    assert c.model_kwargs == {"hidden": 8}


def test_model_kwargs_default_not_shared():
    a, b = RunConfig(), RunConfig()
    a.model_kwargs["x"] = 1
    assert b.model_kwargs == {}


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match="unknown RunConfig key.*batchsize.*epoch\\b"):
        RunConfig.from_dict({"epochs": 3, "batchsize": 4, "epoch": 1})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"val_fraction": 0.0}, "val_fraction must be strictly between 0 and 1"),
        ({"val_fraction": 1.0}, "val_fraction must be strictly between 0 and 1"),
        ({"eval_mode": "half"}, "eval_mode must be one of \\['full', 'first3'\\], got 'half'"),
        ({"lr": 0}, "lr must be a finite number > 0"),
        ({"lr": float("nan")}, "lr must be a finite number > 0"),
        ({"crop_seconds": -1.0}, "crop_seconds"),
        ({"max_steps": 0}, "max_steps must be >= 1"),
        ({"num_workers": -1}, "num_workers must be >= 0"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"plateau_factor": 1.0}, "plateau_factor"),
        ({"smoke": "yes"}, "smoke must be True or False"),
        ({"model": ""}, "model must be a non-empty string"),
    ],
)
def test_bad_values_are_refused_clearly(changes, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**changes)
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(changes)


def test_all_errors_reported_at_once():
    with pytest.raises(ValueError) as ei:
        RunConfig(epochs=0, eval_mode="x", val_fraction=2)
    msg = str(ei.value)
    assert "epochs" in msg and "eval_mode" in msg and "val_fraction" in msg


def test_replace_validates():
    c = RunConfig()
    assert c.replace(epochs=1).epochs == 1 and c.epochs == 30
    with pytest.raises(ValueError, match="unknown RunConfig key.*nope"):
        c.replace(nope=1)
    with pytest.raises(ValueError, match="epochs"):
        c.replace(epochs=0)
