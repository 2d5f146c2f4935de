"""The output file names are written once (templates/outputs.py) and every reader agrees."""

from fnmatch import fnmatch

import pytest

from render.notebook import build_notebook
from smoke.rehearse import expected_outputs
from smoke.run import MODELS, load_spec
from templates.outputs import (
    CHECKPOINT_PATTERN,
    checkpoint_name,
    output_files,
    summary_name,
)


def test_patterns_match_the_names_they_stand_for():
    assert fnmatch(checkpoint_name(10), CHECKPOINT_PATTERN)
    assert fnmatch(summary_name("compact_crn"), summary_name("*"))
    assert not fnmatch("dpt_int8.pth", summary_name("*"))


def test_rehearsal_expects_every_output_but_the_periodic_checkpoints():
    assert expected_outputs("dpt") == [f for f in output_files("dpt") if f != CHECKPOINT_PATTERN]
    assert len(set(output_files("dpt"))) == len(output_files("dpt"))


@pytest.mark.parametrize("name", MODELS)
def test_notebook_introduction_names_every_output(name):
    spec = load_spec(name)
    intro = build_notebook(spec).cells[0].source
    missing = [f for f in output_files(spec.name) if f"`{f}`" not in intro]
    assert not missing, f"{name}: the introduction does not name {missing}"
