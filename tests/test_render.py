"""Renderer: translator, the package cells, layout parsing, determinism."""

from __future__ import annotations

import ast
import json

import nbformat
import pytest

from render.notebook import (
    FOLDED,
    LAYOUT,
    RenderError,
    build_notebook,
    config_cell_source,
    module_cells,
    notebook_text,
    package_files,
    parse_layout,
    run_section,
    translate_parameters,
    translate_value,
    write_notebook,
)
from render.spec import model_spec
from smoke.package import notebook_package
from templates.models.catalog import catalog_names
from tests.helpers.notebooks import TINY_SPEC, read_validated


# ---- translator --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "code"),
    [
        (True, "True"),
        (False, "False"),
        (0, "0"),
        (8, "8"),
        (1e-3, "0.001"),
        (3.0, "3.0"),
        (None, "None"),
        ("/kaggle/input", "'/kaggle/input'"),
        ([1, "a", None], "[1, 'a', None]"),
        ({"k": [True, 2.5]}, "{'k': [True, 2.5]}"),
        (float("inf"), "float('inf')"),
    ],
)
def test_translate_value(value, code):
    assert translate_value(value) == code
    if code != "float('inf')":
        back = ast.literal_eval(code)
        assert back == value and type(back) is type(value)  # a bool stays a bool, never 1/0


def test_strings_are_escaped_not_formatted():
    nasty = "a'b\"c\\d\n{x}"
    code = translate_parameters({"S": nasty})
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["S"] == nasty


def test_translate_parameters_layout_and_errors():
    assert translate_parameters({"A": 1, "B": None}) == "# Parameters\nA = 1\nB = None"
    with pytest.raises(RenderError, match="identifier"):
        translate_parameters({"not a name": 1})
    with pytest.raises(RenderError, match="cannot write"):
        translate_value(object())


def test_config_cell_maps_every_parameter_onto_its_field():
    source = config_cell_source({"MODEL": "crn", "EPOCHS": 3, "MODEL_KWARGS": {}})
    assert source.startswith("from templates.config import RunConfig\n\ncfg = RunConfig(\n")
    assert "model=MODEL, epochs=EPOCHS, model_kwargs=MODEL_KWARGS," in source
    namespace: dict = {"MODEL": "crn", "EPOCHS": 3, "MODEL_KWARGS": {"hidden": 8}}
    exec(source.replace("print(cfg)", ""), namespace)
    assert (namespace["cfg"].epochs, namespace["cfg"].model_kwargs) == (3, {"hidden": 8})
    with pytest.raises(RenderError, match="names no RunConfig field"):
        config_cell_source({"MODEL_NAME": "crn"})


# ---- layout ------------------------------------------------------------------------------
def test_layout_parsing_and_errors():
    cells = parse_layout('# %% [markdown] section="a"\n# # T\n#\n# x\n\n# %% tags=["parameters"]\n\n'
                         '# %% module="compat.audio"\n\n# %%\ny = 1\n')
    assert [(c.kind, c.source) for c in cells] == [("markdown", "# T\n\nx"), ("parameters", ""),
                                                   ("module", ""), ("code", "y = 1")]
    assert cells[2].options == {"module": "compat.audio"}
    with pytest.raises(RenderError, match="unknown cell option"):
        parse_layout("# %% bogus\n")
    with pytest.raises(RenderError, match="unknown cell option"):
        parse_layout('# %% include="compat.audio"\n')
    with pytest.raises(RenderError, match="not JSON"):
        parse_layout("# %% module=[compat.audio]\n")
    with pytest.raises(RenderError, match="not a '# ' comment"):
        parse_layout("# %% [markdown]\nnot a comment\n")


def test_layout_is_valid_jupytext():
    """jupytext reads the layout as we do: the parameters cell by its tag, modules by metadata."""
    import jupytext

    text = LAYOUT.read_text(encoding="utf-8")
    cells = jupytext.reads(text, fmt="py:percent").cells
    ours = parse_layout(text)
    header, cells = cells[:-len(ours)], cells[-len(ours):]  # jupytext keeps the header comment
    assert [c.source.startswith("# Layout of every model") for c in header] == [True]
    assert [c.cell_type for c in cells] == ["markdown" if c.kind == "markdown" else "code" for c in ours]
    assert [c.metadata for c in cells] == [c.options for c in ours]
    assert [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])] == \
        [i for i, c in enumerate(ours) if c.kind == "parameters"]
    modules = [c.metadata["module"] for c in cells if "module" in c.metadata]
    assert "templates.config" in modules and "@model" in modules
    assert not any("incorrectly_encoded_metadata" in c.metadata for c in cells)


