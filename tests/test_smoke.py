"""Smoke harness: checks catch what they claim to, the report and the CLI table."""

from __future__ import annotations

from pathlib import Path

import pytest

from render.notebook import build_notebook
from render.spec import model_spec
from smoke import checks
from smoke.run import CheckResult, SmokeReport, load_spec, main, run_smoke


@pytest.fixture(scope="module")
def dpt_notebook():
    return build_notebook(model_spec("dpt"))


@pytest.fixture
def contexts():
    """Smoke contexts closed after the test: the repo's templates/compat come back."""
    made: list[checks.SmokeContext] = []
    yield made
    for ctx in made:
        ctx.close()


def _ctx(nb, tmp_path: Path, contexts: list) -> checks.SmokeContext:
    ctx = checks.SmokeContext(model_spec("dpt"), nb, None, tmp_path)
    contexts.append(ctx)
    checks.check_imports_config(ctx)
    return ctx


def test_checks_pass_on_the_rendered_notebook(dpt_notebook, tmp_path, contexts):
    ctx = _ctx(dpt_notebook, tmp_path, contexts)
    assert "crop" in checks.check_dataset(ctx)
    assert "parameters" in checks.check_model(ctx)
    assert "mask (2, 257" in checks.check_forward(ctx)


def test_dataset_check_catches_misaligned_crops(dpt_notebook, tmp_path, contexts):
    """The bug of the user's original notebooks: independent offsets for noisy and clean."""
    ctx = _ctx(dpt_notebook, tmp_path, contexts)
    good = ctx.ns["AlignedCropDataset"]

    class Misaligned(good):
        def __getitem__(self, i):
            noisy, _ = super().__getitem__(i)
            other = good(self.pairs, self.crop_samples, train=True, seed=self.seed + 99)
            return noisy, other[i][1]

    ctx.ns["AlignedCropDataset"] = Misaligned
    with pytest.raises(checks.SmokeCheckError, match="not aligned"):
        checks.check_dataset(ctx)


def test_forward_check_catches_wrong_output_length(dpt_notebook, tmp_path, contexts):
    ctx = _ctx(dpt_notebook, tmp_path, contexts)
    checks.check_dataset(ctx)
    checks.check_model(ctx)
    real_forward = ctx.model.forward
    ctx.model.forward = lambda wav: real_forward(wav)[:, :-10]
    with pytest.raises(checks.SmokeCheckError, match="output"):
        checks.check_forward(ctx)


def test_imports_check_names_the_failing_cell(dpt_notebook, tmp_path, contexts):
    nb = build_notebook(model_spec("dpt"))
    cell = next(c for c in nb.cells if c.metadata.get("module") == "templates.losses")
    cell.source = cell.source + "\nundefined_at_import_time()\n"
    with pytest.raises(checks.SmokeCheckError, match="templates.losses.*NameError"):
        _ctx(nb, tmp_path, contexts)


def test_checks_run_the_modules_the_notebook_writes(dpt_notebook, tmp_path):
    """The same bytes: a module cell that differs from the repo's module is what gets checked."""
    import templates.metrics

    nb = build_notebook(model_spec("dpt"))
    cell = next(c for c in nb.cells if c.metadata.get("module") == "templates.metrics")
    cell.source += "\n\ndef si_sdr(est, ref, eps=1e-8):  # not the repo's\n    return torch.zeros(est.shape[0])\n"
    with checks.SmokeContext(model_spec("dpt"), nb, None, tmp_path / "altered") as ctx:
        checks.check_imports_config(ctx)
        checks.check_dataset(ctx)
        assert ctx.package["templates.metrics"].__file__.startswith(str(tmp_path / "altered"))
        with pytest.raises(checks.SmokeCheckError, match="si_sdr"):
            checks.check_si_sdr(ctx)
    import sys

    assert sys.modules["templates.metrics"] is templates.metrics  # the repo's module is back
    with checks.SmokeContext(model_spec("dpt"), dpt_notebook, None, tmp_path / "as-rendered") as ctx:
        checks.check_imports_config(ctx)
        checks.check_dataset(ctx)
        assert "identity" in checks.check_si_sdr(ctx)


def test_imports_check_names_a_run_cell_importing_what_the_package_lacks(tmp_path, contexts):
    nb = build_notebook(model_spec("dpt"))
    cell = next(c for c in nb.cells if "import run_evaluation" in c.source or "run_evaluation," in c.source)
    cell.source = cell.source.replace("run_evaluation", "run_evaluation_renamed", 1)
    with pytest.raises(checks.SmokeCheckError, match=f"cell {cell.id} line 1: cannot import name "
                                                     f"'run_evaluation_renamed'"):
        _ctx(nb, tmp_path, contexts)


def test_imports_check_fails_for_a_module_the_notebook_does_not_write(tmp_path, contexts):
    """A notebook without templates/losses.py fails on Kaggle with ModuleNotFoundError; the check
    must not quietly import the repo's templates.losses (the editable install) instead."""
    nb = build_notebook(model_spec("dpt"))
    nb.cells = [c for c in nb.cells if c.metadata.get("module") != "templates.losses"]
    with pytest.raises(checks.SmokeCheckError, match="No module named 'templates.losses'"):
        _ctx(nb, tmp_path, contexts)


def test_checks_import_only_what_the_notebook_imports(tmp_path, contexts):
    """A module the notebook writes but never imports stays unimported here too: without the
    model table the registry cannot find the model module, in the notebook as in the check."""
    nb = build_notebook(model_spec("dpt"))
    nb.cells = [c for c in nb.cells if c.metadata.get("module") != "templates.models.catalog"]
    ctx = _ctx(nb, tmp_path, contexts)
    assert "templates.models.dpt" not in ctx.package
    with pytest.raises(checks.SmokeCheckError, match="model 'dpt' is not registered"):
        checks.check_model(ctx)


