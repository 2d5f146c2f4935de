"""Pushing a push folder with the REAL kaggle client against a loopback fake server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builders import kaggle_push, ledger
from builders.kaggle_credentials import PLACEHOLDER_USER, KaggleCredentialsError
from builders.kaggle_push import push_notebook
from builders.kaggle_transport import KaggleRequestError, RetryPolicy
from tests.helpers.kaggle import FAST, KEY, REF, REPO, USER, clean_env, make_push_folder, snapshot
from tests.helpers.kaggle_fake_server import FakeKaggle


def test_placeholder_user_refused_before_network(tmp_path, monkeypatch, runs_dir):
    clean_env(monkeypatch, tmp_path / "home")
    folder = make_push_folder(tmp_path, ref=f"{PLACEHOLDER_USER}/dpt-speech-enhancement")
    with pytest.raises(KaggleRequestError, match=f"placeholder user '{PLACEHOLDER_USER}'"):
        push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="")
    assert not runs_dir.exists()


def test_key_inside_notebook_is_refused(fake_kaggle, tmp_path, runs_dir):
    folder = make_push_folder(tmp_path)
    nb = folder / "dpt.ipynb"
    nb.write_text(nb.read_text().replace("epochs = 1", f"epochs = 1  # {KEY}"))
    with pytest.raises(KaggleCredentialsError, match="contains your Kaggle API key") as info:
        push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="")
    assert KEY not in str(info.value)
    assert fake_kaggle.requests == [] and not runs_dir.exists()


def test_push_success_writes_ledger(fake_kaggle, tmp_path, runs_dir, capsys):
    folder = make_push_folder(tmp_path)
    before = snapshot(folder)
    params = {"epochs": 30, "batch_size": 8, "lr": 1e-3}
    record = push_notebook(folder, runs_dir=runs_dir, params=params, accelerator="NvidiaTeslaT4")

    assert fake_kaggle.violations == []
    (body,) = fake_kaggle.calls("SaveKernel")
    assert body["slug"] == REF and body["newTitle"] == "DPT Speech Enhancement Test"
    assert body["datasetDataSources"] == ["earth16/libri-speech-noise-dataset"]
    assert body["machineShape"] == "NvidiaTeslaT4" and body["enableGpu"] is True
    assert json.loads(body["text"])["cells"][1]["source"] == "epochs = 1\nbatch_size = 2"

    assert record["ref"] == REF and record["version"] == 1
    assert record["url"] == f"https://www.kaggle.com/code/{REF}"
    assert record["notebook_sha256"] == hashlib.sha256((folder / "dpt.ipynb").read_bytes()).hexdigest()
    assert record["params"] == params and record["accelerator"] == "NvidiaTeslaT4"
    assert record["time"].endswith("Z") and len(record["git_commit"] or "x" * 40) == 40
    assert "version 1" in capsys.readouterr().out

    (line,) = ledger.read_ledger(runs_dir)
    assert line == record
    assert KEY not in (runs_dir / "ledger.jsonl").read_text()
    assert snapshot(folder) == before

    second = push_notebook(folder, runs_dir=runs_dir, params=params, accelerator="")
    assert second["version"] == 2 and second["accelerator"] == "NvidiaTeslaT4"
    assert ledger.latest_push(runs_dir, REF)["version"] == 2


def test_committed_ledger_lines_do_not_make_the_next_push_dirty(fake_kaggle, tmp_path, runs_dir, monkeypatch):
    """runs/ledger.jsonl is worth committing (runs/README.md); the line the last push appended
    is not a change to the code the next notebook is rendered from."""
    repo = tmp_path / "toolkit"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (repo / "model.py").write_text("x = 1\n")
    ledger.append_record(repo / "runs", {"event": "fetch", "ref": REF, "version": 0})
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "with the ledger")
    monkeypatch.setattr(kaggle_push, "_TOOLKIT_ROOT", repo)
    folder = make_push_folder(tmp_path)
    first = push_notebook(folder, runs_dir=repo / "runs", params={}, accelerator="", retry=FAST)
    second = push_notebook(folder, runs_dir=repo / "runs", params={}, accelerator="", retry=FAST)
    assert (first["git_dirty"], second["git_dirty"]) == (False, False)
    (repo / "model.py").write_text("x = 2\n")  # a real uncommitted change still shows
    assert push_notebook(folder, runs_dir=repo / "runs", params={}, accelerator="", retry=FAST)["git_dirty"]


def test_secret_in_params_is_redacted(fake_kaggle, tmp_path, runs_dir):
    folder = make_push_folder(tmp_path)
    record = push_notebook(folder, runs_dir=runs_dir, params={"note": f"key={KEY}"}, accelerator="")
    assert record["params"] == {"note": "<redacted>"}
    assert KEY not in (runs_dir / "ledger.jsonl").read_text()


@pytest.mark.parametrize("message", ["Notebook not found", "Invalid dataset source earth16/nope"])
def test_push_error_reply_not_retried(fake_kaggle, tmp_path, runs_dir, message):
    folder = make_push_folder(tmp_path)
    before = snapshot(folder)
    fake_kaggle.push_plan = [("error", message)]
    with pytest.raises(KaggleRequestError, match=message):
        push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)
    assert len(fake_kaggle.calls("SaveKernel")) == 1
    assert not (runs_dir / "ledger.jsonl").exists()
    assert snapshot(folder) == before


def test_push_4xx_not_retried(fake_kaggle, tmp_path, runs_dir):
    folder = make_push_folder(tmp_path)
    fake_kaggle.push_plan = [("http", 404)]
    with pytest.raises(KaggleRequestError, match="HTTP 404"):
        push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)
    assert len(fake_kaggle.calls("SaveKernel")) == 1 and not runs_dir.exists()


def test_push_500_retried_then_success(fake_kaggle, tmp_path, runs_dir, capsys):
    folder = make_push_folder(tmp_path)
    fake_kaggle.push_plan = [("http", 500), ("http", 503)]
    record = push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)
    assert record["version"] == 1
    assert len(fake_kaggle.calls("SaveKernel")) == 3
    assert "HTTP 500" in capsys.readouterr().err
    assert len(ledger.read_ledger(runs_dir)) == 1


def test_push_persistent_500_fails_after_attempts(fake_kaggle, tmp_path, runs_dir):
    folder = make_push_folder(tmp_path)
    before = snapshot(folder)
    fake_kaggle.push_plan = [("http", 500)] * 5
    with pytest.raises(KaggleRequestError, match="after 3 attempts: HTTP 500"):
        push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)
    assert len(fake_kaggle.calls("SaveKernel")) == 3
    assert not runs_dir.exists()
    assert snapshot(folder) == before


def test_push_dropped_connection_retried_and_reported(fake_kaggle, tmp_path, runs_dir):
    folder = make_push_folder(tmp_path)
    fake_kaggle.push_plan = ["drop"]
    assert push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)["version"] == 1
    fake_kaggle.push_plan = ["drop"] * 3
    with pytest.raises(KaggleRequestError, match="connection failed or dropped"):
        push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)
    assert len(ledger.read_ledger(runs_dir)) == 1


def test_push_timeout_retried(fake_kaggle, tmp_path, runs_dir):
    folder = make_push_folder(tmp_path)
    fake_kaggle.push_plan = [("hang", 1.0)]
    quick = RetryPolicy(attempts=2, backoff=0.001, request_timeout=0.3)
    record = push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=quick)
    assert record["version"] in (1, 2)  # the hung request may still have saved a version
    assert len(fake_kaggle.calls("SaveKernel")) == 2


def test_push_subprocess_through_http_proxy(tmp_path):
    """No patching: KAGGLE_API_ENVIRONMENT=LOCALHOST + HTTP_PROXY, as a user's shell would."""
    folder = make_push_folder(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    with FakeKaggle(username=USER, key=KEY, max_seconds=60) as server:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("KAGGLE_") and k.lower() not in ("no_proxy", "https_proxy", "all_proxy")}
        env.update(HOME=str(home), KAGGLE_USERNAME=USER, KAGGLE_KEY=KEY,
                   KAGGLE_API_ENVIRONMENT="LOCALHOST", HTTP_PROXY=server.url, http_proxy=server.url)
        code = (
            "import sys, json\n"
            "from pathlib import Path\n"
            "from builders.kaggle_push import push_notebook\n"
            "r = push_notebook(Path(sys.argv[1]), runs_dir=Path(sys.argv[2]), params={'epochs': 3},"
            " accelerator='NvidiaTeslaT4')\n"
        )
        proc = subprocess.run([sys.executable, "-c", code, str(folder), str(tmp_path / "runs")],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert server.violations == [] and len(server.calls("SaveKernel")) == 1
    assert f"pushed {REF} version 1" in proc.stdout
    (record,) = ledger.read_ledger(tmp_path / "runs")
    assert record["params"] == {"epochs": 3}


@pytest.mark.parametrize("missing", [403, 404])
def test_first_push_of_a_new_kernel_is_not_an_error(fake_kaggle, tmp_path, runs_dir, capsys, missing):
    fake_kaggle.missing_kernel_code = missing
    folder = make_push_folder(tmp_path)
    record = push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)
    assert record["version"] == 1
    out = capsys.readouterr().out
    assert f"{REF} is not on Kaggle yet: this push creates it" in out
    assert fake_kaggle.calls("GetKernelSessionStatus") == []  # nothing to ask about a kernel not there


