"""The cross-run comparison table (builders/compare.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from builders import compare

REPO = Path(__file__).resolve().parents[1]


def summary(model, pesq, stoi, sisdr, *, params=904_705, best_epoch=29, seconds=12917.0, delta=True):
    noisy = {"pesq": 1.163, "stoi": 0.722, "si_sdr": -0.25}
    enhanced = {"pesq": pesq, "stoi": stoi, "si_sdr": sisdr}
    metrics = {"noisy": noisy, "enhanced": enhanced}
    if delta:
        metrics["delta"] = {k: enhanced[k] - noisy[k] for k in noisy}
    return {"model": model, "params": params, "epochs_run": 30, "best_epoch": best_epoch,
            "best_val_loss": 0.05, "train_seconds": seconds, "n_test": 105, "n_skipped": 0,
            "eval_mode": "full", "metrics": metrics, "versions": {"python": "3.11"}, "config": {}}


def add_run(runs: Path, slug: str, version: int, files: dict, ref: str | None = None) -> Path:
    folder = runs / slug / f"v{version}"
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    if ref:
        (folder / "manifest.json").write_text(json.dumps({"ref": ref, "version": version, "files": []}))
    return folder


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ") and "Model" not in line]


def test_table_from_summaries(tmp_path, capsys):
    runs = tmp_path / "runs"
    add_run(runs, "dpt-se", 2, {"dpt_summary.json": summary("dpt", 1.692, 0.866, 9.05)}, ref="alice/dpt-se")
    add_run(runs, "crn-se", 2, {"crn_summary.json": summary("crn", 1.630, 0.864, 8.62, params=1_811_009,
                                                             best_epoch=30, seconds=8041.0)},
            ref="alice/crn-se")
    out = tmp_path / "cmp.md"
    assert compare.main(["--runs", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    rows = table_rows(printed)
    assert [r[:2] for r in rows] == [["crn", "alice/crn-se v2"], ["dpt", "alice/dpt-se v2"]]
    crn, dpt = rows
    assert crn[2:5] == ["1.630", "0.864", "8.62 dB"]
    assert crn[5:8] == ["+0.467", "+0.142", "+8.87 dB"]
    assert crn[8] == "1.163 / 0.722 / -0.25 dB"
    assert crn[9:] == ["1.81M", "30", "8041 s (2.2 h)"]
    assert dpt[2:8] == ["1.692", "0.866", "9.05 dB", "+0.529", "+0.144", "+9.30 dB"]
    assert dpt[9:] == ["0.90M", "29", "12917 s (3.6 h)"]
    assert "without a usable summary" not in printed


def test_missing_and_malformed_runs_are_listed(tmp_path):
    runs = tmp_path / "runs"
    add_run(runs, "dpt-se", 1, {"history.csv": "epoch\n"})
    add_run(runs, "dpt-se", 3, {"dpt_summary.json": "{not json"})
    bad = summary("dpt", 1.5, 0.8, 7.0)
    del bad["metrics"]["enhanced"]["stoi"]
    add_run(runs, "dpt-se", 4, {"dpt_summary.json": bad})
    text_metric = summary("dpt", 1.5, 0.8, 7.0)
    text_metric["metrics"]["enhanced"]["pesq"] = "high"
    add_run(runs, "dpt-se", 5, {"dpt_summary.json": text_metric})
    add_run(runs, "dpt-se", 2, {"dpt_summary.json": summary("dpt", 1.6, 0.85, 8.0)})
    (runs / "dpt-se" / ".v6.partial-abc").mkdir()
    text = compare.write_comparison(runs, None)
    assert [r[1] for r in table_rows(text)] == ["dpt-se v2"]
    problems = text.split("## Runs without a usable summary")[1].strip().splitlines()
    assert len(problems) == 4
    assert problems[0].startswith("- dpt-se v1: missing: no *_summary.json")
    assert problems[1].startswith("- dpt-se v3: malformed:") and "not valid JSON" in problems[1]
    assert "dpt_summary.json" in problems[1]
    assert problems[2].startswith("- dpt-se v4: malformed:") and "metrics.enhanced lacks stoi" in problems[2]
    assert problems[3].startswith("- dpt-se v5: malformed:") and "metrics.enhanced.pesq is 'high'" in problems[3]


def test_null_metric_and_missing_delta(tmp_path):
    runs = tmp_path / "runs"
    s = summary("crn", None, 0.86, 8.5, delta=False, params=None, best_epoch=None, seconds=None)
    add_run(runs, "crn-se", 7, {"crn_summary.json": s})
    (row,) = table_rows(compare.write_comparison(runs, None))
    assert row[2] == "—" and row[5] == "—"  # PESQ unavailable, so no delta either
    assert row[6] == "+0.138" and row[7] == "+8.75 dB"  # derived from noisy and enhanced
    assert row[9:] == ["—", "—", "—"]


def test_order_is_deterministic(tmp_path):
    runs = tmp_path / "runs"
    for slug, version, model in [("b", 10, "dpt"), ("a", 2, "dpt"), ("b", 9, "dpt"), ("c", 1, "crn")]:
        add_run(runs, slug, version, {f"{model}_summary.json": summary(model, 1.5, 0.8, 7.0)})
    rows = table_rows(compare.write_comparison(runs, None))
    assert [(r[0], r[1]) for r in rows] == [("crn", "c v1"), ("dpt", "a v2"), ("dpt", "b v9"),
                                            ("dpt", "b v10")]


def test_empty_and_missing_runs_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    assert compare.main(["--runs", str(runs)]) == 2  # nothing fetched: no empty table
    assert "no fetched run to compare" in capsys.readouterr().err
    assert not (runs / "comparison.md").exists()
    assert compare.main(["--runs", str(tmp_path / "nope")]) == 2
    assert "nope: no such runs folder" in capsys.readouterr().err


def test_script_entry_point(tmp_path):
    runs = tmp_path / "runs"
    add_run(runs, "dpt-se", 1, {"dpt_summary.json": summary("dpt", 1.692, 0.866, 9.05)})
    proc = subprocess.run([sys.executable, "builders/compare.py", "--runs", str(runs)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "| dpt | dpt-se v1 | 1.692 |" in proc.stdout
    assert (runs / "comparison.md").exists()


def test_default_runs_folder_is_the_repos_not_the_current_directory(tmp_path, monkeypatch, capsys):
    """--fetch writes into the repo's runs/; the table must find them from any directory."""
    runs = tmp_path / "repo-runs"
    add_run(runs, "dpt-se", 1, {"dpt_summary.json": summary("dpt", 1.692, 0.866, 9.05)})
    monkeypatch.setattr(compare, "DEFAULT_RUNS", runs)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert compare.main([]) == 0
    assert "| dpt | dpt-se v1 | 1.692 |" in capsys.readouterr().out
    assert (runs / "comparison.md").is_file()


def test_pipe_in_model_or_ref_does_not_break_the_table(tmp_path):
    runs = tmp_path / "runs"
    add_run(runs, "x", 1, {"m_summary.json": summary("a|b", 1.5, 0.8, 5.0)}, ref="u/x|y")
    text = compare.write_comparison(runs, None)
    row = next(line for line in text.splitlines() if line.startswith("| a"))
    cells = re.split(r"(?<!\\)\|", row.strip()[1:-1])  # markdown splits on unescaped pipes only
    assert len(cells) == 12 and cells[0].strip() == "a\\|b" and cells[1].strip() == "u/x\\|y v1"
