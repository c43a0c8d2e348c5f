"""The training task: config -> datamodule, module, callbacks, loggers -> Trainer.fit."""

from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from reid.files import clear_leftovers
from reid.tasks.checks import check_train_config
from reid.training.checkpoints import (
    AtomicCheckpointIO,
    ModelCard,
    check_checkpoint,
)
from reid.training.random_states import RandomStates
from reid.training.signals import StopOnSignal


def instantiate_all(group: DictConfig | None) -> list:
    """Every entry of a dict of named configs that has a `_target_` (`callbacks=null` gives [])."""
    if not group:
        return []
    return [
        instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node
    ]


def train(cfg: DictConfig) -> dict[str, float]:
    """Train as configured; returns the final logged metrics (`train/...`, `val/...`) as floats.

    Every checkpoint carries a model card (`reid.training.checkpoints.ModelCard`) and the random states
    (`reid.training.random_states.RandomStates`; the datamodule adds where the PK batches stand), so a run
    resumed from any checkpoint, mid-epoch too, continues exactly as the first run went on. Checkpoints are
    written atomically (`AtomicCheckpointIO`); what a killed write left in the run's folders is removed
    first. A checkpoint to resume from is read with `weights_only=True`, so it cannot run code. SIGINT and
    SIGTERM save the current step and raise `reid.errors.Interrupted` (`StopOnSignal`).
    """
    check_train_config(cfg)  # the values, before anything is built (train.py checked them already)
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    print(f"Run folder: {output_dir}")
    clear_leftovers(output_dir, checkpoint_dir, *([Path(cfg.ckpt_path).parent] if cfg.ckpt_path else []))
    datamodule = instantiate(cfg.dataset)
    module = instantiate(cfg.module)
    if cfg.ckpt_path:
        check_checkpoint(cfg.ckpt_path, module)
    loggers = instantiate_all(cfg.get("logger"))
    stop = StopOnSignal(checkpoint_dir)
    callbacks = [*instantiate_all(cfg.get("callbacks")), ModelCard(cfg.model, cfg), RandomStates(), stop]
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    except SystemExit:  # how Lightning ends a run it stopped itself: Ctrl-C (status 1), SIGTERM (status 0)
        raise stop.unsaved(trainer) from None
    finally:
        print(f"Run folder: {output_dir}")
    return {name: float(value) for name, value in trainer.callback_metrics.items()}