# ---- notebooks ---------------------------------------------------------------------------
def test_notebook_structure(standin_repo):
    nb = build_notebook(TINY_SPEC, layout=standin_repo / "templates/notebook.pct.py", root=standin_repo)
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.cells[0].source == "# Tiny Test Notebook\n\nA notebook of stand-in modules. {literal braces}"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "EPOCHS = 2" in params[0].source
    assert "- `compat/util.py`: Helpers the other modules use." in nb.cells[2].source
    modules = module_cells(nb)
    assert [c.metadata["module"] for c in modules] == ["compat.util", "templates.stage",
                                                       "templates.models.tiny"]
    for cell in modules:  # folded on Kaggle and in Jupyter
        assert {k: cell.metadata[k] for k in FOLDED} == FOLDED
    # the module's file, verbatim: docstring, own imports, __future__ and __main__ included
    util = (standin_repo / "compat/util.py").read_text()
    assert modules[0].source == '%%writefile "{PACKAGE_DIR}/compat/util.py"\n' + util
    assert package_files(nb)["compat/util.py"] == util
    assert package_files(nb)["templates/models/__init__.py"] == ""
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == len(ids) and ids[:4] == ["intro-0", "intro-1", "library-0", "library-1"]
    assert [c.id for c in run_section(nb)] == ["work-0", "work-1"]


def test_rendered_notebook_runs_on_its_own_package(standin_repo, tmp_path):
    nb = build_notebook(TINY_SPEC, layout=standin_repo / "templates/notebook.pct.py", root=standin_repo)
    namespace: dict = {}
    with notebook_package(nb, tmp_path / "package") as modules:
        assert modules["compat.util"].__file__.startswith(str(tmp_path / "package"))
        for cell in [nb.cells[1]] + run_section(nb):
            if cell.cell_type == "code":
                exec(compile(cell.source, cell.id, "exec"), namespace)
    assert namespace["result"] == (2 * 2 + 1) * 3


@pytest.mark.parametrize("temp", ["tmp", "Temp Folder"])  # Windows: C:\\Users\\First Last\\...
def test_kernel_writes_the_package_byte_for_byte(standin_repo, tmp_path, tmp_path_factory,
                                                 monkeypatch, temp):
    """In a real kernel: IPython expands {PACKAGE_DIR} in %%writefile, the files are the cells'
    bytes, the package folder is outside the working directory and imports come from it, also
    when the system temp folder's path has a space in it."""
    from nbclient import NotebookClient

    temp_dir = tmp_path_factory.mktemp(temp)  # not below the kernel's working folder, tmp_path
    monkeypatch.setenv("TMPDIR", str(temp_dir))  # the kernel inherits it

    nb = build_notebook(TINY_SPEC, layout=standin_repo / "templates/notebook.pct.py", root=standin_repo)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json, os, templates.stage\nfiles = {}\n"
        "for d, _, names in os.walk(PACKAGE_DIR):\n    for n in names:\n"
        "        p = os.path.join(d, n)\n"
        "        files[os.path.relpath(p, PACKAGE_DIR)] = open(p, encoding='utf-8').read()\n"
        "print(json.dumps({'files': files, 'stage': templates.stage.__file__, 'dir': PACKAGE_DIR,"
        " 'path': os.environ['PYTHONPATH'].split(os.pathsep)[0], 'cwd': os.getcwd()}))"))
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = json.loads(nb.cells[-1].outputs[0]["text"])
    assert {k: v for k, v in out["files"].items() if k.endswith(".py")} == package_files(nb)
    assert out["stage"].startswith(out["dir"]) and out["path"] == out["dir"]
    assert not out["dir"].startswith(out["cwd"]) and out["dir"].startswith(str(temp_dir))
    assert "'result': 15" in nb.cells[-2].outputs[0]["text"]


