"""Shared fixtures: composing the real configs for in-process runs on tiny data."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def compose_train(output_dir: Path, *overrides: str) -> DictConfig:
    """The real train config with CPU, no progress bar and output in `output_dir`."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"paths.output_dir={output_dir}",
                "trainer.accelerator=cpu",
                "~callbacks.rich_progress_bar",
                "+trainer.enable_progress_bar=false",
                "+trainer.enable_model_summary=false",
                *overrides,
            ],
        )


@pytest.fixture
def digits_cfg(tmp_path):
    """Short digits runs (2 epochs of 4 batches of 5 x 4 images): `digits_cfg(name, *overrides)`."""

    def make(name: str = "run", *overrides: str) -> DictConfig:
        short = ["trainer.max_epochs=2", "dataset.P=5", "dataset.K=4", "dataset.batches_per_epoch=4"]
        return compose_train(tmp_path / name, "experiment=quickstart", *short, *overrides)

    return make
