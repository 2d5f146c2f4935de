"""Notebook lint: whole-program pyflakes with cell mapping, and the Kaggle-breakage rules."""

from __future__ import annotations

import pytest

from render.notebook import REPO_ROOT
from smoke.lint import NotebookLintError, lint_cells, raise_for_issues


def lint(*sources: str):
    return lint_cells([(i, f"s{i}", src) for i, src in enumerate(sources)])


def codes(*sources: str) -> list[str]:
    return [i.code for i in lint(*sources)]


# Each rule: (code, failing source, passing source)
RULES = [
    ("KG001", "import torchaudio\nn = torchaudio.info('x.wav')\n",
     "import torchaudio\nw, sr = torchaudio.load('x.wav')\n"),
    ("KG002", "import torch\nm = torch.cuda.get_device_properties(0).total_mem\n",
     "import torch\np = torch.cuda.get_device_properties(0)\n"
     "m = getattr(p, 'total_memory', None) or getattr(p, 'total_mem', 0)\n"),
    ("KG003", "import torch\nopt = None\n"
     "s = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, verbose=False)\n",
     "import torch\nopt = None\ns = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5)\n"),
    ("KG004", "import torch\nck = torch.load('m.pth')\n",
     "import torch\nck = torch.load('m.pth', map_location='cpu', weights_only=False)\n"),
    ("KG005", "from pathlib import Path\nroot = Path('/kaggle/input/libri-speech-noise-dataset')\n",
     "from pathlib import Path\nDATA_DIR = '/kaggle/input'\nroot = Path(DATA_DIR)\n"),
    ("KG006", "from torch.utils.data import DataLoader\nds = []\nd = DataLoader(ds, num_workers=2)\n",
     "from torch.utils.data import DataLoader\nds = []\n"
     "d = DataLoader(ds, num_workers=2, persistent_workers=True)\n"),
    ("KG007", "import torch.nn.functional as F\n\ndef f(x):\n    B, C, F, T = x.shape\n"
     "    return F.interpolate(x, size=(4, 4))\n",
     "import torch.nn.functional as F\n\ndef f(x):\n    B, C, f_enc, T = x.shape\n"
     "    return F.interpolate(x, size=(f_enc, T))\n"),
]


@pytest.mark.parametrize(("code", "bad", "good"), RULES, ids=[r[0] for r in RULES])
def test_rule_flags_failing_case_and_passes_fixed_case(code, bad, good):
    assert code in codes(bad)
    assert lint(good) == []


def test_dataloader_rule_details():
    base = "from torch.utils.data import DataLoader\nds = []\nw = 2\n"
    assert codes(base + "d = DataLoader(ds, num_workers=0)\n") == []
    assert codes(base + "d = DataLoader(ds)\n") == []
    assert codes(base + "d = DataLoader(ds, num_workers=w, persistent_workers=w > 0)\n") == []
    assert "KG006" in codes(base + "d = DataLoader(ds, num_workers=w, persistent_workers=False)\n")


def test_undefined_name_is_reported_with_its_cell():
    issues = lint("x = 1\n", "y = x + 1\nz = missing_name\n")
    assert [(i.cell, i.section, i.line, i.code) for i in issues] == [(1, "s1", 2, "F")]
    assert "missing_name" in issues[0].message


def test_name_defined_in_a_later_cell_is_fine_inside_functions_only():
    assert lint("def f():\n    return later\n", "later = 1\n") == []
    assert [i.code for i in lint("y = later\n", "later = 1\n")] == ["F"]


def test_import_redefined_as_something_else_across_cells():
    issues = lint("import torch.nn.functional as F\nF.relu\n", "from scipy import signal as F\nF\n")
    assert any(i.code == "KG007" and i.cell == 1 for i in issues)
    assert lint("import torch\ntorch.ones(1)\n", "import torch\ntorch.zeros(1)\n") == []


def test_shadowing_rule_targets_the_seed_bug_not_every_local():
    # a local that never uses the import's attributes is harmless inside its function
    assert lint("import torch.nn.functional as F\nF.relu\n\ndef f(x):\n    F = x.shape[0]\n"
                "    return F + 1\n") == []
    # at module level it hides the import from every later cell
    assert "KG007" in codes("import torch.nn.functional as F\nF.relu\n", "F = 257\n")
    # a parameter named like the import, then used as the module: flagged
    assert "KG007" in codes("import torch.nn.functional as F\n\ndef f(x, F):\n    return F.pad(x, (1, 1))\n")


