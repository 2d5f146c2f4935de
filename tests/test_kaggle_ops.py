"""Kaggle round trip with the REAL kaggle client against a loopback fake server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import nbformat
import pytest

from builders import kaggle_ops, kaggle_transport, ledger
from builders.kaggle_credentials import PLACEHOLDER_USER
from builders.kaggle_ops import (
    KaggleCredentialsError,
    KaggleRequestError,
    RetryPolicy,
    fetch_outputs,
    kernel_status,
    push_notebook,
)
from render.spec import model_spec
from tests.helpers.kaggle_fake_server import FakeKaggle

REPO = Path(__file__).resolve().parents[1]
USER = "alice"
KEY = "fake-kaggle-key-0123456789"
REF = f"{USER}/dpt-speech-enhancement-test"
FAST = RetryPolicy(attempts=3, backoff=0.001, max_delay=0.01, request_timeout=2.0)


def make_push_folder(root: Path, ref: str = REF, **meta_overrides) -> Path:
    """A small push folder like the builder renders: notebook + kernel-metadata.json."""
    folder = root / "notebooks" / "dpt"
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# DPT test notebook"),
        nbformat.v4.new_code_cell("epochs = 1\nbatch_size = 2", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('training', epochs)"),
    ]
    nbformat.write(nb, folder / "dpt.ipynb")
    meta = {
        "id": ref,
        "title": "DPT Speech Enhancement Test",
        "code_file": "dpt.ipynb",
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": True,
        "enable_internet": True,
        "dataset_sources": ["earth16/libri-speech-noise-dataset"],
        "competition_sources": [],
        "kernel_sources": [],
        "model_sources": [],
        "machine_shape": "NvidiaTeslaT4",
    }
    meta.update(meta_overrides)
    (folder / "kernel-metadata.json").write_text(json.dumps(meta, indent=2))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def _clean_env(monkeypatch, home: Path) -> None:
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "HTTP_PROXY", "http_proxy",
                 "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "VERBOSE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake server, with the real client pointed at it and a throwaway HOME."""
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    _clean_env(monkeypatch, home)
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    server = FakeKaggle(username=USER, key=KEY, max_seconds=60).start()
    from kaggle.api.kaggle_api_extended import KaggleApi
    from kagglesdk import kaggle_env

    # The client fixes these at its first import; point them at this test's server and HOME.
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.LOCAL, server.url)
    monkeypatch.setattr(KaggleApi, "args", ["--local"])
    monkeypatch.setattr(KaggleApi, "config_dir", str(home / ".kaggle"))
    monkeypatch.setattr(KaggleApi, "config", str(home / ".kaggle" / "kaggle.json"))
    # The client's download retries wait 2-60 s between tries (download_file); not in tests.
    quick_time = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    quick_time.sleep = lambda seconds: None
    monkeypatch.setattr(sys.modules[KaggleApi.__module__], "time", quick_time)
    yield server
    server.stop()


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


# ------------------------------------------------------------------------------ import hygiene


