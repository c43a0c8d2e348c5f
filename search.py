"""Search a gallery for queries: `python search.py query=<.npz|folder|.csv> gallery=<.npz> [top_k=10]`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="search")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    # Imported once Hydra has accepted the config, as in evaluate.py: a misspelt key fails in a second.
    from reid.tasks.cli import run_cli
    from reid.tasks.search import search

    run_cli(search, cfg)


if __name__ == "__main__":
    main()
