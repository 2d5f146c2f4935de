"""The model table (templates/models/catalog.py) and RunConfig as the one parameter source.

Every part that lists models reads the table (builders, registry, smoke discovery, enhance), and
every notebook parameter and builder option is a RunConfig field. The last test adds a model the
way a contributor would, in a copy of the checkout: a module and one row, nothing else.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from builders import cli
from builders.__main__ import main as builders_main
from render.notebook import REPO_ROOT, build_notebook, read_notebook
from render.spec import (
    ModelSpec,
    SpecError,
    model_spec,
    model_specs,
    mounted_dataset_slug,
    parameter_name,
)
from smoke.run import MODELS
from templates.config import RunConfig
from templates.datasets import DATASETS
from templates.models.catalog import MODELS as ROWS
from templates.models.catalog import ModelRow, catalog_names, model_row

FIELDS = [f.name for f in dataclasses.fields(RunConfig)]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_every_row_makes_a_pushable_spec(row):
    spec = ModelSpec.from_row(row)  # name, title -> slug and defaults are checked on the way
    assert spec.slug == model_spec(row.name).slug and len(spec.slug) <= 50
    assert (REPO_ROOT / Path(*row.module.split("."))).with_suffix(".py").is_file()


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_row_defaults_are_run_config_fields(row):
    assert set(row.defaults) <= set(FIELDS) - {"model"}, "a row default names no RunConfig field"
    assert RunConfig.problems_in({**row.defaults, "model": row.name}) == []


def test_unknown_row_defaults_are_refused():
    row = ModelRow("x", "templates.models.x", "Some Title", "d", defaults={"epoch": 3})
    with pytest.raises(SpecError, match=r"unknown parameter\(s\) \['EPOCH'\]"):
        ModelSpec.from_row(row)
    with pytest.raises(SpecError, match="cannot set MODEL"):
        ModelSpec.from_row(dataclasses.replace(row, defaults={"model": "crn"}))


def test_the_table_imports_no_torch():
    code = ("import sys, templates.models.catalog, render.spec; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=REPO_ROOT)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_registry_builds_every_row_from_its_module(row):
    from templates.models.registry import build_model, model_names

    assert row.name in model_names()
    model = build_model(row.name, **row.smoke_kwargs)
    assert type(model).__module__ == row.module and type(model).model_name == row.name


def test_a_broken_row_does_not_stop_the_others_from_building(tmp_path):
    """A row whose module fails to import (a dependency missing here) raises when that model is
    built or the models are listed, not when another row's model is built; a row whose module
    is missing is named as such, not as an unknown model."""
    (tmp_path / "broken_model.py").write_text("import not_installed_dependency_xyz\n")
    code = textwrap.dedent("""
        from templates.models import catalog
        from templates.models.catalog import ModelRow
        catalog.MODELS += (ModelRow("broken", "broken_model", "Broken Model", "d"),
                           ModelRow("typo", "templates.models.tpyo", "Typo Model", "d"))
        from templates.models.registry import build_model, model_names
        build_model("crn", enc_channels=(8, 16, 16), lstm_hidden=16, dec_channels=(16, 8, 8))
        for name in ("broken", "typo"):
            try:
                build_model(name)
            except Exception as exc:
                print(name, type(exc).__name__, exc)
        try:
            model_names()
        except ModuleNotFoundError as exc:
            print("listing", exc.name)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{tmp_path}"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("broken ModuleNotFoundError No module named "
                        "'not_installed_dependency_xyz'")
    assert lines[1].startswith("typo ValueError model 'typo' is a row of "
                               "templates/models/catalog.py but its module "
                               "'templates.models.tpyo' is not found")
    assert lines[2] == "listing not_installed_dependency_xyz"


def test_every_part_lists_the_table():
    from templates.models.registry import model_names

    assert list(MODELS) == catalog_names() == [s.name for s in model_specs()]
    assert set(catalog_names()) <= set(model_names())
    with pytest.raises(ValueError, match="known models: dpt, crn"):
        model_row("nope")


