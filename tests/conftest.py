"""Shared fixtures: composing the real configs for in-process runs on tiny data."""

import pytest
from omegaconf import DictConfig

from tests.helpers.configs import compose_train


@pytest.fixture
def digits_cfg(tmp_path):
    """Short digits runs (2 epochs of 4 batches of 5 x 4 images): `digits_cfg(name, *overrides)`."""

    def make(name: str = "run", *overrides: str) -> DictConfig:
        short = ["trainer.max_epochs=2", "dataset.P=5", "dataset.K=4", "dataset.batches_per_epoch=4"]
        return compose_train(tmp_path / name, "experiment=quickstart", *short, *overrides)

    return make
