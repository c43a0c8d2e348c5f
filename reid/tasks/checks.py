"""Checks of the training config's values, run before torch and Lightning are imported.

Hydra refuses a misspelt key (it is not in the config's struct) but accepts any value of a known key, and
Lightning or the loss would stop on a bad one only after seconds of imports, with a traceback. The checks
here read the composed config (and nothing else: no torch, no Lightning, no data) and raise a `ConfigError`
naming the key, so `train.py` runs them before its lazy imports and prints the one paragraph of
`reid.tasks.cli.run_cli`; `reid.tasks.train.train` runs them again for in-process callers. Each message
spells the bad value and any suggested override as they are typed on the command line.

`margin` is a top-level shortcut that the losses with a margin (`loss/batch_hard.yaml`,
`loss/batch_all.yaml`) take as `margin: ${margin}`; `loss/soft_margin.yaml` has none. The composed config
cannot tell a margin the user gave from the default (or from an experiment's, such as `experiment=mars_paper`,
which inherits `mars_seed`'s 0.5 and switches to the soft margin), so the rule "margin=... changes
nothing" reads the command line's overrides: Hydra's task overrides of the running job (every job of a
sweep has its own, an Optuna trial's proposed margin included). Other ways were weighed and rejected:
a `margin` key only in the losses (`loss.margin=0.3`) would break `margin=0.3` and the sweeps users type;
a top-level `margin` that only the margin losses declare (a `_global_` loss config) would turn
`margin=0.2 loss=soft_margin` into Hydra's "not in struct" error, which suggests `+margin=0.2`, which in
turn changes nothing again; and a Hydra callback would not run for in-process callers of `train`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from reid.errors import ConfigError

MAX_SEED = 2**32 - 1  # numpy's seeds, and so Lightning's, run from 0 to 2**32 - 1


def check_train_config(cfg: DictConfig, overrides: Sequence[str] | None = None) -> None:
    """Raise a `ConfigError` for the first invalid value of a training config.

    Args:
        cfg: the composed train config (`configs/train.yaml`).
        overrides: the command line's overrides (`["loss=soft_margin", "margin=0.2"]`); by default those
            of the running Hydra job, none outside Hydra (as after `hydra.compose`).
    """
    typed = typed_overrides(command_line_overrides() if overrides is None else overrides)
    check_margin_is_used(cfg, typed)
    check_learning_rate(cfg, typed)
    check_margin(cfg, typed)
    check_run_length(cfg, typed)
    check_seed(cfg, typed)


def command_line_overrides() -> list[str]:
    """The running Hydra job's overrides as typed (one job's values in a sweep); [] outside Hydra."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def typed_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """Each overridden key (or config group) and its override as typed: {"margin": "margin=0.2"}."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return {o.key_or_group: o.input_line for o in parsed if not o.is_delete() and o.input_line}


def check_margin_is_used(cfg: DictConfig, typed: dict[str, str]) -> None:
    """`margin=...` on the command line is refused when the configured loss does not read it."""
    given = typed.get("margin")
    loss = cfg.get("loss")
    if given is None or not isinstance(loss, DictConfig) or takes_margin_shortcut(loss):
        return
    where = given
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        where = f"{given} (job {HydraConfig.get().job.num} of this sweep)"
    if "margin" in loss:
        raise ConfigError(
            f"{where} changes nothing: the loss's margin is set directly (loss.margin="
            f"{typed_value(loss.margin)}), not to the top-level margin. Give the margin once, as "
            f"{given.replace('margin=', 'loss.margin=', 1)} in place of {given}."
        )
    choice = group_choice("loss", typed)
    target = loss.get("_target_")
    named = f"loss={choice} ({target})" if choice else f"the loss {target}"
    in_place = f" in place of loss={choice}" if choice else ""
    raise ConfigError(
        f"{where} changes nothing: {named} has no margin. Leave margin out "
        f"of the command line{' and the sweep' if where != given else ''}, or choose a loss that has one: "
        f"loss=batch_hard or loss=batch_all{in_place}."
    )


def takes_margin_shortcut(loss: DictConfig) -> bool:
    """Whether the loss config's margin is the top-level `margin` (`margin: ${margin}`)."""
    return "margin" in loss and OmegaConf.to_container(loss, resolve=False).get("margin") == "${margin}"


