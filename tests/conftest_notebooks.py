"""Fixtures for the notebook tests: a tiny repo of stand-in modules and a layout using them.

Imported by the notebook test files (``from tests.conftest_notebooks import ...``) rather than
living in tests/conftest.py, which belongs to the whole suite.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
import pytest

from render.spec import ModelSpec

STANDIN_MODULES = {
    "compat/util.py": '''
        """Helpers the other modules use.

        Second paragraph, not shown.
        """

        from __future__ import annotations

        import math


        def double(x: float) -> float:
            return 2 * math.fabs(x)


        if __name__ == "__main__":
            print(double(3))
    ''',
    "templates/stage.py": '''
        """A stage that uses compat.util."""

        from __future__ import annotations

        from compat.util import (
            double,
        )


        def run_stage(value: float) -> float:
            return double(value) + 1
    ''',
    "templates/models/tiny.py": '''
        """The model module of the fake spec."""

        from templates.stage import run_stage

        TINY_SCALE = run_stage(1.0)
    ''',
}

STANDIN_LAYOUT = '''
# header comment, ignored
# %% [markdown] section="intro"
# # {title}
#
# {description} {{literal braces}}

# %% tags=["parameters"]

# %% [markdown] section="library"
# ## Library
#
# {modules}

# %% generated="package"

# %% module="compat.util"

# %% module="templates.stage"

# %% module="@model"

# %% [markdown] section="work"
# ## Work

# %%
from templates.models.tiny import TINY_SCALE
from templates.stage import run_stage

result = run_stage(EPOCHS) * TINY_SCALE
print({"result": result})
'''

TINY_SPEC = ModelSpec(
    name="tiny",
    title="Tiny Test Notebook",
    slug="tiny-test-notebook",
    model_module="templates.models.tiny",
    description="A notebook of stand-in modules.",
    parameters={"EPOCHS": 2},
)


@pytest.fixture
def standin_repo(tmp_path: Path) -> Path:
    """A directory laid out like the repo, holding the stand-in modules and layout."""
    for rel, text in STANDIN_MODULES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    (tmp_path / "templates" / "notebook.pct.py").write_text(STANDIN_LAYOUT.lstrip(), encoding="utf-8")
    return tmp_path


def read_validated(path: Path):
    """Every notebook a test reads is validated (jupytext's habit)."""
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    return nb
