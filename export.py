"""Export a checkpoint: `python export.py ckpt_path=... format=onnx|torchscript [output=...]`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="export")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    # Imported once Hydra has accepted the config, as in train.py: a misspelt key fails in a second.
    from reid.tasks.cli import run_cli
    from reid.tasks.export import export_checkpoint

    run_cli(export_checkpoint, cfg)


if __name__ == "__main__":
    main()
