"""The training entry point: config -> datamodule, module, callbacks, loggers -> Trainer.fit."""

import sys
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from reid.errors import ConfigError, ReidError


def instantiate_all(group: DictConfig | None) -> list:
    """Every entry of a dict of named configs that has a `_target_` (`callbacks=null` gives [])."""
    if not group:
        return []
    return [
        instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node
    ]


def check_checkpoint(path: str, module: torch.nn.Module) -> None:
    """Fail clearly when a checkpoint to resume from is missing or was written by another model."""
    if not Path(path).is_file():
        raise ConfigError(
            f"ckpt_path='{path}' does not exist. Pass the path of a .ckpt file of an earlier run."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ConfigError(f"ckpt_path='{path}' is not a readable Lightning checkpoint ({error}).") from error
    expected = module.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        raise ConfigError(
            f"Checkpoint '{path}' does not match the configured model ({len(problems)} differences, e.g. "
            f"{'; '.join(problems[:3])}). Resume with the model settings of the run that wrote it "
            "(its .hydra/config.yaml: model, embed_dim), or start a new run without ckpt_path."
        )


def train(cfg: DictConfig) -> dict[str, float]:
    """Train as configured; returns the final logged metrics (`train/...`, `val/...`) as floats."""
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    print(f"Run folder: {output_dir}")
    datamodule = instantiate(cfg.dataset)
    module = instantiate(cfg.module)
    if cfg.ckpt_path:
        check_checkpoint(cfg.ckpt_path, module)
    loggers = instantiate_all(cfg.get("logger"))
    trainer = instantiate(
        cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")), logger=loggers or False
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    finally:
        print(f"Run folder: {output_dir}")
    return {name: float(value) for name, value in trainer.callback_metrics.items()}


def run_cli(task: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> dict[str, float]:
    """Run `task`; a `ReidError` (bad input) is printed as one paragraph and exits with status 1."""
    try:
        return task(cfg)
    except ReidError as error:
        print(f"\nError: {error}", file=sys.stderr)
        sys.exit(1)
