"""The real Hydra configs, composed for in-process runs on tiny data."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[2]
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


def compose_evaluate(output_dir: Path, *overrides: str) -> DictConfig:
    """The real evaluate config with output in `output_dir`."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("evaluate", overrides=[f"paths.output_dir={output_dir}", *overrides])
