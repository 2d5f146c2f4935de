"""Rehearsal: output checks, failing-cell reports, and (slow) the real notebooks end to end."""

from __future__ import annotations

import json
import math

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from render.notebook import KERNELSPEC, build_notebook, write_notebook
from render.spec import model_spec
from smoke.rehearse import RehearsalError, check_outputs, expected_outputs, rehearse
from smoke.run import MODELS, load_spec
from tests.helpers.notebooks import read_validated

EXPORT = {"latency": [{"variant": v, "ms_per_hop_median": 1.0} for v in ("fp32", "int8", "onnx")]}


def _write_outputs(work, name, metrics, export=EXPORT):
    work.mkdir(parents=True, exist_ok=True)
    for f in expected_outputs(name):
        (work / f).write_bytes(b"x")
    (work / f"{name}_summary.json").write_text(json.dumps({"metrics": metrics, "export": export}))


GOOD = {g: {"pesq": 1.2, "stoi": 0.8, "si_sdr": 3.0} for g in ("noisy", "enhanced", "delta")}


def test_check_outputs_accepts_complete_run(tmp_path):
    _write_outputs(tmp_path, "dpt", GOOD)
    assert check_outputs("dpt", tmp_path)["metrics"] == GOOD


def test_check_outputs_names_missing_files(tmp_path):
    _write_outputs(tmp_path, "dpt", GOOD)
    (tmp_path / "training_curves.png").unlink()
    with pytest.raises(RehearsalError, match="training_curves.png"):
        check_outputs("dpt", tmp_path)


def test_check_outputs_requires_the_export_latency_table(tmp_path):
    _write_outputs(tmp_path, "dpt", GOOD, export={"latency": EXPORT["latency"][:2]})
    with pytest.raises(RehearsalError, match="export latency table incomplete"):
        check_outputs("dpt", tmp_path)


@pytest.mark.parametrize("bad", [None, "1.0", math.inf])
def test_check_outputs_refuses_non_finite_metrics(tmp_path, bad):
    metrics = json.loads(json.dumps(GOOD))
    metrics["enhanced"]["pesq"] = bad
    _write_outputs(tmp_path, "crn", metrics if bad is not math.inf else GOOD)
    if bad is math.inf:  # json cannot hold inf; write it the way a careless writer would
        text = (tmp_path / "crn_summary.json").read_text().replace("1.2", "Infinity", 1)
        (tmp_path / "crn_summary.json").write_text(text)
    with pytest.raises(RehearsalError, match="not finite"):
        check_outputs("crn", tmp_path)


def test_failing_cell_is_reported_with_index_section_and_traceback(tmp_path):
    nb = new_notebook(cells=[
        new_code_cell("# Parameters\nDATA_DIR = ''\nWORK_DIR = ''", metadata={"tags": ["parameters"]},
                      id="parameters-0"),
        new_code_cell("x = 1", id="setup-0"),
        new_code_cell("def f():\n    raise ValueError('y_train/0012.wav: sample rate 8000')\nf()",
                      id="data-3"),
    ], metadata={"kernelspec": dict(KERNELSPEC)})
    path = write_notebook(nb, tmp_path / "broken.ipynb")
    with pytest.raises(RehearsalError) as info:
        rehearse(model_spec("dpt"), path, tmp_path / "data", tmp_path / "run", timeout=120)
    message = str(info.value)
    # numbered as in the rendered notebook, whatever cells papermill inserted
    assert "cell 2 (data) raised ValueError: y_train/0012.wav: sample rate 8000" in message
    assert "----> 3 f()" in message  # the traceback, without colour codes


def test_failure_inside_the_notebooks_package_names_the_module_and_line(tmp_path):
    """Code runs in the package's modules now: the innermost module frame is named."""
    from nbformat.v4 import new_output

    from smoke.rehearse import _failed_cell

    cells = [new_code_cell("# Parameters", id="parameters-0", metadata={"tags": ["parameters"]}),
             new_code_cell("model, result = run_training(cfg, data)", id="training-1")]
    original = write_notebook(new_notebook(cells=cells), tmp_path / "nb.ipynb")
    failed = new_code_cell(cells[1].source, id="training-1")
    failed.outputs = [new_output("error", ename="RuntimeError", evalue="CUDA out of memory",
                                 traceback=[
        "Cell In[12], line 1\n----> 1 model, result = run_training(cfg, data)",
        "File /tmp/se_toolkit_package-k2j4/templates/pipeline.py:280, in run_training(cfg, data)",
        "File /tmp/se_toolkit_package-k2j4/templates/train.py:97, in train_model(model)",
        "File /usr/lib/python3/site-packages/torch/nn/modules/module.py:1, in _call_impl"])]
    executed = write_notebook(new_notebook(cells=[cells[0], failed]), tmp_path / "out.ipynb")
    message = _failed_cell(executed, original)
    assert message.startswith("cell 1 (training) raised RuntimeError in templates/train.py line 97: "
                              "CUDA out of memory")


@pytest.mark.slow
@pytest.mark.parametrize("spec", [load_spec(name) for name in MODELS], ids=lambda s: s.name)
def test_rehearsal_runs_the_real_notebook_end_to_end(spec, tmp_path_factory):
    from smoke.rehearse import default_dataset

    data = tmp_path_factory.getbasetemp() / "rehearsal-data"
    if not (data / "manifest.json").exists():
        default_dataset(data)
    work_root = tmp_path_factory.mktemp(spec.name)
    notebook = write_notebook(build_notebook(spec), work_root / spec.notebook_file)
    result = rehearse(spec, notebook, data, work_root)
    for name in expected_outputs(spec.name):
        assert (result.work_dir / name).is_file(), name
    executed = read_validated(result.executed)
    assert not any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))
    assert result.summary["model"] == spec.name
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "EPOCHS = 1" in injected[0].source
    nbformat.validate(executed)
