"""Every command answers bad input with exit 2 (1 where noted), one line naming the culprit, no
traceback, and leaves the repository as it was. One table per command.

Each row: (case id, argv with {tmp}/{repo}/{fixture} placeholders, exit code, texts the error
must contain). The commands run in-process through their ``main`` (an exception escaping
``main`` is the traceback a user would see); ``test_entry_points_print_no_traceback`` runs each
real script once to check the same through the interpreter.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
KW = {"channels": [4, 8, 8], "hidden": 16}


# ------------------------------------------------------------------------------- helpers


def repo_state() -> dict[str, str]:
    """sha256 of every tracked and untracked (not ignored) file: the repository as a user sees
    it, committed notebooks included."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    state = {}
    for name in filter(None, names):
        path = REPO / name
        state[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"
    return state


@pytest.fixture(scope="module")
def repo_before():
    return repo_state()


def _fill(argv, **places):
    return [a.format(**places) for a in argv]


def run_main(main, argv, capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``main(argv)``; an escaping exception fails the test."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, err, expected_code, culprits, *, before=None):
    assert code == expected_code, err
    for text in culprits:
        assert text in err, f"{text!r} not in {err!r}"
    assert "Traceback" not in err
    if before is not None:
        assert repo_state() == before, "the command changed the repository"


def _tiny_model():
    from templates.models.registry import build_model

    torch.manual_seed(0)
    return build_model("crn_causal", **KW).eval()


class _Marker:
    """Unpickling it writes a file: the crafted checkpoint that must never run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Checkpoints (ours, bare, corrupt, crafted), wavs, a plain file and datasets."""
    from templates.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("bad_input")
    model = _tiny_model()
    save_checkpoint(d / "ours.pth", model=model, epoch=1,
                    config={"model": "crn_causal", "model_kwargs": KW})
    torch.save(model.state_dict(), d / "bare.pth")
    (d / "corrupt.pth").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "empty.pth").write_bytes(b"")
    torch.save({"model": model.state_dict(), "config": _Marker(d / "marker")}, d / "crafted.pth")
    for name in ("a.wav", "b.wav"):
        sf.write(d / name, 0.1 * np.random.default_rng(0).standard_normal(8000), 16000)
    (d / "plain.txt").write_text("not a folder\n")
    return d


# ------------------------------------------------------------------------------- builders

BUILDER_CASES = [
    ("epochs 0", ["--epochs", "0"], 2, ["--epochs 0", "epochs must be >= 1"]),
    ("zero batch", ["--batch-size", "0"], 2, ["--batch-size 0", "batch_size must be >= 1"]),
    ("zero crop", ["--crop-seconds", "0"], 2, ["--crop-seconds 0.0", "crop_seconds"]),
    ("nan lr", ["--lr", "nan"], 2, ["--lr nan", "finite"]),
    ("inf lr", ["--lr", "inf"], 2, ["--lr inf", "finite"]),
    ("negative lr", ["--lr=-1e-3"], 2, ["--lr -0.001", "> 0"]),
    ("unknown loss", ["--loss", "l2"], 2, ["--loss 'l2'", "mag_l1"]),
    ("unknown eval mode", ["--eval-mode", "half"], 2, ["--eval-mode 'half'", "first3"]),
    ("zero max steps", ["--max-steps", "0"], 2, ["--max-steps 0"]),
    ("negative workers", ["--num-workers", "-1"], 2, ["--num-workers -1"]),
    ("negative seed", ["--seed", "-1"], 2, ["--seed -1"]),
    ("zero patience", ["--patience", "0"], 2, ["--patience 0"]),
    ("zero test files", ["--max-test-files", "0"], 2, ["--max-test-files 0"]),
    ("not a number", ["--epochs", "ten"], 2, ["--epochs", "invalid int value"]),
    ("user with spaces", ["--user", "Not A User"], 2, ["--user 'Not A User'", "lower-case"]),
    ("user leading hyphen", ["--user=-lead"], 2, ["--user '-lead'"]),
    ("user double underscore", ["--user", "a__b"], 2, ["--user 'a__b'"]),
    ("out is a file", ["--out", "{files}/plain.txt"], 2, ["plain.txt: is a file"]),
    ("out under a file", ["--out", "{files}/plain.txt/nb"], 2, ["plain.txt is a file"]),
    ("out holds another kernel", ["--out", "{repo}/notebooks/crn"], 2,
     ["another kernel", "crn-v3-aligned-speech-enhancement"]),
    ("out holds foreign metadata", ["--out", "{tmp}/foreign"], 2,
     ["kernel-metadata.json is not one this toolkit wrote"]),
    ("out not writable", ["--out", "{tmp}/readonly/nb"], 2, ["readonly is not writable"]),
    ("status interval 0", ["--status", "--interval", "0"], 2, ["--interval 0.0"]),
    ("status timeout nan", ["--status", "--wait", "--timeout", "nan"], 2, ["--timeout nan"]),
    ("fetch version 0", ["--fetch", "--version", "0"], 2, ["--version 0"]),
    ("logs version -1", ["--logs", "--version=-1"], 2, ["--version -1"]),
    ("push missing data", ["--push", "--data", "{tmp}/nope"], 2, ["--data", "nope: no such folder"]),
]


@pytest.mark.parametrize("case,argv,code,culprits", BUILDER_CASES,
                         ids=[c[0] for c in BUILDER_CASES])
def test_builder_bad_input(case, argv, code, culprits, files, tmp_path, capsys, monkeypatch,
                           repo_before):
    from builders import dpt, validate

    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "kernel-metadata.json").write_text("[1, 2]")
    (tmp_path / "readonly").mkdir()
    real_access = os.access  # root may write anywhere: stand in for a read-only folder
    monkeypatch.setattr(validate.os, "access", lambda p, mode: "readonly" not in str(p)
                        and real_access(p, mode))
    before_tmp = sorted(p.name for p in tmp_path.rglob("*"))
    argv = _fill(argv, tmp=tmp_path, repo=REPO, files=files)
    code_got, out, err = run_main(dpt.main, argv, capsys)
    assert_refused(code_got, err, code, culprits, before=repo_before)
    assert "wrote" not in out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before_tmp  # nothing written there