@pytest.mark.parametrize("state", ["running", "queued"])
def test_busy_latest_version_blocks_a_push_unless_forced(fake_kaggle, tmp_path, runs_dir, capsys, state):
    folder = make_push_folder(tmp_path)
    fake_kaggle.versions[REF] = 3
    fake_kaggle.status_states = [state]
    with pytest.raises(KaggleRequestError, match=f"version 3 is {state}.*--force"):
        push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)
    assert fake_kaggle.calls("SaveKernel") == [] and not runs_dir.exists()
    assert fake_kaggle.calls("GetKernelSessionStatus")[-1]["versionLabel"] == "v3"
    record = push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST, force=True)
    assert record["version"] == 4 and len(fake_kaggle.calls("SaveKernel")) == 1
    assert f"version 3 is {state}" in capsys.readouterr().err


@pytest.mark.parametrize("fault", [("saved_then_hang", 1.5), ("saved_then_http", 503)])
def test_push_whose_reply_was_lost_is_recorded_not_pushed_twice(fake_kaggle, tmp_path, runs_dir, capsys, fault):
    folder = make_push_folder(tmp_path)
    fake_kaggle.versions[REF] = 2
    fake_kaggle.push_plan = [fault]
    quick = RetryPolicy(attempts=3, backoff=0.001, request_timeout=0.5)
    record = push_notebook(folder, runs_dir=runs_dir, params={"EPOCHS": 1}, accelerator="", retry=quick)
    assert len(fake_kaggle.calls("SaveKernel")) == 1  # one push, one GPU run
    assert record["version"] == 3 and fake_kaggle.versions[REF] == 3
    assert record["recovered_from"] and record["url"] == f"https://www.kaggle.com/code/{REF}"
    assert ledger.read_ledger(runs_dir) == [record]
    assert "Kaggle holds a new version 3" in capsys.readouterr().err