@pytest.mark.parametrize("name", catalog_names())
def test_default_parameters_are_run_config_fields_upper_cased(name):
    spec, row = model_spec(name), model_row(name)
    params = spec.default_parameters()
    assert list(params) == [parameter_name(f) for f in FIELDS] and list(params)[0] == "MODEL"
    cfg = RunConfig(**{k.lower(): v for k, v in params.items()})
    expected = {f: getattr(RunConfig(), f) for f in FIELDS} | row.defaults | {"model": name}
    assert cfg.to_dict() == RunConfig(**expected).to_dict()
    assert mounted_dataset_slug(params) == DATASETS[cfg.dataset].slug


@pytest.mark.parametrize("name", catalog_names())
def test_the_glue_cell_passes_every_parameter_to_its_field(name):
    cells = [c for c in build_notebook(model_spec(name)).cells
             if c.cell_type == "code" and "\ncfg = RunConfig(" in c.source]
    assert len(cells) == 1
    call = next(n.value for n in ast.parse(cells[0].source).body
                if isinstance(n, ast.Assign) and n.targets[0].id == "cfg")
    assert {k.arg: k.value.id for k in call.keywords} == {f: f.upper() for f in FIELDS}


def test_builder_options_are_the_fields():
    flags = {o.flag: o.parameter for o in cli.PARAMETER_OPTIONS}
    no_option = {"model", "smoke", "sample_rate", "resume_from"}
    assert flags == {"--" + f.replace("_", "-"): f.upper() for f in FIELDS if f not in no_option}
    helps = {o.parameter: o.kwargs["help"] for o in cli.PARAMETER_OPTIONS}
    assert all(helps.values()) and helps["EPOCHS"] == "training epochs"


def test_model_kwargs_option_reaches_the_parameters_cell(tmp_path, capsys):
    assert builders_main(["crn", "--out", str(tmp_path), "--user", "u", "--model-kwargs",
                          '{"lstm_hidden": 64}', "--allow-cpu", "--grad-clip", "1.5"]) == 0
    cell = next(c for c in read_notebook(tmp_path / "crn.ipynb").cells
                if "parameters" in c.metadata.get("tags", []))
    assert "MODEL_KWARGS = {'lstm_hidden': 64}" in cell.source.splitlines()
    assert {"ALLOW_CPU = True", "GRAD_CLIP = 1.5", "MODEL = 'crn'"} <= set(cell.source.splitlines())
    with pytest.raises(SystemExit):
        builders_main(["crn", "--out", str(tmp_path / "b"), "--model-kwargs", "[1]"])
    assert "--model-kwargs: must be a JSON object" in capsys.readouterr().err


def test_an_optional_field_can_be_set_to_none_from_the_command_line(tmp_path, capsys):
    """``--time-budget-hours`` says "None: no budget": ``none`` gives that; a field that cannot
    be None still refuses it."""
    assert builders_main(["crn", "--out", str(tmp_path), "--user", "u",
                          "--time-budget-hours", "none", "--max-steps", "3"]) == 0
    cell = next(c for c in read_notebook(tmp_path / "crn.ipynb").cells
                if "parameters" in c.metadata.get("tags", []))
    assert {"TIME_BUDGET_HOURS = None", "MAX_STEPS = 3"} <= set(cell.source.splitlines())
    with pytest.raises(SystemExit):
        builders_main(["crn", "--out", str(tmp_path / "b"), "--epochs", "none"])
    assert "--epochs: invalid int value: 'none'" in capsys.readouterr().err


def test_python_m_builders_refuses_an_unknown_model(capsys):
    assert builders_main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "dpt, crn, crn_causal, compact_crn" in err
    assert builders_main([]) == 2


# ---------------------------------------------------------------- a contributor adds a model