def test_builder_reports_every_broken_parameter_at_once(capsys, repo_before):
    from builders import dpt

    code, _out, err = run_main(dpt.main, ["--epochs", "0", "--lr", "nan", "--loss", "x"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: --") for line in lines)
    assert repo_state() == repo_before


def test_builder_user_from_the_environment_is_checked_too(capsys, monkeypatch, repo_before):
    from builders import dpt

    monkeypatch.setenv("KAGGLE_USERNAME", "Bad User")
    code, _out, err = run_main(dpt.main, ["--status"], capsys)
    assert_refused(code, err, 2, ["KAGGLE_USERNAME", "'Bad User'"], before=repo_before)


def test_run_config_problems_cover_every_field_generically():
    """Builders ask RunConfig: a field it validates is refused with no builder change."""
    from builders.validate import parameter_problems
    from templates.config import RunConfig

    assert RunConfig.problems_in({}) == []
    assert RunConfig.problems_in({"epochs": 0, "nope": 1})[0].startswith("nope is not")
    lines = parameter_problems({"EPOCHS": 0, "GRAD_CLIP": float("nan")}, {"EPOCHS": "--epochs"})
    assert lines == ["--epochs 0: epochs must be >= 1, got 0",
                     "parameter GRAD_CLIP: grad_clip must be a finite number > 0, got nan"]


# ------------------------------------------------------------------------------- smoke/run.py

RUN_CASES = [
    ("unknown model", ["--model", "nope"], 2, ["--model", "invalid choice: 'nope'"]),
    ("missing data folder", ["--rehearse", "--data", "{tmp}/nope"], 2,
     ["--data", "nope: no such folder"]),
    ("data without rehearse", ["--data", "{tmp}"], 2, ["--data", "add --rehearse"]),
    ("data folder without the layout", ["--rehearse", "--data", "{tmp}"], 2,
     ["--data", "no train, y_train, test, y_test below it"]),
]


@pytest.mark.parametrize("case,argv,code,culprits", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_smoke_run_bad_input(case, argv, code, culprits, tmp_path, capsys, repo_before):
    from smoke import run

    got, _out, err = run_main(run.main, _fill(argv, tmp=tmp_path), capsys)
    assert_refused(got, err, code, culprits, before=repo_before)


# ------------------------------------------------------------------------------- check_data.py


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A good dataset of folders, one with a corrupt train.7z, one with a truncated one."""
    import py7zr

    from smoke.dataset import build_local_dataset

    d = tmp_path_factory.mktemp("datasets")
    good = build_local_dataset(d / "good", n_train=2, n_test=1, seconds=1.0)
    for name, damage in (("corrupt", "garbage"), ("truncated", "half")):
        root = d / name
        root.mkdir()
        for folder in ("y_train", "test", "y_test"):
            os.symlink(good / folder, root / folder)
        archive = root / "train.7z"
        with py7zr.SevenZipFile(archive, "w") as z:
            for f in sorted((good / "train").iterdir()):
                z.write(f, arcname=f"train/{f.name}")
        data = archive.read_bytes()
        archive.write_bytes(b"7z\xbc\xaf\x27\x1c garbage" * 10 if damage == "garbage"
                            else data[: len(data) // 2])
    (d / "empty").mkdir()
    return d


CHECK_DATA_CASES = [
    ("missing root", ["{tmp}/nope"], 2, ["nope does not exist"]),
    ("root is a file", ["{files}/plain.txt"], 2, ["plain.txt: is a file"]),
    ("no dataset", ["{data}/empty", "--work-dir", "{tmp}/w"], 2, ["dataset not found", "train"]),
    ("corrupt archive", ["{data}/corrupt", "--work-dir", "{tmp}/w"], 2,
     ["cannot extract", "corrupt/train.7z", "download it again"]),
    ("truncated archive", ["{data}/truncated", "--work-dir", "{tmp}/w"], 2,
     ["cannot extract", "truncated/train.7z", "download it again"]),
    ("work dir is a file", ["{data}/good", "--work-dir", "{files}/plain.txt"], 2,
     ["--work-dir", "plain.txt: is a file"]),
    ("min corr 2", ["{data}/good", "--min-corr", "2"], 2, ["--min-corr 2.0"]),
    ("max low corr 1.5", ["{data}/good", "--max-low-corr", "1.5"], 2, ["--max-low-corr 1.5"]),
    ("max unusable nan", ["{data}/good", "--max-unusable", "nan"], 2, ["--max-unusable nan"]),
    ("sample rate 0", ["{data}/good", "--sample-rate", "0"], 2, ["--sample-rate 0"]),
    ("negative min seconds", ["{data}/good", "--min-seconds", "-1"], 2, ["--min-seconds -1.0"]),
    ("no root", [], 2, ["root"]),
]


@pytest.mark.parametrize("case,argv,code,culprits", CHECK_DATA_CASES,
                         ids=[c[0] for c in CHECK_DATA_CASES])
def test_check_data_bad_input(case, argv, code, culprits, datasets, files, tmp_path, capsys,
                              repo_before):
    from smoke import check_data

    argv = _fill(argv, tmp=tmp_path, data=datasets, files=files)
    got, _out, err = run_main(check_data.main, argv, capsys)
    assert_refused(got, err, code, culprits, before=repo_before)
    extracted = tmp_path / "w" / "data"
    if extracted.exists():  # no partial extraction left behind, and nothing taken as done
        assert sorted(p.name for p in extracted.iterdir()) == []


# ------------------------------------------------------------------------------- dataset.py

DATASET_CASES = [
    ("no out", [], 2, ["--out"]),
    ("out is a file", ["--out", "{files}/plain.txt"], 2, ["plain.txt is a file"]),
    ("out under a file", ["--out", "{files}/plain.txt/ds"], 2, ["plain.txt is a file"]),
    ("no train pairs", ["--out", "{tmp}/ds", "--train", "0"], 2, ["at least one train"]),
    ("too short", ["--out", "{tmp}/ds", "--seconds", "0.1"], 2, ["seconds range"]),
    ("three seconds values", ["--out", "{tmp}/ds", "--seconds", "1", "2", "3"], 2,
     ["--seconds takes one value"]),
    ("nan snr", ["--out", "{tmp}/ds", "--snr", "nan"], 2, ["SNR range"]),
    ("negative seed", ["--out", "{tmp}/ds", "--seed", "-1"], 2, ["--seed -1"]),
]


@pytest.mark.parametrize("case,argv,code,culprits", DATASET_CASES,
                         ids=[c[0] for c in DATASET_CASES])
def test_dataset_bad_input(case, argv, code, culprits, files, tmp_path, capsys, repo_before):
    from smoke import dataset

    got, _out, err = run_main(dataset.main, _fill(argv, tmp=tmp_path, files=files), capsys)
    assert_refused(got, err, code, culprits, before=repo_before)
    assert not (tmp_path / "ds").exists()


def test_dataset_failed_real_fetch_leaves_the_old_dataset(tmp_path, capsys, monkeypatch):
    import smoke.dataset as ds

    assert ds.main(["--out", str(tmp_path / "ds"), "--train", "1", "--test", "1",
                    "--seconds", "1"]) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file()}
    capsys.readouterr()
    monkeypatch.setattr(ds.shutil, "which", lambda tool: None)
    got, _out, err = run_main(ds.main, ["--out", str(tmp_path / "ds"), "--real",
                                        "--cache-dir", str(tmp_path / "c")], capsys)
    assert_refused(got, err, 1, ["--real needs apt-get"])
    assert {p: p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------- compare.py


@pytest.fixture()
def runs(tmp_path):
    """A runs folder with one usable run and one run whose summary is not JSON."""
    import json

    ok = tmp_path / "runs" / "dpt-se" / "v1"
    ok.mkdir(parents=True)
    metrics = {"pesq": 1.5, "stoi": 0.8, "si_sdr": 7.0}
    (ok / "dpt_summary.json").write_text(json.dumps(
        {"model": "dpt", "metrics": {"enhanced": metrics, "noisy": metrics}}))
    bad = tmp_path / "bad-runs" / "crn-se" / "v2"
    bad.mkdir(parents=True)
    (bad / "crn_summary.json").write_text("{not json")
    return tmp_path


COMPARE_CASES = [
    ("nothing fetched (the repo's runs/)", [], 2, ["no fetched run to compare", "--fetch"]),
    ("missing runs folder", ["--runs", "{tmp}/nope"], 2, ["nope: no such runs folder"]),
    ("runs is a file", ["--runs", "{files}/plain.txt"], 2, ["plain.txt: no such runs folder"]),
    ("no usable summary", ["--runs", "{tmp}/bad-runs"], 1,
     ["none of the 1 fetched run(s)", "crn_summary.json: not valid JSON"]),
    ("out is a folder", ["--runs", "{tmp}/runs", "--out", "{tmp}"], 2, ["is a folder"]),
    ("out under a file", ["--runs", "{tmp}/runs", "--out", "{files}/plain.txt/c.md"], 2,
     ["plain.txt is a file"]),
]


@pytest.mark.parametrize("case,argv,code,culprits", COMPARE_CASES,
                         ids=[c[0] for c in COMPARE_CASES])
def test_compare_bad_input(case, argv, code, culprits, runs, files, capsys, repo_before):
    from builders import compare

    got, out, err = run_main(compare.main, _fill(argv, tmp=runs, files=files), capsys)
    assert_refused(got, err, code, culprits, before=repo_before)
    assert not list(runs.rglob("comparison.md")) and out == ""


# ------------------------------------------------------------------------------- enhance

ENHANCE_CASES = [
    ("chunk 0, two files", ["{files}/ours.pth", "{files}/a.wav", "{files}/b.wav", "--out",
                            "{tmp}/o", "--chunk-seconds", "0"], 2, ["--chunk-seconds 0.0"]),
    ("overlap >= chunk", ["{files}/ours.pth", "{files}/a.wav", "--out", "{tmp}/o",
                          "--chunk-seconds", "2", "--overlap-seconds", "2"], 2,
     ["--overlap-seconds 2.0: must be less than --chunk-seconds 2.0"]),
    ("negative gate", ["{files}/ours.pth", "{files}/a.wav", "--out", "{tmp}/o",
                       "--vad-gate-db", "-3"], 2, ["--vad-gate-db -3.0"]),
    ("zero threads", ["{files}/ours.pth", "{files}/a.wav", "--out", "{tmp}/o", "--threads", "0"],
     2, ["--threads 0"]),
    ("missing checkpoint", ["{tmp}/missing.pth", "{files}/a.wav", "--out", "{tmp}/o"], 2,
     ["missing.pth: checkpoint file not found"]),
    ("corrupt checkpoint", ["{files}/corrupt.pth", "{files}/a.wav", "--out", "{tmp}/o"], 2,
     ["corrupt.pth: not a readable checkpoint"]),
    ("empty checkpoint", ["{files}/empty.pth", "{files}/a.wav", "--out", "{tmp}/o"], 2,
     ["empty.pth: not a readable checkpoint (the file is empty)"]),
    ("text as checkpoint", ["{files}/plain.txt", "{files}/a.wav", "--out", "{tmp}/o"], 2,
     ["plain.txt: not a readable checkpoint (not a torch file"]),
    ("crafted checkpoint", ["{files}/crafted.pth", "{files}/a.wav", "--out", "{tmp}/o"], 2,
     ["crafted.pth: not loaded", "GLOBAL exec", "--trust-checkpoint"]),
    ("bare without --model", ["{files}/bare.pth", "{files}/a.wav", "--out", "{tmp}/o"], 2,
     ["bare.pth", "pass --model NAME"]),
    ("unknown model", ["{files}/bare.pth", "{files}/a.wav", "--out", "{tmp}/o", "--model", "nope"],
     2, ["'nope'"]),
    ("kwargs not an object", ["{files}/ours.pth", "{files}/a.wav", "--out", "{tmp}/o",
                              "--model-kwargs", "[1]"], 2, ["--model-kwargs must be a JSON object"]),
    ("kwargs not JSON", ["{files}/ours.pth", "{files}/a.wav", "--out", "{tmp}/o",
                         "--model-kwargs", "{{bad"], 2, ["--model-kwargs is not valid JSON"]),
    ("missing input", ["{files}/ours.pth", "{tmp}/nope.wav", "--out", "{tmp}/o"], 2,
     ["nope.wav: no such file or folder"]),
    ("folder without audio", ["{files}/ours.pth", "{tmp}", "--out", "{tmp}/o"], 2,
     ["no .wav or .flac files in this folder"]),
    ("out is a file", ["{files}/ours.pth", "{files}/a.wav", "--out", "{files}/plain.txt"], 2,
     ["--out", "plain.txt: is a file"]),
    ("no --out", ["{files}/ours.pth", "{files}/a.wav"], 2, ["--out"]),
]


@pytest.mark.parametrize("case,argv,code,culprits", ENHANCE_CASES,
                         ids=[c[0] for c in ENHANCE_CASES])
def test_enhance_bad_input(case, argv, code, culprits, files, tmp_path, capsys, repo_before):
    from deploy import enhance

    got, _out, err = run_main(enhance.main, _fill(argv, tmp=tmp_path, files=files), capsys)
    assert_refused(got, err, code, culprits, before=repo_before)
    assert not (tmp_path / "o").exists()  # nothing half-written
    assert not (files / "marker").exists()  # the crafted checkpoint never ran
    # one line, once, not once per input file
    assert len([line for line in err.splitlines() if line.startswith("enhance")]) == 1


# ------------------------------------------------------------------------------- demo


DEMO_CASES = [
    ("no checkpoint option", [], {}, 2, ["--checkpoint"]),
    ("missing checkpoint", ["--checkpoint", "{tmp}/missing.pth"], {}, 2,
     ["missing.pth: checkpoint file not found"]),
    ("checkpoint is a folder", ["--checkpoint", "{tmp}"], {}, 2,
     ["is a folder; give the checkpoint file"]),
    ("corrupt checkpoint", ["--checkpoint", "{files}/corrupt.pth"], {}, 2,
     ["corrupt.pth: not a readable checkpoint"]),
    ("crafted checkpoint", ["--checkpoint", "{files}/crafted.pth"], {}, 2,
     ["crafted.pth: not loaded", "--trust-checkpoint"]),
    ("bare without --model", ["--checkpoint", "{files}/bare.pth"], {}, 2, ["--model NAME"]),
    ("port 0", ["--checkpoint", "{files}/ours.pth", "--port", "0"], {}, 2, ["--port 0"]),
    ("port 70000", ["--checkpoint", "{files}/ours.pth", "--port", "70000"], {}, 2,
     ["--port 70000", "1-65535"]),
    ("env port not a number", ["--checkpoint", "{files}/ours.pth"],
     {"GRADIO_SERVER_PORT": "web"}, 2, ["GRADIO_SERVER_PORT='web'"]),
]


@pytest.mark.parametrize("case,argv,env,code,culprits", DEMO_CASES,
                         ids=[c[0] for c in DEMO_CASES])
def test_demo_bad_input(case, argv, env, code, culprits, files, tmp_path, capsys, monkeypatch,
                        repo_before):
    from demo import app

    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(app, "build_app", lambda model: pytest.fail("the demo started"))
    got, _out, err = run_main(app.main, _fill(argv, tmp=tmp_path, files=files), capsys)
    assert_refused(got, err, code, culprits, before=repo_before)
    assert not (files / "marker").exists()


@pytest.mark.parametrize("argv,env,port", [
    ([], {"GRADIO_SERVER_PORT": "7999"}, 7999),
    (["--port", "7001"], {"GRADIO_SERVER_PORT": "7999"}, 7001),
    ([], {}, 7860),
])
def test_demo_port_follows_gradio_convention(argv, env, port, files, monkeypatch):
    import types

    from demo import app

    monkeypatch.setitem(sys.modules, "gradio", types.ModuleType("gradio"))  # seconds to import
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    launched = {}

    class _App:
        def launch(self, **kw):
            launched.update(kw)

    monkeypatch.setattr(app, "build_app", lambda model: _App())
    assert app.main(["--checkpoint", str(files / "ours.pth"), *argv]) == 0
    assert launched["server_port"] == port and launched["server_name"] == "127.0.0.1"


# ------------------------------------------------------------------------------- entry points

ENTRY_CASES = [
    ("builders/dpt.py", ["--epochs", "0"], 2, "--epochs 0"),
    ("smoke/run.py", ["--rehearse", "--data", "{tmp}/nope"], 2, "--data"),
    ("smoke/check_data.py", ["{data}/corrupt", "--work-dir", "{tmp}/w"], 2, "train.7z"),
    ("smoke/dataset.py", ["--out", "{files}/plain.txt"], 2, "plain.txt"),
    ("builders/compare.py", ["--runs", "{tmp}/nope"], 2, "nope"),
    ("deploy/enhance.py", ["{files}/crafted.pth", "{files}/a.wav", "--out", "{tmp}/o"], 2,
     "--trust-checkpoint"),
    ("demo/app.py", ["--checkpoint", "{tmp}/missing.pth"], 2, "missing.pth"),
]


@pytest.mark.slow  # a fresh interpreter per command (torch imports): seconds each
@pytest.mark.parametrize("script,argv,code,culprit", ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES])
def test_entry_points_print_no_traceback(script, argv, code, culprit, files, datasets, tmp_path,
                                         repo_before):
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.run([sys.executable, script, *_fill(argv, tmp=tmp_path, files=files,
                                                          data=datasets)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert_refused(proc.returncode, proc.stderr, code, [culprit], before=repo_before)
    # argparse's usage block (however many lines it wraps to) is not the message
    message = [line for line in proc.stderr.strip().splitlines()
               if not line.startswith(("usage:", " "))]
    assert len(message) <= 2, proc.stderr
    assert not (files / "marker").exists()
