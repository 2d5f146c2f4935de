"""templates.setup: installing missing notebook packages (pip replaced by a fake runner)."""

import importlib.metadata
import subprocess
import sys
import types

import pytest

from templates.setup import NOTEBOOK_REQUIREMENTS, PackageInstallError, ensure_packages


class FakePip:
    """Stands in for subprocess.run; 'installs' a module by writing it into `site`."""

    def __init__(self, site, returncode=0, creates=True, stderr=""):
        self.site, self.returncode, self.creates, self.stderr = site, returncode, creates, stderr
        self.calls = []

    def __call__(self, cmd, capture_output, text):
        assert capture_output and text
        self.calls.append(cmd)
        requirement = cmd[-1]
        if self.returncode == 0 and self.creates:
            module = requirement.split("==")[0].replace("-", "_")
            (self.site / f"{module}.py").write_text("VALUE = 1\n")
        return types.SimpleNamespace(
            returncode=self.returncode, stdout="Collecting ...\n", stderr=self.stderr
        )


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_installs_only_missing_modules(site):
    pip = FakePip(site)
    spec = {"numpy": "numpy==0.0.1", "se_fake_pkg_a": "se_fake_pkg_a==1.2"}
    assert ensure_packages(spec, runner=pip) == ["se_fake_pkg_a==1.2"]
    assert pip.calls == [[sys.executable, "-m", "pip", "install", "-q", "se_fake_pkg_a==1.2"]]
    # second call: now importable, so nothing runs
    assert ensure_packages(spec, runner=pip) == []
    assert len(pip.calls) == 1


def test_failed_install_names_package_and_pip_output(site):
    err = "\n".join(f"line {i}" for i in range(40)) + "\nERROR: No matching distribution"
    pip = FakePip(site, returncode=1, stderr=err)
    with pytest.raises(RuntimeError) as info:
        ensure_packages({"se_fake_pkg_b": "se_fake_pkg_b==9.9"}, runner=pip)
    msg = str(info.value)
    assert isinstance(info.value, PackageInstallError)
    assert "se_fake_pkg_b==9.9" in msg and "exit code 1" in msg
    assert "ERROR: No matching distribution" in msg
    assert "line 5\n" not in msg  # only the tail of pip's output


def test_install_that_leaves_module_missing_is_an_error(site):
    pip = FakePip(site, creates=False)
    with pytest.raises(PackageInstallError, match="still cannot be imported"):
        ensure_packages({"se_fake_pkg_c": "other-dist==1.0"}, runner=pip)


def test_dotted_name_with_missing_parent_counts_as_missing(site):
    pip = FakePip(site, returncode=1)
    with pytest.raises(PackageInstallError, match="se_fake_parent"):
        ensure_packages({"se_fake_parent.sub": "se_fake_parent==1"}, runner=pip)


def test_default_runner_is_subprocess_run():
    assert ensure_packages.__defaults__ == (subprocess.run,)


@pytest.mark.parametrize("import_name", sorted(NOTEBOOK_REQUIREMENTS))
def test_notebook_requirements_pin_the_tested_versions(import_name):
    name, version = NOTEBOOK_REQUIREMENTS[import_name].split("==")
    assert importlib.metadata.version(name) == version
    assert ensure_packages({import_name: NOTEBOOK_REQUIREMENTS[import_name]},
                           runner=FakePip(None)) == []