TINY_CONV = '''\
"""Tiny conv: two convolutions over the compressed magnitude, a sigmoid mask per bin."""

from __future__ import annotations

import torch
from torch import nn

from templates.models.base import MaskingModel, compress_features
from templates.models.registry import register_model


@register_model("tiny_conv")
class TinyConv(MaskingModel):
    """Two 5x3 (frequency x time) convolutions with BatchNorm; `channels` between them."""

    def __init__(self, n_fft: int = 512, hop: int = 256, compress: str = "power",
                 output: str = "mask", *, channels: int = 32) -> None:
        super().__init__(n_fft=n_fft, hop=hop, compress=compress, output=output)
        self._record_config(channels=int(channels))
        self.body = nn.Sequential(
            nn.Conv2d(self.in_channels, int(channels), (5, 3), padding=(2, 1)),
            nn.BatchNorm2d(int(channels)),
            nn.ReLU(),
            nn.Conv2d(int(channels), self.out_channels, (5, 3), padding=(2, 1)),
        )

    def parts(self) -> dict[str, nn.Module]:
        return {"body": self.body}

    def masker(self, mag: torch.Tensor) -> torch.Tensor:
        """(B, C_in, F, N) features -> (B, F, N) mask."""
        self._check_masker_input(mag)
        x = compress_features(mag, self.compress)  # B, C_in, F, N
        return self.mask_from_logits(self.body(x))  # B, F, N
'''

TINY_CONV_ROW = '''\
    ModelRow(
        name="tiny_conv",
        module="templates.models.tiny_conv",
        title="Tiny Conv Speech Enhancement",
        description="Two convolutions over the compressed magnitude, a sigmoid mask per bin.",
        defaults={"batch_size": 32},
        smoke_kwargs={"channels": 8},
    ),
'''


def _copy_checkout(dest: Path) -> Path:
    files = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "--cached", "--others",
                            "--exclude-standard", "-z"], check=True, capture_output=True,
                           text=True, timeout=60).stdout.split("\0")
    for name in files:
        if name and (REPO_ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes((REPO_ROOT / name).read_bytes())
    return dest


def add_row(catalog_text: str, row: str) -> str:
    """The catalog with ``row`` appended to ``MODELS`` (before the tuple's closing line)."""
    head, sep, tail = catalog_text.partition("\n)\n")
    assert sep, "MODELS = (...) must end with a line ')'"
    return head + "\n" + row.rstrip("\n") + sep + tail


def test_a_new_model_is_a_module_and_one_row(tmp_path):
    """Builder, registry, the harness's discovery and `enhance --model` all see the new row."""
    repo = _copy_checkout(tmp_path / "checkout")
    (repo / "templates/models/tiny_conv.py").write_text(TINY_CONV, encoding="utf-8")
    catalog = repo / "templates/models/catalog.py"
    catalog.write_text(add_row(catalog.read_text(encoding="utf-8"), TINY_CONV_ROW), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(repo)}

    def run(*argv: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, *argv], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    # the builder: python -m builders NAME renders it, its own row's defaults in the cell
    run("-m", "builders", "tiny_conv")
    nb = read_notebook(repo / "notebooks/tiny_conv/tiny_conv.ipynb")
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "MODEL = 'tiny_conv'" in source and "BATCH_SIZE = 32" in source
    assert "class TinyConv(MaskingModel)" in source
    meta = json.loads((repo / "notebooks/tiny_conv/kernel-metadata.json").read_text())
    assert meta["id"].endswith("/tiny-conv-speech-enhancement")
    # the registry and the harness's discovery, from the copy (not this checkout)
    probe = run("-c", textwrap.dedent("""
        import torch
        import templates
        from smoke.run import MODELS
        from templates.models.registry import build_model
        model = build_model("tiny_conv", channels=4)
        torch.save(model.state_dict(), "tiny.pth")
        print(templates.__file__, MODELS)
    """))
    assert probe.stdout.startswith(str(repo)) and "'tiny_conv'" in probe.stdout
    # enhance --model NAME: a bare state_dict of the new model
    import numpy as np
    import soundfile as sf

    sf.write(repo / "in.wav", 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    run("-c", "import sys; from deploy.enhance import main; sys.exit(main(sys.argv[1:]))",
        "tiny.pth", "in.wav", "--out", "out", "--model", "tiny_conv", "--model-kwargs",
        '{"channels": 4}', "--no-progress")
    assert sf.info(repo / "out" / "in.wav").frames == 16000
    # the smoke harness: every check, the learning check on the row's smoke kwargs included
    smoke = run("smoke/run.py", "--model", "tiny_conv")
    assert "10/10 passed" in smoke.stdout