def test_import_is_quiet_and_does_not_load_kaggle(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env["HOME"] = str(tmp_path)
    code = (
        "import sys, builders.kaggle_ops, builders.ledger, builders.compare\n"
        "assert 'kaggle' not in sys.modules, 'kaggle imported'\n"
        "assert 'kagglesdk' not in sys.modules, 'kagglesdk imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert list(tmp_path.iterdir()) == []  # no ~/.config/kaggle or ~/.kaggle created


# ------------------------------------------------------------------------------ local refusals


def test_placeholder_user_refused_before_network(tmp_path, monkeypatch, runs):
    _clean_env(monkeypatch, tmp_path / "home")
    folder = make_push_folder(tmp_path, ref=f"{PLACEHOLDER_USER}/dpt-speech-enhancement")
    with pytest.raises(KaggleRequestError, match=f"placeholder user '{PLACEHOLDER_USER}'"):
        push_notebook(folder, runs_dir=runs, params={}, accelerator="")
    assert not runs.exists()


def test_missing_credentials_clear_message_nothing_written(tmp_path, monkeypatch, runs):
    home = tmp_path / "home"
    home.mkdir()
    _clean_env(monkeypatch, home)
    folder = make_push_folder(tmp_path)
    before = snapshot(folder)
    with pytest.raises(KaggleCredentialsError) as info:
        push_notebook(folder, runs_dir=runs, params={}, accelerator="")
    message = str(info.value)
    assert "~/.kaggle/kaggle.json" in message and "KAGGLE_USERNAME" in message and "KAGGLE_KEY" in message
    with pytest.raises(KaggleCredentialsError):
        kernel_status(REF)
    with pytest.raises(KaggleCredentialsError):
        fetch_outputs(REF, runs_dir=runs, version=1)
    assert not runs.exists()
    assert snapshot(folder) == before
    assert list(home.iterdir()) == []


def test_world_readable_kaggle_json_warns(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    _clean_env(monkeypatch, home)
    path = home / ".kaggle" / "kaggle.json"
    path.write_text(json.dumps({"username": USER, "key": KEY}))
    path.chmod(0o644)
    warnings = []
    secrets = kaggle_ops.check_credentials(warn=warnings.append)
    assert secrets == [KEY]
    assert len(warnings) == 1 and "chmod 600" in warnings[0] and KEY not in warnings[0]
    path.chmod(0o600)
    warnings.clear()
    kaggle_ops.check_credentials(warn=warnings.append)
    assert warnings == []


def test_key_inside_notebook_is_refused(fake, tmp_path, runs):
    folder = make_push_folder(tmp_path)
    nb = folder / "dpt.ipynb"
    nb.write_text(nb.read_text().replace("epochs = 1", f"epochs = 1  # {KEY}"))
    with pytest.raises(KaggleCredentialsError, match="contains your Kaggle API key") as info:
        push_notebook(folder, runs_dir=runs, params={}, accelerator="")
    assert KEY not in str(info.value)
    assert fake.requests == [] and not runs.exists()


# ------------------------------------------------------------------------------ push


def test_push_success_writes_ledger(fake, tmp_path, runs, capsys):
    folder = make_push_folder(tmp_path)
    before = snapshot(folder)
    params = {"epochs": 30, "batch_size": 8, "lr": 1e-3}
    record = push_notebook(folder, runs_dir=runs, params=params, accelerator="NvidiaTeslaT4")

    assert fake.violations == []
    (body,) = fake.calls("SaveKernel")
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

    (line,) = ledger.read_ledger(runs)
    assert line == record
    assert KEY not in (runs / "ledger.jsonl").read_text()
    assert snapshot(folder) == before

    second = push_notebook(folder, runs_dir=runs, params=params, accelerator="")
    assert second["version"] == 2 and second["accelerator"] == "NvidiaTeslaT4"
    assert ledger.latest_push(runs, REF)["version"] == 2


def test_committed_ledger_lines_do_not_make_the_next_push_dirty(fake, tmp_path, runs, monkeypatch):
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
    monkeypatch.setattr(kaggle_ops, "_TOOLKIT_ROOT", repo)
    folder = make_push_folder(tmp_path)
    first = push_notebook(folder, runs_dir=repo / "runs", params={}, accelerator="", retry=FAST)
    second = push_notebook(folder, runs_dir=repo / "runs", params={}, accelerator="", retry=FAST)
    assert (first["git_dirty"], second["git_dirty"]) == (False, False)
    (repo / "model.py").write_text("x = 2\n")  # a real uncommitted change still shows
    assert push_notebook(folder, runs_dir=repo / "runs", params={}, accelerator="", retry=FAST)["git_dirty"]


def test_secret_in_params_is_redacted(fake, tmp_path, runs):
    folder = make_push_folder(tmp_path)
    record = push_notebook(folder, runs_dir=runs, params={"note": f"key={KEY}"}, accelerator="")
    assert record["params"] == {"note": "<redacted>"}
    assert KEY not in (runs / "ledger.jsonl").read_text()


@pytest.mark.parametrize("message", ["Notebook not found", "Invalid dataset source earth16/nope"])
def test_push_error_reply_not_retried(fake, tmp_path, runs, message):
    folder = make_push_folder(tmp_path)
    before = snapshot(folder)
    fake.push_plan = [("error", message)]
    with pytest.raises(KaggleRequestError, match=message):
        push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)
    assert len(fake.calls("SaveKernel")) == 1
    assert not (runs / "ledger.jsonl").exists()
    assert snapshot(folder) == before


def test_push_4xx_not_retried(fake, tmp_path, runs):
    folder = make_push_folder(tmp_path)
    fake.push_plan = [("http", 404)]
    with pytest.raises(KaggleRequestError, match="HTTP 404"):
        push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)
    assert len(fake.calls("SaveKernel")) == 1 and not runs.exists()


def test_push_wrong_key_is_credentials_error(fake, tmp_path, runs, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "wrong-key-000000")
    folder = make_push_folder(tmp_path)
    with pytest.raises(KaggleCredentialsError, match="rejected the credentials") as info:
        push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)
    assert "wrong-key-000000" not in str(info.value)
    assert fake.calls("SaveKernel") == [] and not runs.exists()  # refused at the first question


