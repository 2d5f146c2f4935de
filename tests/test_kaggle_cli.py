"""The builder commands users type (--status, --fetch, --logs) against a loopback fake server."""

from __future__ import annotations

import json

import pytest

from render.spec import model_spec
from tests.helpers.kaggle import LOG, USER, clean_env, serve_outputs, tree


@pytest.mark.parametrize("missing", [403, 404])
def test_builder_cli_status_and_fetch(fake_kaggle, runs_dir, monkeypatch, capsys, missing):
    """The commands users type: python builders/dpt.py --status / --fetch (exit codes 0/1)."""
    from builders import cli, dpt

    monkeypatch.setattr(cli, "RUNS_DIR", runs_dir)
    ref = f"{USER}/{model_spec('dpt').slug}"
    fake_kaggle.missing_kernel_code = missing  # what Kaggle answers for a kernel never pushed
    assert dpt.main(["--status"]) == 1  # never pushed: said plainly, whichever code
    err = capsys.readouterr().err
    assert f"HTTP {missing}" in err and ("not pushed yet" in err or "once it was pushed" in err)
    fake_kaggle.versions[ref] = 2
    fake_kaggle.status_states = ["running"]
    assert dpt.main(["--status"]) == 0
    assert f"{ref}: running" in capsys.readouterr().out
    assert dpt.main(["--fetch", "--version", "1"]) == 1  # still running: refused, nothing written
    assert "is running" in capsys.readouterr().err and tree(runs_dir) == []
    serve_outputs(fake_kaggle, version=1, ref=ref)
    assert dpt.main(["--status", "--version", "1"]) == 0
    assert f"{ref} version 1: complete" in capsys.readouterr().out
    assert dpt.main(["--fetch", "--version", "1"]) == 0
    assert (runs_dir / model_spec("dpt").slug / "v1" / "manifest.json").is_file()
    labels = [b.get("versionLabel") for b in fake_kaggle.calls("GetKernelSessionStatus")]
    assert labels == [None, None, "v1", "v1", "v1"]
    assert {b.get("versionLabel") for b in fake_kaggle.calls("ListKernelSessionOutput")} == {"v1"}


def test_builder_cli_without_credentials_exits_2(tmp_path, monkeypatch, capsys):
    from builders import cli, dpt

    clean_env(monkeypatch, tmp_path / "home")
    monkeypatch.setattr(cli, "RUNS_DIR", tmp_path / "runs")
    assert dpt.main(["--status", "--user", USER]) == 2
    assert "~/.kaggle/kaggle.json" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_builder_cli_logs(fake_kaggle, capsys):
    from builders import dpt

    ref = f"{USER}/{model_spec('dpt').slug}"
    assert dpt.main(["--logs"]) == 1
    assert "HTTP 403 from Kaggle: no access to that kernel (not pushed yet" in capsys.readouterr().err
    fake_kaggle.versions[ref] = 1
    fake_kaggle.status_states = ["running"]
    fake_kaggle.log_events = LOG
    assert dpt.main(["--logs", "--follow"]) == 0
    assert capsys.readouterr().out.splitlines() == LOG
    fake_kaggle.outputs[1] = {"files": {}, "log": json.dumps([{"data": line + "\n"} for line in LOG])}
    assert dpt.main(["--logs", "--version", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == LOG
    assert fake_kaggle.calls("ListKernelSessionOutput")[-1]["versionLabel"] == "v1"
