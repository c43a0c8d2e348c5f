"""Train an embedding with a triplet loss: `python train.py [experiment=...] [key=value ...]`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric so sweepers can optimise it."""
    # Hydra has accepted the keys; their values are checked next (reid.tasks.checks imports no torch), and
    # only then are torch and Lightning imported: they take ~10 s to import on a small CPU, so a misspelt
    # key or a bad value fails in a second, and a multirun's parent process never pays for them. A bad
    # value is a ConfigError, printed by run_cli as one paragraph with exit status 1.
    from reid.tasks.checks import check_train_config
    from reid.tasks.cli import run_cli
    from reid.tasks.run_folder import run_in_folder

    def check_and_train(cfg: DictConfig) -> dict[str, float]:
        check_train_config(cfg)
        from reid.tasks.train import train

        return run_in_folder(train, cfg)

    return run_cli(check_and_train, cfg).get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