def _owned_by(module: str) -> bool:
    return module.split(".")[0] in ("templates", "compat")


def test_checks_leave_no_notebook_object_behind(dpt_notebook, tmp_path, monkeypatch):
    """After the checks, the rest of the process holds the repo's objects only: a module first
    imported during the checks (the push gate renders and pushes afterwards, in-process) must not
    keep the notebook package's classes or tables."""
    import sys
    import types
    import warnings

    monkeypatch.delitem(sys.modules, "smoke.dataset", raising=False)  # as in a fresh `builders` run
    with checks.SmokeContext(model_spec("dpt"), dpt_notebook, None, tmp_path) as ctx:
        for _name, check in checks.CHECKS[:-1]:  # all but the committed-notebook comparison
            check(ctx)
        package = dict(ctx.package)
    repo = {id(v) for name in package if name in sys.modules for v in vars(sys.modules[name]).values()}

    def made_by_the_package(v) -> bool:  # not a library's object that a module imported
        if isinstance(v, types.ModuleType):
            return _owned_by(v.__name__)
        if isinstance(v, (dict, list, set)):
            return True
        return _owned_by(str(getattr(v, "__module__", None) or type(v).__module__))

    notebook = {id(v): f"{name}.{attr}" for name, module in package.items()
                for attr, v in [("", module), *vars(module).items()]
                if id(v) not in repo and made_by_the_package(v)}
    leaks = []
    with warnings.catch_warnings():  # deprecated names (torch.distributed.reduce_op) warn when read
        warnings.simplefilter("ignore")
        for name, module in list(sys.modules.items()):
            if module is None or _owned_by(name) or name in (__name__, "sys"):
                continue
            for attr, value in list(vars(module).items()):
                inner = list(value.values()) if isinstance(value, dict) and attr != "__builtins__" else []
                leaks += [f"{name}.{attr} -> {notebook[id(v)]}" for v in [value, *inner]
                          if id(v) in notebook]
    assert not leaks
    assert all(sys.modules.get(name) is not m for name, m in package.items() if isinstance(m, types.ModuleType))


def test_lint_check_fails_on_seed_shadowing(dpt_notebook, tmp_path):
    nb = build_notebook(model_spec("dpt"))
    cell = next(c for c in nb.cells if c.metadata.get("module") == "templates.models.dpt")
    cell.source += "\n\ndef _bad(x):\n    B, C, nn, T = x.shape\n    return nn.functional.pad(x, (1, 1))\n"
    ctx = checks.SmokeContext(model_spec("dpt"), nb, None, tmp_path)
    with pytest.raises(ValueError, match="KG007 'nn' shadows"):
        checks.check_lint(ctx)


def test_committed_check_detects_stale_notebook(tmp_path):
    stale = tmp_path / "dpt.ipynb"
    stale.write_text("{}\n")
    ctx = checks.SmokeContext(model_spec("dpt"), None, stale, tmp_path)
    with pytest.raises(checks.SmokeCheckError, match="python -m builders dpt"):
        checks.check_committed(ctx)


def test_report_ok_table_and_failures():
    report = SmokeReport([CheckResult("dpt", "loss", True, 0.5, "fine"),
                          CheckResult("dpt", "lint", False, 0.1, "cell 3: bad\nmore")])
    assert not report.ok and [r.check for r in report.failures()] == ["lint"]
    table = report.table()
    assert "dpt    lint   FAIL" in table and "1/2 passed" in table and "more" not in table
    assert not SmokeReport().ok  # nothing run is not a pass


def test_run_smoke_stops_dependent_checks_after_a_failure(monkeypatch):
    def broken(ctx):
        raise checks.SmokeCheckError("model missing")

    monkeypatch.setattr(checks, "CHECKS", [("model", broken), ("forward", checks.check_forward),
                                           ("committed", checks.check_committed)])
    report = run_smoke(["dpt"], echo=lambda *_: None)
    by_check = {r.check: r for r in report.results}
    assert not by_check["model"].ok and by_check["forward"].message.startswith("not run")
    assert by_check["committed"].ok  # independent checks still run


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="no model 'nope' in templates/models/catalog.py"):
        load_spec("nope")


def test_cli_exit_code_and_push_summary(monkeypatch, capsys):
    monkeypatch.setattr(checks, "CHECKS", [("committed", checks.check_committed)])
    assert main(["--model", "crn"]) == 0
    out = capsys.readouterr().out
    assert "1/1 passed" in out and "push folder notebooks/crn/" in out

    def broken(ctx):
        raise checks.SmokeCheckError("x")

    monkeypatch.setattr(checks, "CHECKS", [("model", broken)])
    assert main(["--model", "crn"]) == 1


def test_rehearsal_is_not_run_after_a_failed_check(monkeypatch, tmp_path):
    """The push gate's minutes-long rehearsal is skipped when a seconds-long check already failed."""
    import smoke.rehearse

    def broken(ctx):
        raise checks.SmokeCheckError("model missing")

    def no_rehearsal(*a, **k):
        raise AssertionError("rehearsal must not run after a failed check")

    monkeypatch.setattr(checks, "CHECKS", [("model", broken)])
    monkeypatch.setattr(smoke.rehearse, "rehearse", no_rehearsal)
    report = run_smoke(["dpt"], rehearse=True, data=tmp_path, echo=lambda *_: None)
    by_check = {r.check: r for r in report.results}
    assert not report.ok
    assert not by_check["rehearsal"].ok and by_check["rehearsal"].message.startswith("not run")