def test_rejected_key_says_so_in_kaggles_words_not_the_clients_guess(fake, tmp_path, monkeypatch):
    """kernels_status wraps a 401 in a ValueError about benchmark slugs; the user is told that
    Kaggle refused the key (with Kaggle's message), not that no credentials were found."""
    monkeypatch.setenv("KAGGLE_KEY", "wrong-key-000000")
    fake.versions[REF] = 1
    for call in (lambda: kernel_status(REF, echo=lambda _: None, retry=FAST),
                 lambda: push_notebook(make_push_folder(tmp_path), runs_dir=tmp_path / "runs",
                                       params={}, accelerator="", retry=FAST)):
        with pytest.raises(KaggleCredentialsError) as info:
            call()
        message = str(info.value)
        assert "HTTP 401: Unauthenticated" in message and "refused the credentials" in message
        assert "benchmark" not in message and "No Kaggle credentials found" not in message
        assert "wrong-key-000000" not in message


def test_push_500_retried_then_success(fake, tmp_path, runs, capsys):
    folder = make_push_folder(tmp_path)
    fake.push_plan = [("http", 500), ("http", 503)]
    record = push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)
    assert record["version"] == 1
    assert len(fake.calls("SaveKernel")) == 3
    assert "HTTP 500" in capsys.readouterr().err
    assert len(ledger.read_ledger(runs)) == 1


def test_push_persistent_500_fails_after_attempts(fake, tmp_path, runs):
    folder = make_push_folder(tmp_path)
    before = snapshot(folder)
    fake.push_plan = [("http", 500)] * 5
    with pytest.raises(KaggleRequestError, match="after 3 attempts: HTTP 500"):
        push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)
    assert len(fake.calls("SaveKernel")) == 3
    assert not runs.exists()
    assert snapshot(folder) == before


def test_push_dropped_connection_retried_and_reported(fake, tmp_path, runs):
    folder = make_push_folder(tmp_path)
    fake.push_plan = ["drop"]
    assert push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)["version"] == 1
    fake.push_plan = ["drop"] * 3
    with pytest.raises(KaggleRequestError, match="connection failed or dropped"):
        push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)
    assert len(ledger.read_ledger(runs)) == 1


def test_push_timeout_retried(fake, tmp_path, runs):
    folder = make_push_folder(tmp_path)
    fake.push_plan = [("hang", 1.0)]
    quick = RetryPolicy(attempts=2, backoff=0.001, request_timeout=0.3)
    record = push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=quick)
    assert record["version"] in (1, 2)  # the hung request may still have saved a version
    assert len(fake.calls("SaveKernel")) == 2


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
            "from builders.kaggle_ops import push_notebook\n"
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


# ------------------------------------------------------------------------------ status


@pytest.mark.parametrize("wire, state", [
    ("queued", "queued"), ("running", "running"), ("complete", "complete"),
    ("error", "error"), ("cancelAcknowledged", "cancelled"), ("cancelRequested", "cancel_requested"),
])
def test_status_states(fake, wire, state):
    fake.versions[REF] = 1
    fake.status_states = [wire]
    seen = []
    assert kernel_status(REF, echo=seen.append, retry=FAST) == state
    assert seen == [f"{REF}: {state}"]
    (body,) = fake.calls("GetKernelSessionStatus")
    assert body["userName"] == USER and body["kernelSlug"] == REF.split("/")[1]
    assert "versionLabel" not in body  # the latest version


def test_status_wait_echoes_changes_only(fake):
    fake.versions[REF] = 1
    fake.status_states = ["queued", "queued", "running", "running", "running", "error"]
    fake.status_failure = "CUDA error: no kernel image"
    seen = []
    state = kernel_status(REF, wait=True, interval=0.01, timeout=10, echo=seen.append, retry=FAST)
    assert state == "error"
    assert seen == [f"{REF}: queued (CUDA error: no kernel image)",
                    f"{REF}: running (CUDA error: no kernel image)",
                    f"{REF}: error (CUDA error: no kernel image)"]
    assert len(fake.calls("GetKernelSessionStatus")) == 6


def test_status_wait_time_limit(fake):
    fake.versions[REF] = 1
    fake.status_states = ["running"]
    seen = []
    with pytest.raises(KaggleRequestError, match="still running after waiting 0.2 s"):
        kernel_status(REF, wait=True, interval=0.05, timeout=0.2, echo=seen.append, retry=FAST)
    assert seen == [f"{REF}: running"]
    assert 2 <= len(fake.calls("GetKernelSessionStatus")) <= 6


def test_status_transient_retry(fake):
    fake.versions[REF] = 1
    fake.status_plan_faults = [("http", 502), "drop"]
    assert kernel_status(REF, echo=lambda _: None, retry=FAST) == "complete"
    assert len(fake.calls("GetKernelSessionStatus")) == 3


def test_status_bad_ref():
    with pytest.raises(KaggleRequestError, match="<user>/<slug>"):
        kernel_status("just-a-slug")


