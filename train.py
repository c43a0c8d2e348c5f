"""Train an embedding with a triplet loss: `python train.py [experiment=...] [key=value ...]`."""

from functools import partial

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric so sweepers can optimise it."""
    # Imported once Hydra has accepted the config: torch and Lightning take ~10 s to import on a small
    # CPU, so a misspelt key fails in a second, and a multirun's parent process never pays for them.
    from reid.tasks.cli import run_cli
    from reid.tasks.run_folder import run_in_folder
    from reid.tasks.train import train

    return run_cli(partial(run_in_folder, train), cfg).get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
