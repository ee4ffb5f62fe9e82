"""Shared fixtures.

`quick_toy`: the quick synthetic dataset (`generate_toy_dataset(..., quick=True)`: 2 train + 1 val
videos x 8 s at 320x180, 15 fps, seed 0), generated once per test session (about 4 s). It is shared:
treat it as read-only, and write outputs (runs, predictions, reports) elsewhere. A test that must
change the dataset itself takes `quick_toy_copy`, a private copy in its own tmp_path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def quick_toy(tmp_path_factory) -> Path:
    from sfdet.toy import generate_toy_dataset

    # One worker: the set is the same for any number (tested), and no pool is forked inside a
    # test process that may already hold torch's and PyAV's threads.
    return generate_toy_dataset(tmp_path_factory.mktemp("quick_toy") / "toy", quick=True, workers=1)


@pytest.fixture
def quick_toy_copy(quick_toy: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(quick_toy, tmp_path / "toy"))
