"""Train an embedding with a triplet loss: `python train.py [experiment=...] [key=value ...]`."""

import hydra
from omegaconf import DictConfig

from reid.run import run_cli, train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric so sweepers can optimise it."""
    return run_cli(train, cfg).get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
