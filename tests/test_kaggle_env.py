"""Kaggle-image environments: pins files, the cached venv, the kernel overlay, the warning watch."""

from __future__ import annotations

import json
import linecache
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from render.notebook import KERNELSPEC, write_notebook
from render.spec import model_spec
from smoke import kernel_warnings
from smoke.kaggle_env import (
    EnvError,
    KaggleEnv,
    ensure_env,
    env_key,
    find_interpreter,
    kernel_overlay,
    known_envs,
    load_pins,
)
from smoke.rehearse import RehearsalError, describe_warnings, rehearse


def test_both_kaggle_images_are_pinned_with_their_sources():
    assert {"kaggle-2026-05", "kaggle-next"} <= set(known_envs())
    today, nxt = load_pins("kaggle-2026-05"), load_pins("kaggle-next")
    assert today.python == (3, 12) and nxt.python == (3, 13)
    assert {"torch==2.10.0", "torchaudio==2.10.0", "torchcodec==0.10.0", "numpy==2.0.2",
            "soundfile==0.13.1", "scipy==1.16.3", "librosa==0.11.0"} <= set(today.requirements)
    assert {"torch==2.11.0", "torchaudio==2.11.0", "torchcodec==0.11.0"} <= set(nxt.requirements)
    for pins in (today, nxt):
        text = pins.path.read_text(encoding="utf-8")
        assert "googlecolab/backend-info" in text and "Kaggle/docker-python" in text
        # not in the image: the notebook's install cell must install them, as on Kaggle
        names = {r.split("==")[0].lower() for r in pins.requirements}
        assert not names & {"pesq", "pystoi", "py7zr", "onnxruntime"}


