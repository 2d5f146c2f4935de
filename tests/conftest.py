"""Shared pytest fixtures. Helpers that are not fixtures live in tests/helpers/."""

import os
from pathlib import Path

import pytest
import torch

# Two cores: keep torch from oversubscribing when tests or workers run side by side.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture
def standin_repo(tmp_path: Path) -> Path:
    """A directory laid out like the repo, holding stand-in modules and a layout using them."""
    # Imported here, not at the top: the helper builds a ModelSpec on import, and a broken
    # renderer should fail the notebook tests only, not the collection of the whole suite.
    from tests.helpers.notebooks import write_standin_repo

    return write_standin_repo(tmp_path)
