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


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch):
    """The loopback fake Kaggle server, with the real client pointed at it and a throwaway HOME
    (tests/helpers/kaggle.py)."""
    from tests.helpers.kaggle import serve_fake_kaggle

    yield from serve_fake_kaggle(tmp_path, monkeypatch)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A fresh ``runs/`` folder (ledger and fetched outputs) for the Kaggle operations."""
    return tmp_path / "runs"