# ------------------------------------------------------------------------------ fetch

FILES = {
    "dpt_best.pth": b"\x00best-checkpoint" * 100,
    "history.csv": b"epoch,train,val\n1,0.06,0.059\n",
    "dpt_summary.json": b'{"model": "dpt"}',
    "plots/training_curves.png": b"\x89PNG fake",
}


def _serve_outputs(fake, version=1, files=FILES, log="[{\"data\": \"epoch 1\"}]", ref=REF):
    fake.outputs[version] = {"files": dict(files), "log": log}
    fake.versions[ref] = max(fake.versions.get(ref, 0), version)
    fake.status_states = ["complete"]


def test_fetch_downloads_all_pages_with_manifest(fake, runs):
    _serve_outputs(fake)
    ledger.append_record(runs, {"event": "push", "ref": REF, "version": 1})
    dest = fetch_outputs(REF, runs_dir=runs, retry=FAST, echo=lambda _: None)
    slug = REF.split("/")[1]
    assert dest == runs / slug / "v1"
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert (dest / f"{slug}.log").read_text() == '[{"data": "epoch 1"}]'
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["ref"] == REF and manifest["version"] == 1 and manifest["state"] == "complete"
    by_name = {f["name"]: f for f in manifest["files"]}
    assert set(by_name) == set(FILES) | {f"{slug}.log"}
    for name, data in FILES.items():
        assert by_name[name]["size"] == len(data)
        assert by_name[name]["sha256"] == hashlib.sha256(data).hexdigest()
    assert all(b.get("versionLabel") == "v1" for b in fake.calls("ListKernelSessionOutput"))
    assert [b.get("versionLabel") for b in fake.calls("GetKernelSessionStatus")] == ["v1"]
    assert len(fake.calls("ListKernelSessionOutput")) == 2  # 4 files, pages of 2
    last = ledger.read_ledger(runs)[-1]
    assert last["event"] == "fetch" and last["version"] == 1 and last["files"] == 5
    assert tree(runs / slug) == sorted(["v1"] + [f"v1/{p}" for p in
                                                 tree(dest)])


def test_fetch_never_overwrites_earlier_version(fake, runs):
    _serve_outputs(fake, version=3)
    dest = fetch_outputs(REF, runs_dir=runs, version=3, retry=FAST, echo=lambda _: None)
    before = snapshot(dest)
    fake.outputs[3]["files"]["dpt_best.pth"] = b"a re-run overwrote the best checkpoint"
    with pytest.raises(KaggleRequestError, match="never overwritten"):
        fetch_outputs(REF, runs_dir=runs, version=3, retry=FAST, echo=lambda _: None)
    assert snapshot(dest) == before
    assert sum(r["event"] == "fetch" for r in ledger.read_ledger(runs)) == 1


def test_fetch_failure_mid_download_leaves_nothing(fake, runs):
    _serve_outputs(fake)
    fake.file_plan["plots/training_curves.png"] = ["drop_mid"] * 20  # every try, every attempt
    with pytest.raises(KaggleRequestError, match="failed after 3 attempts: connection failed"):
        fetch_outputs(REF, runs_dir=runs, version=1, retry=FAST, echo=lambda _: None)
    assert tree(runs) == []


def test_fetch_download_500_then_success(fake, runs):
    _serve_outputs(fake)
    fake.file_plan["history.csv"] = [("http", 500), "drop_mid"]
    dest = fetch_outputs(REF, runs_dir=runs, version=1, retry=FAST, echo=lambda _: None)
    assert (dest / "history.csv").read_bytes() == FILES["history.csv"]
    assert fake.downloads.count("history.csv") == 3


def test_fetch_refused_download_link_is_listed_again_not_blamed_on_the_kernel(fake, runs, capsys):
    """A signed output link that answers 403 (expired) says nothing about access to the kernel,
    whose listing just succeeded: the outputs are listed again for fresh links."""
    _serve_outputs(fake)
    fake.file_plan["history.csv"] = [("http", 403)]
    dest = fetch_outputs(REF, runs_dir=runs, version=1, retry=FAST, echo=lambda _: None)
    assert (dest / "history.csv").read_bytes() == FILES["history.csv"]
    err = capsys.readouterr().err
    assert "HTTP 403 downloading history.csv (its download link was refused or expired)" in err
    assert "no access to that kernel" not in err
    fake.file_plan["history.csv"] = [("http", 401)] * 3
    with pytest.raises(KaggleRequestError, match="after 3 attempts: HTTP 401 downloading history.csv"):
        fetch_outputs(REF, runs_dir=runs / "again", version=1, retry=FAST, echo=lambda _: None)
    assert tree(runs / "again") == []


