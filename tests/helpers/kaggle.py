"""The Kaggle round-trip tests' shared pieces: a loopback fake server for the REAL kaggle client,
a push folder like the builder renders, and the names and retry policy the tests use.

Shared by tests/test_kaggle_*.py; the fixtures ``fake_kaggle`` and ``runs_dir`` (tests/conftest.py)
come from here.
"""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import nbformat

from builders.kaggle_transport import RetryPolicy
from tests.helpers.kaggle_fake_server import FakeKaggle

REPO = Path(__file__).resolve().parents[2]
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


def clean_env(monkeypatch, home: Path) -> None:
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "HTTP_PROXY", "http_proxy",
                 "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "VERBOSE"):
        monkeypatch.delenv(name, raising=False)


FILES = {
    "dpt_best.pth": b"\x00best-checkpoint" * 100,
    "history.csv": b"epoch,train,val\n1,0.06,0.059\n",
    "dpt_summary.json": b'{"model": "dpt"}',
    "plots/training_curves.png": b"\x89PNG fake",
}


def serve_outputs(fake_kaggle, version=1, files=FILES, log="[{\"data\": \"epoch 1\"}]", ref=REF):
    fake_kaggle.outputs[version] = {"files": dict(files), "log": log}
    fake_kaggle.versions[ref] = max(fake_kaggle.versions.get(ref, 0), version)
    fake_kaggle.status_states = ["complete"]


LOG = ["epoch 1/30 train 0.061 val 0.059", "epoch 2/30 train 0.052 val 0.050"]


def serve_fake_kaggle(tmp_path: Path, monkeypatch):
    """Yield the fake server, with the real client pointed at it and a throwaway HOME
    (the ``fake_kaggle`` fixture of tests/conftest.py)."""
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    clean_env(monkeypatch, home)
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
