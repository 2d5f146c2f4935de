"""The run ledger (builders/ledger.py)."""

from __future__ import annotations

import hashlib
import re
import subprocess

import pytest

from builders import ledger


def test_append_and_read_round_trip(tmp_path):
    runs = tmp_path / "runs"
    assert ledger.read_ledger(runs) == []
    first = {"event": "push", "ref": "alice/dpt", "version": 1, "params": {"lr": 0.001, "note": "ü"}}
    second = {"event": "fetch", "ref": "alice/dpt", "version": 1}
    ledger.append_record(runs, first)
    ledger.append_record(runs, second)
    lines = (runs / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # one object a line
    assert ledger.read_ledger(runs) == [first, second]


def test_latest_push_per_ref(tmp_path):
    runs = tmp_path / "runs"
    for record in [
        {"event": "push", "ref": "alice/dpt", "version": 1},
        {"event": "push", "ref": "alice/crn", "version": 4},
        {"event": "push", "ref": "alice/dpt", "version": 2},
        {"event": "fetch", "ref": "alice/dpt", "version": 7},
    ]:
        ledger.append_record(runs, record)
    assert ledger.latest_push(runs, "alice/dpt")["version"] == 2
    assert ledger.latest_push(runs, "alice/crn")["version"] == 4
    assert ledger.latest_push(runs, "bob/dpt") is None


def test_malformed_line_names_file_and_line(tmp_path):
    runs = tmp_path / "runs"
    ledger.append_record(runs, {"event": "push"})
    with open(runs / "ledger.jsonl", "a") as fh:
        fh.write("{truncated\n")
    with pytest.raises(ledger.LedgerError, match=r"ledger.jsonl:2: not valid JSON"):
        ledger.read_ledger(runs)
    (runs / "ledger.jsonl").write_text("[1, 2]\n")
    with pytest.raises(ledger.LedgerError, match=r":1: expected a JSON object"):
        ledger.read_ledger(runs)


def test_sha256_and_time(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc" * 1000)
    assert ledger.sha256_file(path, chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ledger.utc_now())


def test_git_state(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    assert ledger.git_state(repo) == (None, None)
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "f.txt").write_text("one")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "c")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert ledger.git_state(repo) == (head, False)
    (repo / "f.txt").write_text("two")
    assert ledger.git_state(repo) == (head, True)


def test_git_state_ignores_the_runs_folder_it_is_told_to(tmp_path):
    """A committed ledger gains a line on every push and fetch: that is not uncommitted code."""
    repo = tmp_path / "repo"
    (repo / "runs").mkdir(parents=True)
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "f.txt").write_text("one")
    ledger.append_record(repo / "runs", {"event": "push", "ref": "a/b", "version": 1})
    run("add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "c")
    ledger.append_record(repo / "runs", {"event": "fetch", "ref": "a/b", "version": 1})
    commit, dirty = ledger.git_state(repo, exclude=[repo / "runs"])
    assert commit and dirty is False
    assert ledger.git_state(repo)[1] is True  # without exclude the ledger line counts
    assert ledger.git_state(repo, exclude=[tmp_path / "elsewhere"])[1] is True
    (repo / "f.txt").write_text("two")
    assert ledger.git_state(repo, exclude=[repo / "runs"])[1] is True


def test_resume_link_names_the_kernels_own_earlier_version():
    from builders.ledger import resume_link

    meta = {"id": "bob/dpt-x", "kernel_sources": ["alice/other", "bob/dpt-x/7"]}
    assert resume_link(meta) == {"ref": "bob/dpt-x", "version": 7}
    assert resume_link({"id": "bob/dpt-x", "kernel_sources": ["bob/dpt-x"]}) == {
        "ref": "bob/dpt-x", "version": None}
    assert resume_link({"id": "bob/dpt-x", "kernel_sources": ["alice/other"]}) is None
    assert resume_link({"id": "bob/dpt-x"}) is None


def test_latest_version_is_the_last_numbered_push(tmp_path):
    from builders.ledger import append_record, latest_version

    assert latest_version(tmp_path, "bob/k") is None
    append_record(tmp_path, {"event": "push", "ref": "bob/k", "version": 3})
    append_record(tmp_path, {"event": "fetch", "ref": "bob/k", "version": 9})
    append_record(tmp_path, {"event": "push", "ref": "bob/other", "version": 8})
    append_record(tmp_path, {"event": "push", "ref": "bob/k", "version": None})
    assert latest_version(tmp_path, "bob/k") == 3