def test_fetch_second_version_beside_first_and_existing_slug_dir_kept(fake, runs):
    _serve_outputs(fake, version=1)
    _serve_outputs(fake, version=2, files={"dpt_summary.json": b'{"v": 2}'})
    fetch_outputs(REF, runs_dir=runs, version=1, retry=FAST, echo=lambda _: None)
    fake.file_plan["dpt_summary.json"] = ["drop_mid"] * 20
    with pytest.raises(KaggleRequestError):
        fetch_outputs(REF, runs_dir=runs, version=2, retry=FAST, echo=lambda _: None)
    slug_dir = runs / REF.split("/")[1]
    assert sorted(p.name for p in slug_dir.iterdir()) == ["v1"]
    fake.file_plan["dpt_summary.json"] = []  # the storage answers again
    fetch_outputs(REF, runs_dir=runs, version=2, retry=FAST, echo=lambda _: None)
    assert (slug_dir / "v2" / "dpt_summary.json").read_bytes() == b'{"v": 2}'
    assert (slug_dir / "v1" / "dpt_summary.json").read_bytes() == FILES["dpt_summary.json"]


def test_fetch_refuses_running_version(fake, runs):
    _serve_outputs(fake)
    fake.status_states = ["running"]
    with pytest.raises(KaggleRequestError, match="is running"):
        fetch_outputs(REF, runs_dir=runs, version=1, retry=FAST, echo=lambda _: None)
    assert fake.calls("ListKernelSessionOutput") == [] and tree(runs) == []


def test_fetch_without_version_or_ledger_is_clear(fake, runs):
    with pytest.raises(KaggleRequestError, match="--version"):
        fetch_outputs(REF, runs_dir=runs, retry=FAST)
    assert fake.requests == []


def test_fetch_unsafe_output_name_refused(fake, runs):
    _serve_outputs(fake, files={"../escape.txt": b"x"})
    with pytest.raises(KaggleRequestError, match="Refusing to download '../escape.txt'"):
        fetch_outputs(REF, runs_dir=runs, version=1, retry=FAST, echo=lambda _: None)
    assert tree(runs) == [] and not (runs.parent / "escape.txt").exists()


# ------------------------------------------------------------------------------ builder CLI


@pytest.mark.parametrize("missing", [403, 404])
def test_builder_cli_status_and_fetch(fake, runs, monkeypatch, capsys, missing):
    """The commands users type: python builders/dpt.py --status / --fetch (exit codes 0/1)."""
    from builders import cli, dpt

    monkeypatch.setattr(cli, "RUNS_DIR", runs)
    ref = f"{USER}/{model_spec('dpt').slug}"
    fake.missing_kernel_code = missing  # what Kaggle answers for a kernel never pushed
    assert dpt.main(["--status"]) == 1  # never pushed: said plainly, whichever code
    err = capsys.readouterr().err
    assert f"HTTP {missing}" in err and ("not pushed yet" in err or "once it was pushed" in err)
    fake.versions[ref] = 2
    fake.status_states = ["running"]
    assert dpt.main(["--status"]) == 0
    assert f"{ref}: running" in capsys.readouterr().out
    assert dpt.main(["--fetch", "--version", "1"]) == 1  # still running: refused, nothing written
    assert "is running" in capsys.readouterr().err and tree(runs) == []
    _serve_outputs(fake, version=1, ref=ref)
    assert dpt.main(["--status", "--version", "1"]) == 0
    assert f"{ref} version 1: complete" in capsys.readouterr().out
    assert dpt.main(["--fetch", "--version", "1"]) == 0
    assert (runs / model_spec("dpt").slug / "v1" / "manifest.json").is_file()
    labels = [b.get("versionLabel") for b in fake.calls("GetKernelSessionStatus")]
    assert labels == [None, None, "v1", "v1", "v1"]
    assert {b.get("versionLabel") for b in fake.calls("ListKernelSessionOutput")} == {"v1"}