def test_running_the_notebook_again_imports_the_files_written_again(standin_repo, tmp_path):
    """"Run all" a second time in the same kernel, after editing a module cell: the run section
    imports the files that run wrote (not the first run's modules from sys.modules), and the
    first run's package folder is off the import path."""
    from nbclient import NotebookClient

    nb = build_notebook(TINY_SPEC, layout=standin_repo / "templates/notebook.pct.py", root=standin_repo)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json, sys\nprint(json.dumps({'dir': PACKAGE_DIR, 'stage': sys.modules["
        "'templates.stage'].__file__, 'path': [p for p in sys.path if 'se_toolkit_package-' in p]}))"))
    stage = next(c for c in module_cells(nb) if c.metadata["module"] == "templates.stage")
    client = NotebookClient(nb, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})

    def run_all() -> tuple[str, dict]:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
        return nb.cells[-2].outputs[0]["text"], json.loads(nb.cells[-1].outputs[0]["text"])

    with client.setup_kernel():
        first, where = run_all()
        stage.source = stage.source.replace("double(value) + 1", "double(value) + 2")
        second, again = run_all()
    assert "'result': 15" in first and "'result': 24" in second  # (2*2+2) * (2*1+2)
    assert again["dir"] != where["dir"] and again["stage"].startswith(again["dir"])
    assert again["path"] == [again["dir"]]


def test_build_twice_gives_identical_bytes(standin_repo, tmp_path):
    kw = {"layout": standin_repo / "templates/notebook.pct.py", "root": standin_repo}
    a = write_notebook(build_notebook(TINY_SPEC, **kw), tmp_path / "a" / "t.ipynb")
    b = write_notebook(build_notebook(TINY_SPEC, **kw), tmp_path / "b" / "t.ipynb")
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert json.dumps(json.loads(text), sort_keys=True, indent=1, ensure_ascii=False) + "\n" == text
    read_validated(a)


def test_invalid_notebook_is_never_written(standin_repo):
    nb = build_notebook(TINY_SPEC, layout=standin_repo / "templates/notebook.pct.py", root=standin_repo)
    nb.cells[0]["bogus"] = 1
    with pytest.raises(nbformat.ValidationError):
        notebook_text(nb)


def test_module_that_no_cell_writes_is_named(standin_repo):
    layout = standin_repo / "templates/notebook.pct.py"
    text = layout.read_text()
    layout.write_text(text.replace('# %% module="compat.util"\n', ""))
    with pytest.raises(RenderError, match="templates/stage.py: line 5: imports compat.util, which "
                                          "no module cell writes"):
        build_notebook(TINY_SPEC, layout=layout, root=standin_repo)
    layout.write_text(text + "\n# %%\ndef f():\n    from templates.nothing import x\n")
    with pytest.raises(RenderError, match="cell work-2: line 2: imports templates.nothing"):
        build_notebook(TINY_SPEC, layout=layout, root=standin_repo)
    layout.write_text(text + '\n# %% module="templates.nothing"\n')
    with pytest.raises(RenderError, match="templates.nothing.*does not exist"):
        build_notebook(TINY_SPEC, layout=layout, root=standin_repo)


def test_own_imports_are_found_wherever_they_are(standin_repo):
    import ast

    from render.notebook import own_imports

    source = ("import os\nfrom templates import stage\nimport compat.util\n"
              "def f():\n    from templates.models import tiny\n    return tiny\n"
              "if __name__ == '__main__':\n    from templates.nothing import x\n")
    assert own_imports(ast.parse(source), "m", standin_repo) == [
        (2, "templates.stage"), (3, "compat.util"), (5, "templates.models.tiny")]
    with pytest.raises(RenderError, match="m: line 1: relative import"):
        own_imports(ast.parse("from . import stage\n"), "m", standin_repo)


@pytest.mark.parametrize("name", catalog_names())
def test_run_section_is_short(name):
    """What a reader scrolls through after the folded library: under 40 cells for every model."""
    spec = model_spec(name)
    nb = build_notebook(spec)
    assert len(run_section(nb)) < 40
    assert [c.metadata["module"] for c in module_cells(nb)].count(spec.model_module) == 1
    assert not [c.metadata["module"] for c in module_cells(nb)
                if c.metadata["module"].startswith("templates.models.")
                and c.metadata["module"] not in ("templates.models.base", "templates.models.registry",
                                                 "templates.models.catalog", spec.model_module)]
