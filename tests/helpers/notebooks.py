"""For the notebook tests: a tiny repo of stand-in modules, a layout using them, a validating read.

The ``standin_repo`` fixture (tests/conftest.py) writes that repo with ``write_standin_repo``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat

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
    model_module="templates.models.tiny",
    description="A notebook of stand-in modules.",
    parameters={"EPOCHS": 2},
)


def write_standin_repo(root: Path) -> Path:
    """Lay ``root`` out like the repo, holding the stand-in modules and layout; returns ``root``."""
    for rel, text in STANDIN_MODULES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    (root / "templates" / "notebook.pct.py").write_text(STANDIN_LAYOUT.lstrip(), encoding="utf-8")
    return root


def read_validated(path: Path):
    """Every notebook a test reads is validated (jupytext's habit)."""
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    return nb
