"""The configs: every experiment and group choice composes and instantiates (without training), the
evaluator group, the margin rule and the value checks of `reid.tasks.checks`, and what config comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning import LightningDataModule, LightningModule, Trainer

from reid.errors import ConfigError
from reid.losses import SoftMarginTripletLoss
from reid.retrieval.evaluators import (
    ClassRetrievalEvaluator,
    ImageRetrievalEvaluator,
    TrackletRankEvaluator,
    UnseenClassEvaluator,
)
from reid.tasks.checks import check_train_config
from reid.tasks.train import instantiate_all

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
GROUPS = ["experiment", "dataset", "model", "loss", "trainer", "evaluator", "logger", "callbacks"]
# Groups whose only config is always composed (paths, hydra), and the blocks experiments compose (shared).
NOT_CHOSEN = {"paths", "hydra", "shared"}
EVALUATORS = {
    "class_retrieval": ClassRetrievalEvaluator,
    "tracklet": TrackletRankEvaluator,
    "unseen_classes": UnseenClassEvaluator,
    "image_retrieval": ImageRetrievalEvaluator,
}


def choices(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIGS / group).glob("*.yaml"))


def compose_config(output_dir: Path, *overrides: str, name: str = "train", hydra: bool = False) -> DictConfig:
    """A real config as the CLI composes it (callbacks included), on one CPU device, output in output_dir."""
    device = ["trainer.accelerator=cpu", "trainer.devices=1"] if name == "train" else []
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(
            name,
            overrides=[f"paths.output_dir={output_dir}", *device, *overrides],
            return_hydra_config=hydra,
        )


def instantiate_run(cfg: DictConfig) -> tuple[LightningDataModule, LightningModule, Trainer]:
    """What `reid.tasks.train.train` builds before `fit`: the datamodule (not set up: no data is read), the
    module, and the trainer with its callbacks and loggers. A backbone configured to download ImageNet weights
    is built with random ones: tests never download (tests/test_trinet.py covers the download's messages)."""
    if cfg.model.get("pretrained"):
        cfg.model.pretrained = False
    datamodule = instantiate(cfg.dataset)
    module = instantiate(cfg.module)
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = instantiate_all(cfg.get("callbacks"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, module, trainer


# Each choice of each group, with the dataset it needs where the default (mnist) does not fit.
NEEDS = {"evaluator=tracklet": ("dataset=mars",)}
CASES = [
    (override, *NEEDS.get(override, ()))
    for override in [f"{group}={choice}" for group in GROUPS for choice in choices(group)]
    + ["hparams_search=margin_lr"]
]


def test_every_group_is_covered():
    groups = {path.name for path in CONFIGS.iterdir() if path.is_dir()}
    assert groups == {*GROUPS, "hparams_search", *NOT_CHOSEN}
    assert choices("hparams_search") == ["margin_lr"]


@pytest.mark.parametrize("overrides", CASES, ids=lambda c: c[0])
def test_every_choice_composes_and_instantiates(overrides, tmp_path):
    cfg = compose_config(tmp_path, *overrides)
    check_train_config(cfg, overrides)
    datamodule, module, trainer = instantiate_run(cfg)
    assert isinstance(datamodule, LightningDataModule) and isinstance(module, LightningModule)
    assert isinstance(trainer, Trainer) and trainer.max_epochs is not None
    evaluator = EVALUATORS[compose_config(tmp_path, *overrides, hydra=True).hydra.runtime.choices.evaluator]
    assert isinstance(module.evaluator, evaluator)


@pytest.mark.parametrize(
    ("dataset", "evaluator"),
    [("mnist", "class_retrieval"), ("fashion_mnist", "class_retrieval"), ("digits", "class_retrieval")]
    + [
        ("mars", "tracklet"),
        ("market1501", "tracklet"),
        ("cub200", "unseen_classes"),
        ("sop", "unseen_classes"),
    ]
    + [("image_folder", "image_retrieval"), ("csv", "image_retrieval")],
)
def test_each_dataset_chooses_its_evaluator(dataset, evaluator, tmp_path):
    cfg = compose_config(tmp_path, f"dataset={dataset}", hydra=True)
    assert cfg.hydra.runtime.choices.evaluator == evaluator
    assert "evaluator" not in cfg.dataset  # the datamodule's arguments only


def test_evaluator_and_dataset_keys_from_the_command_line(tmp_path):
    cfg = compose_config(
        tmp_path,
        "dataset=mars",
        "dataset.root=/somewhere/MARS",
        "dataset.P=8",
        "dataset.protocol=torchreid",
        "evaluator.pooling=max",
        "evaluator.normalize=true",
    )
    assert (cfg.dataset.root, cfg.dataset.P) == ("/somewhere/MARS", 8)
    evaluator = instantiate(cfg.evaluator)
    assert (evaluator.pooling, evaluator.normalize) == ("max", True)
    assert cfg.evaluator.protocol == "torchreid"  # the evaluator follows the dataset's protocol
    tracklet = compose_config(tmp_path, "dataset=mars", "evaluator=tracklet").evaluator
    assert isinstance(instantiate(tracklet), TrackletRankEvaluator)
    swapped = compose_config(tmp_path, "dataset=mnist", "evaluator=class_retrieval", "evaluator.knn_k=3")
    assert instantiate(swapped.evaluator).knn_k == 3


def test_evaluate_config_gets_the_tracklet_evaluator(tmp_path):
    overrides = ["dataset.protocol=torchreid", "evaluator.pooling=max", "evaluator.normalize=true"]
    cfg = compose_config(tmp_path, *overrides, name="evaluate", hydra=True)
    assert cfg.hydra.runtime.choices.evaluator == "tracklet"
    evaluator = instantiate(cfg.evaluator)
    assert isinstance(evaluator, TrackletRankEvaluator)
    assert (evaluator.pooling, evaluator.normalize, cfg.evaluator.protocol) == ("max", True, "torchreid")


def test_fashion_mnist_is_mnist_with_its_own_files(tmp_path):
    mnist = compose_config(tmp_path, "dataset=mnist").dataset
    fashion = compose_config(tmp_path, "dataset=fashion_mnist").dataset
    differ = {key for key in mnist if mnist[key] != fashion[key]}
    assert differ == {"_target_", "root"} and list(fashion) == list(mnist)


@pytest.mark.parametrize(
    "experiment",
    ["mars_seed", "mars_smoke", "mars_paper", "market_seed", "market_smoke", "market_paper", "folder_smoke"],
)
def test_mars_experiments_are_counted_in_steps(experiment, tmp_path):
    cfg = compose_config(tmp_path, f"experiment={experiment}")
    assert cfg.trainer.max_epochs == -1 and cfg.trainer.check_val_every_n_epoch is None
    assert cfg.trainer.max_steps > cfg.trainer.val_check_interval > 0
    assert cfg.callbacks.embedding_figures is None
    assert cfg.callbacks.model_checkpoint.filename == "best-step{step:06d}"


def test_hparams_search_sweeps_margin_and_rate(tmp_path):
    cfg = compose_config(tmp_path, "hparams_search=margin_lr", "experiment=quickstart", hydra=True)
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "optuna"
    assert set(cfg.hydra.sweeper.params) == {"margin", "optimizer.lr"}


# The margin rule: `margin` is read only by the losses that have one.


def train_cli(*args: str) -> subprocess.CompletedProcess:
    """train.py with `-X importtime`: stderr also lists every module the process imported."""
    command = [sys.executable, "-X", "importtime", str(ROOT / "train.py"), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def error_paragraph(result: subprocess.CompletedProcess) -> str:
    """The error train.py printed, after checking it stopped before importing torch, without a traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    assert "hydra" in imported and "torch" not in imported and "pytorch_lightning" not in imported
    printed = [line for line in lines if not line.startswith("import time:") and line.strip()]
    errors = [line for line in printed if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


SOFT_MARGIN_ERROR = (
    "changes nothing: loss=soft_margin (reid.losses.SoftMarginTripletLoss) has no margin. Leave margin "
    "out of the command line{}, or choose a loss that has one: loss=batch_hard or loss=batch_all in place of "
    "loss=soft_margin."
)


def test_margin_with_the_soft_margin_loss_stops_at_once(tmp_path):
    result = train_cli("loss=soft_margin", "margin=0.2", f"hydra.run.dir={tmp_path / 'run'}")
    assert error_paragraph(result) == "Error: margin=0.2 " + SOFT_MARGIN_ERROR.format("")


def test_margin_sweep_with_the_soft_margin_loss_stops_at_its_first_job(tmp_path):
    sweep = tmp_path / "sweep"
    result = train_cli("-m", "margin=0.2,0.5", "loss=soft_margin", f"hydra.sweep.dir={sweep}")
    expected = "Error: margin=0.2 (job 0 of this sweep) " + SOFT_MARGIN_ERROR.format(" and the sweep")
    assert error_paragraph(result) == expected
    assert not (sweep / "1").exists()


def test_bad_value_through_the_cli_is_one_paragraph(tmp_path):
    result = train_cli("optimizer.lr=0", f"hydra.run.dir={tmp_path / 'run'}")
    assert error_paragraph(result).startswith("Error: optimizer.lr=0 is not a learning rate")


def checked(tmp_path: Path, *overrides: str) -> DictConfig:
    """The composed config, checked as train.py checks it with these overrides typed."""
    cfg = compose_config(tmp_path, *overrides)
    check_train_config(cfg, overrides)
    return cfg


def test_mars_paper_keeps_its_inherited_margin_unused(tmp_path):
    cfg = checked(tmp_path, "experiment=mars_paper")
    assert isinstance(instantiate(cfg.loss), SoftMarginTripletLoss) and "margin" not in cfg.loss
    with pytest.raises(ConfigError, match=re.escape("margin=0.3 changes nothing: the loss reid.losses.Soft")):
        checked(tmp_path, "experiment=mars_paper", "margin=0.3")  # (train.py names it loss=soft_margin)
    # The suggested fix, typed as suggested: the command line's loss wins over the experiment's.
    fixed = checked(tmp_path, "experiment=mars_paper", "loss=batch_hard", "margin=0.3")
    assert instantiate(fixed.loss).margin == 0.3


@pytest.mark.parametrize("loss", ["batch_hard", "batch_all"])
def test_margin_sets_the_losses_that_have_one(loss, tmp_path):
    assert instantiate(checked(tmp_path, f"loss={loss}", "margin=0.3").loss).margin == 0.3


def test_margin_beside_a_loss_margin_set_directly(tmp_path):
    with pytest.raises(ConfigError) as error:
        checked(tmp_path, "loss.margin=0.3", "margin=0.2")
    assert str(error.value) == (
        "margin=0.2 changes nothing: the loss's margin is set directly (loss.margin=0.3), not to the "
        "top-level margin. Give the margin once, as loss.margin=0.2 in place of margin=0.2."
    )
    assert checked(tmp_path, "loss.margin=0.2").loss.margin == 0.2


# The value checks: (base overrides, the bad override, what the message starts with, suggested overrides).
VALUE_CASES = [
    ([], "optimizer.lr=0", "optimizer.lr=0 is not a learning rate", ["optimizer.lr=1e-4"]),
    ([], "optimizer.lr=-1e-4", "optimizer.lr=-1e-4 is not a learning rate", ["optimizer.lr=1e-4"]),
    ([], "optimizer.lr=fast", "optimizer.lr=fast is not a learning rate", ["optimizer.lr=1e-4"]),
    ([], "optimizer.lr=null", "optimizer.lr=null is not a learning rate", ["optimizer.lr=1e-4"]),
    ([], "margin=-0.5", "margin=-0.5 is not a triplet margin", ["margin=0.5"]),
    (["loss=batch_all"], "margin=-1", "margin=-1 is not a triplet margin", ["margin=0.5"]),
    ([], "loss.margin=-0.1", "loss.margin=-0.1 is not a triplet margin", ["loss.margin=0.5"]),
    ([], "trainer.max_epochs=0", "trainer.max_epochs=0 is not a number of epochs", ["trainer.max_epochs=10"]),
    (
        ["experiment=mars_smoke"],
        "trainer.max_epochs=0",
        "trainer.max_epochs=0 is not a number of epochs",
        ["trainer.max_epochs=10", "trainer.max_epochs=-1"],
    ),
    (
        [],
        "trainer.max_steps=0",
        "trainer.max_steps=0 is not a number of steps",
        ["trainer.max_steps=1000", "trainer.max_steps=-1"],
    ),
    (
        ["experiment=mars_smoke"],
        "trainer.max_steps=0",
        "trainer.max_steps=0 is not a number of steps",
        ["trainer.max_steps=1000"],
    ),
    (
        [],
        "trainer.max_epochs=-1",
        "trainer.max_epochs=-1 with trainer.max_steps=-1 is a run that never stops",
        ["trainer.max_epochs=10", "trainer.max_steps=1000"],
    ),
    ([], "seed=1.5", "seed=1.5 is not a seed", ["seed=0"]),
    ([], "seed=abc", "seed=abc is not a seed", ["seed=0"]),
    ([], "seed=true", "seed=true is not a seed", ["seed=0"]),
    ([], "seed=-1", "seed=-1 is not a seed", ["seed=0"]),
]


@pytest.mark.parametrize(("base", "bad", "start", "suggested"), VALUE_CASES, ids=[c[1] for c in VALUE_CASES])
def test_bad_values_name_the_key_and_suggestions_pass(base, bad, start, suggested, tmp_path):
    with pytest.raises(ConfigError) as error:
        checked(tmp_path, *base, bad)
    message = str(error.value)
    assert message.startswith(start) and "\n" not in message
    examples = message.split("e.g. ", 1)[1]  # the suggested overrides follow "e.g."
    assert re.findall(r"(?<![\w.])[\w.]+=[^\s,)]*[^\s,.)]", examples) == suggested, message
    for suggestion in suggested:
        checked(tmp_path, *base, suggestion)  # typed as suggested, it passes


def test_check_in_process_train_too(digits_cfg):
    """`reid.tasks.train.train` checks before it builds anything (callers without train.py)."""
    from reid.tasks.train import train

    with pytest.raises(ConfigError, match=re.escape("optimizer.lr=0.0 is not a learning rate")):
        train(digits_cfg("run", "optimizer.lr=0.0"))


TIMING = re.compile(
    r"~\s*\d|\d\s*(?:ms|s|sec|min|minutes?|seconds?|hours?)\b|\b(?:frames|steps|it)/s\b|\bminute|\bseconds?\b"
)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("**/*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_comments_carry_no_timings(path):
    comments = [line.split("#", 1)[1] for line in path.read_text().splitlines() if "#" in line]
    assert not [c for c in comments if TIMING.search(c)], path
