"""Runs that fit a Kaggle session, through the rendered notebook (papermill, local dataset).

A full run without a GPU stops at the environment check; a run with a budget of seconds stops
training on its budget and still evaluates and exports; the next version resumes from that
output mounted as a read-only input and ends with the weights of an uninterrupted run, which
itself found no mounted dataset and downloaded it through (a fake) kagglehub.
"""

from __future__ import annotations

import json
import time

import nbformat
import pytest
import torch

from render.notebook import build_notebook, write_notebook
from smoke.rehearse import RehearsalError, default_dataset, rehearse
from smoke.run import load_spec

FAKE_KAGGLEHUB = '''
import os
import shutil


def dataset_download(handle, path=None, **kwargs):
    """Stands in for kagglehub: 'downloads' a local dataset into $KAGGLEHUB_CACHE."""
    with open(os.environ["FAKE_KAGGLEHUB_LOG"], "a") as fh:
        fh.write(handle + "\\n")
    if os.environ.get("FAKE_KAGGLEHUB_OFFLINE"):
        raise ConnectionError("Failed to resolve 'www.kaggle.com'")
    dest = os.path.join(os.environ["KAGGLEHUB_CACHE"], "datasets", *handle.split("/"))
    if not os.path.isdir(dest):
        shutil.copytree(os.environ["FAKE_KAGGLEHUB_SOURCE"], dest)
    return dest
'''


@pytest.fixture(scope="module")
def crn_notebook(tmp_path_factory):
    spec = load_spec("crn")
    root = tmp_path_factory.mktemp("long-runs")
    data = tmp_path_factory.getbasetemp() / "rehearsal-data"
    if not (data / "manifest.json").exists():
        default_dataset(data)
    return spec, write_notebook(build_notebook(spec), root / spec.notebook_file), data, root


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _printed(result):
    """Everything the executed notebook printed."""
    nb = nbformat.read(str(result.executed), as_version=4)
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def _summary(result):
    return json.loads((result.work_dir / "crn_summary.json").read_text())


@pytest.mark.slow
def test_full_run_without_gpu_stops_at_the_environment_check(crn_notebook):
    spec, notebook, data, root = crn_notebook
    t0 = time.perf_counter()
    with pytest.raises(RehearsalError) as info:
        rehearse(spec, notebook, data, root, overrides={"SMOKE": False}, label="no-gpu")
    message = str(info.value)
    assert "(environment) raised NoGPUError: no CUDA device is visible" in message
    for cause in ("accelerator is off", "GPU quota", "phone-verified", "retired accelerator",
                  "ALLOW_CPU = True"):
        assert cause in message
    assert not (root / "no-gpu-work" / "last.pth").exists()  # nothing trained
    assert time.perf_counter() - t0 < 300  # seconds of kernel start-up, not a training run


@pytest.mark.slow
def test_budget_stop_then_resume_from_mounted_output_equals_uninterrupted(crn_notebook, tmp_path):
    spec, notebook, data, root = crn_notebook
    two_epochs = {"EPOCHS": 2, "MAX_TEST_FILES": 1, "MAX_STEPS": 1, "CROP_SECONDS": 1.0}

    # Run 1: a budget of seconds. Epoch 1 trains (nothing to evaluate otherwise), epoch 2 does
    # not fit; the best checkpoint is still evaluated and exported.
    run1 = rehearse(spec, notebook, data, root, label="run1",
                    overrides={**two_epochs, "TIME_BUDGET_HOURS": 1e-4})
    s1 = _summary(run1)
    assert s1["stopped_by"] == "time_budget" and s1["epochs_run"] == 1
    assert s1["epochs_this_session"] == 1 and s1["resumed_from_epoch"] == 0
    assert s1["minutes_used"] > 0 and s1["time_budget_hours"] == 1e-4
    log1 = _printed(run1)
    assert "time budget: stopping before Ep02" in log1 and "last.pth is kept" in log1
    assert "time_budget: 1 epoch(s) over all versions, 1 in this one" in log1

    # Run 2: the next version, run 1's output mounted next to the dataset (read-only).
    inputs = tmp_path / "input"
    (inputs / "datasets").mkdir(parents=True)
    (inputs / "datasets" / "libri").symlink_to(data, target_is_directory=True)
    (inputs / "notebooks").mkdir()
    (inputs / "notebooks" / "crn-v1").symlink_to(run1.work_dir, target_is_directory=True)
    before = _snapshot(run1.work_dir)
    run2 = rehearse(spec, notebook, inputs, root, label="run2", overrides=two_epochs)
    assert _snapshot(run1.work_dir) == before  # the input was only read
    assert "resuming across versions:" in _printed(run2)
    s2 = _summary(run2)
    assert s2["stopped_by"] == "epochs" and s2["epochs_run"] == 2
    assert s2["epochs_this_session"] == 1 and s2["resumed_from_epoch"] == 1

    # Run 3: uninterrupted, and nothing mounted: the dataset comes through kagglehub.
    fake = tmp_path / "fake-kagglehub"
    fake.mkdir()
    (fake / "kagglehub.py").write_text(FAKE_KAGGLEHUB)
    empty = tmp_path / "empty-input"
    empty.mkdir()
    log = tmp_path / "kagglehub.log"
    run3 = rehearse(spec, notebook, empty, root, label="run3", overrides=two_epochs, environ={
        "PYTHONPATH": str(fake), "FAKE_KAGGLEHUB_SOURCE": str(data),
        "FAKE_KAGGLEHUB_LOG": str(log)})
    assert log.read_text() == "earth16/libri-speech-noise-dataset\n"
    scratch = root / "run3-work-scratch" / "kagglehub"
    assert scratch.is_dir() and not (run3.work_dir / "kagglehub").exists()
    s3 = _summary(run3)
    assert s3["stopped_by"] == "epochs" and s3["epochs_run"] == 2 and s3["epochs_this_session"] == 2

    for name in ("last.pth", "crn_best.pth"):
        resumed = torch.load(run2.work_dir / name, weights_only=False)["model"]
        straight = torch.load(run3.work_dir / name, weights_only=False)["model"]
        assert resumed.keys() == straight.keys()
        for key in straight:
            assert torch.equal(resumed[key], straight[key]), (name, key)
