"""Builders: committed notebooks are current, options, metadata, and the push gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from builders import (
    crn,
    dpt,
    kaggle_credentials,
    kaggle_fetch,
    kaggle_logs,
    kaggle_push,
    kaggle_status,
)
from builders.kaggle_credentials import PLACEHOLDER_USER, KaggleCredentialsError, kaggle_username
from builders.kaggle_transport import KaggleRequestError
from builders.metadata import GPU_SHAPES
from render.notebook import REPO_ROOT, build_notebook, notebook_text
from render.spec import ModelSpec, SpecError, model_spec
from smoke.run import MODELS, load_spec
from tests.helpers.notebooks import read_validated

SPECS = [load_spec(name) for name in MODELS]  # every row of templates/models/catalog.py
STALE = ("is out of date: a rendered module or the layout changed. Run "
         "`python builders/<model>.py` for every model and commit notebooks/")


def test_every_committed_notebook_folder_is_a_discovered_model():
    # The tests below run once per discovered model: if discovery lost one, its committed
    # notebook would go unchecked and nothing would fail.
    folders = {p.name for p in (Path(__file__).resolve().parents[1] / "notebooks").iterdir()
               if p.is_dir()}
    assert sorted(MODELS) == sorted(folders)
    assert {"crn", "dpt", "crn_causal", "compact_crn"} <= set(MODELS)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_committed_notebook_matches_a_fresh_build(spec):
    path = REPO_ROOT / "notebooks" / spec.name / spec.notebook_file
    assert path.is_file(), f"{path} missing. " + STALE
    read_validated(path)
    assert path.read_text(encoding="utf-8") == notebook_text(build_notebook(spec)), f"{path} " + STALE


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_committed_metadata_has_the_kaggle_fields(spec):
    meta = json.loads((REPO_ROOT / "notebooks" / spec.name / "kernel-metadata.json").read_text())
    assert meta["id"].endswith("/" + spec.slug) and meta["code_file"] == f"{spec.name}.ipynb"
    assert meta["language"] == "python" and meta["kernel_type"] == "notebook"
    assert meta["enable_gpu"] is True and meta["enable_internet"] is True
    assert meta["dataset_sources"] == ["earth16/libri-speech-noise-dataset"]
    assert meta["competition_sources"] == meta["kernel_sources"] == meta["model_sources"] == []
    assert meta["machine_shape"] == "NvidiaTeslaT4" and meta["is_private"] is True


@pytest.mark.parametrize(("spec", "batch"), [(model_spec("dpt"), 8), (model_spec("crn"), 16)], ids=["dpt", "crn"])
def test_seed_defaults(spec, batch):
    p = spec.default_parameters()
    assert (p["MODEL"], p["BATCH_SIZE"], p["EPOCHS"], p["LR"], p["CROP_SECONDS"]) == \
        (spec.name, batch, 30, 1e-3, 3.0)
    assert (p["DATA_DIR"], p["WORK_DIR"], p["MAX_STEPS"], p["SMOKE"]) == \
        ("/kaggle/input", "/kaggle/working", None, False)


def test_spec_refuses_a_title_without_a_kaggle_slug_and_unknown_parameters():
    assert ModelSpec("x", "Some Title", "templates.models.x", "d").slug == "some-title"
    with pytest.raises(SpecError, match="resolves to slug ''"):
        ModelSpec("x", "!!!!!!", "templates.models.x", "d")
    with pytest.raises(SpecError, match="unknown parameter"):
        ModelSpec("x", "Some Title", "templates.models.x", "d", {"EPOCH": 1})


def test_build_options_go_into_the_parameters_cell_and_metadata(tmp_path, capsys):
    out = tmp_path / "push"
    argv = ["--out", str(out), "--user", "alice", "--public", "--epochs", "3", "--batch-size", "4",
            "--lr", "0.0005", "--max-steps", "7", "--accelerator", "NvidiaL4"]
    assert dpt.main(argv) == 0
    nb = read_validated(out / "dpt.ipynb")
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    ns: dict = {}
    exec(params.source, ns)
    assert (ns["EPOCHS"], ns["BATCH_SIZE"], ns["LR"], ns["MAX_STEPS"], ns["SMOKE"]) == (3, 4, 5e-4, 7, False)
    meta = json.loads((out / "kernel-metadata.json").read_text())
    assert meta["id"] == "alice/dpt-v3-aligned-speech-enhancement"
    assert meta["is_private"] is False and meta["machine_shape"] == "NvidiaL4"
    stdout = capsys.readouterr().out
    assert "--push would send dpt.ipynb as kernel alice/dpt-v3-aligned-speech-enhancement" in stdout


def test_building_twice_gives_identical_bytes(tmp_path):
    for sub in ("a", "b"):
        assert crn.main(["--out", str(tmp_path / sub), "--user", "u"]) == 0
    for name in ("crn.ipynb", "kernel-metadata.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_retired_p100_is_refused_in_one_line_or_becomes_t4_with_force(tmp_path, capsys):
    out = tmp_path / "p"
    assert dpt.main(["--out", str(out), "--user", "u", "--accelerator", "NvidiaTeslaP100"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "retired" in err and "NvidiaTeslaT4" in err and "--force" in err
    assert not out.exists()
    assert dpt.main(["--out", str(out), "--user", "u", "--accelerator", "NvidiaTeslaP100", "--force"]) == 0
    assert "retired" in capsys.readouterr().err
    assert json.loads((out / "kernel-metadata.json").read_text())["machine_shape"] == "NvidiaTeslaT4"
    assert dpt.main(["--out", str(tmp_path / "q"), "--user", "u"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("shape, words", [("TpuV5E8", "is a TPU"), ("TpuV6E8", "is a TPU"),
                                          ("NvidiaT4", "not a Kaggle GPU machine shape"),
                                          ("None", "not a Kaggle GPU machine shape")])
def test_tpu_and_unknown_shapes_are_refused(tmp_path, capsys, shape, words):
    assert dpt.main(["--out", str(tmp_path), "--user", "u", "--accelerator", shape, "--force"]) == 2
    assert words in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_current_gpu_shapes_are_written_as_given(tmp_path, shape):
    assert dpt.main(["--out", str(tmp_path), "--user", "u", "--accelerator", shape]) == 0
    meta = json.loads((tmp_path / "kernel-metadata.json").read_text())
    assert meta["machine_shape"] == shape and meta["enable_gpu"] is True and meta["enable_tpu"] is False


DIGEST = "gcr.io/kaggle-gpu-images/python@sha256:" + "ab12" * 16


def test_pin_image_and_docker_image_go_into_the_metadata(tmp_path, capsys):
    assert dpt.main(["--out", str(tmp_path / "o"), "--user", "u", "--pin-image", "original"]) == 0
    meta = json.loads((tmp_path / "o" / "kernel-metadata.json").read_text())
    assert meta["docker_image_pinning_type"] == "original" and "docker_image" not in meta
    assert dpt.main(["--out", str(tmp_path / "d"), "--user", "u", "--pin-image", "original",
                     "--docker-image", DIGEST]) == 0
    meta = json.loads((tmp_path / "d" / "kernel-metadata.json").read_text())
    assert (meta["docker_image_pinning_type"], meta["docker_image"]) == ("original", DIGEST)
    assert "image pinned: " + DIGEST in capsys.readouterr().out
    assert dpt.main(["--out", str(tmp_path / "x"), "--user", "u", "--docker-image", "sha256:abc"]) == 2
    assert "by digest" in capsys.readouterr().err
    assert dpt.main(["--out", str(tmp_path / "y"), "--user", "u", "--pin-image", "latest",
                     "--docker-image", DIGEST]) == 2
    assert "cannot go with --pin-image latest" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    with pytest.raises(SystemExit) as refused:
        dpt.main(["--out", str(tmp_path / "z"), "--pin-image", "newest"])
    assert refused.value.code == 2 and "newest" in capsys.readouterr().err
    # without the flags the metadata has neither field (the committed notebooks stay as they are)
    assert dpt.main(["--out", str(tmp_path / "n"), "--user", "u"]) == 0
    meta = json.loads((tmp_path / "n" / "kernel-metadata.json").read_text())
    assert "docker_image_pinning_type" not in meta and "docker_image" not in meta


def test_plain_render_keeps_the_placeholder_owner_in_the_committed_folder(tmp_path, monkeypatch):
    """Re-rendering notebooks/<model>/ on a machine with Kaggle credentials (every user's) must
    reproduce the committed files byte for byte: the owner comes from the credentials only for
    an action that talks to Kaggle, or a render elsewhere (--out); --user always wins."""
    from builders import cli

    monkeypatch.setenv("KAGGLE_USERNAME", "bob")
    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path)
    assert dpt.main([]) == 0
    rendered = tmp_path / "notebooks" / "dpt" / "kernel-metadata.json"
    assert rendered.read_bytes() == (REPO_ROOT / "notebooks" / "dpt" / "kernel-metadata.json").read_bytes()
    assert json.loads(rendered.read_text())["id"] == f"{PLACEHOLDER_USER}/{model_spec('dpt').slug}"
    assert dpt.main(["--user", "carol"]) == 0
    assert json.loads(rendered.read_text())["id"] == f"carol/{model_spec('dpt').slug}"
    assert dpt.main(["--out", str(tmp_path / "mine")]) == 0
    assert json.loads((tmp_path / "mine" / "kernel-metadata.json").read_text())["id"] == f"bob/{model_spec('dpt').slug}"


def test_username_from_env_then_kaggle_json_then_placeholder(tmp_path):
    assert kaggle_username({"KAGGLE_USERNAME": "envuser"}, home=tmp_path) == "envuser"
    assert kaggle_username({}, home=tmp_path) == PLACEHOLDER_USER
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "fileuser", "key": "SECRET"}))
    assert kaggle_username({}, home=tmp_path) == "fileuser"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the client reads ~/.config only on Linux")
def test_one_credentials_lookup_finds_xdg_config_for_both_checks(tmp_path, monkeypatch):
    """kaggle 2.2.5 reads ~/.config/kaggle/kaggle.json when ~/.kaggle does not exist: the owner
    lookup (metadata) and the credentials check both find it."""
    home = tmp_path / "home"
    (home / ".config" / "kaggle").mkdir(parents=True)
    path = home / ".config" / "kaggle" / "kaggle.json"
    path.write_text(json.dumps({"username": "xdguser", "key": "xdg-secret-key-0123"}))
    path.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    for name in ("KAGGLE_CONFIG_DIR", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert kaggle_credentials.kaggle_json_path() == path
    assert kaggle_username() == "xdguser"
    assert kaggle_credentials.check_credentials() == ["xdg-secret-key-0123"]
    (home / ".kaggle").mkdir()  # once ~/.kaggle exists the client reads only that folder
    assert kaggle_username() == PLACEHOLDER_USER
    with pytest.raises(KaggleCredentialsError):
        kaggle_credentials.check_credentials()


def _fake_kaggle(monkeypatch, **ops):
    """Replace the Kaggle operations the CLI calls (on their own modules); one not given fails
    the test when called. ``check_credentials`` answers "no secrets" unless given."""
    def boom(*a, **k):
        raise AssertionError("this Kaggle operation must not be called")

    ops.setdefault("check_credentials", lambda *a, **k: [])
    targets = {"check_credentials": kaggle_credentials, "kernel_status": kaggle_status,
               "fetch_outputs": kaggle_fetch, "kernel_logs": kaggle_logs, "push_notebook": kaggle_push}
    for name, module in targets.items():
        monkeypatch.setattr(module, name, ops.get(name, boom))


def _no_kaggle_operation(monkeypatch, credentials_ok: bool = True):
    def boom(*a, **k):
        raise AssertionError("no Kaggle operation may run here")

    _fake_kaggle(monkeypatch, **({} if credentials_ok else {"check_credentials": boom}))


def test_push_with_placeholder_user_is_refused_before_anything(tmp_path, monkeypatch, capsys):
    _no_kaggle_operation(monkeypatch, credentials_ok=False)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "nothing"))

    def no_smoke(*a, **k):
        raise AssertionError("the smoke harness must not run for a placeholder user")

    monkeypatch.setattr("smoke.run.run_smoke", no_smoke)
    assert dpt.main(["--out", str(tmp_path / "p"), "--push"]) == 2
    assert "no Kaggle user" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # refused before the render: nothing written


def test_push_gate_refuses_when_a_smoke_check_fails(tmp_path, monkeypatch, capsys):
    _no_kaggle_operation(monkeypatch)
    import smoke.checks as checks

    def failing_loss(ctx):
        raise checks.SmokeCheckError("loss is NaN on the smoke batch")

    checks_list = [(name, failing_loss if name == "loss" else fn) for name, fn in checks.CHECKS]
    monkeypatch.setattr(checks, "CHECKS", checks_list)
    code = dpt.main(["--out", str(tmp_path / "p"), "--user", "alice", "--push", "--skip-rehearsal"])
    err = capsys.readouterr().err
    assert code == 1
    assert "dpt/loss: SmokeCheckError: loss is NaN on the smoke batch" in err
    assert "nothing was pushed" in err


def test_push_passes_gate_then_calls_push_notebook(tmp_path, monkeypatch, capsys):
    from smoke import run as smoke_run

    calls = {}

    def push_notebook(folder, *, runs_dir, params, accelerator, force):
        calls.update(folder=folder, params=params, accelerator=accelerator, force=force)
        raise KaggleRequestError("server said 503")

    _fake_kaggle(monkeypatch, push_notebook=push_notebook)
    gate = {}

    def ok_smoke(models, rehearse, data, notebooks, echo):
        gate.update(models=models, rehearse=rehearse, notebooks=notebooks)
        report = smoke_run.SmokeReport([smoke_run.CheckResult("crn", "x", True, 0.0, "")])
        return report

    monkeypatch.setattr(smoke_run, "run_smoke", ok_smoke)
    out = tmp_path / "p"
    assert crn.main(["--out", str(out), "--user", "bob", "--push", "--epochs", "2"]) == 1
    assert gate == {"models": ["crn"], "rehearse": True, "notebooks": {"crn": out / "crn.ipynb"}}
    assert calls["folder"] == out and calls["params"]["EPOCHS"] == 2
    assert calls["accelerator"] == "NvidiaTeslaT4" and calls["force"] is False
    assert "server said 503" in capsys.readouterr().err


def test_push_without_out_renders_into_the_ignored_staging_folder(tmp_path, monkeypatch, capsys):
    """notebooks/<model>/ is committed with the placeholder user: a push never writes there."""
    from builders import cli
    from smoke import run as smoke_run

    calls = {}
    _fake_kaggle(monkeypatch, push_notebook=lambda folder, **kw: calls.update(folder=folder, **kw) or {"version": 1})
    ok = smoke_run.SmokeReport([smoke_run.CheckResult("crn", "x", True, 0.0, "")])
    monkeypatch.setattr(smoke_run, "run_smoke", lambda *a, **k: ok)
    monkeypatch.setattr(cli, "STAGING_DIR", tmp_path / ".push")
    committed = REPO_ROOT / "notebooks" / "crn" / "kernel-metadata.json"
    before = committed.read_bytes()
    assert crn.main(["--user", "bob", "--push", "--skip-rehearsal", "--force"]) == 0
    assert calls["folder"] == tmp_path / ".push" / "crn" and calls["force"] is True
    meta = json.loads((tmp_path / ".push" / "crn" / "kernel-metadata.json").read_text())
    assert meta["id"] == "bob/" + model_spec("crn").slug
    assert committed.read_bytes() == before
    assert cli.STAGING_DIR.name == ".push"
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "/.push/" in ignored


def _no_credentials(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_push_without_credentials_is_refused_before_render_and_smoke_gate(tmp_path, monkeypatch, capsys):
    """The credentials check costs nothing; the rehearsal costs minutes: credentials first."""
    _no_credentials(tmp_path, monkeypatch)

    def no_smoke(*a, **k):
        raise AssertionError("the smoke harness must not run without credentials")

    monkeypatch.setattr("smoke.run.run_smoke", no_smoke)
    monkeypatch.setattr("builders.cli.RUNS_DIR", tmp_path / "runs")
    assert dpt.main(["--out", str(tmp_path / "p"), "--user", "alice", "--push"]) == 2
    err = capsys.readouterr().err
    assert "~/.kaggle/kaggle.json" in err and "KAGGLE_KEY" in err
    assert not (tmp_path / "p").exists() and not (tmp_path / "runs").exists()


def test_status_and_fetch_with_placeholder_user_are_refused_without_a_request(tmp_path, monkeypatch, capsys):
    _no_kaggle_operation(monkeypatch, credentials_ok=False)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "nothing"))
    for flag in ("--status", "--fetch"):
        assert dpt.main([flag]) == 2
        assert "no Kaggle user" in capsys.readouterr().err


def test_status_wait_passes_interval_timeout_and_version(monkeypatch):
    seen = {}
    _fake_kaggle(monkeypatch, kernel_status=lambda ref, **kw: seen.update(ref=ref, **kw) or "complete")
    assert dpt.main(["--user", "alice", "--status", "--wait", "--interval", "5", "--timeout", "60",
                     "--version", "3"]) == 0
    assert seen == {"ref": "alice/dpt-v3-aligned-speech-enhancement", "wait": True, "interval": 5.0,
                    "timeout": 60.0, "version": 3}


def _capture_push(monkeypatch):
    from smoke import run as smoke_run

    calls = {}

    def push_notebook(folder, *, runs_dir, params, accelerator, force=False):
        calls["meta"] = json.loads((folder / "kernel-metadata.json").read_text())
        return "pushed"

    _fake_kaggle(monkeypatch, push_notebook=push_notebook)
    monkeypatch.setattr(smoke_run, "run_smoke", lambda *a, **k: smoke_run.SmokeReport(
        [smoke_run.CheckResult("crn", "x", True, 0.0, "")]))
    return calls


def test_push_resume_from_n_mounts_that_versions_output(tmp_path, monkeypatch, capsys):
    calls = _capture_push(monkeypatch)
    out = tmp_path / "p"
    assert crn.main(["--out", str(out), "--user", "bob", "--push", "--resume-from", "4"]) == 0
    slug = model_spec("crn").slug
    assert calls["meta"]["kernel_sources"] == [f"bob/{slug}/4"]
    assert f"RESUME_FROM = 'bob/{slug}/4'" in (out / "crn.ipynb").read_text()
    assert f"bob/{slug}/4" in capsys.readouterr().out  # describe_push names the mounted output


def test_push_resume_from_latest_reads_the_ledger(tmp_path, monkeypatch, capsys):
    from builders.ledger import append_record

    calls = _capture_push(monkeypatch)
    runs = tmp_path / "runs"
    monkeypatch.setattr("builders.cli.RUNS_DIR", runs)
    out = tmp_path / "p"
    ref = f"bob/{model_spec('crn').slug}"
    assert crn.main(["--out", str(out), "--user", "bob", "--push", "--resume-from", "latest"]) == 2
    assert "has no push of" in capsys.readouterr().err and "meta" not in calls
    append_record(runs, {"event": "push", "ref": ref, "version": 5})
    assert crn.main(["--out", str(out), "--user", "bob", "--push", "--resume-from", "latest"]) == 0
    assert calls["meta"]["kernel_sources"] == [f"{ref}/5"]


@pytest.mark.parametrize("argv, message", [
    (["--resume-from", "3"], "goes with --push"),
    (["--push", "--resume-from", "three"], "give a version number or 'latest'"),
    (["--push", "--resume-from", "0"], "a number >= 1"),
])
def test_bad_resume_from_is_refused_before_anything(tmp_path, monkeypatch, capsys, argv, message):
    calls = _capture_push(monkeypatch)
    out = tmp_path / "p"
    assert crn.main(["--out", str(out), "--user", "bob", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and "meta" not in calls