def test_a_users_pins_file_and_its_errors(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("# python: 3.11\n\ntorch==2.9.1  # my laptop\nnumpy>=2\n")
    pins = load_pins(good)
    assert (pins.name, pins.python, pins.requirements) == ("mine", (3, 11), ("torch==2.9.1", "numpy>=2"))
    bad = tmp_path / "bad.txt"
    bad.write_text("torch==2.10.0\ntorch 2.10 please\n")
    with pytest.raises(EnvError, match=r"bad.txt:2: not a pip requirement"):
        load_pins(bad)
    (tmp_path / "empty.txt").write_text("# only comments\n")
    with pytest.raises(EnvError, match="empty.txt: no requirements"):
        load_pins(tmp_path / "empty.txt")
    with pytest.raises(EnvError, match="neither a known image"):
        load_pins("kaggle-1999")


def test_interpreter_falls_back_to_the_local_one_and_says_so():
    assert find_interpreter(None)[0] == sys.executable
    exe, version, note = find_interpreter((3, 99))
    assert exe == sys.executable and version == sys.version_info[:2]
    assert "no python3.99 on this machine" in note


def test_env_key_changes_with_pins_and_python(tmp_path):
    (tmp_path / "a.txt").write_text("torch==2.10.0\n")
    (tmp_path / "b.txt").write_text("torch==2.11.0\n")
    a, b = load_pins(tmp_path / "a.txt"), load_pins(tmp_path / "b.txt")
    assert env_key(a, (3, 12)) != env_key(a, (3, 13))
    assert env_key(a, (3, 12)).split("-")[1] != env_key(b, (3, 12)).split("-")[1]
    assert env_key(a, (3, 12)) == env_key(load_pins(tmp_path / "a.txt"), (3, 12))


@pytest.fixture(scope="module")
def tiny_env(tmp_path_factory):
    """A real cached env built offline: its only requirement (pip) is already in a fresh venv."""
    cache = tmp_path_factory.mktemp("cache")
    pins_file = cache / "tiny.txt"
    pins_file.write_text("pip\n")
    old = os.environ.get("SE_TOOLKIT_CACHE")
    os.environ["SE_TOOLKIT_CACHE"] = str(cache)
    try:
        yield ensure_env(load_pins(pins_file), echo=lambda *_: None), cache
    finally:
        if old is None:
            os.environ.pop("SE_TOOLKIT_CACHE")
        else:
            os.environ["SE_TOOLKIT_CACHE"] = old


def test_env_is_created_once_then_reused(tiny_env, monkeypatch):
    env, cache = tiny_env
    assert env.created and env.size_bytes > 0 and env.python.is_file()
    assert env.root.parent == cache / "envs" and (env.root / "pip-freeze.txt").is_file()
    monkeypatch.setenv("SE_TOOLKIT_CACHE", str(cache))
    again = ensure_env(env.pins, echo=lambda *_: None)
    assert (again.root, again.created, again.size_bytes) == (env.root, False, env.size_bytes)
    assert "reused" in again.describe()


def test_a_failed_install_leaves_no_env_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("SE_TOOLKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    pins = tmp_path / "broken.txt"
    pins.write_text("no-such-package-for-se-toolkit==0.0.1\n")
    with pytest.raises(EnvError, match="could not pip install -r .*broken.txt"):
        ensure_env(load_pins(pins), echo=lambda *_: None)
    assert list((tmp_path / "envs").iterdir()) == []


def test_overlay_sees_the_env_and_keeps_installs_to_itself(tiny_env, tmp_path):
    env, _ = tiny_env
    py = kernel_overlay(env, tmp_path / "overlay")
    out = subprocess.run([str(py), "-c", "import pip, sys; print(sys.prefix); print(pip.__file__)"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert Path(out[0]) == tmp_path / "overlay" and out[1].startswith(str(env.root))


def _fake_library(name: str):
    module = types.ModuleType(name)
    exec("import warnings\n"
         "def old():\n"
         "    warnings.warn('old() is deprecated, use new()', DeprecationWarning, stacklevel=2)\n"
         "def inner():\n"
         "    warnings.warn('other lib deprecated this', DeprecationWarning)\n"
         "def soon():\n"
         "    warnings.warn('soon changes', FutureWarning)\n",
         module.__dict__)
    return module


def test_watch_records_what_python_addresses_to_notebook_code(tmp_path):
    out = tmp_path / "w.jsonl"
    lib, machinery = _fake_library("somelib.sub"), _fake_library("ipykernel.fake")
    cell = {"__name__": "__main__", "lib": lib, "machinery": machinery}
    source = "x = 1\nlib.old()\nmachinery.old()\nlib.old()\nlib.inner()\nlib.soon()\n"
    # IPython keeps each cell's source in linecache under the cell's file name
    linecache.cache["/tmp/ipykernel_1/42.py"] = (len(source), None, source.splitlines(True),
                                                 "/tmp/ipykernel_1/42.py")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        kernel_warnings.install(out)
        exec(compile(source, "/tmp/ipykernel_1/42.py", "exec"), cell)
        lib.old()  # not under notebook code
        lib.soon()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(shown) == 7  # every warning is still shown as usual
    # lines 2 and 4 are two call sites; the machinery's is not ours; a deprecation raised inside
    # a library for that library (line 5) is not addressed to us; a FutureWarning is (line 6)
    assert [(r["category"], r["cell_line"]) for r in rows] == [
        ("DeprecationWarning", 2), ("DeprecationWarning", 4), ("FutureWarning", 6)]
    assert rows[0]["emitter"] == "somelib.sub:3" and rows[2]["emitter"] == "somelib.sub:7"
    assert rows[0]["message"] == "old() is deprecated, use new()" and rows[0]["code"] == "lib.old()"


def test_watch_counts_the_notebooks_package_as_notebook_code(tmp_path, monkeypatch):
    """A deprecation our module (written by the notebook, imported as templates.x) runs into is
    recorded at the module's line; the same call from a library's module is not."""
    out = tmp_path / "w.jsonl"
    monkeypatch.setattr(kernel_warnings, "PACKAGES", ("templates", "compat"))
    lib = _fake_library("somelib.sub")
    ours = {"__name__": "templates.export", "lib": lib}
    theirs = {"__name__": "otherlib.export", "lib": lib}
    source = "def export():\n    return lib.old()\n"
    linecache.cache["/pkg/templates/export.py"] = (len(source), None, source.splitlines(True),
                                                   "/pkg/templates/export.py")
    exec(compile(source, "/pkg/templates/export.py", "exec"), ours)
    exec(compile(source, "/pkg/otherlib/export.py", "exec"), theirs)
    cell = {"__name__": "__main__", "ours": ours["export"], "theirs": theirs["export"]}
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        kernel_warnings.install(out)
        exec(compile("ours()\ntheirs()\n", "/tmp/ipykernel_1/43.py", "exec"), cell)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["module"], r["cell_line"], r["code"]) for r in rows] == [
        ("templates.export", 2, "return lib.old()")]


def test_warnings_are_described_by_cell_and_line(tmp_path):
    cells = [new_code_cell("# Parameters", id="parameters-0", metadata={"tags": ["parameters"]}),
             new_code_cell("def export():\n    q = quantize()\n", id="export-0"),
             new_code_cell("export()", id="train-2")]
    original = write_notebook(new_notebook(cells=cells), tmp_path / "nb.ipynb")
    executed_cells = [new_code_cell(c.source, id=c.id) for c in cells]
    for count, c in enumerate(executed_cells, 1):
        c.execution_count = count
    executed = write_notebook(new_notebook(cells=executed_cells), tmp_path / "out.ipynb")
    row = {"category": "FutureWarning", "message": "quantize is deprecated\nmore", "cell_line": 2,
           "code": "q = quantize()", "cell_text": "def export():\n    q = quantize()\n",
           "execution_count": 3, "emitter": "torch.ao:12", "filename": "x.py", "lineno": 1}
    text = describe_warnings([row], executed, original)
    assert "cell 2 (train) calling cell 1 (export) line 2: `q = quantize()`" in text
    assert "FutureWarning: quantize is deprecated" in text and "torch.ao:12" in text
    row = {**row, "module": "templates.export", "cell_text": "", "cell_line": 40}
    text = describe_warnings([row], executed, original)
    assert "cell 2 (train) calling templates.export line 40: `q = quantize()`" in text


def _toolkit_venv_as_env(tmp_path: Path) -> KaggleEnv:
    """This venv as an env named "own", so the warning watch runs without building an image."""
    pins = tmp_path / "own.txt"
    pins.write_text("ipykernel\n")
    return KaggleEnv(load_pins(pins), Path(sys.prefix), Path(sys.executable), sys.version_info[:2],
                     "the toolkit's venv", False, 0.0, 0)


def test_rehearsal_in_an_env_fails_on_a_warning_with_cell_and_line(tmp_path):
    """The real path: kernelspec, overlay, startup watch, papermill; the toolkit's own venv
    stands in for a Kaggle image (it has ipykernel)."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "oldlib.py").write_text(
        "import warnings\n\ndef resample(x):\n"
        "    warnings.warn('resample() is deprecated', FutureWarning, stacklevel=2)\n    return x\n")
    nb = new_notebook(cells=[
        new_code_cell("# Parameters\nDATA_DIR = ''\nWORK_DIR = ''", id="parameters-0",
                      metadata={"tags": ["parameters"]}),
        new_code_cell(f"import sys\nsys.path.insert(0, {str(tmp_path / 'lib')!r})\nimport oldlib",
                      id="setup-0"),
        new_code_cell("y = 1\ny = oldlib.resample(y)", id="data-1"),
    ], metadata={"kernelspec": dict(KERNELSPEC)})
    path = write_notebook(nb, tmp_path / "warns.ipynb")
    env = _toolkit_venv_as_env(tmp_path)
    with pytest.raises(RehearsalError) as info:
        rehearse(model_spec("crn"), path, tmp_path / "data", tmp_path / "run", timeout=120, env=env)
    message = str(info.value)
    assert "1 warning(s) from the notebook's code in env own" in message
    assert "cell 2 (data) line 2: `y = oldlib.resample(y)`" in message
    assert "FutureWarning: resample() is deprecated" in message and "oldlib:4" in message


def test_rehearsal_in_an_env_fails_on_a_deprecation_inside_the_notebooks_package(standin_repo,
                                                                                 tmp_path):
    """A DeprecationWarning addressed to one of our modules (written by the notebook, imported
    from its package) is shown, recorded and named by module and line, as one in a cell is."""
    from render.notebook import build_notebook
    from tests.helpers.notebooks import TINY_SPEC

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "oldlib.py").write_text(
        "import warnings\n\ndef resample(x):\n"
        "    warnings.warn('resample() is deprecated', DeprecationWarning, stacklevel=2)\n"
        "    return x\n")
    (standin_repo / "templates/stage.py").write_text(
        '"""A stage that calls a deprecated library function."""\n\nimport oldlib\n\n'
        "from compat.util import double\n\n\ndef run_stage(value: float) -> float:\n"
        "    return oldlib.resample(double(value)) + 1\n")
    nb = build_notebook(TINY_SPEC, layout=standin_repo / "templates/notebook.pct.py", root=standin_repo)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    path = write_notebook(nb, tmp_path / "tiny.ipynb")
    env = _toolkit_venv_as_env(tmp_path)
    with pytest.raises(RehearsalError) as info:
        rehearse(TINY_SPEC, path, tmp_path / "data", tmp_path / "run", timeout=120, env=env,
                 environ={"PYTHONPATH": str(lib)})
    message = str(info.value)
    assert "1 warning(s) from the notebook's code" in message
    assert ("calling templates.stage line 9: `return oldlib.resample(double(value)) + 1`"
            in message)
    assert "DeprecationWarning: resample() is deprecated" in message


def test_int8_export_is_a_recorded_skip_where_torch_ao_quantization_is_gone(tmp_path, monkeypatch):
    from smoke.rehearse import check_outputs
    from templates.export import Int8Unavailable, export_artifacts, quantize_int8
    from templates.models.registry import build_model

    model = build_model("crn_causal")
    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)  # import fails, as once removed
    with pytest.raises(Int8Unavailable, match=r"has no torch.ao.quantization.quantize_dynamic"):
        quantize_int8(model)
    out = export_artifacts(model, tmp_path, repeats=1)
    assert out["int8_path"] is None and "removed after its deprecation" in out["int8_skipped"]
    assert "int8" not in {row["variant"] for row in out["latency"]}
    assert not list(tmp_path.glob("*_int8.pth"))
    # the rehearsal accepts the recorded skip (and only with it)
    name = model.model_name
    for f in ("best.pth", "last.pth", "history.csv", "training_curves.png",
              "spectrogram_comparison.png", "eval_per_file.csv", "masker.onnx"):
        (tmp_path / (f"{name}_{f}" if f in ("best.pth", "masker.onnx") else f)).write_bytes(b"x")
    good = {g: {"pesq": 1.2, "stoi": 0.8, "si_sdr": 3.0} for g in ("noisy", "enhanced", "delta")}
    summary = {"metrics": good, "export": {k: out[k] for k in ("latency", "int8_skipped")}}
    (tmp_path / f"{name}_summary.json").write_text(json.dumps(summary))
    assert check_outputs(name, tmp_path)["export"]["int8_skipped"] == out["int8_skipped"]
    summary["export"]["int8_skipped"] = None
    (tmp_path / f"{name}_summary.json").write_text(json.dumps(summary))
    with pytest.raises(RehearsalError, match="int8"):
        check_outputs(name, tmp_path)


def test_int8_export_keeps_working_without_the_deprecation_reaching_the_notebook():
    from templates.export import quantize_int8
    from templates.models.registry import build_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q = quantize_int8(build_model("crn_causal"))
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in q.modules())
    assert not [w for w in caught if "torch.ao.quantization" in str(w.message)]


@pytest.mark.slow
def test_notebook_rehearses_green_in_todays_kaggle_image():
    """The CI rehearsal in kaggle-2026-05 (torch 2.10, numpy 2.0, Python 3.12 when present): the
    first run builds the cached venv (a few GB of CUDA wheels, from pip's cache when warm).
    SE_SKIP_KAGGLE_IMAGE=1 skips it on a machine without a package index."""
    if os.environ.get("SE_SKIP_KAGGLE_IMAGE"):
        pytest.skip("SE_SKIP_KAGGLE_IMAGE is set")
    from smoke.run import run_smoke

    lines = []
    report = run_smoke(["crn_causal"], rehearse=True, env="kaggle-2026-05", echo=lines.append)
    failures = "\n".join(f"{r.check}: {r.message}" for r in report.failures())
    assert report.ok, f"{failures}\n" + "\n".join(lines)
    summary = report.rehearsals["crn_causal"].summary
    assert summary["export"]["int8_skipped"] is None  # torch 2.10 still has torch.ao.quantization