def test_builder_cli_without_credentials_exits_2(tmp_path, monkeypatch, capsys):
    from builders import cli, dpt

    _clean_env(monkeypatch, tmp_path / "home")
    monkeypatch.setattr(cli, "RUNS_DIR", tmp_path / "runs")
    assert dpt.main(["--status", "--user", USER]) == 2
    assert "~/.kaggle/kaggle.json" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_malformed_kaggle_json_names_the_file(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    _clean_env(monkeypatch, home)
    path = home / ".kaggle" / "kaggle.json"
    path.write_text('{"username": "alice", "key": ')
    path.chmod(0o600)
    with pytest.raises(KaggleCredentialsError, match=r"kaggle\.json: not valid JSON"):
        kaggle_ops.check_credentials()
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    assert kaggle_ops.check_credentials() == [KEY]  # the environment is enough


def test_unreadable_access_token_is_a_credentials_error(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    _clean_env(monkeypatch, home)
    (home / ".kaggle" / "access_token").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(KaggleCredentialsError, match="access_token: cannot read"):
        kaggle_ops.check_credentials()


def test_user_from_environment_key_from_kaggle_json_as_the_client_merges_them(fake, tmp_path, monkeypatch):
    """kaggle 2.2.5 read_config_environment: each KAGGLE_<NAME> overrides kaggle.json's <name>,
    so KAGGLE_USERNAME plus the file's key authenticates; the check must not refuse it."""
    monkeypatch.delenv("KAGGLE_KEY")
    path = tmp_path / "home" / ".kaggle" / "kaggle.json"
    path.write_text(json.dumps({"key": KEY}))
    path.chmod(0o600)
    assert kaggle_ops.check_credentials() == [KEY]
    fake.versions[REF] = 1
    assert kernel_status(REF, echo=lambda _: None, retry=FAST) == "complete"  # the client agrees
    monkeypatch.delenv("KAGGLE_USERNAME")
    with pytest.raises(KaggleCredentialsError):  # a key without a user name is not enough
        kaggle_ops.check_credentials()


def test_access_token_signs_in_and_a_failed_sign_in_is_retried_then_worded(fake, monkeypatch):
    """With an access token the client asks Kaggle whose it is (IntrospectToken) before any
    call, and lets a dropped connection or a 5xx escape as a raw requests exception."""
    fake.token = "KGAT_fake_token_0123456789"
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", fake.token)
    fake.versions[REF] = 1
    fake.introspect_plan = ["drop", ("http", 503)]
    assert kernel_status(REF, echo=lambda _: None, retry=FAST) == "complete"
    assert len(fake.calls("IntrospectToken")) == 3 and len(fake.calls("GetKernelSessionStatus")) == 1
    fake.introspect_plan = ["drop"] * 3
    with pytest.raises(KaggleRequestError, match="signing in to Kaggle failed after 3 attempts: connection"):
        kernel_status(REF, echo=lambda _: None, retry=FAST)


def test_access_token_given_as_a_file_path_is_read_as_the_client_reads_it(tmp_path, monkeypatch):
    """kagglesdk get_access_token_from_env: KAGGLE_API_TOKEN may name a file holding the token;
    the secret kept out of pushed files is the token, not the path."""
    home = tmp_path / "home"
    home.mkdir()
    _clean_env(monkeypatch, home)
    token_file = tmp_path / "token"
    token_file.write_text("KGAT_0123456789abcdef\n")
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(token_file))
    assert kaggle_ops.check_credentials() == ["KGAT_0123456789abcdef"]
    token_file.write_text("")  # the client then has no token and looks no further
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "access_token").write_text("KGAT_other")
    with pytest.raises(KaggleCredentialsError):
        kaggle_ops.check_credentials()


def test_failure_classes_tls_is_final_408_is_transient():
    import requests

    describe = kaggle_transport.describe_failure
    transient, reason, _ = describe(requests.exceptions.SSLError("bad cert"), 5)
    assert not transient and "TLS" in reason
    response = requests.Response()
    response.status_code = 408
    transient, _, _ = describe(requests.HTTPError(response=response), 5)
    assert transient
    transient, _, _ = describe(requests.ConnectionError("reset"), 5)
    assert transient
    # kernels_status/kernels_output turn a 401/403 into a ValueError raised inside the handler:
    # the status behind it still decides.
    response.status_code = 401
    try:
        try:
            raise requests.HTTPError("denied", response=response)
        except requests.HTTPError:
            raise ValueError("Cannot access kernel 'a/b' (Permission 'kernels.get' was denied)")  # noqa: B904 - as the client does
    except ValueError as exc:
        transient, _, credentials = describe(exc, 5)
    assert not transient and credentials


# ------------------------------------------------------------------------------ Kaggle's contract