def group_choice(group: str, typed: dict[str, str]) -> str | None:
    """The chosen config of `group` (`soft_margin` for the loss): Hydra's, or the typed override's."""
    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.get(group)
    if group in typed:
        return typed[group].split("=", 1)[1]
    return None


def check_learning_rate(cfg: DictConfig, typed: dict[str, str]) -> None:
    optimizer = cfg.get("optimizer")
    if not isinstance(optimizer, DictConfig) or "lr" not in optimizer:
        return
    lr = optimizer.lr
    if not is_number(lr) or not lr > 0 or not math.isfinite(lr):
        raise ConfigError(
            f"{shown('optimizer.lr', lr, typed)} is not a learning rate: optimizer.lr must be a number above "
            "0, e.g. optimizer.lr=1e-4 (the seed's Adam rate)."
        )


def check_margin(cfg: DictConfig, typed: dict[str, str]) -> None:
    loss = cfg.get("loss")
    if not isinstance(loss, DictConfig) or "margin" not in loss:
        return
    key = "margin" if takes_margin_shortcut(loss) else "loss.margin"
    margin = OmegaConf.select(cfg, key)
    if not is_number(margin) or not margin >= 0 or not math.isfinite(margin):
        raise ConfigError(
            f"{shown(key, margin, typed)} is not a triplet margin: the hinge counts a triplet until its "
            f"negative is the margin farther from the anchor than its positive, so {key} must be a number "
            f"of at least 0, e.g. {key}=0.5 (the seed's)."
        )


def check_run_length(cfg: DictConfig, typed: dict[str, str]) -> None:
    """`trainer.max_epochs` and `trainer.max_steps`: a whole number of at least 1, or -1 (no limit), and
    not both -1 (a run that never stops). `max_epochs: null` is Lightning's default limit."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    if epochs is not None and not is_length(epochs):
        other = ", or trainer.max_epochs=-1 to stop by trainer.max_steps only" if is_bound(steps) else ""
        raise ConfigError(
            f"{shown('trainer.max_epochs', epochs, typed)} is not a number of epochs: trainer.max_epochs "
            f"must be a whole number of at least 1, e.g. trainer.max_epochs=10{other}."
        )
    if not is_length(steps):
        other = ", or trainer.max_steps=-1 to stop by trainer.max_epochs only" if is_bound(epochs) else ""
        raise ConfigError(
            f"{shown('trainer.max_steps', steps, typed)} is not a number of steps: trainer.max_steps must "
            f"be a whole number of at least 1, e.g. trainer.max_steps=1000{other}."
        )
    if epochs == -1 and steps == -1:
        raise ConfigError(
            "trainer.max_epochs=-1 with trainer.max_steps=-1 is a run that never stops: bound it, e.g. "
            "with trainer.max_epochs=10 or trainer.max_steps=1000."
        )


def check_seed(cfg: DictConfig, typed: dict[str, str]) -> None:
    seed = cfg.get("seed")
    if not (is_integer(seed) and 0 <= seed <= MAX_SEED):
        raise ConfigError(
            f"{shown('seed', seed, typed)} is not a seed: seed (of the weights, the PK batches and the "
            f"workers) must be a whole number from 0 to {MAX_SEED}, e.g. seed=0."
        )


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_length(value: Any) -> bool:
    """A run length Lightning accepts and that trains: -1 (no limit) or at least 1."""
    return is_integer(value) and (value == -1 or value >= 1)


def is_bound(value: Any) -> bool:
    """Whether a run length limits the run (a positive count, or Lightning's default for None)."""
    return value is None or (is_integer(value) and value >= 1)


def shown(key: str, value: Any, typed: dict[str, str]) -> str:
    """`key=value` as the user typed it when it is their override, else as it would be typed."""
    return typed.get(key) or f"{key}={typed_value(value)}"


def typed_value(value: Any) -> str:
    """A config value as it is typed in a Hydra override (null, true, 0.5, 'a b')."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and not value.replace("_", "").replace(".", "").isalnum():
        return repr(value)
    return str(value)
