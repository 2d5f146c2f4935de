"""Shared pytest fixtures."""

import os

import pytest
import torch

# Two cores: keep torch from oversubscribing when tests or workers run side by side.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
