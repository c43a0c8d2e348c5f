"""Embed images with a checkpoint: `python embed.py ckpt_path=... input=<folder or .csv> [output=...]`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="embed")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    # Imported once Hydra has accepted the config, as in train.py: a misspelt key fails in a second.
    from reid.tasks.cli import run_cli
    from reid.tasks.embed import embed

    run_cli(embed, cfg)


if __name__ == "__main__":
    main()