def test_push_prints_the_weekly_gpu_quota_and_goes_on_without_it(fake_kaggle, tmp_path, runs_dir, capsys):
    folder = make_push_folder(tmp_path)
    push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)
    out = capsys.readouterr().out
    assert "weekly GPU quota: 21.5 h left of 30.0 h (used 8.5 h; resets 2026-12-05 00:00 UTC)" in out
    assert out.index("weekly GPU quota") < out.index("pushed ")
    fake_kaggle.quota_plan = [("http", 404)]
    assert push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)["version"] == 2
    assert "weekly GPU quota: unknown" in capsys.readouterr().out


@pytest.mark.parametrize("shape, words", [("NvidiaTeslaP100", "retired"), ("TpuV5E8", "TPU"),
                                          ("NvidiaT4x2", "not a Kaggle GPU machine shape")])
def test_push_never_sends_a_shape_that_is_not_a_gpu_shape(fake_kaggle, tmp_path, runs_dir, shape, words):
    folder = make_push_folder(tmp_path, machine_shape=shape)
    with pytest.raises(KaggleRequestError, match=words):
        push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)
    folder2 = make_push_folder(tmp_path / "b")
    with pytest.raises(KaggleRequestError, match=words):
        push_notebook(folder2, runs_dir=runs_dir, params={}, accelerator=shape, retry=FAST)
    assert fake_kaggle.requests == [] and not runs_dir.exists()


