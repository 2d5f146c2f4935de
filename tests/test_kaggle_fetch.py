"""Fetching a version's outputs with the REAL kaggle client against a loopback fake server."""

from __future__ import annotations

import hashlib
import json

import pytest

from builders import ledger
from builders.kaggle_fetch import fetch_outputs
from builders.kaggle_transport import KaggleRequestError
from tests.helpers.kaggle import FAST, FILES, REF, serve_outputs, snapshot, tree


def test_fetch_downloads_all_pages_with_manifest(fake_kaggle, runs_dir):
    serve_outputs(fake_kaggle)
    ledger.append_record(runs_dir, {"event": "push", "ref": REF, "version": 1})
    dest = fetch_outputs(REF, runs_dir=runs_dir, retry=FAST, echo=lambda _: None)
    slug = REF.split("/")[1]
    assert dest == runs_dir / slug / "v1"
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
    assert all(b.get("versionLabel") == "v1" for b in fake_kaggle.calls("ListKernelSessionOutput"))
    assert [b.get("versionLabel") for b in fake_kaggle.calls("GetKernelSessionStatus")] == ["v1"]
    assert len(fake_kaggle.calls("ListKernelSessionOutput")) == 2  # 4 files, pages of 2
    last = ledger.read_ledger(runs_dir)[-1]
    assert last["event"] == "fetch" and last["version"] == 1 and last["files"] == 5
    assert tree(runs_dir / slug) == sorted(["v1"] + [f"v1/{p}" for p in
                                                 tree(dest)])


def test_fetch_never_overwrites_earlier_version(fake_kaggle, runs_dir):
    serve_outputs(fake_kaggle, version=3)
    dest = fetch_outputs(REF, runs_dir=runs_dir, version=3, retry=FAST, echo=lambda _: None)
    before = snapshot(dest)
    fake_kaggle.outputs[3]["files"]["dpt_best.pth"] = b"a re-run overwrote the best checkpoint"
    with pytest.raises(KaggleRequestError, match="never overwritten"):
        fetch_outputs(REF, runs_dir=runs_dir, version=3, retry=FAST, echo=lambda _: None)
    assert snapshot(dest) == before
    assert sum(r["event"] == "fetch" for r in ledger.read_ledger(runs_dir)) == 1


def test_fetch_failure_mid_download_leaves_nothing(fake_kaggle, runs_dir):
    serve_outputs(fake_kaggle)
    fake_kaggle.file_plan["plots/training_curves.png"] = ["drop_mid"] * 20  # every try, every attempt
    with pytest.raises(KaggleRequestError, match="failed after 3 attempts: connection failed"):
        fetch_outputs(REF, runs_dir=runs_dir, version=1, retry=FAST, echo=lambda _: None)
    assert tree(runs_dir) == []


def test_fetch_download_500_then_success(fake_kaggle, runs_dir):
    serve_outputs(fake_kaggle)
    fake_kaggle.file_plan["history.csv"] = [("http", 500), "drop_mid"]
    dest = fetch_outputs(REF, runs_dir=runs_dir, version=1, retry=FAST, echo=lambda _: None)
    assert (dest / "history.csv").read_bytes() == FILES["history.csv"]
    assert fake_kaggle.downloads.count("history.csv") == 3


def test_fetch_refused_download_link_is_listed_again_not_blamed_on_the_kernel(fake_kaggle, runs_dir, capsys):
    """A signed output link that answers 403 (expired) says nothing about access to the kernel,
    whose listing just succeeded: the outputs are listed again for fresh links."""
    serve_outputs(fake_kaggle)
    fake_kaggle.file_plan["history.csv"] = [("http", 403)]
    dest = fetch_outputs(REF, runs_dir=runs_dir, version=1, retry=FAST, echo=lambda _: None)
    assert (dest / "history.csv").read_bytes() == FILES["history.csv"]
    err = capsys.readouterr().err
    assert "HTTP 403 downloading history.csv (its download link was refused or expired)" in err
    assert "no access to that kernel" not in err
    fake_kaggle.file_plan["history.csv"] = [("http", 401)] * 3
    with pytest.raises(KaggleRequestError, match="after 3 attempts: HTTP 401 downloading history.csv"):
        fetch_outputs(REF, runs_dir=runs_dir / "again", version=1, retry=FAST, echo=lambda _: None)
    assert tree(runs_dir / "again") == []


def test_fetch_second_version_beside_first_and_existing_slug_dir_kept(fake_kaggle, runs_dir):
    serve_outputs(fake_kaggle, version=1)
    serve_outputs(fake_kaggle, version=2, files={"dpt_summary.json": b'{"v": 2}'})
    fetch_outputs(REF, runs_dir=runs_dir, version=1, retry=FAST, echo=lambda _: None)
    fake_kaggle.file_plan["dpt_summary.json"] = ["drop_mid"] * 20
    with pytest.raises(KaggleRequestError):
        fetch_outputs(REF, runs_dir=runs_dir, version=2, retry=FAST, echo=lambda _: None)
    slug_dir = runs_dir / REF.split("/")[1]
    assert sorted(p.name for p in slug_dir.iterdir()) == ["v1"]
    fake_kaggle.file_plan["dpt_summary.json"] = []  # the storage answers again
    fetch_outputs(REF, runs_dir=runs_dir, version=2, retry=FAST, echo=lambda _: None)
    assert (slug_dir / "v2" / "dpt_summary.json").read_bytes() == b'{"v": 2}'
    assert (slug_dir / "v1" / "dpt_summary.json").read_bytes() == FILES["dpt_summary.json"]


def test_fetch_refuses_running_version(fake_kaggle, runs_dir):
    serve_outputs(fake_kaggle)
    fake_kaggle.status_states = ["running"]
    with pytest.raises(KaggleRequestError, match="is running"):
        fetch_outputs(REF, runs_dir=runs_dir, version=1, retry=FAST, echo=lambda _: None)
    assert fake_kaggle.calls("ListKernelSessionOutput") == [] and tree(runs_dir) == []


def test_fetch_without_version_or_ledger_is_clear(fake_kaggle, runs_dir):
    with pytest.raises(KaggleRequestError, match="--version"):
        fetch_outputs(REF, runs_dir=runs_dir, retry=FAST)
    assert fake_kaggle.requests == []


def test_fetch_unsafe_output_name_refused(fake_kaggle, runs_dir):
    serve_outputs(fake_kaggle, files={"../escape.txt": b"x"})
    with pytest.raises(KaggleRequestError, match="Refusing to download '../escape.txt'"):
        fetch_outputs(REF, runs_dir=runs_dir, version=1, retry=FAST, echo=lambda _: None)
    assert tree(runs_dir) == [] and not (runs_dir.parent / "escape.txt").exists()
