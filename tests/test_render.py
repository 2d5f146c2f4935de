"""Renderer: translator, module rendering, layout parsing, determinism."""

from __future__ import annotations

import ast
import json

import nbformat
import pytest

from render.notebook import (
    RenderError,
    build_notebook,
    inject_parameters,
    notebook_text,
    parse_layout,
    render_module_source,
    translate_parameters,
    translate_value,
    write_notebook,
)
from tests.conftest_notebooks import TINY_SPEC, read_validated

pytest_plugins = ["tests.conftest_notebooks"]


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


def test_reinjection_replaces_instead_of_duplicating(standin_repo):
    nb = build_notebook(TINY_SPEC, layout=standin_repo / "templates/notebook.pct.py", root=standin_repo)
    n = len(nb.cells)
    inject_parameters(nb, {"EPOCHS": 5})
    inject_parameters(nb, {"EPOCHS": 7})
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(nb.cells) == n + 1 and len(injected) == 1
    assert "EPOCHS = 7" in injected[0].source
    index = nb.cells.index(injected[0])
    assert "parameters" in nb.cells[index - 1].metadata["tags"]
    nbformat.validate(nb)


# ---- module rendering --------------------------------------------------------------------
def test_render_module_drops_own_imports_main_block_and_docstring():
    source = (
        '"""Doc line."""\n'
        "from __future__ import annotations\n"
        "import os\n"
        "from templates.data import (\n"
        "    a,\n"
        "    b,\n"
        ")\n"
        "from compat.audio import load_audio\n"
        "from torch import nn\n"
        "X = 'from templates.data import c'\n"
        "if __name__ == '__main__':\n"
        "    from templates.models.registry import format_parameter_split\n"
        "    print(X)\n"
        "Y = 2\n"
    )
    out = render_module_source(source, "m")
    assert out.docstring == "Doc line."
    assert out.future_imports == ["annotations"]
    assert out.code == "import os\nfrom torch import nn\nX = 'from templates.data import c'\nY = 2"


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("from . import x\n", "relative import"),
        ("import templates.data\n", "cannot be rendered"),
        ("def f():\n    from templates.data import a\n    return a\n", "inside a block"),
        ("def f(:\n", "line 1"),
    ],
)
def test_render_module_refuses_what_cannot_be_pasted(source, match):
    with pytest.raises(RenderError, match=match):
        render_module_source(source, "bad")


def test_layout_parsing_and_errors():
    cells = parse_layout("# %% [markdown] section=a\n# # T\n#\n# x\n\n# %% parameters\n\n# %%\ny = 1\n")
    assert [(c.kind, c.source) for c in cells] == [("markdown", "# T\n\nx"), ("parameters", ""),
                                                   ("code", "y = 1")]
    with pytest.raises(RenderError, match="unknown cell option"):
        parse_layout("# %% bogus\n")
    with pytest.raises(RenderError, match="not a '# ' comment"):
        parse_layout("# %% [markdown]\nnot a comment\n")


# ---- notebooks ---------------------------------------------------------------------------
def test_notebook_structure(standin_repo):
    nb = build_notebook(TINY_SPEC, layout=standin_repo / "templates/notebook.pct.py", root=standin_repo)
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.cells[0].source == "# Tiny Test Notebook\n\nA notebook of stand-in modules. {literal braces}"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "EPOCHS = 2" in params[0].source
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[0] == "from __future__ import annotations"  # hoisted once, before any code
    assert sum("from __future__" in s for s in code) == 1
    assert not any("from compat" in s or "from templates" in s for s in code)
    assert any("`compat/util.py`: Helpers the other modules use." == c.source for c in nb.cells)
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == len(ids) and ids[:3] == ["intro-0", "intro-future", "intro-1"] and "work-0" in ids


def test_rendered_notebook_runs(standin_repo):
    nb = build_notebook(TINY_SPEC, layout=standin_repo / "templates/notebook.pct.py", root=standin_repo)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, cell.id, "exec"), namespace)
    assert namespace["result"] == (2 * 2 + 1) * 3


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


def test_missing_include_names_the_file(standin_repo):
    layout = standin_repo / "templates/notebook.pct.py"
    layout.write_text(layout.read_text() + "\n# %% include=templates.nothing\n")
    with pytest.raises(RenderError, match="templates.nothing.*does not exist"):
        build_notebook(TINY_SPEC, layout=layout, root=standin_repo)