def test_pinned_image_is_sent_and_recorded(fake_kaggle, tmp_path, runs_dir):
    image = "gcr.io/kaggle-gpu-images/python@sha256:" + "0f" * 32
    folder = make_push_folder(tmp_path, docker_image_pinning_type="original", docker_image=image)
    record = push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="NvidiaL4", retry=FAST)
    (body,) = fake_kaggle.calls("SaveKernel")
    assert (body["dockerImagePinningType"], body["dockerImage"], body["machineShape"]) == \
        ("original", image, "NvidiaL4")
    assert (record["docker_image_pinning_type"], record["docker_image"]) == ("original", image)
    assert fake_kaggle.violations == []
    plain = push_notebook(make_push_folder(tmp_path / "p"), runs_dir=runs_dir, params={}, accelerator="",
                          retry=FAST)
    assert plain["docker_image_pinning_type"] is None and plain["docker_image"] is None
    assert "dockerImagePinningType" not in fake_kaggle.calls("SaveKernel")[-1]


_DRIVER = """
import sys
from pathlib import Path

import builders
assert Path(builders.__file__).resolve().is_relative_to(Path.cwd().resolve()), builders.__file__
import smoke.run as smoke_run

# The smoke gate is tested elsewhere; here only what a push leaves in the checkout matters.
smoke_run.run_smoke = lambda *a, **k: smoke_run.SmokeReport([smoke_run.CheckResult("dpt", "x", True, 0.0, "")])
from builders import dpt
sys.exit(dpt.main(sys.argv[1:]))
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


@pytest.mark.slow
def test_push_with_user_leaves_git_status_clean(tmp_path):
    """A copy of this checkout as its own git repository: --push --user renders into the
    ignored .push/, so a failed push leaves `git status` empty and a successful one adds only
    the ledger line."""
    repo = tmp_path / "toolkit"
    for name in _git(REPO, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0"):
        if name and (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_bytes((REPO / name).read_bytes())
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot")
    head = _git(repo, "rev-parse", "HEAD").strip()
    assert _git(repo, "status", "--porcelain") == ""
    home = tmp_path / "home"
    home.mkdir()
    with FakeKaggle(username=USER, key=KEY, max_seconds=120) as server:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("KAGGLE_") and k.lower() not in ("no_proxy", "https_proxy", "all_proxy")}
        env.update(HOME=str(home), KAGGLE_USERNAME=USER, KAGGLE_KEY=KEY, PYTHONPATH=str(repo),
                   KAGGLE_API_ENVIRONMENT="LOCALHOST", HTTP_PROXY=server.url, http_proxy=server.url)

        def push():
            return subprocess.run([sys.executable, "-c", _DRIVER, "--push", "--user", USER,
                                   "--skip-rehearsal", "--epochs", "2"],
                                  cwd=repo, env=env, capture_output=True, text=True, timeout=300)

        server.push_plan = [("error", "Invalid dataset source")]
        failed = push()
        assert failed.returncode == 1 and "Invalid dataset source" in failed.stderr
        assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""
        done = push()
        assert done.returncode == 0, done.stderr
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == "?? runs/ledger.jsonl\n"
    (record,) = ledger.read_ledger(repo / "runs")
    assert record["ref"] == f"{USER}/dpt-v3-aligned-speech-enhancement" and record["version"] == 1
    assert record["git_commit"] == head and record["git_dirty"] is False
    assert record["params"]["EPOCHS"] == 2
    staged = json.loads((repo / ".push" / "dpt" / "kernel-metadata.json").read_text())
    assert staged["id"] == record["ref"]
    committed = json.loads((repo / "notebooks" / "dpt" / "kernel-metadata.json").read_text())
    assert committed["id"].startswith(f"{PLACEHOLDER_USER}/")


def test_push_resuming_an_earlier_version_sends_it_as_a_kernel_source(fake_kaggle, tmp_path, runs_dir):
    """--resume-from N: the official client sends owner/slug/N as a kernel data source, and the
    ledger's push record links the new version to the one it continues."""
    folder = make_push_folder(tmp_path, kernel_sources=[f"{REF}/1"])
    first = push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="")
    assert fake_kaggle.violations == []
    (body,) = fake_kaggle.calls("SaveKernel")
    assert body["kernelDataSources"] == [f"{REF}/1"]
    assert first["resumes"] == {"ref": REF, "version": 1}
    plain = push_notebook(make_push_folder(tmp_path / "b"), runs_dir=runs_dir, params={}, accelerator="")
    assert plain["resumes"] is None
    assert ledger.latest_version(runs_dir, REF) == plain["version"]