def test_fake_refuses_a_bare_number_label_as_kaggle_does(fake):
    """kaggle 2.2.5 _kernel_version_label: the API names versions v<N>, a bare number is 404."""
    import requests
    from kagglesdk.kernels.types.kernels_api_service import (
        ApiGetKernelSessionStatusRequest,
        ApiListKernelSessionOutputRequest,
    )

    _serve_outputs(fake, version=1)
    api = kaggle_ops.load_api(FAST)
    for request_type, call in ((ApiGetKernelSessionStatusRequest, "get_kernel_session_status"),
                               (ApiListKernelSessionOutputRequest, "list_kernel_session_output")):
        request = request_type()
        request.user_name, request.kernel_slug = REF.split("/")
        request.version_label = "1"
        with api.build_kaggle_client() as kaggle, pytest.raises(requests.HTTPError) as info:
            getattr(kaggle.kernels.kernels_api_client, call)(request)
        assert info.value.response.status_code == 404
        request.version_label = "v1"
        with api.build_kaggle_client() as kaggle:
            getattr(kaggle.kernels.kernels_api_client, call)(request)  # answered
        request.version_label = "v2"  # no such version yet
        with api.build_kaggle_client() as kaggle, pytest.raises(requests.HTTPError):
            getattr(kaggle.kernels.kernels_api_client, call)(request)
    # and the official call writes v<N> itself
    assert api.kernels_status(f"{REF}/1").status.name == "COMPLETE"
    assert fake.calls("GetKernelSessionStatus")[-1]["versionLabel"] == "v1"


def test_status_of_a_version_sends_v_label(fake):
    fake.versions[REF] = 3
    fake.status_states = ["error"]
    fake.status_failure = "CUDA out of memory"
    seen = []
    assert kernel_status(REF, version=2, echo=seen.append, retry=FAST) == "error"
    assert seen == [f"{REF} version 2: error (CUDA out of memory)"]
    assert fake.calls("GetKernelSessionStatus")[-1]["versionLabel"] == "v2"
    with pytest.raises(KaggleRequestError, match="HTTP 404"):
        kernel_status(REF, version=4, echo=seen.append, retry=FAST)


@pytest.mark.parametrize("missing", [403, 404])
def test_first_push_of_a_new_kernel_is_not_an_error(fake, tmp_path, runs, capsys, missing):
    fake.missing_kernel_code = missing
    folder = make_push_folder(tmp_path)
    record = push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)
    assert record["version"] == 1
    out = capsys.readouterr().out
    assert f"{REF} is not on Kaggle yet: this push creates it" in out
    assert fake.calls("GetKernelSessionStatus") == []  # nothing to ask about a kernel not there


@pytest.mark.parametrize("state", ["running", "queued"])
def test_busy_latest_version_blocks_a_push_unless_forced(fake, tmp_path, runs, capsys, state):
    folder = make_push_folder(tmp_path)
    fake.versions[REF] = 3
    fake.status_states = [state]
    with pytest.raises(KaggleRequestError, match=f"version 3 is {state}.*--force"):
        push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)
    assert fake.calls("SaveKernel") == [] and not runs.exists()
    assert fake.calls("GetKernelSessionStatus")[-1]["versionLabel"] == "v3"
    record = push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST, force=True)
    assert record["version"] == 4 and len(fake.calls("SaveKernel")) == 1
    assert f"version 3 is {state}" in capsys.readouterr().err


@pytest.mark.parametrize("fault", [("saved_then_hang", 1.5), ("saved_then_http", 503)])
def test_push_whose_reply_was_lost_is_recorded_not_pushed_twice(fake, tmp_path, runs, capsys, fault):
    folder = make_push_folder(tmp_path)
    fake.versions[REF] = 2
    fake.push_plan = [fault]
    quick = RetryPolicy(attempts=3, backoff=0.001, request_timeout=0.5)
    record = push_notebook(folder, runs_dir=runs, params={"EPOCHS": 1}, accelerator="", retry=quick)
    assert len(fake.calls("SaveKernel")) == 1  # one push, one GPU run
    assert record["version"] == 3 and fake.versions[REF] == 3
    assert record["recovered_from"] and record["url"] == f"https://www.kaggle.com/code/{REF}"
    assert ledger.read_ledger(runs) == [record]
    assert "Kaggle holds a new version 3" in capsys.readouterr().err


def test_push_prints_the_weekly_gpu_quota_and_goes_on_without_it(fake, tmp_path, runs, capsys):
    folder = make_push_folder(tmp_path)
    push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)
    out = capsys.readouterr().out
    assert "weekly GPU quota: 21.5 h left of 30.0 h (used 8.5 h; resets 2026-12-05 00:00 UTC)" in out
    assert out.index("weekly GPU quota") < out.index("pushed ")
    fake.quota_plan = [("http", 404)]
    assert push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)["version"] == 2
    assert "weekly GPU quota: unknown" in capsys.readouterr().out


@pytest.mark.parametrize("shape, words", [("NvidiaTeslaP100", "retired"), ("TpuV5E8", "TPU"),
                                          ("NvidiaT4x2", "not a Kaggle GPU machine shape")])
def test_push_never_sends_a_shape_that_is_not_a_gpu_shape(fake, tmp_path, runs, shape, words):
    folder = make_push_folder(tmp_path, machine_shape=shape)
    with pytest.raises(KaggleRequestError, match=words):
        push_notebook(folder, runs_dir=runs, params={}, accelerator="", retry=FAST)
    folder2 = make_push_folder(tmp_path / "b")
    with pytest.raises(KaggleRequestError, match=words):
        push_notebook(folder2, runs_dir=runs, params={}, accelerator=shape, retry=FAST)
    assert fake.requests == [] and not runs.exists()


