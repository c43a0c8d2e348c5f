"""Evaluate a checkpoint on a test set (docs/metrics.md):
`python evaluate.py ckpt_path=... [dataset=<name>] [dataset.root=...] [rerank=true]`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the mAP (query/gallery data) or MAP@R (unseen classes)."""
    # Imported once Hydra has accepted the config, as in train.py: a misspelt key fails in a second.
    from reid.tasks.cli import run_cli
    from reid.tasks.evaluate import evaluate

    result = run_cli(evaluate, cfg)
    return result["mAP"] if "mAP" in result else result["map_at_r"]


if __name__ == "__main__":
    main()
