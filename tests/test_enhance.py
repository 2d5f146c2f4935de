"""The enhance command: checkpoints (dict and bare), rates, channels, folders, bad files, VAD."""

import numpy as np
import pytest
import soundfile as sf
import torch

from deploy.enhance import EnhanceError, enhance_array, load_model, main
from templates.checkpoint import save_checkpoint
from templates.losses import build_loss
from templates.models.registry import build_model

KW = {"channels": [4, 8, 8], "hidden": 16}


def _speechy(seconds, sr, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    clean = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    return (clean + 0.05 * rng.standard_normal(len(t))).astype(np.float32), clean.astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny causal CRN trained a few steps, saved as our dict and as a bare state_dict."""
    torch.manual_seed(0)
    model = build_model("crn_causal", **KW)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    loss_fn = build_loss("mag_l1")
    noisy, clean = _speechy(1.0, 16000)
    x, y = torch.from_numpy(noisy)[None], torch.from_numpy(clean)[None]
    for _ in range(5):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    d = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(d / "crn_causal_best.pth", model=model, optimizer=opt, epoch=1,
                    config={"model": "crn_causal", "model_kwargs": KW})
    torch.save(model.state_dict(), d / "bare.pth")
    return model.eval(), d


def test_load_model_from_dict_and_bare(trained):
    model, d = trained
    x = torch.randn(1, 4000)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(load_model(d / "crn_causal_best.pth")(x), ref)
        torch.testing.assert_close(load_model(d / "bare.pth", "crn_causal", KW)(x), ref)
    with pytest.raises(EnhanceError, match="bare.pth: a bare state_dict .* pass --model"):
        load_model(d / "bare.pth")
    with pytest.raises(EnhanceError, match="weights do not fit 'crn_causal'"):
        load_model(d / "bare.pth", "crn_causal", {})


def test_enhance_array_keeps_rate_length_and_channels(trained):
    model, _ = trained
    a, _ = _speechy(0.7, 44100, 1)
    b, _ = _speechy(0.7, 44100, 2)
    stereo = np.stack([a, 0.2 * b], axis=1)  # T, 2
    out = enhance_array(model, stereo, 44100)
    assert out.shape == stereo.shape and out.dtype == np.float32
    # Channels are enhanced separately: the quiet channel stays quieter.
    assert np.std(out[:, 1]) < 0.5 * np.std(out[:, 0])
    # At 16 kHz the command equals the model on the same signal (no resampling involved).
    mono, _ = _speechy(1.0, 16000, 3)
    with torch.no_grad():
        ref = model(torch.from_numpy(mono)[None])[0].numpy()
    np.testing.assert_allclose(enhance_array(model, mono[:, None], 16000)[:, 0], ref, atol=1e-5)


def test_main_folder_bad_file_and_summary(trained, tmp_path, capsys):
    _, d = trained
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    n8, _ = _speechy(0.8, 8000, 4)
    sf.write(src / "a.wav", n8, 8000)
    n48, _ = _speechy(0.6, 48000, 5)
    sf.write(src / "sub" / "b.wav", np.stack([n48, n48], 1), 48000)
    (src / "broken.wav").write_bytes(b"RIFF....not audio")
    out = tmp_path / "out"
    rc = main([str(d / "crn_causal_best.pth"), str(src), "--out", str(out), "--no-progress"])
    assert rc == 1  # one file failed
    err = capsys.readouterr()
    assert "broken.wav: cannot read:" in err.err
    assert "enhanced 2 file(s), 1 failed" in err.out
    a, sra = sf.read(out / "a.wav", always_2d=True)
    b, srb = sf.read(out / "sub" / "b.wav", always_2d=True)
    assert (sra, a.shape) == (8000, (len(n8), 1))
    assert (srb, b.shape) == (48000, (len(n48), 2))
    assert np.abs(a).max() > 0.01


def test_main_vad_gate_and_errors(trained, tmp_path, capsys):
    _, d = trained
    noisy, _ = _speechy(1.0, 16000, 6)
    sf.write(tmp_path / "x.wav", noisy, 16000)
    ok = main([str(d / "bare.pth"), str(tmp_path / "x.wav"), "--out", str(tmp_path / "o1"),
               "--model", "crn_causal", "--model-kwargs", '{"channels": [4, 8, 8], "hidden": 16}',
               "--no-progress"])
    gated = main([str(d / "bare.pth"), str(tmp_path / "x.wav"), "--out", str(tmp_path / "o2"),
                  "--model", "crn_causal", "--model-kwargs", '{"channels": [4, 8, 8], "hidden": 16}',
                  "--vad-gate-db", "30", "--vad", "energy", "--no-progress"])
    assert ok == gated == 0
    plain, _ = sf.read(tmp_path / "o1" / "x.wav")
    quiet, _ = sf.read(tmp_path / "o2" / "x.wav")
    assert np.sum(quiet**2) < np.sum(plain**2)  # pauses attenuated
    assert main([str(d / "bare.pth"), str(tmp_path / "x.wav"), "--out", str(tmp_path)]) == 2
    assert "pass --model" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pth"), str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_outputs_never_overwrite_inputs_or_each_other(trained, tmp_path, capsys):
    """Two inputs named x.wav, or --out on the input folder: reported, nothing overwritten."""
    model, d = trained
    noisy, _ = _speechy(0.5, 16000, 7)
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / "x.wav", noisy * (0.5 if sub == "b" else 1.0), 16000)
    out = tmp_path / "out"
    rc = main([str(d / "crn_causal_best.pth"), str(tmp_path / "a" / "x.wav"),
               str(tmp_path / "b" / "x.wav"), "--out", str(out), "--no-progress"])
    assert rc == 1
    err = capsys.readouterr()
    assert "enhanced 1 file(s), 1 failed" in err.out
    assert f"{tmp_path / 'b' / 'x.wav'}: skipped: output" in err.err and "already written" in err.err
    written, _ = sf.read(out / "x.wav")
    expected_a = enhance_array(model, noisy[:, None], 16000)[:, 0]
    assert np.abs(written - expected_a).max() < 1e-3  # a's output, not b's (half level)
    before = (tmp_path / "a" / "x.wav").read_bytes()
    rc = main([str(d / "crn_causal_best.pth"), str(tmp_path / "a"), "--out", str(tmp_path / "a"),
               "--no-progress"])
    assert rc == 1 and "would overwrite an input file" in capsys.readouterr().err
    assert (tmp_path / "a" / "x.wav").read_bytes() == before


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_enhance_accepts_the_exported_int8_file(trained, tmp_path, capsys):
    """`<model>_int8.pth` from the notebook's export section works as the enhance checkpoint."""
    from templates.export import export_artifacts

    model, _ = trained
    int8_path = export_artifacts(model, tmp_path / "export", repeats=1)["int8_path"]
    noisy, _ = _speechy(0.5, 16000, 8)
    sf.write(tmp_path / "x.wav", noisy, 16000)
    rc = main([int8_path, str(tmp_path / "x.wav"), "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 0
    out, _ = sf.read(tmp_path / "o" / "x.wav")
    with torch.no_grad():
        ref = model(torch.from_numpy(noisy)[None])[0].numpy()
    assert np.abs(out - ref).max() < 0.05  # int8 is close to fp32, not equal
    assert main([int8_path, str(tmp_path / "x.wav"), "--out", str(tmp_path / "o2"), "--model",
                 "crn", "--no-progress"]) == 2
    assert "names its own model" in capsys.readouterr().err


def test_missing_webrtcvad_fails_once_up_front(trained, tmp_path, capsys, monkeypatch):
    _, d = trained
    noisy, _ = _speechy(0.5, 16000, 7)
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, noisy, 16000)
    monkeypatch.setitem(__import__("sys").modules, "webrtcvad", None)  # import fails
    rc = main([str(d / "crn_causal_best.pth"), str(tmp_path / "a.wav"), str(tmp_path / "b.wav"),
               "--out", str(tmp_path / "o"), "--vad-gate-db", "20", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("pip install webrtcvad-wheels") == 1
    assert not (tmp_path / "o").exists()


def test_load_model_follows_the_recorded_model_config(tmp_path):
    """A crm checkpoint records its full config; an older one (no model_config) is a mask model."""
    from deploy.enhance import load_model

    crm = build_model("crn_causal", **KW, output="crm")
    save_checkpoint(tmp_path / "crm.pth", model=crm, config={"model": "crn_causal",
                    "model_kwargs": KW}, model_config=crm.get_config())
    assert load_model(tmp_path / "crm.pth").output == "crm"
    mask = build_model("crn_causal", **KW)
    save_checkpoint(tmp_path / "old.pth", model=mask, config={"model": "crn_causal",
                    "model_kwargs": KW})
    assert load_model(tmp_path / "old.pth").output == "mask"
