"""Evaluate a checkpoint on a test set (docs/metrics.md):
`python evaluate.py ckpt_path=... [dataset=<name>] [dataset.root=...] [rerank=true]`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the mAP (re-ID mAP, or leave-one-out mAP for unseen classes)."""
    # Imported once Hydra has accepted the config, as in train.py: a misspelt key fails in a second.
    from reid.tasks.cli import run_cli
    from reid.tasks.evaluate import evaluate

    return run_cli(evaluate, cfg)["mAP"]


if __name__ == "__main__":
    main()