def test_equivalent_imports_are_not_redefinitions():
    assert lint("from typing import Callable\nc: Callable\n",
                "from collections.abc import Callable\nd: Callable\n") == []


def test_syntax_error_names_cell():
    issues = lint("x = 1\n", "def f(:\n")
    assert [(i.cell, i.code) for i in issues] == [(1, "E999")]
    with pytest.raises(NotebookLintError, match="cell 1"):
        raise_for_issues(issues)


def test_compat_module_itself_is_not_flagged():
    """The shim uses torch.load(weights_only=...) and getattr fallbacks: no rule may fire."""
    for i, module in enumerate(["compat/torch_compat.py", "compat/audio.py"]):
        cells = [(i, module, (REPO_ROOT / module).read_text(encoding="utf-8"))]
        assert [i.format() for i in lint_cells(cells) if i.code.startswith("KG")] == []


# The forms a user actually writes: aliases, positional arguments, variables, f-strings.
ALIASED_BREAKAGES = [
    ("KG001", "import torchaudio as ta\nn = ta.info('x.wav')\n"),
    ("KG001", "from torchaudio import info\nn = info('x.wav')\n"),
    ("KG002", "import torch\np = torch.cuda.get_device_properties(0)\nm = getattr(p, 'total_mem')\n"),
    ("KG003", "from torch.optim.lr_scheduler import ReduceLROnPlateau as R\nopt = None\n"
              "s = R(opt, verbose=True)\n"),
    ("KG003", "from torch.optim import lr_scheduler as ls\nopt = None\n"
              "s = ls.ReduceLROnPlateau(opt, 'min', 0.5, 3, 1e-4, 'rel', 0, 0, 1e-8, True)\n"),
    ("KG004", "import torch as th\nck = th.load('m.pth', map_location='cpu')\n"),
    ("KG004", "from torch import load\nck = load('m.pth', map_location='cpu')\n"),
    ("KG005", "slug = 'x'\np = f'/kaggle/input/{slug}/train'\n"),
    ("KG005", "import os\np = os.path.join('/kaggle/input', 'libri-speech-noise-dataset')\n"),
    ("KG005", "from pathlib import Path\np = Path('/kaggle/input') / 'libri-speech-noise-dataset'\n"),
    ("KG006", "from torch.utils.data import DataLoader\nds = []\nd = DataLoader(ds, 8, True, None, None, 2)\n"),
    ("KG006", "from torch.utils.data import DataLoader as DL\nds = []\nw = 4\nd = DL(ds, num_workers=w)\n"),
    ("KG006", "import torch.utils.data as tud\nds = []\nd = tud.DataLoader(ds, num_workers=2)\n"),
]


@pytest.mark.parametrize(("code", "bad"), ALIASED_BREAKAGES,
                         ids=[f"{c}-{i}" for i, (c, _b) in enumerate(ALIASED_BREAKAGES)])
def test_rules_see_through_aliases_and_positional_arguments(code, bad):
    assert code in codes(bad)


def test_alias_imported_in_another_cell_or_inside_a_function_is_resolved():
    assert "KG001" in codes("import torchaudio as ta\n", "def f(p):\n    return ta.info(p)\n")
    assert "KG004" in codes("def f(p):\n    import torch as th\n    return th.load(p)\n")


def test_compat_forms_are_not_flagged():
    assert lint("import torchaudio as ta\n\ndef f(p):\n    if hasattr(ta, 'info'):\n"
                "        return ta.info(p)\n    return None\n") == []
    assert lint("import torch\np = torch.cuda.get_device_properties(0)\n"
                "m = getattr(p, 'total_mem', 0)\n") == []
    assert lint("import torch\n\ndef f(p, **kw):\n    return torch.load(p, **kw)\n") == []
    assert lint("import json\nd = json.load(open('x'))\n") == []
    assert lint("from torch.utils.data import DataLoader\nds = []\n"
                "d = DataLoader(ds, 8, True, None, None, 0)\n") == []
    assert lint("DATA_DIR = '/kaggle/input'\nfrom pathlib import Path\nroot = Path(DATA_DIR) / 'x'\n") == []


def test_module_level_rebinding_through_global_or_except_is_flagged():
    assert "KG007" in codes("import torch.nn.functional as F\nF.relu\n",
                            "def g():\n    global F\n    F = 3\n")
    assert "KG007" in codes("import torch.nn.functional as F\nF.relu\n",
                            "try:\n    pass\nexcept Exception as F:\n    print(F)\n")