def test_pinned_image_is_sent_and_recorded(fake, tmp_path, runs):
    image = "gcr.io/kaggle-gpu-images/python@sha256:" + "0f" * 32
    folder = make_push_folder(tmp_path, docker_image_pinning_type="original", docker_image=image)
    record = push_notebook(folder, runs_dir=runs, params={}, accelerator="NvidiaL4", retry=FAST)
    (body,) = fake.calls("SaveKernel")
    assert (body["dockerImagePinningType"], body["dockerImage"], body["machineShape"]) == \
        ("original", image, "NvidiaL4")
    assert (record["docker_image_pinning_type"], record["docker_image"]) == ("original", image)
    assert fake.violations == []
    plain = push_notebook(make_push_folder(tmp_path / "p"), runs_dir=runs, params={}, accelerator="",
                          retry=FAST)
    assert plain["docker_image_pinning_type"] is None and plain["docker_image"] is None
    assert "dockerImagePinningType" not in fake.calls("SaveKernel")[-1]


LOG = ["epoch 1/30 train 0.061 val 0.059", "epoch 2/30 train 0.052 val 0.050"]


def test_logs_of_a_finished_session(fake):
    _serve_outputs(fake, version=2, log=json.dumps([{"stream_name": "stdout", "time": 1.0, "data": line + "\n"}
                                                    for line in LOG]))
    seen = []
    kaggle_ops.kernel_logs(REF, echo=seen.append, retry=FAST)
    assert seen == LOG
    kaggle_ops.kernel_logs(REF, version=2, echo=seen.append, retry=FAST)
    assert fake.calls("ListKernelSessionOutput")[-1]["versionLabel"] == "v2"


def test_logs_follow_streams_the_running_session(fake, capsys):
    fake.versions[REF] = 1
    fake.status_states = ["running"]
    fake.log_events = LOG
    kaggle_ops.kernel_logs(REF, follow=True, retry=FAST)
    assert capsys.readouterr().out.splitlines() == LOG
    (call,) = [body for name, body in fake.requests if name == "LogsStream"]
    assert call == {"ref": REF, "versionLabel": None}
    kaggle_ops.kernel_logs(REF, version=1, follow=True, retry=FAST)
    assert [body for name, body in fake.requests if name == "LogsStream"][-1]["versionLabel"] == "v1"
    assert capsys.readouterr().out.splitlines() == LOG


def test_log_lines_reads_kaggles_event_list_and_plain_text():
    events = json.dumps([{"data": "a\n"}, {"data": "b\nc\n"}, {"stream_name": "stderr"}])
    assert kaggle_ops.log_lines(events) == ["a", "b", "c"]
    assert kaggle_ops.log_lines("plain\ntext") == ["plain", "text"]


# ------------------------------------------------------------------------------ a clean checkout

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


def test_builder_cli_logs(fake, capsys):
    from builders import dpt

    ref = f"{USER}/{model_spec('dpt').slug}"
    assert dpt.main(["--logs"]) == 1
    assert "HTTP 403 from Kaggle: no access to that kernel (not pushed yet" in capsys.readouterr().err
    fake.versions[ref] = 1
    fake.status_states = ["running"]
    fake.log_events = LOG
    assert dpt.main(["--logs", "--follow"]) == 0
    assert capsys.readouterr().out.splitlines() == LOG
    fake.outputs[1] = {"files": {}, "log": json.dumps([{"data": line + "\n"} for line in LOG])}
    assert dpt.main(["--logs", "--version", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == LOG
    assert fake.calls("ListKernelSessionOutput")[-1]["versionLabel"] == "v1"


def test_push_resuming_an_earlier_version_sends_it_as_a_kernel_source(fake, tmp_path, runs):
    """--resume-from N: the official client sends owner/slug/N as a kernel data source, and the
    ledger's push record links the new version to the one it continues."""
    folder = make_push_folder(tmp_path, kernel_sources=[f"{REF}/1"])
    first = push_notebook(folder, runs_dir=runs, params={}, accelerator="")
    assert fake.violations == []
    (body,) = fake.calls("SaveKernel")
    assert body["kernelDataSources"] == [f"{REF}/1"]
    assert first["resumes"] == {"ref": REF, "version": 1}
    plain = push_notebook(make_push_folder(tmp_path / "b"), runs_dir=runs, params={}, accelerator="")
    assert plain["resumes"] is None
    assert ledger.latest_version(runs, REF) == plain["version"]
